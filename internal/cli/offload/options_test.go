package offload

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

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
