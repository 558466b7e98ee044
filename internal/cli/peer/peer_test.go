package peer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
	"stretch.dev/stretch/internal/testenv"
)

// The tests share three clusters. Peerings are idempotent, so each test
// peers what it needs; the unpeer tests come last because envtest has no
// namespace controller: a revoked tenant namespace stays Terminating.
var (
	home, eu, us *testenv.APIServer

	homeID = identity.Identity{ID: uuid.NewString(), Name: "home", Labels: map[string]string{"role": "home"}}
	euID   = identity.Identity{ID: uuid.NewString(), Name: "provider-eu", Labels: map[string]string{"region": "eu"}}
	usID   = identity.Identity{ID: uuid.NewString(), Name: "provider-us", Labels: map[string]string{"region": "us"}}

	installOnce sync.Once
	installErr  error
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	testenv.Main(m, func(s []*testenv.APIServer) { home, eu, us = s[0], s[1], s[2] }, "home", "provider-eu", "provider-us")
}

// setup installs the identities of the three clusters.
func setup(t *testing.T) (context.Context, *WithT) {
	t.Helper()
	ctx := context.Background()
	installOnce.Do(func() {
		for _, s := range []struct {
			server *testenv.APIServer
			id     identity.Identity
		}{{home, homeID}, {eu, euID}, {us, usID}} {
			if installErr = s.server.InstallIdentity(ctx, s.id); installErr != nil {
				return
			}
		}
	})
	if installErr != nil {
		t.Fatal(installErr)
	}
	return ctx, NewWithT(t)
}

// peerEU peers home with provider-eu directly.
func peerEU(ctx context.Context, g *WithT) string {
	var out bytes.Buffer
	_, err := Peer(ctx, home.Client, eu.Client, eu.Config, &out)
	g.Expect(err).NotTo(HaveOccurred(), out.String())
	return out.String()
}

// issue issues credentials on provider-us for home.
func issueUS(ctx context.Context, g *WithT) *peering.Credentials {
	creds, err := IssueCredentials(ctx, us.Client, us.Config, homeID.ID, &bytes.Buffer{})
	g.Expect(err).NotTo(HaveOccurred())
	return creds
}

func TestPeerDirect(t *testing.T) {
	ctx, g := setup(t)
	out := peerEU(ctx, g)
	tenant := peeringv1alpha1.TenantNamespace(homeID.ID)
	g.Expect(out).To(ContainSubstring("✓ tenant namespace " + tenant))
	g.Expect(out).To(ContainSubstring("✓ RemoteCluster provider-eu applied"))

	// Provider side.
	labels := map[string]string{"app.kubernetes.io/part-of": "stretch", wellknown.HomeClusterIDLabel: homeID.ID}
	ns := &corev1.Namespace{}
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: tenant}, ns)).To(Succeed())
	delete(ns.Labels, corev1.LabelMetadataName)
	g.Expect(ns.Labels).To(Equal(labels))
	sa := &corev1.ServiceAccount{}
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home"}, sa)).To(Succeed())
	g.Expect(sa.Labels).To(Equal(labels))
	subject := rbacv1.Subject{Kind: "ServiceAccount", Namespace: tenant, Name: "stretch-home"}

	// The ServiceAccount keeps the name its tokens carry; the Role and
	// RoleBinding in the tenant namespace have their own.
	role := &rbacv1.Role{}
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home-requests"}, role)).To(Succeed())
	g.Expect(role.Rules).To(ConsistOf(
		rbacv1.PolicyRule{APIGroups: []string{"peering.stretch.dev"}, Resources: []string{"remotenamespaces"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		rbacv1.PolicyRule{APIGroups: []string{"peering.stretch.dev"}, Resources: []string{"remotenamespaces/status"}, Verbs: []string{"get", "list", "watch"}},
		rbacv1.PolicyRule{APIGroups: []string{"peering.stretch.dev"}, Resources: []string{"tenantpolicies"}, Verbs: []string{"get", "list", "watch"}},
	))
	rb := &rbacv1.RoleBinding{}
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home-requests"}, rb)).To(Succeed())
	g.Expect(rb.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "stretch-home-requests"}))
	legacy := client.ObjectKey{Namespace: tenant, Name: "stretch-home"}
	g.Expect(apierrors.IsNotFound(eu.Client.Get(ctx, legacy, &rbacv1.Role{}))).To(BeTrue(), "no Role named as the ServiceAccount")
	g.Expect(apierrors.IsNotFound(eu.Client.Get(ctx, legacy, &rbacv1.RoleBinding{}))).To(BeTrue(), "no RoleBinding named as the ServiceAccount")
	g.Expect(rb.Subjects).To(ConsistOf(subject))

	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: "stretch-system", Name: tenant}, role)).To(Succeed())
	g.Expect(role.Rules).To(ConsistOf(rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"stretch-cluster-identity"}, Verbs: []string{"get"}}))
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: "stretch-system", Name: tenant}, rb)).To(Succeed())
	g.Expect(rb.RoleRef.Name).To(Equal(tenant))
	g.Expect(rb.Subjects).To(ConsistOf(subject))

	cr := &rbacv1.ClusterRole{}
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: "stretch-peer-node-reader"}, cr)).To(Succeed())
	g.Expect(cr.Rules).To(ConsistOf(rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}))
	crb := &rbacv1.ClusterRoleBinding{}
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: tenant}, crb)).To(Succeed())
	g.Expect(crb.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "stretch-peer-node-reader"}))
	g.Expect(crb.Subjects).To(ConsistOf(subject))
	g.Expect(crb.Labels).To(Equal(labels))

	// Home side.
	rc := &peeringv1alpha1.RemoteCluster{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: "provider-eu"}, rc)).To(Succeed())
	g.Expect(rc.Spec).To(Equal(peeringv1alpha1.RemoteClusterSpec{
		ClusterID:           euID.ID,
		KubeconfigSecretRef: peeringv1alpha1.SecretKeyReference{Namespace: "stretch-system", Name: "stretch-peer-provider-eu", Key: "kubeconfig"},
	}))
	g.Expect(rc.Labels).To(HaveKeyWithValue(wellknown.RemoteClusterIDLabel, euID.ID))
	secret := &corev1.Secret{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: "stretch-system", Name: "stretch-peer-provider-eu"}, secret)).To(Succeed())
	g.Expect(secret.Type).To(Equal(corev1.SecretTypeOpaque))
	g.Expect(secret.Data).To(HaveKey("kubeconfig"))

	// The issued kubeconfig reaches the provider as the tenant.
	c := issued(ctx, t, "provider-eu")
	got, err := identity.Load(ctx, c)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(euID))
}

