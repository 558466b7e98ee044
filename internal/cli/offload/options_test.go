package offload

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
)

func TestParseSelector(t *testing.T) {
	r := func(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	tests := []struct {
		expr    string
		want    []corev1.NodeSelectorRequirement
		wantErr string
	}{
		{expr: "region in (us-west,eu), !staging", want: []corev1.NodeSelectorRequirement{r("region", corev1.NodeSelectorOpIn, "eu", "us-west"), r("staging", corev1.NodeSelectorOpDoesNotExist)}},
		{expr: "tier=gold", want: []corev1.NodeSelectorRequirement{r("tier", corev1.NodeSelectorOpIn, "gold")}},
		{expr: "tier==gold", want: []corev1.NodeSelectorRequirement{r("tier", corev1.NodeSelectorOpIn, "gold")}},
		{expr: "tier!=bronze", want: []corev1.NodeSelectorRequirement{r("tier", corev1.NodeSelectorOpNotIn, "bronze")}},
		{expr: "zone notin (a)", want: []corev1.NodeSelectorRequirement{r("zone", corev1.NodeSelectorOpNotIn, "a")}},
		{expr: "gpu", want: []corev1.NodeSelectorRequirement{r("gpu", corev1.NodeSelectorOpExists)}},
		{expr: "cpus>4", want: []corev1.NodeSelectorRequirement{r("cpus", corev1.NodeSelectorOpGt, "4")}},
		{expr: "stretch.dev/remote-cluster-name=provider-eu", want: []corev1.NodeSelectorRequirement{r("stretch.dev/remote-cluster-name", corev1.NodeSelectorOpIn, "provider-eu")}},
		{expr: "region in eu", wantErr: `--selector "region in eu"`},
		{expr: "bad key!=x", wantErr: `--selector "bad key!=x"`},
		{expr: "  ", wantErr: "--selector is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			g := NewWithT(t)
			term, err := ParseSelector(tt.expr)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(term.MatchExpressions).To(Equal(tt.want))
		})
	}
}

func TestSpec(t *testing.T) {
	tests := []struct {
		name    string
		opts    SpecOptions
		want    offloadingv1alpha1.NamespaceOffloadingSpec
		wantErr string
	}{
		{name: "defaults", want: offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: "LocalAndRemote", NamespaceMappingStrategy: "DefaultName"}},
		{name: "selected name", opts: SpecOptions{NamespaceMappingStrategy: "SelectedName", RemoteNamespaceName: "twin", PodOffloadingStrategy: "Remote"},
			want: offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: "Remote", NamespaceMappingStrategy: "SelectedName", RemoteNamespaceName: "twin"}},
		{name: "selectors are ORed terms", opts: SpecOptions{Selectors: []string{"region=eu", "region=us"}},
			want: offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: "LocalAndRemote", NamespaceMappingStrategy: "DefaultName", ClusterSelector: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{
					{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: corev1.NodeSelectorOpIn, Values: []string{"eu"}}}},
					{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: corev1.NodeSelectorOpIn, Values: []string{"us"}}}},
				}}}},
		{name: "Ingresses reflected", opts: SpecOptions{ReflectIngresses: true},
			want: offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: "LocalAndRemote", NamespaceMappingStrategy: "DefaultName", ReflectIngresses: true}},
		{name: "bad strategy", opts: SpecOptions{PodOffloadingStrategy: "remote"}, wantErr: "must be one of LocalAndRemote, Local, Remote"},
		{name: "bad mapping", opts: SpecOptions{NamespaceMappingStrategy: "Same"}, wantErr: "must be one of DefaultName, EnforceSameName, SelectedName"},
		{name: "SelectedName without name", opts: SpecOptions{NamespaceMappingStrategy: "SelectedName"}, wantErr: "needs --remote-namespace-name"},
		{name: "name without SelectedName", opts: SpecOptions{RemoteNamespaceName: "twin"}, wantErr: "only goes with --namespace-mapping-strategy SelectedName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			spec, err := tt.opts.Spec()
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(spec).To(Equal(tt.want))
		})
	}
}

