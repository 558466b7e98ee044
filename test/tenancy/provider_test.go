package tenancy

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv/fleet"
	"stretch.dev/stretch/internal/virtualkubelet"
)

// statusFollows are the home objects whose status the provider may move
// (docs/security.md: home trusts pod status, and the provider's answers and health):
// the offloaded pod, the virtual node (heartbeat), the RemoteCluster and the
// NamespaceOffloading. Their metadata and spec must not change either.
var statusFollows = map[string]bool{
	"/v1, Resource=pods store/web":                                                    true,
	"/v1, Resource=nodes " + peeringv1alpha1.VirtualNodeName("provider"):              true,
	"peering.stretch.dev/v1alpha1, Resource=remoteclusters provider":                  true,
	"offloading.stretch.dev/v1alpha1, Resource=namespaceoffloadings store/offloading": true,
}

// changing are the home resources that change on their own, and which the
// provider may add to: events (the remote pod's are expected on the home
// pod; checked apart) and leases (the virtual node's heartbeat).
var changing = map[schema.GroupResource]bool{
	{Resource: "events"}:                               true,
	{Group: "events.k8s.io", Resource: "events"}:       true,
	{Group: "coordination.k8s.io", Resource: "leases"}: true,
}

// homeState is every object of the home cluster, by resource and key, as
// JSON; objects of statusFollows without their status and resource version.
func homeState(g Gomega, skipNamespace string) map[string]string {
	ctx := context.Background()
	cfg := rest.CopyConfig(home.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	lists, err := dc.ServerPreferredResources()
	g.Expect(err).NotTo(HaveOccurred())
	dyn, err := dynamic.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]string{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		g.Expect(err).NotTo(HaveOccurred())
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || changing[gv.WithResource(r.Name).GroupResource()] {
				continue
			}
			gvr := gv.WithResource(r.Name)
			list, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
			g.Expect(err).NotTo(HaveOccurred(), "listing %s at home", gvr)
			for _, o := range list.Items {
				if o.GetNamespace() == skipNamespace || (r.Kind == "Namespace" && o.GetName() == skipNamespace) {
					continue
				}
				key := gvr.String() + " " + o.GetName()
				if o.GetNamespace() != "" {
					key = gvr.String() + " " + o.GetNamespace() + "/" + o.GetName()
				}
				if statusFollows[key] {
					unstructured.RemoveNestedField(o.Object, "status")
					unstructured.RemoveNestedField(o.Object, "metadata", "resourceVersion")
					unstructured.RemoveNestedField(o.Object, "metadata", "managedFields")
				}
				data, err := json.Marshal(o.Object)
				g.Expect(err).NotTo(HaveOccurred())
				out[key] = string(data)
			}
		}
	}
	return out
}