func TestRepeerIsIdempotent(t *testing.T) {
	ctx, g := setup(t)
	peerEU(ctx, g)

	// An admin owns spec.labels and cordoned; a re-peering keeps them.
	rc := &peeringv1alpha1.RemoteCluster{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: "provider-eu"}, rc)).To(Succeed())
	patch := client.MergeFrom(rc.DeepCopy())
	rc.Spec.Labels = map[string]string{"tier": "gold"}
	rc.Spec.Cordoned = true
	g.Expect(home.Client.Patch(ctx, rc, patch, client.FieldOwner("kubectl-edit"))).To(Succeed())

	homeBefore, euBefore := snapshot(ctx, g, home.Client), snapshot(ctx, g, eu.Client)
	out := peerEU(ctx, g)
	g.Expect(out).To(ContainSubstring("✓ RemoteCluster provider-eu applied"))

	homeAfter, euAfter := snapshot(ctx, g, home.Client), snapshot(ctx, g, eu.Client)
	g.Expect(euAfter).To(Equal(euBefore), "nothing changes on the provider")
	// A direct re-peering issues a fresh token: only the Secret changes.
	secretKey := "*v1.Secret stretch-system/stretch-peer-provider-eu"
	g.Expect(homeAfter[secretKey]).NotTo(Equal(homeBefore[secretKey]))
	delete(homeAfter, secretKey)
	delete(homeBefore, secretKey)
	g.Expect(homeAfter).To(Equal(homeBefore), "nothing else changes on the home cluster")

	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: "provider-eu"}, rc)).To(Succeed())
	g.Expect(rc.Spec.Labels).To(Equal(map[string]string{"tier": "gold"}))
	g.Expect(rc.Spec.Cordoned).To(BeTrue())
}

