// Package placement evaluates cluster selectors against virtual nodes and
// builds the node affinity that pins pods to the selected ones. It is pure:
// no client, no clock, so that every rule is table-tested and fuzzed.
package placement

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// ClusterSelectorPath is where the selector sits in a NamespaceOffloading;
// parse errors name it so that the user finds the field to fix.
var ClusterSelectorPath = field.NewPath("spec", "clusterSelector")

// nodeNameField is the only field a node selector's matchFields may name.
const nodeNameField = "metadata.name"

// ClusterSelector is a parsed spec.clusterSelector. Terms are ORed and the
// requirements of a term ANDed, as in the scheduler; a selector without terms
// selects every provider, and an empty term selects none.
type ClusterSelector struct {
	terms []term
}

type term []requirement

type requirement struct {
	text     string
	selector labels.Requirement
	// field requirements match metadata.name, not labels: the node's name is
	// In (or NotIn) name.
	field bool
	in    bool
	name  string
}

// ParseClusterSelector checks a selector with the scheduler's own rules and
// parses it. The error lists every problem with its field path.
func ParseClusterSelector(ns *corev1.NodeSelector) (*ClusterSelector, error) {
	if ns == nil || len(ns.NodeSelectorTerms) == 0 {
		return &ClusterSelector{}, nil
	}
	// The scheduler's parser gives the messages users know from Pod errors.
	if _, err := nodeaffinity.NewNodeSelector(ns, field.WithPath(ClusterSelectorPath)); err != nil {
		return nil, err
	}
	s := &ClusterSelector{}
	for i, t := range ns.NodeSelectorTerms {
		var parsed term
		for j, e := range t.MatchExpressions {
			r, err := newRequirement(e)
			if err != nil {
				return nil, field.Invalid(ClusterSelectorPath.Child("nodeSelectorTerms").Index(i).Child("matchExpressions").Index(j), e, err.Error())
			}
			parsed = append(parsed, r)
		}
		for j, f := range t.MatchFields {
			path := ClusterSelectorPath.Child("nodeSelectorTerms").Index(i).Child("matchFields").Index(j)
			if f.Key != nodeNameField {
				return nil, field.NotSupported(path.Child("key"), f.Key, []string{nodeNameField})
			}
			// The scheduler's parser has checked the operator (In or NotIn)
			// and the single value. Node names are not label values: they
			// may be longer than 63 characters.
			name := f.Values[0]
			if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
				return nil, field.Invalid(path.Child("values").Index(0), name, "not a node name: "+strings.Join(msgs, "; "))
			}
			parsed = append(parsed, requirement{text: RequirementString(f), field: true, in: f.Operator == corev1.NodeSelectorOpIn, name: name})
		}
		s.terms = append(s.terms, parsed)
	}
	return s, nil
}

var operators = map[corev1.NodeSelectorOperator]selection.Operator{
	corev1.NodeSelectorOpIn:           selection.In,
	corev1.NodeSelectorOpNotIn:        selection.NotIn,
	corev1.NodeSelectorOpExists:       selection.Exists,
	corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
	corev1.NodeSelectorOpGt:           selection.GreaterThan,
	corev1.NodeSelectorOpLt:           selection.LessThan,
}

func newRequirement(e corev1.NodeSelectorRequirement) (requirement, error) {
	op, ok := operators[e.Operator]
	if !ok {
		return requirement{}, fmt.Errorf("%q is not a valid selector operator", e.Operator)
	}
	r, err := labels.NewRequirement(e.Key, op, e.Values)
	if err != nil {
		return requirement{}, err
	}
	return requirement{text: RequirementString(e), selector: *r}, nil
}

// Node is what a selector looks at: a virtual node's name and labels.
type Node struct {
	Name   string
	Labels map[string]string
}

func (r requirement) matches(n Node) bool {
	if r.field {
		return (n.Name == r.name) == r.in
	}
	return r.selector.Matches(labels.Set(n.Labels))
}

// MatchAll reports whether the selector selects every provider.
func (s *ClusterSelector) MatchAll() bool { return len(s.terms) == 0 }

// Matches reports whether the selector selects the node.
func (s *ClusterSelector) Matches(n Node) bool {
	if s.MatchAll() {
		return true
	}
	for _, t := range s.terms {
		if len(t) > 0 && len(t.failed(n)) == 0 {
			return true
		}
	}
	return false
}

func (t term) failed(n Node) []string {
	var failed []string
	for _, r := range t {
		if !r.matches(n) {
			failed = append(failed, r.text)
		}
	}
	return failed
}

// TermVerdict says why one term does or does not select a node.
type TermVerdict struct {
	// Index of the term in nodeSelectorTerms.
	Index int
	// Failed lists the requirements the node does not meet, e.g. "region In (eu)".
	Failed []string
	// Empty is true for a term without requirements, which selects nothing.
	Empty bool
}

// Selected reports whether the term selects the node.
func (v TermVerdict) Selected() bool { return !v.Empty && len(v.Failed) == 0 }

// Explain returns, term by term, which requirements the node fails: what
// 'stretchctl diagnose' prints for a provider that is not selected.
func (s *ClusterSelector) Explain(n Node) []TermVerdict {
	verdicts := make([]TermVerdict, len(s.terms))
	for i, t := range s.terms {
		verdicts[i] = TermVerdict{Index: i, Failed: t.failed(n), Empty: len(t) == 0}
	}
	return verdicts
}

// RequirementString renders a requirement the way users write it, e.g.
// "region In (eu,us)", "gpu Exists", "metadata.name NotIn (stretch-x)".
func RequirementString(e corev1.NodeSelectorRequirement) string {
	switch e.Operator {
	case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
		return fmt.Sprintf("%s %s", e.Key, e.Operator)
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		return fmt.Sprintf("%s %s %s", e.Key, e.Operator, strings.Join(e.Values, ","))
	default:
		return fmt.Sprintf("%s %s (%s)", e.Key, e.Operator, strings.Join(e.Values, ","))
	}
}
