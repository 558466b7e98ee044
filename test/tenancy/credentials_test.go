package tenancy

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/cli/install"
	"stretch.dev/stretch/internal/identity"
)

// probeName names the objects the matrix asks for: no request needs the
// object to exist, since authorization comes before everything else.
const probeName = "stretch-probe"

var (
	// collectionVerbs and objectVerbs are every verb of the Kubernetes API
	// on a resource; subresources have the object verbs but list, watch and
	// deletecollection.
	resourceVerbs    = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	subresourceVerbs = []string{"get", "create", "update", "patch", "delete"}
	// allNamespacesVerbs are what a namespaced resource answers across all
	// namespaces.
	allNamespacesVerbs = []string{"list", "watch"}
)

// allowedToHome is everything the credentials of home cluster A may do on
// the provider, by scope; every other request of the matrix must be
// Forbidden. Scopes are symbolic: tenant-a is stretch-tenant-<A>, twin-a is
// A's twin of shop; "cluster" is cluster scope; "*" is all namespaces.
// A line is "scope: resources... verbs...".
var allowedToHome = []string{
	// docs/design.md §2 and §3: the home cluster writes its twin requests
	// (RemoteNamespaces) into its tenant namespace and reads the provider's
	// answer in their status (Role and RoleBinding stretch-home-requests of
	// 'stretchctl peer').
	"tenant-a: peering.stretch.dev/remotenamespaces get list watch create update patch delete",
	"tenant-a: peering.stretch.dev/remotenamespaces/status get",
	// docs/design.md §4.20: the provider's policy for A (limits, Pod Security
	// level, allowed namings) and its usage are A's to read, never to
	// write: the provider's admin owns it.
	"tenant-a: peering.stretch.dev/tenantpolicies get list watch",
	// docs/design.md §2 and §4.15-16: in each twin, the virtual kubelet runs the
	// pods and reflects the ConfigMaps, Secrets, Services and service
	// account tokens they need (as Secrets: the tokens are requested at
	// home), reads their status, logs and events, and serves exec, attach
	// and port-forward (docs/design.md §4.24; ClusterRole
	// stretch-remote-workloads, bound by the tenant controller in the twin
	// only, RoleBinding stretch-home-workloads).
	"twin-a: pods configmaps secrets services serviceaccounts get list watch create update patch delete deletecollection",
	// docs/design.md §4.16: Ingresses a home namespace or an Ingress opts
	// in to reflect.
	"twin-a: networking.k8s.io/ingresses get list watch create update patch delete deletecollection",
	// docs/design.md §4.23: the copies of the home claims of class stretch,
	// whose status comes home.
	"twin-a: persistentvolumeclaims get list watch create update patch delete",
	"twin-a: pods/status pods/log get",
	"twin-a: pods/exec pods/attach pods/portforward get create",
	"twin-a: events events.k8s.io/events get list watch",
	// docs/design.md §4.22: the EndpointSlices of reflected Services that
	// list what runs elsewhere (same ClusterRole).
	"twin-a: discovery.k8s.io/endpointslices get list watch create update delete",
	// docs/design.md §4.2: the virtual node's capacity comes from the provider's
	// nodes (ClusterRole stretch-peer-node-reader).
	"cluster: nodes get list watch",
	// Kubernetes' own system:basic-user, bound to every authenticated user:
	// a client may ask what it itself may do, which reveals nothing else.
	"cluster: authorization.k8s.io/selfsubjectaccessreviews authorization.k8s.io/selfsubjectrulesreviews authentication.k8s.io/selfsubjectreviews create",
	// Kubernetes' own system:cluster-trust-bundle-discovery, bound to every
	// authenticated user: ClusterTrustBundles hold public CA certificates
	// that workloads are meant to read.
	"cluster: certificates.k8s.io/clustertrustbundles get list watch",
}

// The identity ConfigMap in stretch-system (docs/design.md §3, read by the home
// cluster for the provider's name and labels) is allowed by name only, so
// the matrix, which asks for probeName, finds stretch-system closed; it is
// checked on its own below.