func TestPeerOutOfBand(t *testing.T) {
	ctx, g := setup(t)
	before := time.Now()
	creds := issueUS(ctx, g)
	granted := creds.ExpirationTimestamp.Sub(before)
	t.Logf("asked for a token valid %s, the API server granted %s (until %s)", TokenLifetime, granted.Round(time.Minute), creds.ExpirationTimestamp.UTC())
	g.Expect(granted).To(BeNumerically("~", TokenLifetime, time.Minute), "envtest's API server grants the full year")

	// The provider writes the file; the home side reads it.
	data, err := creds.Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	file := filepath.Join(t.TempDir(), "provider-us.credentials")
	g.Expect(os.WriteFile(file, data, 0o600)).To(Succeed())
	read, err := os.ReadFile(file)
	g.Expect(err).NotTo(HaveOccurred())
	parsed, err := peering.ParseCredentials(read)
	g.Expect(err).NotTo(HaveOccurred())

	var out bytes.Buffer
	rc, err := Consume(ctx, home.Client, parsed, &out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rc.Spec.ClusterID).To(Equal(usID.ID))
	g.Expect(out.String()).To(ContainSubstring("✓ Secret stretch-system/stretch-peer-provider-us applied"))
	got, err := identity.Load(ctx, issued(ctx, t, "provider-us"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(usID))

	// Consuming the same file again changes nothing at all.
	homeBefore := snapshot(ctx, g, home.Client)
	_, err = Consume(ctx, home.Client, parsed, &out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(snapshot(ctx, g, home.Client)).To(Equal(homeBefore))
}

// The credentials carry the address given with --api-server-url, and the
// provider's CA, instead of the server of the provider's kubeconfig.
func TestIssueCredentialsAPIServerURL(t *testing.T) {
	ctx, g := setup(t)
	g.Expect(peering.IsLoopback(Server(us.Config))).To(BeTrue(), "envtest serves on 127.0.0.1: without an override, that is what is issued")
	g.Expect(WithAPIServerURL(us.Config, "")).To(BeIdenticalTo(us.Config))

	const url = "https://api.provider-us.example.com:6443"
	cfg := WithAPIServerURL(us.Config, url)
	g.Expect(us.Config.Host).NotTo(Equal(url), "the provider's own config is left alone")
	creds, err := IssueCredentials(ctx, us.Client, cfg, homeID.ID, &bytes.Buffer{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(creds.Provider.Server).To(Equal(url))
	g.Expect(creds.Provider.CertificateAuthorityData).NotTo(BeEmpty())

	data, err := creds.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := clientcmd.Load(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kubeconfig.Clusters).To(HaveKeyWithValue("provider-us", HaveField("Server", url)))
}

func TestPeerRefusals(t *testing.T) {
	ctx, g := setup(t)
	peerEU(ctx, g)
	valid := issueUS(ctx, g)

	// Each refusal changes nothing on any cluster.
	forged := func(edit func(c *peering.Credentials)) *peering.Credentials {
		c := *valid
		edit(&c)
		return &c
	}
	consume := func(c *peering.Credentials) error {
		_, err := Consume(ctx, home.Client, c, &bytes.Buffer{})
		return err
	}
	tests := []struct {
		name    string
		run     func() error
		wantErr string
	}{
		{
			name: "provider issues credentials to itself",
			run: func() error {
				_, err := IssueCredentials(ctx, eu.Client, eu.Config, euID.ID, &bytes.Buffer{})
				return err
			},
			wantErr: "cannot peer a cluster with itself: " + euID.ID + ` is the cluster ID of "provider-eu"`,
		},
		{
			name:    "direct peering of a cluster with itself",
			run:     func() error { _, err := Peer(ctx, home.Client, home.Client, home.Config, &bytes.Buffer{}); return err },
			wantErr: "cannot peer a cluster with itself",
		},
		{
			name: "credentials naming the home cluster as provider",
			run: func() error {
				return consume(forged(func(c *peering.Credentials) { c.Provider.ClusterID = homeID.ID }))
			},
			wantErr: "cannot peer a cluster with itself",
		},
		{
			name: "credentials for another home cluster",
			run: func() error {
				return consume(forged(func(c *peering.Credentials) { c.HomeClusterID = "00000000-0000-4000-8000-000000000000" }))
			},
			wantErr: fmt.Sprintf("these credentials were issued for home cluster 00000000-0000-4000-8000-000000000000, this cluster is %s (\"home\"): generate them on the provider with --home-cluster-id %s", homeID.ID, homeID.ID),
		},
		{
			name: "same name, another cluster ID",
			run: func() error {
				return consume(forged(func(c *peering.Credentials) {
					c.Provider.ClusterName, c.Provider.ClusterID = "provider-eu", "11111111-1111-4111-8111-111111111111"
				}))
			},
			wantErr: "RemoteCluster provider-eu already stands for cluster ID " + euID.ID + `, but "provider-eu" now has cluster ID 11111111-1111-4111-8111-111111111111`,
		},
		{
			name: "same cluster ID, another name",
			run: func() error {
				return consume(forged(func(c *peering.Credentials) {
					c.Provider.ClusterName, c.Provider.ClusterID = "provider-eu-2", euID.ID
				}))
			},
			wantErr: "cluster ID " + euID.ID + ` is already peered as RemoteCluster provider-eu, and now calls itself "provider-eu-2"`,
		},
		{
			name: "expired credentials",
			run: func() error {
				return consume(forged(func(c *peering.Credentials) { c.ExpirationTimestamp = metav1.NewTime(time.Now().Add(-time.Minute)) }))
			},
			wantErr: `the credentials issued by "provider-us" expired at`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			before := []map[string]string{snapshot(ctx, g, home.Client), snapshot(ctx, g, eu.Client), snapshot(ctx, g, us.Client)}
			g.Expect(tt.run()).To(MatchError(ContainSubstring(tt.wantErr)))
			after := []map[string]string{snapshot(ctx, g, home.Client), snapshot(ctx, g, eu.Client), snapshot(ctx, g, us.Client)}
			g.Expect(after).To(Equal(before))
		})
	}
}

// TestIssuedCredentialsLeastPrivilege asks the real API server what the
// issued credentials may do.
func TestIssuedCredentialsLeastPrivilege(t *testing.T) {
	ctx, g := setup(t)
	peerEU(ctx, g)
	c := issued(ctx, t, "provider-eu")
	tenant := peeringv1alpha1.TenantNamespace(homeID.ID)

	// Objects the admin creates, so that a denial is not a NotFound.
	otherTenant := peeringv1alpha1.TenantNamespace(usID.ID)
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: otherTenant}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "workloads"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "stretch-system", Name: "admin-secret"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "tenant-secret"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "workloads", Name: "app-secret"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "stretch-system", Name: "other"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}},
	} {
		g.Expect(client.IgnoreAlreadyExists(eu.Client.Create(ctx, obj))).To(Succeed())
	}

	rn := func(ns, name string) *peeringv1alpha1.RemoteNamespace {
		return &peeringv1alpha1.RemoteNamespace{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: name, HomeClusterID: homeID.ID, RemoteNamespaceName: name + "-" + homeID.ID},
		}
	}
	key := func(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
	identityCM := func() *corev1.ConfigMap {
		cm := &corev1.ConfigMap{}
		g.Expect(eu.Client.Get(ctx, identity.Key, cm)).To(Succeed())
		cm.Data["clusterName"] = "hijacked"
		return cm
	}

	allowed := map[string]func() error{
		"get the identity ConfigMap":         func() error { return c.Get(ctx, identity.Key, &corev1.ConfigMap{}) },
		"list nodes":                         func() error { return c.List(ctx, &corev1.NodeList{}) },
		"get a node":                         func() error { return c.Get(ctx, key("", "worker-1"), &corev1.Node{}) },
		"create a RemoteNamespace in tenant": func() error { return c.Create(ctx, rn(tenant, "foo")) },
		"get a RemoteNamespace in tenant":    func() error { return c.Get(ctx, key(tenant, "foo"), &peeringv1alpha1.RemoteNamespace{}) },
		"list RemoteNamespaces in tenant":    func() error { return c.List(ctx, &peeringv1alpha1.RemoteNamespaceList{}, client.InNamespace(tenant)) },
		"delete a RemoteNamespace in tenant": func() error { return c.Delete(ctx, rn(tenant, "foo")) },
		"get a missing RemoteNamespace (404)": func() error {
			return client.IgnoreNotFound(c.Get(ctx, key(tenant, "nope"), &peeringv1alpha1.RemoteNamespace{}))
		},
	}
	// Run in this order: create before get before delete.
	for _, name := range []string{"get the identity ConfigMap", "list nodes", "get a node", "create a RemoteNamespace in tenant",
		"get a RemoteNamespace in tenant", "list RemoteNamespaces in tenant", "delete a RemoteNamespace in tenant", "get a missing RemoteNamespace (404)"} {
		g.Expect(allowed[name]()).To(Succeed(), name)
	}

	denied := []struct {
		name string
		run  func() error
	}{
		{"get a namespace", func() error { return c.Get(ctx, key("", "workloads"), &corev1.Namespace{}) }},
		{"get its own tenant namespace", func() error { return c.Get(ctx, key("", tenant), &corev1.Namespace{}) }},
		{"list namespaces", func() error { return c.List(ctx, &corev1.NamespaceList{}) }},
		{"delete a namespace", func() error {
			return c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "workloads"}})
		}},
		{"delete its own tenant namespace", func() error {
			return c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}})
		}},
		{"create a namespace", func() error {
			return c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "foo-" + homeID.ID}})
		}},
		{"list pods in kube-system", func() error { return c.List(ctx, &corev1.PodList{}, client.InNamespace("kube-system")) }},
		{"get a ConfigMap in kube-system", func() error {
			return c.Get(ctx, key("kube-system", "extension-apiserver-authentication"), &corev1.ConfigMap{})
		}},
		{"create a ConfigMap in kube-system", func() error {
			return c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "x"}})
		}},
		{"get a Secret in stretch-system", func() error { return c.Get(ctx, key("stretch-system", "admin-secret"), &corev1.Secret{}) }},
		{"list Secrets in stretch-system", func() error { return c.List(ctx, &corev1.SecretList{}, client.InNamespace("stretch-system")) }},
		{"get a Secret in its tenant namespace", func() error { return c.Get(ctx, key(tenant, "tenant-secret"), &corev1.Secret{}) }},
		{"get a Secret in another namespace", func() error { return c.Get(ctx, key("workloads", "app-secret"), &corev1.Secret{}) }},
		{"list Secrets cluster-wide", func() error { return c.List(ctx, &corev1.SecretList{}) }},
		{"get another ConfigMap in stretch-system", func() error { return c.Get(ctx, key("stretch-system", "other"), &corev1.ConfigMap{}) }},
		{"list ConfigMaps in stretch-system", func() error { return c.List(ctx, &corev1.ConfigMapList{}, client.InNamespace("stretch-system")) }},
		{"update the identity ConfigMap", func() error { return c.Update(ctx, identityCM()) }},
		{"delete the identity ConfigMap", func() error { return c.Delete(ctx, identity.Identity{}.ConfigMap()) }},
		{"create a RemoteNamespace in another tenant namespace", func() error { return c.Create(ctx, rn(otherTenant, "bar")) }},
		{"list RemoteNamespaces cluster-wide", func() error { return c.List(ctx, &peeringv1alpha1.RemoteNamespaceList{}) }},
		{"update a RemoteNamespace's status", func() error {
			obj := rn(tenant, "st")
			g.Expect(c.Create(ctx, obj)).To(Succeed())
			obj.Status.Phase = peeringv1alpha1.RemoteNamespaceReady
			return c.Status().Update(ctx, obj)
		}},
		{"delete a node", func() error { return c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}}) }},
		{"create a pod in its tenant namespace", func() error {
			return c.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "p"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}})
		}},
		{"bind itself a role in its tenant namespace", func() error {
			return c.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "escalate"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: tenant, Name: "stretch-home"}}})
		}},
		{"issue itself a new token", func() error {
			return c.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "stretch-home"}}, &authenticationv1.TokenRequest{})
		}},
		{"list RemoteClusters", func() error { return c.List(ctx, &peeringv1alpha1.RemoteClusterList{}) }},
		{"list ClusterRoles", func() error { return c.List(ctx, &rbacv1.ClusterRoleList{}) }},
	}
	for _, tt := range denied {
		err := tt.run()
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s: want Forbidden, got %v", tt.name, err)
	}
	g.Expect(eu.Client.Delete(ctx, rn(tenant, "st"))).To(Succeed())
}

