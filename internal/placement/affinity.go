package placement

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// Policy is what a namespace's offloading imposes on the pods created in it.
type Policy struct {
	Strategy offloadingv1alpha1.PodOffloadingStrategy
	// Selector is spec.clusterSelector; nil or without terms selects every
	// provider.
	Selector *corev1.NodeSelector
	// ForceRemote sends the pod to virtual nodes whatever the strategy, as
	// runtimeClassName stretch asks.
	ForceRemote bool
}

// ForcesRemote reports whether the pod spec asks for virtual nodes whatever
// the strategy: its runtimeClassName is stretch (Policy.ForceRemote).
func ForcesRemote(spec *corev1.PodSpec) bool {
	return ptr.Deref(spec.RuntimeClassName, "") == wellknown.RuntimeClassName
}

// VirtualNodeToleration tolerates the taint every virtual node carries.
var VirtualNodeToleration = corev1.Toleration{
	Key:      wellknown.VirtualNodeTaintKey,
	Operator: corev1.TolerationOpEqual,
	Value:    wellknown.VirtualNodeTaintValue,
	Effect:   corev1.TaintEffectNoExecute,
}

var (
	onVirtualNode  = corev1.NodeSelectorRequirement{Key: wellknown.VirtualNodeTypeLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{wellknown.VirtualNodeTypeValue}}
	offVirtualNode = corev1.NodeSelectorRequirement{Key: wellknown.VirtualNodeTypeLabel, Operator: corev1.NodeSelectorOpNotIn, Values: []string{wellknown.VirtualNodeTypeValue}}
)

// Imposed returns the required node-affinity terms the policy imposes (nil:
// none) and whether pods tolerate the virtual-node taint:
//   - Local: nothing;
//   - Remote: each selector term ANDed with "on a virtual node" (an empty
//     selector gives that single term);
//   - LocalAndRemote: with a non-empty selector, the Remote terms ORed with
//     "not on a virtual node"; with an empty one, no term (any node).
func (p Policy) Imposed() (terms []corev1.NodeSelectorTerm, tolerate bool) {
	strategy := p.Strategy
	if p.ForceRemote {
		strategy = offloadingv1alpha1.RemoteStrategy
	}
	empty := p.Selector == nil || len(p.Selector.NodeSelectorTerms) == 0
	switch strategy {
	case offloadingv1alpha1.LocalStrategy:
		return nil, false
	case offloadingv1alpha1.RemoteStrategy:
		return remoteTerms(p.Selector), true
	default: // LocalAndRemote, the default
		if empty {
			return nil, true
		}
		return append(remoteTerms(p.Selector), corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{offVirtualNode}}), true
	}
}

func remoteTerms(s *corev1.NodeSelector) []corev1.NodeSelectorTerm {
	if s == nil || len(s.NodeSelectorTerms) == 0 {
		return []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{onVirtualNode}}}
	}
	terms := make([]corev1.NodeSelectorTerm, 0, len(s.NodeSelectorTerms))
	for _, t := range s.NodeSelectorTerms {
		terms = append(terms, and(t, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{onVirtualNode}}))
	}
	return terms
}

// Combine merges a pod's own required terms with the imposed ones: every
// pod term ANDed with every imposed term, matchExpressions and matchFields
// kept, so that a node qualifies only if both the pod and the policy accept
// it. No terms on one side means that side accepts any node.
func Combine(own, imposed []corev1.NodeSelectorTerm) []corev1.NodeSelectorTerm {
	switch {
	case len(imposed) == 0:
		return own
	case len(own) == 0:
		return imposed
	}
	out := make([]corev1.NodeSelectorTerm, 0, len(own)*len(imposed))
	for _, o := range own {
		for _, i := range imposed {
			out = append(out, and(o, i))
		}
	}
	return out
}

// and is the conjunction of two terms, without repeated requirements. A term
// without requirements matches no node, and so does its conjunction.
func and(a, b corev1.NodeSelectorTerm) corev1.NodeSelectorTerm {
	if isEmpty(a) || isEmpty(b) {
		return corev1.NodeSelectorTerm{}
	}
	return corev1.NodeSelectorTerm{
		MatchExpressions: union(a.MatchExpressions, b.MatchExpressions),
		MatchFields:      union(a.MatchFields, b.MatchFields),
	}
}

func isEmpty(t corev1.NodeSelectorTerm) bool {
	return len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0
}