// TestProviderCannotRewriteHome runs Stretch (home controllers and virtual
// kubelet, the provider's tenant controller) and, as the provider's admin,
// edits what the home cluster put on the provider, forges pods, events and
// twin requests: the home cluster's objects stay as they were but for the
// status of the offloaded pod and of the peering, nothing is created or
// deleted at home, no home object of another namespace reaches the
// provider, and edits of reflected objects are undone.
func TestProviderCannotRewriteHome(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	installProvider(t)
	st := fleet.Run(t, home, homeRun, []fleet.Provider{{Server: provider}})
	admin := provider.Client
	node := peeringv1alpha1.VirtualNodeName(provider.Name)
	tenantNS := peeringv1alpha1.TenantNamespace(homeRun)

	// The home cluster: namespace store offloaded, with a pod on the
	// virtual node and what it uses; namespace vault not offloaded, with a
	// secret and a pod of its own.
	g.Expect(home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vault"}})).To(Succeed())
	dbPassword := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "vault", Name: "db-password"}, Data: map[string][]byte{"password": []byte("hunter2-" + uuid.NewString())}}
	g.Expect(home.Client.Create(ctx, dbPassword)).To(Succeed())
	victim := podIn("vault", "victim")
	victim.Spec.NodeName = "real-node"
	g.Expect(home.Client.Create(ctx, victim)).To(Succeed())

	twin := offloadNamespace(g, "store")
	cfg := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "store", Name: "cfg"}, Data: map[string]string{"k": "home"}}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "store", Name: "sec"}, Data: map[string][]byte{"k": []byte("home")}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "store", Name: "svc"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	web := podIn("store", "web")
	web.Labels = map[string]string{"app": "web"}
	web.Spec.NodeName = node
	for _, o := range []client.Object{cfg, sec, svc, web} {
		g.Expect(home.Client.Create(ctx, o)).To(Succeed())
	}
	remoteKey := client.ObjectKey{Namespace: twin, Name: "web"}
	remote := &corev1.Pod{}
	g.Eventually(func() error { return admin.Get(ctx, remoteKey, remote) }).Should(Succeed())
	reflected := func(o client.Object) client.Object {
		return virtualkubelet.ReflectedObject(o, twin, homeRun)
	}
	for _, o := range []client.Object{cfg, sec, svc} {
		expectReflected(g, reflected(o))
	}
	before := homeState(g, "store2")

	t.Run("edits of the remote pod do not reach the home pod; its status does", func(t *testing.T) {
		g := newG(t)
		edit(g, remoteKey, &corev1.Pod{}, func(p *corev1.Pod) {
			p.Labels["app"] = "hijacked"
			p.Labels["extra"] = "provider"
			metav1.SetMetaDataAnnotation(&p.ObjectMeta, "provider.example/note", "mine")
			p.Spec.Containers[0].Image = "evil:latest"
		})
		// The virtual kubelet undoes the edit above meanwhile: a conflict
		// is retried, as any client of a contended object would.
		g.Eventually(func() error {
			r := &corev1.Pod{}
			if err := admin.Get(ctx, remoteKey, r); err != nil {
				return err
			}
			r.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.9.9.9", PodIPs: []corev1.PodIP{{IP: "10.9.9.9"}}}
			return admin.Status().Update(ctx, r)
		}).Should(Succeed())
		g.Eventually(func(g Gomega) {
			got := &corev1.Pod{}
			g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(web), got)).To(Succeed())
			g.Expect(got.Status.PodIP).To(Equal("10.9.9.9"))
		}).Should(Succeed())
	})

	t.Run("edits and deletions of reflected objects are undone", func(t *testing.T) {
		g := newG(t)
		edit(g, client.ObjectKey{Namespace: twin, Name: "cfg"}, &corev1.ConfigMap{}, func(c *corev1.ConfigMap) {
			c.Data["k"] = "provider"
			c.Labels["extra"] = "provider"
			c.Labels[wellknown.OriginNamespaceLabel] = "vault" // claims another home namespace
		})
		edit(g, client.ObjectKey{Namespace: twin, Name: "svc"}, &corev1.Service{}, func(s *corev1.Service) {
			s.Spec.Ports[0].Port = 8080
			s.Spec.Selector = map[string]string{"app": "provider"}
		})
		edit(g, client.ObjectKey{Namespace: twin, Name: "sec"}, &corev1.Secret{}, func(s *corev1.Secret) {
			s.Data["k"] = []byte("provider")
		})
		for _, o := range []client.Object{cfg, sec, svc} {
			expectReflected(g, reflected(o))
		}
		// A key of the provider's own stays (a load balancer controller's,
		// say); those Stretch set are put back.
		got := &corev1.ConfigMap{}
		g.Expect(admin.Get(ctx, client.ObjectKey{Namespace: twin, Name: "cfg"}, got)).To(Succeed())
		g.Expect(got.Labels).To(HaveKeyWithValue("extra", "provider"))
		g.Expect(admin.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "sec"}})).To(Succeed())
		g.Expect(admin.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "cfg"}})).To(Succeed())
		for _, o := range []client.Object{cfg, sec, svc} {
			expectReflected(g, reflected(o))
		}
	})

	t.Run("forged pods and events in the twin reach nothing at home", func(t *testing.T) {
		g := newG(t)
		labels := func(ns string) map[string]string {
			return map[string]string{wellknown.ReflectedLabel: "true", wellknown.OriginClusterIDLabel: homeRun, wellknown.OriginNamespaceLabel: ns}
		}
		forged := []*corev1.Pod{
			// Claims the home pod of another namespace, by namespace and UID.
			{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "victim", Labels: labels("vault"),
				Annotations: map[string]string{wellknown.OriginPodUIDAnnotation: string(victim.UID)}}},
			// Claims it by UID only.
			{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "victim-by-uid", Labels: labels("store"),
				Annotations: map[string]string{wellknown.OriginPodUIDAnnotation: string(victim.UID)}}},
			// Claims a home pod that does not exist.
			{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "ghost", Labels: labels("store"),
				Annotations: map[string]string{wellknown.OriginPodUIDAnnotation: uuid.NewString()}}},
		}
		for _, p := range forged {
			p.Spec = podIn("", "").Spec
			g.Expect(admin.Create(ctx, p)).To(Succeed())
			// The virtual kubelet may be deleting it already.
			g.Eventually(func() error {
				cur := &corev1.Pod{}
				if err := admin.Get(ctx, client.ObjectKeyFromObject(p), cur); err != nil {
					return client.IgnoreNotFound(err)
				}
				cur.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "forged"}
				return client.IgnoreNotFound(admin.Status().Update(ctx, cur))
			}).Should(Succeed())
			now := metav1.Now()
			for _, reason := range []string{"Killing", "Evicted"} {
				g.Expect(admin.Create(ctx, &corev1.Event{
					ObjectMeta:     metav1.ObjectMeta{Namespace: twin, Name: p.Name + "." + strings.ToLower(reason)},
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: twin, Name: p.Name, UID: p.UID, APIVersion: "v1"},
					Type:           corev1.EventTypeWarning, Reason: reason, Message: "forged by the provider",
					FirstTimestamp: now, LastTimestamp: now, Count: 1, Source: corev1.EventSource{Component: "kubelet"},
				})).To(Succeed())
			}
		}
		// An event about the real remote pod comes home: the sync point
		// after which the forged ones would have come too.
		now := metav1.Now()
		g.Expect(admin.Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: twin, Name: "web.pulled"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: twin, Name: "web", UID: remote.UID, APIVersion: "v1"},
			Type:           corev1.EventTypeNormal, Reason: "Pulled", Message: "real",
			FirstTimestamp: now, LastTimestamp: now, Count: 1, Source: corev1.EventSource{Component: "kubelet"},
		})).To(Succeed())
		g.Eventually(func(g Gomega) []string { return homeEventReasons(g, "store", "web") }).Should(ContainElement("Pulled"))

		events := &eventsv1.EventList{}
		g.Expect(home.Client.List(ctx, events)).To(Succeed())
		for _, e := range events.Items {
			g.Expect(e.Regarding.Name).NotTo(BeElementOf("victim", "victim-by-uid", "ghost"), "home event %s/%s %s: %s", e.Namespace, e.Name, e.Reason, e.Note)
			g.Expect(e.Note).NotTo(ContainSubstring("forged"))
		}
		list := &corev1.EventList{}
		g.Expect(home.Client.List(ctx, list)).To(Succeed())
		for _, e := range list.Items {
			g.Expect(e.Message).NotTo(ContainSubstring("forged"), "home event %s/%s", e.Namespace, e.Name)
		}
	})

	t.Run("a rewritten twin request status changes only the offloading status", func(t *testing.T) {
		g := newG(t)
		rn := &peeringv1alpha1.RemoteNamespace{}
		key := client.ObjectKey{Namespace: tenantNS, Name: "store"}
		g.Expect(admin.Get(ctx, key, rn)).To(Succeed())
		patch := client.MergeFrom(rn.DeepCopy())
		rn.Status.Message = "twin namespace kube-system exists and home cluster " + homeRun + " may run workloads in it"
		rn.Status.Reason = "Hijacked"
		g.Expect(admin.Status().Patch(ctx, rn, patch)).To(Succeed())
		// The tenant controller answers again; the offloading stays Ready.
		expectStatus(g, rn, peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated", twin)
	})

	t.Run("a forged twin request does not pull in another home namespace", func(t *testing.T) {
		g := newG(t)
		// The provider's admin keeps the home cluster from withdrawing what
		// it did not ask for, and asks, as the home cluster, for a twin of
		// vault, which the provider's tenant controller then grants.
		role := &rbacv1.Role{}
		edit(g, client.ObjectKey{Namespace: tenantNS, Name: wellknown.TenantRoleName}, role, func(r *rbacv1.Role) {
			r.Rules[0].Verbs = slices.DeleteFunc(r.Rules[0].Verbs, func(v string) bool { return v == "delete" })
		})
		forged := requestTwin(g, admin, homeRun, "vault", "vault", "loot")
		expectStatus(g, forged, peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated")

		// Sync point: a namespace offloaded afterwards is running, so the
		// virtual kubelet has listed the twin requests since the forged one
		// was Ready.
		twin2 := offloadNamespace(g, "store2")
		marker := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "store2", Name: "marker"}}
		g.Expect(home.Client.Create(ctx, marker)).To(Succeed())
		expectReflected(g, virtualkubelet.ReflectedObject(marker, twin2, homeRun))
		g.Expect(twinGauge(g, st)).To(Equal(2.0), "the virtual kubelet watches store's and store2's twins only")

		secrets := &corev1.SecretList{}
		g.Expect(admin.List(ctx, secrets)).To(Succeed())
		for _, s := range secrets.Items {
			g.Expect(s.Data).NotTo(ContainElement(dbPassword.Data["password"]), "home secret vault/db-password leaked to %s/%s", s.Namespace, s.Name)
		}
	})

	t.Run("nothing at home was created, deleted or rewritten", func(t *testing.T) {
		g := newG(t)
		after := homeState(g, "store2")
		for k := range maps.Keys(after) {
			if _, ok := before[k]; !ok {
				t.Errorf("created at home: %s", k)
			}
		}
		for k, v := range before {
			switch w, ok := after[k]; {
			case !ok:
				t.Errorf("deleted at home: %s", k)
			case v != w:
				t.Errorf("rewritten at home: %s\nbefore: %s\nafter:  %s", k, v, w)
			}
		}
		g.Expect(len(before)).To(BeNumerically(">", 50), "the snapshot covers the whole home cluster")
		t.Logf("%d home objects compared", len(before))
	})
}