func TestWaitReady(t *testing.T) {
	ctx, g := setup(t)
	peerEU(ctx, g)

	// No controller: the wait times out and says what to check.
	var out bytes.Buffer
	err := WaitReady(ctx, home.Client, "provider-eu", time.Second, &out)
	g.Expect(err).To(MatchError(ContainSubstring("RemoteCluster provider-eu is not ready after 1s (APIReachable=Unknown Authenticated=Unknown VirtualNodeReady=Unknown (NoStatus:")))
	g.Expect(err).To(MatchError(ContainSubstring("check that stretch-controller-manager runs on the home cluster")))

	// A controller that brings the peering up step by step.
	go func() {
		for _, t := range peering.ConditionTypes {
			time.Sleep(300 * time.Millisecond)
			rc := &peeringv1alpha1.RemoteCluster{}
			if home.Client.Get(ctx, client.ObjectKey{Name: "provider-eu"}, rc) != nil {
				return
			}
			meta.SetStatusCondition(&rc.Status.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: "Up"})
			_ = home.Client.Status().Update(ctx, rc)
		}
	}()
	out.Reset()
	g.Expect(WaitReady(ctx, home.Client, "provider-eu", 30*time.Second, &out)).To(Succeed())
	g.Expect(out.String()).To(ContainSubstring("… RemoteCluster provider-eu: APIReachable=True Authenticated=Unknown"))
	g.Expect(out.String()).To(HaveSuffix("✓ virtual node stretch-provider-eu is Ready\n"))
}