func union(a, b []corev1.NodeSelectorRequirement) []corev1.NodeSelectorRequirement {
	out := make([]corev1.NodeSelectorRequirement, 0, len(a)+len(b))
	for _, r := range append(slices.Clone(a), b...) {
		if !slices.ContainsFunc(out, func(o corev1.NodeSelectorRequirement) bool {
			return o.Key == r.Key && o.Operator == r.Operator && slices.Equal(o.Values, r.Values)
		}) {
			out = append(out, *r.DeepCopy())
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Contradiction returns, for a term no node can match, the requirements that
// contradict each other (e.g. "zone In (a)" and "zone In (b)"); nil when the
// term may match some node. It is sound, not complete: a term it lets pass
// may still match no existing node, but a term it flags matches none.
func Contradiction(t corev1.NodeSelectorTerm) []string {
	if isEmpty(t) {
		return []string{"an empty term, which matches no node"}
	}
	if c := contradiction(t.MatchExpressions, false); c != nil {
		return c
	}
	return contradiction(t.MatchFields, true)
}

// contradiction looks for a key whose requirements no value satisfies.
// Fields (metadata.name) always have a value.
func contradiction(reqs []corev1.NodeSelectorRequirement, fields bool) []string {
	byKey := map[string][]corev1.NodeSelectorRequirement{}
	var keys []string
	for _, r := range reqs {
		if _, ok := byKey[r.Key]; !ok {
			keys = append(keys, r.Key)
		}
		byKey[r.Key] = append(byKey[r.Key], r)
	}
	for _, k := range keys {
		if !satisfiable(byKey[k], fields) {
			texts := make([]string, 0, len(byKey[k]))
			for _, r := range byKey[k] {
				texts = append(texts, RequirementString(r))
			}
			return texts
		}
	}
	return nil
}

// satisfiable reports whether some value of one key (or its absence) meets
// every requirement on that key.
func satisfiable(reqs []corev1.NodeSelectorRequirement, alwaysPresent bool) bool {
	var (
		allowed  []string // nil: any value
		excluded = map[string]bool{}
		mustBe   = alwaysPresent
		mustNot  bool
		lo, hi   = int64(math.MinInt64), int64(math.MaxInt64) // lo < x < hi, for Gt/Lt
		numeric  bool
	)
	for _, r := range reqs {
		switch r.Operator {
		case corev1.NodeSelectorOpIn:
			mustBe = true
			if allowed == nil {
				allowed = slices.Clone(r.Values)
			} else {
				allowed = slices.DeleteFunc(allowed, func(v string) bool { return !slices.Contains(r.Values, v) })
			}
			if allowed == nil {
				allowed = []string{}
			}
		case corev1.NodeSelectorOpNotIn:
			for _, v := range r.Values {
				excluded[v] = true
			}
		case corev1.NodeSelectorOpExists:
			mustBe = true
		case corev1.NodeSelectorOpDoesNotExist:
			mustNot = true
		case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
			if len(r.Values) != 1 {
				return true // invalid, rejected by the API server; not ours to judge
			}
			n, err := strconv.ParseInt(r.Values[0], 10, 64)
			if err != nil {
				return true
			}
			mustBe, numeric = true, true
			if r.Operator == corev1.NodeSelectorOpGt {
				lo = max(lo, n)
			} else {
				hi = min(hi, n)
			}
		default:
			return true
		}
	}
	if mustNot {
		return !mustBe
	}
	inRange := func(v string) bool {
		if !numeric {
			return true
		}
		n, err := strconv.ParseInt(v, 10, 64)
		return err == nil && lo < n && n < hi
	}
	if allowed != nil {
		return slices.ContainsFunc(allowed, func(v string) bool { return !excluded[v] && inRange(v) })
	}
	if numeric {
		// Some integer strictly between lo and hi, and there are more of
		// them than NotIn can exclude unless the range is tiny.
		if lo == math.MaxInt64 || lo+1 >= hi {
			return false
		}
		for x, n := lo+1, 0; x < hi && n <= len(excluded); x, n = x+1, n+1 {
			if !excluded[strconv.FormatInt(x, 10)] {
				return true
			}
		}
		return false
	}
	return true // absence, or a value outside the finite NotIn set
}

// TermsString renders terms the way users write them: requirements joined by
// " AND ", terms by " OR ".
func TermsString(terms []corev1.NodeSelectorTerm) string {
	out := make([]string, 0, len(terms))
	for _, t := range terms {
		var reqs []string
		for _, r := range t.MatchExpressions {
			reqs = append(reqs, RequirementString(r))
		}
		for _, r := range t.MatchFields {
			reqs = append(reqs, RequirementString(r))
		}
		out = append(out, "("+strings.Join(reqs, " AND ")+")")
	}
	return strings.Join(out, " OR ")
}

// Apply changes the pod as the policy asks: the virtual-node toleration, and
// its required node affinity combined with the imposed terms. When every
// resulting term contradicts itself, so that no node can ever match, it
// returns why, term by term; the pod is still valid and is admitted.
func Apply(pod *corev1.Pod, p Policy) (contradictions []string) {
	imposed, tolerate := p.Imposed()
	if tolerate && !slices.ContainsFunc(pod.Spec.Tolerations, toleratesVirtualNodes) {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, VirtualNodeToleration)
	}
	own := requiredTerms(pod)
	combined := Combine(own, imposed)
	if len(imposed) > 0 {
		setRequiredTerms(pod, combined)
	}
	if len(combined) == 0 {
		return nil
	}
	for i, t := range combined {
		c := Contradiction(t)
		if c == nil {
			return nil
		}
		contradictions = append(contradictions, fmt.Sprintf("term %d %s: %s", i, TermsString([]corev1.NodeSelectorTerm{t}), strings.Join(c, " contradicts ")))
	}
	return contradictions
}

// toleratesVirtualNodes reports whether t already tolerates the virtual-node
// taint, so that the pod is not given a second toleration.
func toleratesVirtualNodes(t corev1.Toleration) bool {
	if t.Effect != "" && t.Effect != corev1.TaintEffectNoExecute {
		return false
	}
	if t.Operator == corev1.TolerationOpExists {
		return t.Key == "" || t.Key == VirtualNodeToleration.Key
	}
	return t.Key == VirtualNodeToleration.Key && t.Value == VirtualNodeToleration.Value
}

func requiredTerms(pod *corev1.Pod) []corev1.NodeSelectorTerm {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

func setRequiredTerms(pod *corev1.Pod, terms []corev1.NodeSelectorTerm) {
	if pod.Spec.Affinity == nil {
		pod.Spec.Affinity = &corev1.Affinity{}
	}
	if pod.Spec.Affinity.NodeAffinity == nil {
		pod.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: terms}
}