func TestTargets(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Targets{Namespaces: []string{"a"}}.Validate()).To(Succeed())
	g.Expect(Targets{NamespaceSelector: "team=web"}.Validate()).To(Succeed())
	g.Expect(Targets{}.Validate()).To(MatchError(ContainSubstring("name at least one namespace")))
	g.Expect(Targets{Namespaces: []string{"a"}, NamespaceSelector: "x=y"}.Validate()).To(MatchError(ContainSubstring("not both")))
	g.Expect(Targets{NamespaceSelector: "x in y"}.Validate()).To(MatchError(ContainSubstring(`--ns-selector "x in y"`)))
}

func TestPrintableList(t *testing.T) {
	g := NewWithT(t)
	v, err := Printable([]string{"a", "b"}, offloadingv1alpha1.NamespaceOffloadingSpec{})
	g.Expect(err).NotTo(HaveOccurred())
	list := v.(map[string]any)
	g.Expect(list["kind"]).To(Equal("List"))
	g.Expect(list["items"]).To(HaveLen(2))
	g.Expect(list["items"].([]any)[0]).NotTo(HaveKey("status"))
}

func TestCheckTwinNames(t *testing.T) {
	const id = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"
	selected := func(name string) offloadingv1alpha1.NamespaceOffloadingSpec {
		return offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping, RemoteNamespaceName: name}
	}
	tests := []struct {
		name       string
		namespaces []string
		spec       offloadingv1alpha1.NamespaceOffloadingSpec
		homeID     string
		wantErr    []string
	}{
		{name: "26 characters fit", namespaces: []string{strings.Repeat("a", 26)}},
		{name: "27 characters, cluster not asked", namespaces: []string{"ok", strings.Repeat("a", 27)},
			wantErr: []string{"nothing was changed:\n  namespace " + strings.Repeat("a", 27) + ": NameTooLong: ", `"` + strings.Repeat("a", 27) + `-<home cluster ID>" is 64 characters long`}},
		{name: "27 characters, the real ID", namespaces: []string{strings.Repeat("a", 27)}, homeID: id, wantErr: []string{"-" + id + `" is 64 characters long`}},
		{name: "not a DNS label", namespaces: []string{"foo"}, spec: selected("Foo_Bar"), wantErr: []string{`namespace foo: InvalidName: twin namespace name "Foo_Bar"`}},
		{name: "reserved", namespaces: []string{"kube-system"}, spec: offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.EnforceSameNameMapping},
			wantErr: []string{"namespace kube-system: Forbidden: "}},
		{name: "a selected name that fits", namespaces: []string{"foo"}, spec: selected("twin")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := CheckTwinNames(tt.namespaces, tt.spec, tt.homeID)
			if len(tt.wantErr) == 0 {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			for _, w := range tt.wantErr {
				g.Expect(err).To(MatchError(ContainSubstring(w)))
			}
			g.Expect(err).NotTo(MatchError(ContainSubstring(placeholderClusterID)))
		})
	}
}

// TestCreating: --wait ends a SomeFailed offloading only once no selected
// provider is still creating its twin.
func TestCreating(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason}
	}
	selected := cond(offloadingv1alpha1.OffloadingRequiredCondition, metav1.ConditionTrue, offloadingv1alpha1.ClusterSelectedReason)
	unselected := cond(offloadingv1alpha1.OffloadingRequiredCondition, metav1.ConditionFalse, offloadingv1alpha1.ClusterNotSelectedReason)
	g := NewWithT(t)
	off := &offloadingv1alpha1.NamespaceOffloading{Status: offloadingv1alpha1.NamespaceOffloadingStatus{RemoteNamespacesConditions: map[string]offloadingv1alpha1.RemoteNamespaceConditions{
		"ready":      {selected, cond("Ready", metav1.ConditionTrue, offloadingv1alpha1.NamespaceCreatedReason)},
		"failed":     {selected, cond("Ready", metav1.ConditionFalse, offloadingv1alpha1.CreationFailedReason)},
		"creating":   {selected, cond("Ready", metav1.ConditionFalse, offloadingv1alpha1.CreatingReason)},
		"unjudged":   {selected},
		"withdrawn":  {unselected, cond("Ready", metav1.ConditionFalse, offloadingv1alpha1.CreatingReason)},
		"terminated": {selected, cond("Ready", metav1.ConditionFalse, offloadingv1alpha1.TerminatingReason)},
	}}}
	g.Expect(creating(off)).To(Equal([]string{"creating", "unjudged"}))
}