// TestUnpeerRefusedWhileOffloaded: a namespace offloaded to the provider (home
// side) or a twin request on the provider blocks unpeer, which changes nothing.
func TestUnpeerRefusedWhileOffloaded(t *testing.T) {
	ctx, g := setup(t)
	peerEU(ctx, g)
	g.Expect(client.IgnoreAlreadyExists(home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "foo"}}))).To(Succeed())
	off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "foo", Name: "offloading"}}
	g.Expect(home.Client.Create(ctx, off)).To(Succeed())
	off.Status.RemoteNamespacesConditions = map[string]offloadingv1alpha1.RemoteNamespaceConditions{
		"provider-eu": {{Type: "Ready", Status: metav1.ConditionTrue, Reason: "NamespaceCreated", LastTransitionTime: metav1.Now()}},
	}
	g.Expect(home.Client.Status().Update(ctx, off)).To(Succeed())

	before := []map[string]string{snapshot(ctx, g, home.Client), snapshot(ctx, g, eu.Client)}
	err := Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-eu", Provider: eu.Client}, &bytes.Buffer{})
	g.Expect(err).To(MatchError(`refusing to unpeer "provider-eu", nothing was changed: namespaces foo are offloaded to "provider-eu": run 'stretchctl unoffload namespace foo' first; or pass --force to delete the twin namespace requests now (the provider deletes the twins with everything in them)`))
	g.Expect([]map[string]string{snapshot(ctx, g, home.Client), snapshot(ctx, g, eu.Client)}).To(Equal(before))

	// The provider side alone blocks too, seen through the issued credentials.
	g.Expect(home.Client.Delete(ctx, off)).To(Succeed())
	tenant := peeringv1alpha1.TenantNamespace(homeID.ID)
	twin := &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "bar"},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: "bar", HomeClusterID: homeID.ID, RemoteNamespaceName: "bar-" + homeID.ID},
	}
	g.Expect(eu.Client.Create(ctx, twin)).To(Succeed())
	before = []map[string]string{snapshot(ctx, g, home.Client), snapshot(ctx, g, eu.Client)}
	err = Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-eu"}, &bytes.Buffer{})
	g.Expect(err).To(MatchError(ContainSubstring(`"provider-eu" hosts twin namespaces bar-%s for this cluster (RemoteNamespaces in %s)`, homeID.ID, tenant)))
	g.Expect([]map[string]string{snapshot(ctx, g, home.Client), snapshot(ctx, g, eu.Client)}).To(Equal(before))

	// Pointing --remote-kubeconfig at another provider is refused.
	err = Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-eu", Provider: us.Client, Force: true}, &bytes.Buffer{})
	g.Expect(err).To(MatchError(ContainSubstring(`--remote-kubeconfig points at cluster "provider-us" (ID %s), but RemoteCluster provider-eu is cluster ID %s`, usID.ID, euID.ID)))
	g.Expect([]map[string]string{snapshot(ctx, g, home.Client), snapshot(ctx, g, eu.Client)}).To(Equal(before))
	g.Expect(eu.Client.Delete(ctx, twin)).To(Succeed())

	err = Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-nope"}, &bytes.Buffer{})
	g.Expect(err).To(MatchError(ContainSubstring(`this cluster does not peer with "provider-nope"`)))
}

