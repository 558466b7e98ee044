// Package api_test checks the generated CRDs against a real API server: the
// OpenAPI validation, CEL rules, defaults, subresources, printer columns and
// short names that users meet through kubectl.
package api_test

import (
	"context"
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv"
)

var cluster *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { cluster = s[0] }, "home")
}

const clusterID = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crd-"}}
	NewWithT(t).Expect(cluster.Client.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

func offloading(ns string, spec offloadingv1alpha1.NamespaceOffloadingSpec) *offloadingv1alpha1.NamespaceOffloading {
	return &offloadingv1alpha1.NamespaceOffloading{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.NamespaceOffloadingName},
		Spec:       spec,
	}
}

func TestNamespaceOffloadingDefaults(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	obj := offloading(newNamespace(t), offloadingv1alpha1.NamespaceOffloadingSpec{})
	g.Expect(cluster.Client.Create(ctx, obj)).To(Succeed())
	g.Expect(obj.Spec.NamespaceMappingStrategy).To(Equal(offloadingv1alpha1.DefaultNameMapping))
	g.Expect(obj.Spec.PodOffloadingStrategy).To(Equal(offloadingv1alpha1.LocalAndRemoteStrategy))
	g.Expect(obj.Spec.ClusterSelector).To(BeNil())
}

func TestNamespaceOffloadingValidation(t *testing.T) {
	selected := offloadingv1alpha1.SelectedNameMapping
	tests := []struct {
		name    string
		spec    offloadingv1alpha1.NamespaceOffloadingSpec
		wantErr string
	}{
		{
			name:    "unknown pod offloading strategy",
			spec:    offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: "Elsewhere"},
			wantErr: `spec.podOffloadingStrategy: Unsupported value: "Elsewhere": supported values: "LocalAndRemote", "Local", "Remote"`,
		},
		{
			name:    "unknown mapping strategy",
			spec:    offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: "Random"},
			wantErr: `spec.namespaceMappingStrategy: Unsupported value: "Random"`,
		},
		{
			name:    "SelectedName without a name",
			spec:    offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: selected},
			wantErr: "spec.remoteNamespaceName is required when spec.namespaceMappingStrategy is SelectedName",
		},
		{
			name:    "a name without SelectedName",
			spec:    offloadingv1alpha1.NamespaceOffloadingSpec{RemoteNamespaceName: "elsewhere"},
			wantErr: "spec.remoteNamespaceName is only allowed with spec.namespaceMappingStrategy SelectedName",
		},
		{
			name: "SelectedName with a name",
			spec: offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: selected, RemoteNamespaceName: "elsewhere"},
		},
		{
			// A selector the API accepts but the controller cannot parse: it is
			// reported in status and annotation (NoClusterSelected), not rejected.
			name: "unparseable selector is admitted",
			spec: offloadingv1alpha1.NamespaceOffloadingSpec{ClusterSelector: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
					{Key: "region", Operator: "Near", Values: []string{"eu"}},
					{Key: "bad key!", Operator: corev1.NodeSelectorOpExists},
				}}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := cluster.Client.Create(context.Background(), offloading(newNamespace(t), tt.spec))
			if tt.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
			} else {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
			}
		})
	}
}

func TestNamespaceOffloadingImmutableFields(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	obj := offloading(newNamespace(t), offloadingv1alpha1.NamespaceOffloadingSpec{
		NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping,
		RemoteNamespaceName:      "first",
	})
	g.Expect(cluster.Client.Create(ctx, obj)).To(Succeed())

	changed := obj.DeepCopy()
	changed.Spec.RemoteNamespaceName = "second"
	g.Expect(cluster.Client.Update(ctx, changed)).To(MatchError(ContainSubstring("spec.remoteNamespaceName is immutable")))

	changed = obj.DeepCopy()
	changed.Spec.NamespaceMappingStrategy = offloadingv1alpha1.EnforceSameNameMapping
	changed.Spec.RemoteNamespaceName = ""
	g.Expect(cluster.Client.Update(ctx, changed)).To(MatchError(ContainSubstring("spec.namespaceMappingStrategy is immutable")))

	// The pod offloading strategy and the selector may change.
	changed = obj.DeepCopy()
	changed.Spec.PodOffloadingStrategy = offloadingv1alpha1.RemoteStrategy
	changed.Spec.ClusterSelector = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: corev1.NodeSelectorOpIn, Values: []string{"eu"}}},
	}}}
	g.Expect(cluster.Client.Update(ctx, changed)).To(Succeed())
}