// expand turns allowedToHome into the keys of probe.key.
func expand(lines []string) map[string]bool {
	out := map[string]bool{}
	for _, l := range lines {
		scope, rest, _ := strings.Cut(l, ": ")
		var resources, verbs []string
		for _, w := range strings.Fields(rest) {
			if slices.Contains(resourceVerbs, w) {
				verbs = append(verbs, w)
			} else {
				resources = append(resources, w)
			}
		}
		for _, r := range resources {
			for _, v := range verbs {
				out[scope+" "+r+" "+v] = true
			}
		}
	}
	return out
}

// probe is one request of the matrix.
type probe struct {
	gv                schema.GroupVersion
	resource, sub     string
	kind, kindVersion string
	scope, namespace  string
	verb              string
}

// key ignores the version: every version of a resource must answer alike.
func (p probe) key() string {
	r := p.resource
	if p.sub != "" {
		r += "/" + p.sub
	}
	if p.gv.Group != "" {
		r = p.gv.Group + "/" + r
	}
	return p.scope + " " + r + " " + p.verb
}

func (p probe) String() string {
	return fmt.Sprintf("%s (%s, namespace %q)", p.key(), p.gv, p.namespace)
}

// matrix is every probe on what the provider serves, from its discovery.
func matrix(t *testing.T, scopes map[string]string) []probe {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(provider.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatalf("discovery of the provider: %v", err)
	}
	var out []probe
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			resource, sub, _ := strings.Cut(r.Name, "/")
			p := probe{gv: gv, resource: resource, sub: sub, kind: r.Kind, kindVersion: r.Version}
			verbs := resourceVerbs
			if sub != "" {
				verbs = subresourceVerbs
			}
			add := func(scope string, verbs []string) {
				for _, v := range verbs {
					q := p
					q.scope, q.namespace, q.verb = scope, scopes[scope], v
					out = append(out, q)
				}
			}
			if !r.Namespaced {
				add("cluster", verbs)
				continue
			}
			for scope := range scopes {
				if scope != "cluster" && scope != "*" {
					add(scope, verbs)
				}
			}
			if sub == "" {
				add("*", allNamespacesVerbs)
			}
		}
	}
	return out
}

// try sends p with dc and returns the API server's answer.
func try(ctx context.Context, dc dynamic.Interface, p probe) error {
	gvr := p.gv.WithResource(p.resource)
	var ri dynamic.ResourceInterface = dc.Resource(gvr)
	if p.namespace != "" {
		ri = dc.Resource(gvr).Namespace(p.namespace)
	}
	var subs []string
	if p.sub != "" {
		subs = []string{p.sub}
	}
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion(p.gv.String())
	if p.kindVersion != "" {
		obj.SetAPIVersion(schema.GroupVersion{Group: p.gv.Group, Version: p.kindVersion}.String())
	}
	obj.SetKind(p.kind)
	obj.SetName(probeName)
	obj.SetNamespace(p.namespace)
	var err error
	switch p.verb {
	case "get":
		_, err = ri.Get(ctx, probeName, metav1.GetOptions{}, subs...)
	case "list":
		_, err = ri.List(ctx, metav1.ListOptions{Limit: 1})
	case "watch":
		var w interface{ Stop() }
		if w, err = ri.Watch(ctx, metav1.ListOptions{TimeoutSeconds: ptr.To[int64](1)}); err == nil {
			w.Stop()
		}
	case "create":
		_, err = ri.Create(ctx, obj, metav1.CreateOptions{}, subs...)
	case "update":
		_, err = ri.Update(ctx, obj, metav1.UpdateOptions{}, subs...)
	case "patch":
		_, err = ri.Patch(ctx, probeName, types.MergePatchType, []byte(`{}`), metav1.PatchOptions{}, subs...)
	case "delete":
		err = ri.Delete(ctx, probeName, metav1.DeleteOptions{}, subs...)
	case "deletecollection":
		// A selector that matches nothing: an allowed request deletes nothing.
		err = ri.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "stretch.dev/probe=none"})
	default:
		err = fmt.Errorf("unknown verb %s", p.verb)
	}
	return err
}