// TestUnpeerDirect removes both sides of home → provider-eu, with a home
// controller that releases the RemoteCluster.
func TestUnpeerDirect(t *testing.T) {
	ctx, g := setup(t)
	peerEU(ctx, g)
	oldToken := issued(ctx, t, "provider-eu")
	g.Expect(oldToken.Get(ctx, identity.Key, &corev1.ConfigMap{})).To(Succeed())
	addFinalizer(ctx, g, "provider-eu")
	go releaseWhenDeleted(ctx, "provider-eu")

	var out bytes.Buffer
	g.Expect(Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-eu", Provider: eu.Client, Timeout: 30 * time.Second}, &out)).To(Succeed(), out.String())
	g.Expect(out.String()).To(ContainSubstring("✓ RemoteCluster provider-eu removed"))
	g.Expect(out.String()).To(ContainSubstring("✓ Secret stretch-system/stretch-peer-provider-eu deleted"))
	g.Expect(out.String()).To(ContainSubstring("the token issued to home cluster " + homeID.ID + " is revoked"))

	expectHomeSideGone(ctx, g, "provider-eu")
	expectProviderSideGone(ctx, g, eu)
	// The node reader ClusterRole is shared by every tenant: it stays.
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: wellknown.NodeReaderClusterRole}, &rbacv1.ClusterRole{})).To(Succeed())
	expectTokenRejected(ctx, t, g, oldToken)

	// Unpeering again finds nothing on the home side, and nothing left to revoke.
	out.Reset()
	g.Expect(Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-eu", Provider: eu.Client}, &out)).To(Succeed())
	g.Expect(out.String()).To(ContainSubstring("✓ nothing to revoke"))
}