func TestNamespaceOffloadingStatusSubresource(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	obj := offloading(newNamespace(t), offloadingv1alpha1.NamespaceOffloadingSpec{})
	g.Expect(cluster.Client.Create(ctx, obj)).To(Succeed())

	// Status written through the main resource is dropped.
	obj.Status.OffloadingPhase = offloadingv1alpha1.ReadyPhase
	g.Expect(cluster.Client.Update(ctx, obj)).To(Succeed())
	g.Expect(obj.Status.OffloadingPhase).To(BeEmpty())

	obj.Status = offloadingv1alpha1.NamespaceOffloadingStatus{
		OffloadingPhase:     offloadingv1alpha1.SomeFailedPhase,
		RemoteNamespaceName: "foo-" + clusterID,
		RemoteNamespacesConditions: map[string]offloadingv1alpha1.RemoteNamespaceConditions{
			"provider-eu": {{Type: offloadingv1alpha1.RemoteNamespaceReadyCondition, Status: metav1.ConditionFalse,
				Reason: offloadingv1alpha1.CreationFailedReason, Message: "AlreadyExists", LastTransitionTime: metav1.Now()}},
		},
	}
	g.Expect(cluster.Client.Status().Update(ctx, obj)).To(Succeed())
	g.Expect(obj.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.SomeFailedPhase))

	obj.Status.OffloadingPhase = "Sideways"
	g.Expect(cluster.Client.Status().Update(ctx, obj)).To(MatchError(ContainSubstring(`status.offloadingPhase: Unsupported value: "Sideways"`)))
}

func remoteCluster(name string) *peeringv1alpha1.RemoteCluster {
	return &peeringv1alpha1.RemoteCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: peeringv1alpha1.RemoteClusterSpec{
			ClusterID:           clusterID,
			KubeconfigSecretRef: peeringv1alpha1.SecretKeyReference{Namespace: "stretch-system", Name: "peer-" + name},
		},
	}
}

func TestRemoteClusterValidation(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()

	rc := remoteCluster("provider-eu")
	g.Expect(cluster.Client.Create(ctx, rc)).To(Succeed())
	g.Expect(rc.Spec.KubeconfigSecretRef.Key).To(Equal("kubeconfig"), "the Secret key defaults")

	changed := rc.DeepCopy()
	changed.Spec.ClusterID = "1b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"
	g.Expect(cluster.Client.Update(ctx, changed)).To(MatchError(ContainSubstring("spec.clusterID is immutable")))

	changed = rc.DeepCopy()
	changed.Spec.Labels = map[string]string{"tier": "gold"}
	changed.Spec.Cordoned = true
	g.Expect(cluster.Client.Update(ctx, changed)).To(Succeed(), "labels and cordoning are for the admin to change")

	bad := remoteCluster("provider-bad-id")
	bad.Spec.ClusterID = "NOT-A-UUID"
	g.Expect(cluster.Client.Create(ctx, bad)).To(MatchError(ContainSubstring("spec.clusterID in body should match")))

	noSecret := remoteCluster("provider-no-secret")
	noSecret.Spec.KubeconfigSecretRef = peeringv1alpha1.SecretKeyReference{}
	g.Expect(cluster.Client.Create(ctx, noSecret)).To(MatchError(ContainSubstring("spec.kubeconfigSecretRef.name")))
}

func TestRemoteNamespaceValidation(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	rn := &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "foo"},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: "foo", HomeClusterID: clusterID, RemoteNamespaceName: "foo-" + clusterID},
	}
	g.Expect(cluster.Client.Create(ctx, rn)).To(Succeed())

	changed := rn.DeepCopy()
	changed.Spec.RemoteNamespaceName = "bar"
	g.Expect(cluster.Client.Update(ctx, changed)).To(MatchError(ContainSubstring("spec is immutable")))

	rn.Status = peeringv1alpha1.RemoteNamespaceStatus{Phase: "Exploded"}
	g.Expect(cluster.Client.Status().Update(ctx, rn)).To(MatchError(ContainSubstring(`status.phase: Unsupported value: "Exploded"`)))

	bad := rn.DeepCopy()
	bad.ResourceVersion = ""
	bad.Name = "bad"
	bad.Spec.HomeClusterID = "home"
	g.Expect(cluster.Client.Create(ctx, bad)).To(MatchError(ContainSubstring("spec.homeClusterID in body should match")))
}