// offloadNamespace creates and offloads a home namespace and waits until
// it is Ready; it returns the twin's name.
func offloadNamespace(g Gomega, ns string) string {
	ctx := context.Background()
	g.ExpectWithOffset(1, client.IgnoreAlreadyExists(home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))).To(Succeed())
	off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.NamespaceOffloadingName}}
	g.ExpectWithOffset(1, home.Client.Create(ctx, off)).To(Succeed())
	g.EventuallyWithOffset(1, func(g Gomega) {
		g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(off), off)).To(Succeed())
		g.Expect(off.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
	}).Should(Succeed())
	return ns + "-" + homeRun
}

// expectReflected waits until the provider holds want, as the virtual
// kubelet writes it; labels the provider added may stay.
func expectReflected(g Gomega, want client.Object) {
	g.EventuallyWithOffset(1, func(g Gomega) {
		got := want.DeepCopyObject().(client.Object)
		g.Expect(provider.Client.Get(context.Background(), client.ObjectKeyFromObject(want), got)).To(Succeed())
		for k, v := range want.GetLabels() {
			g.Expect(got.GetLabels()).To(HaveKeyWithValue(k, v))
		}
		switch w := want.(type) {
		case *corev1.ConfigMap:
			g.Expect(got.(*corev1.ConfigMap).Data).To(Equal(w.Data))
		case *corev1.Secret:
			g.Expect(got.(*corev1.Secret).Data).To(Equal(w.Data))
		case *corev1.Service:
			s := got.(*corev1.Service)
			g.Expect(s.Spec.Selector).To(Equal(w.Spec.Selector))
			g.Expect(s.Spec.Ports).To(HaveLen(len(w.Spec.Ports)))
			for i := range w.Spec.Ports {
				g.Expect(s.Spec.Ports[i].Port).To(Equal(w.Spec.Ports[i].Port))
			}
		}
	}).Should(Succeed(), "%T %s is reflected", want, client.ObjectKeyFromObject(want))
}

// edit changes an object of the provider as its admin.
func edit[T client.Object](g Gomega, key client.ObjectKey, obj T, change func(T)) {
	g.EventuallyWithOffset(1, func() error {
		if err := provider.Client.Get(context.Background(), key, obj); err != nil {
			return err
		}
		change(obj)
		return provider.Client.Update(context.Background(), obj)
	}).Should(Succeed())
}

func homeEventReasons(g Gomega, ns, name string) []string {
	list := &eventsv1.EventList{}
	g.Expect(home.Client.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out
}

// twinGauge is the number of twins the virtual kubelet watches.
func twinGauge(g Gomega, st *fleet.Stretch) float64 {
	families, err := st.Metrics.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() == "stretch_virtualkubelet_twin_namespaces" {
			var n float64
			for _, m := range f.GetMetric() {
				n += m.GetGauge().GetValue()
			}
			return n
		}
	}
	return 0
}
