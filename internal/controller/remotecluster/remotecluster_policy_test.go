package remotecluster_test

import (
	"context"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/config"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
)

// resources builds a ResourceList from name, quantity pairs.
func resources(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

// expectResources checks that got has exactly the resources of want, with
// equal quantities.
func expectResources(g Gomega, got, want corev1.ResourceList, what string) {
	g.Expect(got).To(HaveLen(len(want)), "%s: %v", what, got)
	for name, q := range want {
		v, ok := got[name]
		g.Expect(ok).To(BeTrue(), "%s: %s missing", what, name)
		g.Expect(v.Cmp(q)).To(BeZero(), "%s: %s is %s, want %s", what, name, v.String(), q.String())
	}
}

// gpuNode gives provider-us, until the test ends, a Ready node with 8 cpu,
// 16Gi, 110 pods, 100Gi ephemeral storage and 4 nvidia.com/gpu.
func gpuNode(t *testing.T) {
	t.Helper()
	g := newG(t)
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "us-gpu", Labels: map[string]string{corev1.LabelArchStable: "amd64", corev1.LabelOSStable: "linux"}}}
	g.Expect(us.Client.Create(ctx, node)).To(Succeed())
	t.Cleanup(func() { g.Expect(client.IgnoreNotFound(us.Client.Delete(context.Background(), node))).To(Succeed()) })
	node.Status = corev1.NodeStatus{
		Allocatable: resources("cpu", "8", "memory", "16Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "4"),
		Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
	}
	g.Expect(us.Client.Status().Update(ctx, node)).To(Succeed())
}

// tenantPolicy creates, on provider-us, the TenantPolicy of the home cluster
// with limits and status.used, as the provider's admin and its tenantpolicy
// controller would; it is deleted when the test ends.
func tenantPolicy(t *testing.T, limits, used corev1.ResourceList) *peeringv1alpha1.TenantPolicy {
	t.Helper()
	g := newG(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: peeringv1alpha1.TenantNamespace(homeID)}}
	g.Expect(client.IgnoreAlreadyExists(us.Client.Create(ctx, ns))).To(Succeed())
	tp := &peeringv1alpha1.TenantPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: wellknown.TenantPolicyName},
		Spec:       peeringv1alpha1.TenantPolicySpec{Limits: limits, PriorityClasses: []string{"batch-low"}},
	}
	g.Expect(us.Client.Create(ctx, tp)).To(Succeed())
	t.Cleanup(func() { g.Expect(client.IgnoreNotFound(us.Client.Delete(context.Background(), tp))).To(Succeed()) })
	tp.Status.Used = used
	g.Expect(us.Client.Status().Update(ctx, tp)).To(Succeed())
	return tp
}

// editPolicy changes the TenantPolicy on provider-us, spec then status.
func editPolicy(g Gomega, tp *peeringv1alpha1.TenantPolicy, limits, used corev1.ResourceList) {
	ctx := context.Background()
	g.Eventually(func() error {
		if err := us.Client.Get(ctx, client.ObjectKeyFromObject(tp), tp); err != nil {
			return err
		}
		tp.Spec.Limits = limits
		if err := us.Client.Update(ctx, tp); err != nil {
			return err
		}
		tp.Status.Used = used
		return us.Client.Status().Update(ctx, tp)
	}).Should(Succeed())
}

func remoteCluster(g Gomega, rc *peeringv1alpha1.RemoteCluster) *peeringv1alpha1.RemoteCluster {
	got := &peeringv1alpha1.RemoteCluster{}
	g.Expect(home.Client.Get(context.Background(), client.ObjectKeyFromObject(rc), got)).To(Succeed())
	return got
}

// expectAdvertised waits until the virtual node of rc advertises want, as
// capacity and as allocatable.
func expectAdvertised(g *WithT, rc *peeringv1alpha1.RemoteCluster, want corev1.ResourceList) {
	g.Eventually(func(g Gomega) {
		node := virtualNode(g, rc)
		expectResources(g, node.Status.Capacity, want, "capacity")
		expectResources(g, node.Status.Allocatable, want, "allocatable")
	}).Should(Succeed())
}