func TestTenantPolicyValidation(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	// Defaults: baseline, and nothing else.
	p := &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.TenantPolicyName}}
	g.Expect(cluster.Client.Create(ctx, p)).To(Succeed())
	g.Expect(p.Spec.PodSecurity).To(Equal(peeringv1alpha1.PodSecurityBaseline))
	g.Expect(p.Spec.Limits).To(BeEmpty())
	g.Expect(p.Spec.PriorityClasses).To(BeEmpty())

	other := &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "strict"}}
	g.Expect(cluster.Client.Create(ctx, other)).To(MatchError(ContainSubstring("the name must be policy")))

	for _, tc := range []struct {
		name string
		edit func(*peeringv1alpha1.TenantPolicySpec)
		want string
	}{
		{"privileged is not a level", func(s *peeringv1alpha1.TenantPolicySpec) { s.PodSecurity = "privileged" }, `spec.podSecurity: Unsupported value: "privileged"`},
		{"an unknown naming", func(s *peeringv1alpha1.TenantPolicySpec) { s.TwinNamings = []peeringv1alpha1.TwinNaming{"AnyName"} }, `Unsupported value: "AnyName"`},
		{"a priority class twice", func(s *peeringv1alpha1.TenantPolicySpec) { s.PriorityClasses = []string{"batch", "batch"} }, "Duplicate value"},
	} {
		bad := p.DeepCopy()
		tc.edit(&bad.Spec)
		g.Expect(cluster.Client.Update(ctx, bad)).To(MatchError(ContainSubstring(tc.want)), tc.name)
	}
}

// TestShortNamesAndCategories checks what `kubectl get nsoff,rcl,rns` and
// `kubectl get stretch` rely on.
func TestShortNamesAndCategories(t *testing.T) {
	g := NewWithT(t)
	dc, err := discovery.NewDiscoveryClientForConfig(cluster.Config)
	g.Expect(err).NotTo(HaveOccurred())

	want := map[string]struct {
		gv, shortName string
		namespaced    bool
	}{
		"namespaceoffloadings": {offloadingv1alpha1.GroupVersion.String(), "nsoff", true},
		"remoteclusters":       {peeringv1alpha1.GroupVersion.String(), "rcl", false},
		"remotenamespaces":     {peeringv1alpha1.GroupVersion.String(), "rns", true},
		"tenantpolicies":       {peeringv1alpha1.GroupVersion.String(), "tp", true},
	}
	for plural, w := range want {
		list, err := dc.ServerResourcesForGroupVersion(w.gv)
		g.Expect(err).NotTo(HaveOccurred())
		var found *metav1.APIResource
		for i := range list.APIResources {
			if list.APIResources[i].Name == plural {
				found = &list.APIResources[i]
			}
		}
		g.Expect(found).NotTo(BeNil(), plural)
		g.Expect(found.ShortNames).To(ConsistOf(w.shortName), plural)
		g.Expect(found.Categories).To(ConsistOf("stretch"), plural)
		g.Expect(found.Namespaced).To(Equal(w.namespaced), plural)
	}
}

// TestPrinterColumns reads the table kubectl prints for `kubectl get nsoff`.
func TestPrinterColumns(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	obj := offloading(ns, offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy})
	g.Expect(cluster.Client.Create(ctx, obj)).To(Succeed())
	obj.Status.OffloadingPhase = offloadingv1alpha1.InProgressPhase
	obj.Status.RemoteNamespaceName = ns + "-" + clusterID
	g.Expect(cluster.Client.Status().Update(ctx, obj)).To(Succeed())

	table := getTable(g, cluster.Config, "/apis/offloading.stretch.dev/v1alpha1/namespaces/"+ns+"/namespaceoffloadings")
	g.Expect(table.columns).To(Equal([]string{"Name", "Phase", "Pod Strategy", "Mapping", "Remote Namespace", "Age"}))
	g.Expect(table.rows).To(HaveLen(1))
	g.Expect(table.rows[0][:5]).To(Equal([]any{"offloading", "InProgress", "Remote", "DefaultName", ns + "-" + clusterID}))
}

type table struct {
	columns []string
	rows    [][]any
}

// getTable asks the API server for the table that kubectl prints.
func getTable(g Gomega, cfg *rest.Config, path string) table {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := dc.RESTClient().Get().AbsPath(path).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
		DoRaw(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	var tbl metav1.Table
	g.Expect(json.Unmarshal(raw, &tbl)).To(Succeed())
	var out table
	for _, c := range tbl.ColumnDefinitions {
		out.columns = append(out.columns, c.Name)
	}
	for _, r := range tbl.Rows {
		out.rows = append(out.rows, r.Cells)
	}
	return out
}