// TestUnpeerOutOfBandForce removes home → provider-us from the home side only,
// with a twin request on the provider and no home controller, then revokes
// on the provider.
func TestUnpeerOutOfBandForce(t *testing.T) {
	ctx, g := setup(t)
	_, err := Consume(ctx, home.Client, issueUS(ctx, g), &bytes.Buffer{})
	g.Expect(err).NotTo(HaveOccurred())
	c := issued(ctx, t, "provider-us")
	tenant := peeringv1alpha1.TenantNamespace(homeID.ID)
	g.Expect(c.Create(ctx, &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "baz"},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: "baz", HomeClusterID: homeID.ID, RemoteNamespaceName: "baz-" + homeID.ID},
	})).To(Succeed())
	addFinalizer(ctx, g, "provider-us")

	// Refused without --force.
	err = Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-us"}, &bytes.Buffer{})
	g.Expect(err).To(MatchError(ContainSubstring(`"provider-us" hosts twin namespaces baz-` + homeID.ID)))

	// Revoke on the provider refuses too while the twin is requested.
	err = Revoke(ctx, us.Client, homeID.ID, false, &bytes.Buffer{})
	g.Expect(err).To(MatchError(ContainSubstring("refusing to revoke home cluster " + homeID.ID + ", nothing was changed: it has twin namespaces baz-" + homeID.ID)))

	// --force deletes the request through the issued credentials; with no home
	// controller, the finalizer goes after the timeout.
	var out bytes.Buffer
	g.Expect(Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-us", Force: true, Timeout: time.Second}, &out)).To(Succeed(), out.String())
	g.Expect(out.String()).To(ContainSubstring("! --force: deleted the twin namespace requests baz-" + homeID.ID + " in " + tenant + ` on "provider-us" through the credentials in Secret stretch-system/stretch-peer-provider-us`))
	g.Expect(out.String()).To(ContainSubstring("! --force: RemoteCluster provider-us was still held by finalizer peering.stretch.dev/virtual-node after 1s"))
	g.Expect(out.String()).To(ContainSubstring(`! the provider "provider-us" still holds what it issued to this cluster`))
	g.Expect(out.String()).To(ContainSubstring("Run on the provider: stretchctl peer revoke --kubeconfig PROVIDER --home-cluster-id " + homeID.ID))
	g.Expect(apierrors.IsNotFound(us.Client.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "baz"}, &peeringv1alpha1.RemoteNamespace{}))).To(BeTrue())
	expectHomeSideGone(ctx, g, "provider-us")

	// The provider side is intact, and the token still works, until revoked.
	g.Expect(c.Get(ctx, identity.Key, &corev1.ConfigMap{})).To(Succeed())
	out.Reset()
	g.Expect(Revoke(ctx, us.Client, homeID.ID, false, &out)).To(Succeed())
	expectProviderSideGone(ctx, g, us)
	expectTokenRejected(ctx, t, g, c)
}

// TestUnpeerStuckFinalizer: without --force, a RemoteCluster no controller
// releases makes unpeer fail with what is stuck, keeping the Secret.
func TestUnpeerStuckFinalizer(t *testing.T) {
	ctx, g := setup(t)
	rc := &peeringv1alpha1.RemoteCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "provider-ap", Finalizers: []string{wellknown.RemoteClusterFinalizer}},
		Spec:       peeringv1alpha1.RemoteClusterSpec{ClusterID: uuid.NewString(), KubeconfigSecretRef: peeringv1alpha1.SecretKeyReference{Namespace: "stretch-system", Name: "stretch-peer-provider-ap"}},
	}
	g.Expect(home.Client.Create(ctx, rc)).To(Succeed())
	g.Expect(home.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "stretch-system", Name: "stretch-peer-provider-ap"},
		Data: map[string][]byte{"kubeconfig": []byte("not a kubeconfig")}})).To(Succeed())

	var out bytes.Buffer
	err := Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-ap", Timeout: time.Second}, &out)
	g.Expect(err).To(MatchError(ContainSubstring("RemoteCluster provider-ap is still there after 1s, held by finalizers peering.stretch.dev/virtual-node: the home controller (stretch-controller-manager) removes virtual node stretch-provider-ap, then its finalizer: check that it runs, or run 'stretchctl unpeer provider-ap --force' to remove the finalizer")))
	g.Expect(out.String()).To(ContainSubstring("! cannot list the twin namespace requests on \"provider-ap\" through the credentials in Secret stretch-system/stretch-peer-provider-ap"))
	g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())
	g.Expect(rc.DeletionTimestamp.IsZero()).To(BeFalse())
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: "stretch-system", Name: "stretch-peer-provider-ap"}, &corev1.Secret{})).To(Succeed())

	// Running it again with --force finishes, the virtual node included.
	g.Expect(home.Client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stretch-provider-ap", Labels: map[string]string{
		wellknown.VirtualNodeTypeLabel: wellknown.VirtualNodeTypeValue, wellknown.RemoteClusterNameLabel: "provider-ap",
	}}})).To(Succeed())
	out.Reset()
	g.Expect(Unpeer(ctx, home.Client, UnpeerOptions{Name: "provider-ap", Timeout: time.Second, Force: true}, &out)).To(Succeed())
	g.Expect(out.String()).To(ContainSubstring("removed it, and virtual node stretch-provider-ap"))
	expectHomeSideGone(ctx, g, "provider-ap")
	g.Expect(apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKey{Name: "stretch-provider-ap"}, &corev1.Node{}))).To(BeTrue())
}

