package placement

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

func expr(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

func terms(ts ...corev1.NodeSelectorTerm) *corev1.NodeSelector {
	return &corev1.NodeSelector{NodeSelectorTerms: ts}
}

func exprs(rs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: rs}
}

func TestParseClusterSelectorErrors(t *testing.T) {
	tests := []struct {
		name    string
		sel     *corev1.NodeSelector
		wantErr string
	}{
		{"bad label key", terms(exprs(expr("bad key!", corev1.NodeSelectorOpExists))),
			`spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].key: Invalid value: "bad key!"`},
		{"In without values", terms(exprs(expr("region", corev1.NodeSelectorOpIn))),
			"spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"},
		{"Exists with values", terms(exprs(expr("region", corev1.NodeSelectorOpExists, "eu"))),
			`spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values: Invalid value: ["eu"]: values set must be empty for exists and does not exist`},
		{"Gt with a non-integer", terms(exprs(expr("cores", corev1.NodeSelectorOpGt, "many"))),
			`spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].values[0]: Invalid value: "many"`},
		{"unknown operator", terms(exprs(expr("region", "Near", "eu"))),
			`spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: "Near": supported values: "In", "NotIn"`},
		{"matchFields on a label", terms(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{expr("region", corev1.NodeSelectorOpIn, "eu")}}),
			`spec.clusterSelector.nodeSelectorTerms[0].matchFields[0].key: Unsupported value: "region": supported values: "metadata.name"`},
		{"matchFields with two values", terms(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpIn, "a", "b")}}),
			`spec.clusterSelector.nodeSelectorTerms[0].matchFields[0].values: Invalid value: ["a","b"]: must have one element`},
		{"error in the second term", terms(exprs(expr("region", corev1.NodeSelectorOpIn, "eu")), exprs(expr("region", corev1.NodeSelectorOpIn))),
			"spec.clusterSelector.nodeSelectorTerms[1].matchExpressions[0].values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := ParseClusterSelector(tt.sel)
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

func TestClusterSelectorMatches(t *testing.T) {
	eu := Node{Name: "stretch-provider-eu", Labels: map[string]string{"region": "eu", "provider": "aws", "cores": "64"}}
	us := Node{Name: "stretch-provider-us", Labels: map[string]string{"region": "us-west", "provider": "gcp", "staging": "true", "cores": "8"}}

	tests := []struct {
		name    string
		sel     *corev1.NodeSelector
		want    []bool // eu, us
		explain [][]string
	}{
		{name: "nil selects all", sel: nil, want: []bool{true, true}},
		{name: "no terms selects all", sel: terms(), want: []bool{true, true}},
		{name: "empty term selects none", sel: terms(corev1.NodeSelectorTerm{}), want: []bool{false, false}},
		{name: "In", sel: terms(exprs(expr("region", corev1.NodeSelectorOpIn, "eu"))), want: []bool{true, false},
			explain: [][]string{nil, {"region In (eu)"}}},
		{name: "NotIn and DoesNotExist ANDed",
			sel:  terms(exprs(expr("region", corev1.NodeSelectorOpNotIn, "eu"), expr("staging", corev1.NodeSelectorOpDoesNotExist))),
			want: []bool{false, false}, explain: [][]string{{"region NotIn (eu)"}, {"staging DoesNotExist"}}},
		{name: "terms ORed",
			sel:  terms(exprs(expr("provider", corev1.NodeSelectorOpIn, "aws")), exprs(expr("staging", corev1.NodeSelectorOpExists))),
			want: []bool{true, true}},
		{name: "Gt and Lt", sel: terms(exprs(expr("cores", corev1.NodeSelectorOpGt, "16"), expr("cores", corev1.NodeSelectorOpLt, "128"))),
			want: []bool{true, false}, explain: [][]string{nil, {"cores Gt 16"}}},
		{name: "matchFields on the node name",
			sel:  terms(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpIn, "stretch-provider-us")}}),
			want: []bool{false, true}, explain: [][]string{{"metadata.name In (stretch-provider-us)"}, nil}},
		{name: "missing label fails In",
			sel:  terms(exprs(expr("gpu", corev1.NodeSelectorOpIn, "true"))),
			want: []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			s, err := ParseClusterSelector(tt.sel)
			g.Expect(err).NotTo(HaveOccurred())
			for i, n := range []Node{eu, us} {
				g.Expect(s.Matches(n)).To(Equal(tt.want[i]), n.Name)
				if tt.explain != nil {
					g.Expect(s.Explain(n)[0].Failed).To(Equal(tt.explain[i]), n.Name)
				}
				// Same verdict as the scheduler's own evaluation, where it applies.
				if tt.sel != nil && len(tt.sel.NodeSelectorTerms) > 0 {
					ref, err := nodeaffinity.NewNodeSelector(tt.sel)
					g.Expect(err).NotTo(HaveOccurred())
					node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels}}
					g.Expect(s.Matches(n)).To(Equal(ref.Match(node)), "agrees with the scheduler on %s", n.Name)
				}
			}
		})
	}
}

func TestExplainEmptyTerm(t *testing.T) {
	g := NewWithT(t)
	s, err := ParseClusterSelector(terms(corev1.NodeSelectorTerm{}, exprs(expr("region", corev1.NodeSelectorOpExists))))
	g.Expect(err).NotTo(HaveOccurred())
	v := s.Explain(Node{Name: "x", Labels: map[string]string{"region": "eu"}})
	g.Expect(v).To(HaveLen(2))
	g.Expect(v[0].Empty).To(BeTrue())
	g.Expect(v[0].Selected()).To(BeFalse())
	g.Expect(v[1].Selected()).To(BeTrue())
}