// TestIssuedCredentialsReachOnlyTheirTenant tries, with the token a provider
// issued to home cluster A and nothing else, every verb on every resource the
// provider serves, in every namespace that is not A's (another home
// cluster's tenant namespace and twin, the provider's own namespaces) and at
// cluster scope, and in A's own; the requests that pass authorization must be
// exactly allowedToHome.
func TestIssuedCredentialsReachOnlyTheirTenant(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	ts := setupTenants(t)
	scopes := map[string]string{
		"tenant-a": peeringv1alpha1.TenantNamespace(homeA), "twin-a": ts.twinA,
		"tenant-b": peeringv1alpha1.TenantNamespace(homeB), "twin-b": ts.twinB,
		bystander: bystander, "kube-system": "kube-system", "default": "default", "kube-public": "kube-public",
		"kube-node-lease": "kube-node-lease", "stretch-system": wellknown.SystemNamespace,
		"cluster": "", "*": "",
	}
	before := take(g, provider.Client, append(ts.bObjects, ts.bystanderObjects...)...)

	dc, err := dynamic.NewForConfig(ts.aConfig)
	g.Expect(err).NotTo(HaveOccurred())
	probes := matrix(t, scopes)
	want := expand(allowedToHome)
	passed := map[string]string{} // key → an answer that was not Forbidden
	resources := map[string]bool{}
	for _, p := range probes {
		resources[p.gv.WithResource(p.resource).String()+"/"+p.sub] = true
		err := try(ctx, dc, p)
		switch {
		case apierrors.IsForbidden(err):
			if want[p.key()] {
				t.Errorf("%s: Forbidden, but docs/security.md needs it: %v", p, err)
			}
		case apierrors.IsUnauthorized(err):
			t.Fatalf("%s: the issued token is not accepted: %v", p, err)
		default:
			passed[p.key()] = fmt.Sprint(err)
			if !want[p.key()] {
				t.Errorf("%s: passed authorization (answer: %v); only allowedToHome may", p, err)
			}
		}
	}
	for k := range want {
		if _, ok := passed[k]; !ok && !t.Failed() {
			t.Errorf("%s is in allowedToHome but was never tried: is the resource still served?", k)
		}
	}
	t.Logf("tried %d requests: %d resources and subresources (all groups and versions) × verbs × %d scopes; %d distinct requests passed authorization, all in allowedToHome",
		len(probes), len(resources), len(scopes), len(passed))
	if testing.Verbose() {
		keys := make([]string, 0, len(passed))
		for k := range passed {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.Logf("allowed: %s → %s", k, passed[k])
		}
	}

	t.Run("nothing outside A's tenant changed", func(t *testing.T) {
		g := newG(t)
		expectUnchanged(g, before, take(g, provider.Client, append(ts.bObjects, ts.bystanderObjects...)...))
	})

	t.Run("the identity ConfigMap is readable by name, and nothing else in stretch-system", func(t *testing.T) {
		g := newG(t)
		cm := &corev1.ConfigMap{}
		g.Expect(ts.a.Get(ctx, identity.Key, cm)).To(Succeed())
		g.Expect(apierrors.IsForbidden(ts.a.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(wellknown.SystemNamespace)))).To(BeTrue())
		cm.Data["clusterName"] = "hijacked"
		g.Expect(apierrors.IsForbidden(ts.a.Update(ctx, cm))).To(BeTrue())
		g.Expect(apierrors.IsForbidden(ts.a.Delete(ctx, cm))).To(BeTrue())
	})

	t.Run("impersonation is refused", func(t *testing.T) {
		for _, imp := range []rest.ImpersonationConfig{
			{UserName: "system:admin", Groups: []string{"system:masters"}},
			{UserName: "system:serviceaccount:" + peeringv1alpha1.TenantNamespace(homeB) + ":" + wellknown.TenantServiceAccountName},
			{UserName: "system:serviceaccount:kube-system:default"},
			{UserName: "system:serviceaccount:" + peeringv1alpha1.TenantNamespace(homeA) + ":" + wellknown.TenantServiceAccountName, Groups: []string{"system:masters"}},
			{UserName: "system:serviceaccount:" + peeringv1alpha1.TenantNamespace(homeA) + ":" + wellknown.TenantServiceAccountName, UID: "other"},
		} {
			cfg := rest.CopyConfig(ts.aConfig)
			cfg.Impersonate = imp
			cs, err := kubernetes.NewForConfig(cfg)
			g.Expect(err).NotTo(HaveOccurred())
			_, err = cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "impersonating %+v: %v", imp, err)
		}
	})

	// The provider serves no metrics API here, so the matrix, built from
	// its discovery, cannot try it: its authorizer answers for it
	// (docs/design.md §4.24, the pods' usage read from the twins).
	t.Run("the pods' metrics are A's to read in its twin, and nowhere else", func(t *testing.T) {
		g := newG(t)
		cs, err := kubernetes.NewForConfig(ts.aConfig)
		g.Expect(err).NotTo(HaveOccurred())
		for scope, ns := range scopes {
			for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
				review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
					Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
						Group: "metrics.k8s.io", Resource: "pods", Namespace: ns, Verb: verb,
					}},
				}, metav1.CreateOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				want := scope == "twin-a" && (verb == "get" || verb == "list")
				g.Expect(review.Status.Allowed).To(Equal(want), "%s metrics.k8s.io/pods in %s (%q)", verb, scope, ns)
			}
		}
	})

	// The ServiceAccount stretch-home keeps the name its tokens carry; each
	// grant has a name of its own, so that none is mistaken for another.
	t.Run("each grant has a name of its own", func(t *testing.T) {
		g := newG(t)
		tenant := peeringv1alpha1.TenantNamespace(homeA)
		g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home"}, &corev1.ServiceAccount{})).To(Succeed())
		g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home-requests"}, &rbacv1.Role{})).To(Succeed())
		g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home-requests"}, &rbacv1.RoleBinding{})).To(Succeed())
		g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: ts.twinA, Name: "stretch-home-workloads"}, &rbacv1.RoleBinding{})).To(Succeed())
		for _, ns := range []string{tenant, ts.twinA} {
			g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "stretch-home"}, &rbacv1.Role{}))).To(BeTrue(), ns)
			g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "stretch-home"}, &rbacv1.RoleBinding{}))).To(BeTrue(), ns)
		}
	})

	// So that the matrix cannot pass by everything failing: what a home
	// cluster needs works, with real objects.
	t.Run("what the home cluster needs works", func(t *testing.T) {
		g := newG(t)
		twin := ts.twinA
		g.Expect(ts.a.List(ctx, &corev1.NodeList{})).To(Succeed())
		rns := &peeringv1alpha1.RemoteNamespaceList{}
		g.Expect(ts.a.List(ctx, rns, client.InNamespace(peeringv1alpha1.TenantNamespace(homeA)))).To(Succeed())
		g.Expect(rns.Items).NotTo(BeEmpty())
		for _, o := range []client.Object{
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "cfg"}, Data: map[string]string{"k": "v"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "sec"}, StringData: map[string]string{"k": "v"}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "svc"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "sa"}},
			podIn(twin, "web"),
		} {
			g.Expect(client.IgnoreAlreadyExists(ts.a.Create(ctx, o))).To(Succeed(), "%T", o)
			g.Expect(ts.a.Get(ctx, client.ObjectKeyFromObject(o), o)).To(Succeed())
			o.SetLabels(map[string]string{"edited": "yes"})
			g.Expect(ts.a.Update(ctx, o)).To(Succeed(), "%T", o)
		}
		g.Expect(ts.a.List(ctx, &corev1.EventList{}, client.InNamespace(twin))).To(Succeed())
		g.Expect(ts.a.List(ctx, &eventsv1.EventList{}, client.InNamespace(twin))).To(Succeed())
		g.Expect(ts.a.Delete(ctx, podIn(twin, "web"))).To(Succeed())
	})

	// docs/design.md §4.20: the provider's policy is enforced against the issued
	// credentials too: A reads its TenantPolicy, cannot write it, and cannot
	// lower the Pod Security level of its twin by editing the twin's labels.
	t.Run("the TenantPolicy is read-only and the twin's Pod Security labels out of reach", func(t *testing.T) {
		g := newG(t)
		tenant := peeringv1alpha1.TenantNamespace(homeA)
		policy := &peeringv1alpha1.TenantPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: wellknown.TenantPolicyName},
			Spec:       peeringv1alpha1.TenantPolicySpec{PodSecurity: peeringv1alpha1.PodSecurityBaseline},
		}
		g.Expect(provider.Client.Create(ctx, policy)).To(Succeed())
		t.Cleanup(func() { _ = provider.Client.Delete(context.Background(), policy) })

		mine := &peeringv1alpha1.TenantPolicy{}
		g.Expect(ts.a.Get(ctx, client.ObjectKeyFromObject(policy), mine)).To(Succeed())
		g.Expect(mine.Spec.PodSecurity).To(Equal(peeringv1alpha1.PodSecurityBaseline))
		mine.Spec.PodSecurity = ""
		g.Expect(apierrors.IsForbidden(ts.a.Update(ctx, mine))).To(BeTrue(), "A cannot loosen its policy")
		g.Expect(apierrors.IsForbidden(ts.a.Status().Update(ctx, mine))).To(BeTrue(), "A cannot rewrite its usage")
		g.Expect(apierrors.IsForbidden(ts.a.Delete(ctx, mine))).To(BeTrue(), "A cannot remove its policy")
		g.Expect(apierrors.IsForbidden(ts.a.Create(ctx, &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "mine"}}))).To(BeTrue())

		g.Eventually(func(g Gomega) {
			ns := &corev1.Namespace{}
			g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: ts.twinA}, ns)).To(Succeed())
			g.Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "baseline"))
		}).Should(Succeed())
		patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`)
		err := ts.a.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ts.twinA}}, client.RawPatch(types.MergePatchType, patch))
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "A cannot change its twin's labels: %v", err)
	})

	// What the kubelet API of virtual nodes serves, on a real pod of the
	// twin: its logs, exec, attach and port-forward pass authorization
	// (envtest has no kubelet to go further); ephemeral containers do not.
	t.Run("on a pod of the twin: logs, exec, attach and port-forward", func(t *testing.T) {
		g := newG(t)
		pod := podIn(ts.twinA, "shell")
		g.Expect(client.IgnoreAlreadyExists(ts.a.Create(ctx, pod))).To(Succeed())
		t.Cleanup(func() { _ = ts.a.Delete(ctx, pod) })
		cs, err := kubernetes.NewForConfig(ts.aConfig)
		g.Expect(err).NotTo(HaveOccurred())
		for _, r := range []struct {
			sub, method string
			allowed     bool
		}{
			{"log", http.MethodGet, true},
			{"exec", http.MethodPost, true},
			{"exec", http.MethodGet, true}, // WebSocket
			{"attach", http.MethodPost, true},
			{"attach", http.MethodGet, true}, // WebSocket
			{"portforward", http.MethodPost, true},
			{"portforward", http.MethodGet, true}, // WebSocket
			{"ephemeralcontainers", http.MethodPatch, false},
		} {
			err := cs.CoreV1().RESTClient().Verb(r.method).Namespace(pod.Namespace).Resource("pods").Name(pod.Name).SubResource(r.sub).
				Param("command", "true").Param("stdout", "true").Do(ctx).Error()
			if r.allowed {
				// Past authorization, the API server finds no node to
				// reach (exec, attach, port-forward), or an empty log.
				g.Expect(err).To(Or(Not(HaveOccurred()), MatchError(ContainSubstring("does not have a host assigned"))), "%s pods/%s", r.method, r.sub)
			} else {
				g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s pods/%s: want Forbidden, got %v", r.method, r.sub, err)
			}
		}
	})
}

// homeLegacy is a home cluster peered with the provider by an earlier
// release, whose grants were all named as its ServiceAccount.
const homeLegacy = "e5e5e5e5-0000-4000-8000-00000000000e"

// TestLegacyPeeringKeepsWorking: a home cluster peered, and a namespace
// offloaded, by an earlier release (the tenant's Role and RoleBinding and the
// twin's grant named stretch-home, as the ServiceAccount) goes through the
// upgrade of the provider, 'stretchctl install' then the new tenant
// controller, with the same token and without being peered again: the grants
// get their own names, and its credentials still write twin requests and run
// pods, in the old twin and in a new one.
func TestLegacyPeeringKeepsWorking(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	installProvider(t)
	cfg := issue(t, homeLegacy)
	home := clientFor(t, cfg)
	tenant := peeringv1alpha1.TenantNamespace(homeLegacy)

	// What the earlier release issued: the same Role and RoleBinding, under
	// the ServiceAccount's name.
	role := &rbacv1.Role{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: wellknown.TenantRoleName}, role)).To(Succeed())
	binding := &rbacv1.RoleBinding{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: wellknown.TenantRoleName}, binding)).To(Succeed())
	g.Expect(provider.Client.Delete(ctx, binding)).To(Succeed())
	g.Expect(provider.Client.Delete(ctx, role)).To(Succeed())
	role.ObjectMeta = metav1.ObjectMeta{Namespace: tenant, Name: "stretch-home", Labels: role.Labels}
	binding.ObjectMeta = metav1.ObjectMeta{Namespace: tenant, Name: "stretch-home", Labels: binding.Labels}
	binding.RoleRef.Name = "stretch-home"
	g.Expect(provider.Client.Create(ctx, role)).To(Succeed())
	g.Expect(provider.Client.Create(ctx, binding)).To(Succeed())

	// The twin it offloaded to, as the earlier controller made it, with a
	// pod the home cluster runs there.
	old := requestTwin(g, home, homeLegacy, "old", "old", "old-"+homeLegacy)
	twin := old.Spec.RemoteNamespaceName
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: tenant, Name: "stretch-home"}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: twin,
			Annotations: map[string]string{wellknown.RemoteNamespaceOriginAnnotation: homeLegacy},
			Labels:      map[string]string{wellknown.OriginClusterIDLabel: homeLegacy, wellknown.OriginNamespaceLabel: "old"}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "stretch-home", Labels: map[string]string{wellknown.OriginClusterIDLabel: homeLegacy}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: wellknown.RemoteWorkloadsClusterRole},
			Subjects: []rbacv1.Subject{subject}},
	} {
		g.Expect(provider.Client.Create(ctx, obj)).To(Succeed())
	}
	running := podIn(twin, "running")
	// The API server's authorizer learns of a new RoleBinding from its own
	// watch, a moment after the write.
	g.Eventually(func() error { return home.Create(ctx, running) }).Should(Succeed())

	// The upgrade: install, then the new manager.
	var out strings.Builder
	_, err := install.Install(ctx, provider.Client, install.Options{ClusterName: "provider"}, &out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.String()).To(ContainSubstring("✓ tenant namespace " + tenant + ": Role and RoleBinding stretch-home of an earlier release replaced by stretch-home-requests"))
	startProviderSide(t)
	expectStatus(g, old, peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated")
	g.Eventually(func(g Gomega) {
		g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "stretch-home"}, &rbacv1.RoleBinding{}))).To(BeTrue())
	}).Should(Succeed(), "the twin's old grant is deleted")
	grant := &rbacv1.RoleBinding{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "stretch-home-workloads"}, grant)).To(Succeed())
	g.Expect(grant.Subjects).To(ConsistOf(subject))
	for _, obj := range []client.Object{&rbacv1.Role{}, &rbacv1.RoleBinding{}} {
		g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home"}, obj))).To(BeTrue(), "%T", obj)
		g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home-requests"}, obj)).To(Succeed(), "%T", obj)
	}

	// The same credentials: the old twin's pod is still there and a new one
	// runs beside it; a new twin is requested, made, and runs a pod too.
	after := &corev1.Pod{}
	g.Expect(home.Get(ctx, client.ObjectKeyFromObject(running), after)).To(Succeed())
	g.Expect(after.UID).To(Equal(running.UID))
	g.Expect(home.Create(ctx, podIn(twin, "after"))).To(Succeed())
	fresh := requestTwin(g, home, homeLegacy, "fresh", "fresh", "fresh-"+homeLegacy)
	expectStatus(g, fresh, peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated")
	g.Expect(home.Create(ctx, podIn(fresh.Spec.RemoteNamespaceName, "web"))).To(Succeed())
}