// TestPolicyLimitsVirtualNode: the virtual node offers the home scheduler no
// more than the provider's TenantPolicy for this cluster lets it use, GPUs
// included; it follows the policy's changes and its deletion, and the
// RemoteCluster's own caps still apply.
func TestPolicyLimitsVirtualNode(t *testing.T) {
	g := newG(t)
	gpuNode(t)
	tp := tenantPolicy(t, resources("cpu", "2", "nvidia.com/gpu", "1", "pods", "10"), resources("cpu", "500m", "nvidia.com/gpu", "0", "pods", "1"))
	provider := resources("cpu", "8", "memory", "16Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "4")

	rc, _, _ := peeredWith(t, g, us, usID)
	expectAdvertised(g, rc, resources("cpu", "2", "memory", "16Gi", "pods", "10", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "1"))
	g.Eventually(func(g Gomega) {
		got := remoteCluster(g, rc)
		g.Expect(got.Status.Policy).NotTo(BeNil())
		expectResources(g, got.Status.Policy.Limits, resources("cpu", "2", "nvidia.com/gpu", "1", "pods", "10"), "status.policy.limits")
		expectResources(g, got.Status.Policy.Used, resources("cpu", "500m", "nvidia.com/gpu", "0", "pods", "1"), "status.policy.used")
		g.Expect(got.Status.Policy.PodSecurity).To(Equal("baseline"), "the provider's default level")
		g.Expect(got.Status.Policy.PriorityClasses).To(Equal([]string{"batch-low"}))
		expectResources(g, got.Status.Capacity, provider, "status.capacity stays the provider's own figure")
	}).Should(Succeed())

	// The provider's admin changes the limits: more cpu and GPUs, memory
	// limited too, pods no longer.
	editPolicy(g, tp, resources("cpu", "4", "memory", "4Gi", "nvidia.com/gpu", "2"), resources("cpu", "1500m", "memory", "1Gi", "nvidia.com/gpu", "1"))
	expectAdvertised(g, rc, resources("cpu", "4", "memory", "4Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "2"))
	g.Eventually(func(g Gomega) {
		expectResources(g, remoteCluster(g, rc).Status.Policy.Used, resources("cpu", "1500m", "memory", "1Gi", "nvidia.com/gpu", "1"), "status.policy.used")
	}).Should(Succeed())

	// The RemoteCluster's cap lower than the limit still wins.
	edit(g, rc.DeepCopy(), func(rc *peeringv1alpha1.RemoteCluster) {
		rc.Spec.Resources = resources("cpu", "1", "nvidia.com/gpu", "3")
	})
	expectAdvertised(g, rc, resources("cpu", "1", "memory", "4Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "2"))

	// Without a policy, the provider's figures, under the cap.
	g.Expect(us.Client.Delete(t.Context(), tp)).To(Succeed())
	expectAdvertised(g, rc, resources("cpu", "1", "memory", "16Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "3"))
	g.Eventually(func(g Gomega) { g.Expect(remoteCluster(g, rc).Status.Policy).To(BeNil()) }).Should(Succeed())

	edit(g, rc.DeepCopy(), func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Resources = nil })
	expectAdvertised(g, rc, provider)
	expectReady(g, rc)
}

// TestPolicyUnreadable: credentials that may not read the TenantPolicy (as
// issued before the right to existed) do not make the provider look down;
// the virtual node keeps the last policy read.
func TestPolicyUnreadable(t *testing.T) {
	g := newG(t)
	ctx := t.Context()
	gpuNode(t)
	tp := tenantPolicy(t, resources("cpu", "2"), nil)
	limited := limitedKubeconfig(t)

	reg, _ := startController(t)
	rc := peer(t, usID.Name, usID.ID, adminKubeconfig(t, us))
	expectReady(g, rc)
	limitedByPolicy := resources("cpu", "2", "memory", "16Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "4")
	expectAdvertised(g, rc, limitedByPolicy)

	// The provider raises the limit while the home cluster's credentials
	// lose the right to read it.
	editPolicy(g, tp, resources("cpu", "3"), nil)
	secret := &corev1.Secret{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: peering.SecretName(rc.Name)}, secret)).To(Succeed())
	secret.Data[peering.KubeconfigKey] = limited
	g.Expect(home.Client.Update(ctx, secret)).To(Succeed())

	// Once a probe ran with them (its heartbeat is later than the moment the
	// registry held a peer with those credentials), the status it wrote
	// still has the last policy read.
	var switched time.Time
	g.Eventually(func(g Gomega) {
		cfg, err := clientcmd.RESTConfigFromKubeConfig(limited)
		g.Expect(err).NotTo(HaveOccurred())
		p, ok := reg.Get(usID.ID)
		g.Expect(ok).To(BeTrue())
		g.Expect(p.Config().CertData).To(Equal(cfg.CertData))
		switched = time.Now()
	}).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(remoteCluster(g, rc).Status.LastHeartbeatTime.Time).To(BeTemporally(">", switched))
	}).Should(Succeed())
	got := remoteCluster(g, rc)
	g.Expect(got.Status.Policy).NotTo(BeNil())
	expectResources(g, got.Status.Policy.Limits, resources("cpu", "2"), "the last policy read")
	expectResources(g, virtualNode(g, rc).Status.Allocatable, limitedByPolicy, "allocatable")
	expectReady(g, rc)

	// Readable again: the new limit applies.
	g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
	secret.Data[peering.KubeconfigKey] = adminKubeconfig(t, us)
	g.Expect(home.Client.Update(ctx, secret)).To(Succeed())
	expectAdvertised(g, rc, resources("cpu", "3", "memory", "16Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "4"))
}

// limitedKubeconfig is a kubeconfig for provider-us of a user who may read
// its identity, its nodes and twin requests, and nothing else: no
// TenantPolicy.
func limitedKubeconfig(t *testing.T) []byte {
	t.Helper()
	g := newG(t)
	ctx := context.Background()
	const user = "home-without-policy-rights"
	cfg, err := us.AddUser(user)
	g.Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{wellknown.IdentityConfigMapName}, Verbs: []string{"get"}},
			// The registry watches twin requests on every peer.
			{APIGroups: []string{peeringv1alpha1.GroupVersion.Group}, Resources: []string{"remotenamespaces"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		g.Expect(us.Client.Create(ctx, o)).To(Succeed())
		t.Cleanup(func() { g.Expect(client.IgnoreNotFound(us.Client.Delete(context.Background(), o))).To(Succeed()) })
	}
	// Make sure the user is refused the policy, as the test relies on it.
	c, err := client.New(cfg, client.Options{Scheme: us.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, identity.Key, &corev1.ConfigMap{})).To(Succeed())
		err := c.Get(ctx, client.ObjectKey{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: wellknown.TenantPolicyName}, &peeringv1alpha1.TenantPolicy{})
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	}).Should(Succeed())

	kc := clientcmdapi.NewConfig()
	kc.Clusters["us"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["us"] = &clientcmdapi.Context{Cluster: "us", AuthInfo: user}
	kc.CurrentContext = "us"
	data, err := clientcmd.Write(*kc)
	g.Expect(err).NotTo(HaveOccurred())
	return data
}

// TestPolicyKindMissing: a provider whose Stretch predates TenantPolicies
// (no such kind) limits nothing, and answers as usual.
func TestPolicyKindMissing(t *testing.T) {
	g := newG(t)
	gpuNode(t)
	withoutTenantPolicyKind(t, g)

	rc, _, _ := peeredWith(t, g, us, usID)
	expectAdvertised(g, rc, resources("cpu", "8", "memory", "16Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "4"))
	g.Expect(remoteCluster(g, rc).Status.Policy).To(BeNil())
	expectReady(g, rc)
}

// withoutTenantPolicyKind removes the TenantPolicy CRD from provider-us
// until the test ends.
func withoutTenantPolicyKind(t *testing.T, g *WithT) {
	t.Helper()
	ctx := context.Background()
	crds, err := config.CRDs()
	g.Expect(err).NotTo(HaveOccurred())
	i := slices.IndexFunc(crds, func(c *apiextensionsv1.CustomResourceDefinition) bool {
		return c.Spec.Group == peeringv1alpha1.GroupVersion.Group && c.Spec.Names.Kind == "TenantPolicy"
	})
	g.Expect(i).NotTo(BeNumerically("<", 0))
	crd := crds[i]
	g.Expect(us.Client.Delete(ctx, crd.DeepCopy())).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(us.Client.Get(ctx, client.ObjectKeyFromObject(crd), &apiextensionsv1.CustomResourceDefinition{}))
	}).Should(BeTrue(), "the TenantPolicy CRD is gone")
	t.Cleanup(func() {
		g.Expect(us.Client.Create(ctx, crd.DeepCopy())).To(Succeed())
		g.Eventually(func(g Gomega) {
			got := &apiextensionsv1.CustomResourceDefinition{}
			g.Expect(us.Client.Get(ctx, client.ObjectKeyFromObject(crd), got)).To(Succeed())
			g.Expect(got.Status.Conditions).To(ContainElement(And(
				HaveField("Type", apiextensionsv1.Established), HaveField("Status", apiextensionsv1.ConditionTrue))))
		}).Should(Succeed(), "the TenantPolicy CRD is back")
	})
}
