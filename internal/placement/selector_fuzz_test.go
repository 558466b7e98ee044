package placement

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// FuzzClusterSelector feeds spec.clusterSelector as the API server would
// store it (any JSON the CRD schema admits, which does not check operators,
// keys or values) and a virtual node, and checks that:
//   - parsing is deterministic and a failure names spec.clusterSelector;
//   - whatever the scheduler's own parser refuses, ParseClusterSelector
//     refuses too, and it refuses more only for matchFields that can never
//     name a virtual node;
//   - a parsed selector selects exactly the nodes the scheduler's evaluation
//     selects (except that no terms at all selects every provider, by design);
//   - Explain agrees with Matches.
func FuzzClusterSelector(f *testing.F) {
	seeds := []string{
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"region","operator":"In","values":["eu"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"region","operator":"NotIn","values":["eu","us"]},{"key":"gpu","operator":"Exists"}]},{"matchExpressions":[{"key":"cores","operator":"Gt","values":["16"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"In","values":["stretch-provider-eu"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"NotIn","values":["stretch-provider-us"]}],"matchExpressions":[{"key":"staging","operator":"DoesNotExist"}]}]}`,
		`{"nodeSelectorTerms":[]}`,
		`{"nodeSelectorTerms":[{}]}`,
		`{}`,
		// Malformed, yet admitted by the CRD schema.
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"region","operator":"Near","values":["eu"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"region","operator":"In"}]}]}`,
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"region","operator":"Exists","values":["eu"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"cores","operator":"Lt","values":["many"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"cores","operator":"Gt","values":["1","2"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"bad key!","operator":"Exists"}]}]}`,
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"","operator":"Exists"}]}]}`,
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"region","operator":"","values":["eu"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.labels","operator":"In","values":["x"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"Exists"}]}]}`,
		`{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"In","values":["a","b"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"In","values":["Not A Node!"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"In","values":["stretch-` + strings.Repeat("a", 70) + `"]}]}]}`,
		`{"nodeSelectorTerms":[{"matchExpressions":[{"key":"region","operator":"In","values":["` + strings.Repeat("v", 70) + `"]}]}]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), "stretch-provider-eu", "region=eu,cores=64,gpu=")
	}
	f.Add([]byte(seeds[0]), "stretch-provider-us", "region=us,staging=true")
	f.Fuzz(func(t *testing.T, selector []byte, name, labelText string) {
		sel := &corev1.NodeSelector{}
		if json.Unmarshal(selector, sel) != nil {
			return // the API server stores JSON of this shape only
		}
		s, err := ParseClusterSelector(sel)
		s2, err2 := ParseClusterSelector(sel)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("parsing twice gives %v, then %v", err, err2)
		}
		_, refErr := nodeaffinity.NewNodeSelector(sel)
		if len(sel.NodeSelectorTerms) == 0 {
			refErr = nil // the scheduler has no use for it; for us it selects all
		}
		if err != nil {
			if !strings.Contains(err.Error(), ClusterSelectorPath.String()) {
				t.Fatalf("the error does not name %s: %v", ClusterSelectorPath, err)
			}
			if refErr == nil && !hasImpossibleField(sel) {
				t.Fatalf("refused a selector the scheduler accepts: %v\n%s", err, selector)
			}
			return
		}
		if refErr != nil {
			t.Fatalf("accepted a selector the scheduler refuses (%v):\n%s", refErr, selector)
		}
		if name == "" {
			name = "stretch-provider" // every node has a name, which matchFields read
		}
		node := Node{Name: name, Labels: parseLabelText(labelText)}
		got := s.Matches(node)
		if got != s2.Matches(node) {
			t.Fatalf("two parses of one selector disagree on node %s", name)
		}
		want := true
		if len(sel.NodeSelectorTerms) > 0 {
			ref, _ := nodeaffinity.NewNodeSelector(sel)
			want = ref.Match(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node.Name, Labels: node.Labels}})
		}
		if got != want {
			t.Fatalf("node %s %v: Matches says %v, the scheduler %v, for\n%s", node.Name, node.Labels, got, want, selector)
		}
		verdicts := s.Explain(node)
		if len(verdicts) != len(sel.NodeSelectorTerms) {
			t.Fatalf("Explain gives %d verdicts for %d terms", len(verdicts), len(sel.NodeSelectorTerms))
		}
		if !s.MatchAll() && slices.ContainsFunc(verdicts, TermVerdict.Selected) != got {
			t.Fatalf("Explain %+v disagrees with Matches %v", verdicts, got)
		}
	})
}

// hasImpossibleField reports whether a matchFields requirement names
// another field than metadata.name, or a value that is no node name: the
// scheduler lets these through (and they match nothing), we refuse them with a
// message that says what to write instead.
func hasImpossibleField(sel *corev1.NodeSelector) bool {
	for _, t := range sel.NodeSelectorTerms {
		for _, f := range t.MatchFields {
			if f.Key != nodeNameField {
				return true
			}
			for _, v := range f.Values {
				if len(validation.IsDNS1123Subdomain(v)) > 0 {
					return true
				}
			}
		}
	}
	return false
}

// parseLabelText turns "k=v,k2=v2" into labels, without validating them:
// a selector must evaluate whatever the node carries.
func parseLabelText(s string) map[string]string {
	labels := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels[k] = v
		}
	}
	return labels
}

// TestParseClusterSelectorNodeNames: matchFields values are node names
// (DNS-1123 subdomains, up to 253 characters), not label values.
func TestParseClusterSelectorNodeNames(t *testing.T) {
	long := "stretch-" + strings.Repeat("a", 70)
	tests := []struct {
		name, value, wantErr string
		matches              bool
	}{
		{name: "a virtual node", value: "stretch-provider-eu", matches: false},
		{name: "longer than a label value", value: long, matches: true},
		{name: "no node name", value: "Not A Node!",
			wantErr: `spec.clusterSelector.nodeSelectorTerms[0].matchFields[0].values[0]: Invalid value: "Not A Node!": not a node name`},
		{name: "empty", value: "", wantErr: "spec.clusterSelector.nodeSelectorTerms[0].matchFields[0].values[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{
				{Key: nodeNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{tt.value}}}}}}
			s, err := ParseClusterSelector(sel)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Matches(Node{Name: long}); got != tt.matches {
				t.Fatalf("node %s: Matches %v, want %v", long, got, tt.matches)
			}
		})
	}
}