// issued is a client of a provider built from the kubeconfig Secret that
// peering left on the home cluster: what the home controller uses.
func issued(ctx context.Context, t *testing.T, provider string) client.Client {
	t.Helper()
	secret := &corev1.Secret{}
	if err := home.Client.Get(ctx, client.ObjectKey{Namespace: "stretch-system", Name: peering.SecretName(provider)}, secret); err != nil {
		t.Fatal(err)
	}
	c, err := factory.IssuedClient(secret, peering.KubeconfigKey)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// snapshot maps every object of the kinds a peering touches to its
// resourceVersion: equal snapshots mean nothing was written.
func snapshot(ctx context.Context, g *WithT, c client.Client) map[string]string {
	rvs := map[string]string{}
	for _, l := range []client.ObjectList{
		&peeringv1alpha1.RemoteClusterList{}, &peeringv1alpha1.RemoteNamespaceList{}, &offloadingv1alpha1.NamespaceOffloadingList{},
		&corev1.NamespaceList{}, &corev1.SecretList{}, &corev1.ServiceAccountList{}, &corev1.ConfigMapList{}, &corev1.NodeList{},
		&rbacv1.RoleList{}, &rbacv1.RoleBindingList{}, &rbacv1.ClusterRoleList{}, &rbacv1.ClusterRoleBindingList{},
	} {
		g.Expect(c.List(ctx, l)).To(Succeed())
		g.Expect(meta.EachListItem(l, func(o runtime.Object) error {
			obj := o.(client.Object)
			rvs[fmt.Sprintf("%T %s/%s", o, obj.GetNamespace(), obj.GetName())] = obj.GetResourceVersion()
			return nil
		})).To(Succeed())
	}
	return rvs
}

func addFinalizer(ctx context.Context, g *WithT, name string) {
	rc := &peeringv1alpha1.RemoteCluster{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: name}, rc)).To(Succeed())
	patch := client.MergeFrom(rc.DeepCopy())
	rc.Finalizers = append(rc.Finalizers, wellknown.RemoteClusterFinalizer)
	g.Expect(home.Client.Patch(ctx, rc, patch)).To(Succeed())
}

// releaseWhenDeleted plays the home controller: once the RemoteCluster is
// being deleted, it removes its finalizer.
func releaseWhenDeleted(ctx context.Context, name string) {
	for range 300 {
		time.Sleep(100 * time.Millisecond)
		rc := &peeringv1alpha1.RemoteCluster{}
		if err := home.Client.Get(ctx, client.ObjectKey{Name: name}, rc); err != nil || rc.DeletionTimestamp.IsZero() {
			continue
		}
		patch := client.MergeFrom(rc.DeepCopy())
		rc.Finalizers = nil
		_ = home.Client.Patch(ctx, rc, patch)
		return
	}
}

func expectHomeSideGone(ctx context.Context, g *WithT, name string) {
	g.Expect(apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKey{Name: name}, &peeringv1alpha1.RemoteCluster{}))).To(BeTrue())
	g.Expect(apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKey{Namespace: "stretch-system", Name: peering.SecretName(name)}, &corev1.Secret{}))).To(BeTrue())
}

// expectProviderSideGone checks that everything issued to home is deleted
// (the tenant namespace is Terminating: envtest runs no namespace controller).
func expectProviderSideGone(ctx context.Context, g *WithT, provider *testenv.APIServer) {
	for _, obj := range tenantObjects(homeID.ID) {
		current := obj.DeepCopyObject().(client.Object)
		err := provider.Client.Get(ctx, client.ObjectKeyFromObject(obj), current)
		if ns, ok := current.(*corev1.Namespace); ok && err == nil {
			g.Expect(ns.DeletionTimestamp).NotTo(BeNil(), "tenant namespace is being deleted")
			continue
		}
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T %s: %v", obj, obj.GetName(), err)
	}
}

// expectTokenRejected checks that the API server no longer authenticates the
// token of c. Its ServiceAccount is deleted, so the token is invalid: 401, not
// 403. The API server caches successful token reviews for up to 10s.
func expectTokenRejected(ctx context.Context, t *testing.T, g *WithT, c client.Client) {
	start := time.Now()
	g.Eventually(func() error {
		return c.Get(ctx, identity.Key, &corev1.ConfigMap{})
	}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Satisfy(apierrors.IsUnauthorized))
	t.Logf("the revoked token is rejected with 401 Unauthorized after %s", time.Since(start).Round(100*time.Millisecond))
}
