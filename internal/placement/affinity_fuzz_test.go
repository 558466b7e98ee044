package placement

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
)

// byteSource turns fuzz input into choices; past its end every choice is 0.
type byteSource []byte

func (b *byteSource) pick(n int) int {
	if len(*b) == 0 {
		return 0
	}
	v := int((*b)[0]) % n
	*b = (*b)[1:]
	return v
}

var (
	fuzzKeys   = []string{"zone", "cpu", "stretch.dev/type"}
	fuzzValues = []string{"a", "b", "virtual-node", "1", "2", "3", "5"}
	fuzzNames  = []string{"n1", "n2", "stretch-eu"}
	fuzzOps    = []corev1.NodeSelectorOperator{corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn, corev1.NodeSelectorOpExists,
		corev1.NodeSelectorOpDoesNotExist, corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt}
	fuzzNumbers = []string{"0", "1", "2", "3", "4", "5"}
)

// requirement builds a valid requirement, as the API server would admit it.
func (b *byteSource) requirement(field bool) corev1.NodeSelectorRequirement {
	if field {
		op := []corev1.NodeSelectorOperator{corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn}[b.pick(2)]
		return corev1.NodeSelectorRequirement{Key: "metadata.name", Operator: op, Values: []string{fuzzNames[b.pick(len(fuzzNames))]}}
	}
	r := corev1.NodeSelectorRequirement{Key: fuzzKeys[b.pick(len(fuzzKeys))], Operator: fuzzOps[b.pick(len(fuzzOps))]}
	switch r.Operator {
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
		for n := 1 + b.pick(2); n > 0; n-- {
			r.Values = append(r.Values, fuzzValues[b.pick(len(fuzzValues))])
		}
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		r.Values = []string{fuzzNumbers[b.pick(len(fuzzNumbers))]}
	}
	return r
}

func (b *byteSource) terms(max int) []corev1.NodeSelectorTerm {
	var ts []corev1.NodeSelectorTerm
	for n := b.pick(max + 1); n > 0; n-- {
		var t corev1.NodeSelectorTerm
		for m := b.pick(4); m > 0; m-- {
			t.MatchExpressions = append(t.MatchExpressions, b.requirement(false))
		}
		for m := b.pick(2); m > 0; m-- {
			t.MatchFields = append(t.MatchFields, b.requirement(true))
		}
		ts = append(ts, t)
	}
	return ts
}

func (b *byteSource) node() *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fuzzNames[b.pick(len(fuzzNames))], Labels: map[string]string{}}}
	for _, k := range fuzzKeys {
		if v := b.pick(len(fuzzValues) + 1); v < len(fuzzValues) {
			n.Labels[k] = fuzzValues[v]
		}
	}
	return n
}

// matches evaluates terms as the scheduler does; nil terms accept any node.
func matches(t *testing.T, terms []corev1.NodeSelectorTerm, n *corev1.Node) bool {
	if terms == nil {
		return true
	}
	ok, err := nodeaffinity.NewLazyErrorNodeSelector(&corev1.NodeSelector{NodeSelectorTerms: terms}).Match(n)
	if err != nil {
		t.Fatalf("generated terms are invalid: %v", err)
	}
	return ok
}

// fuzzTolerations are what a pod may already tolerate: nothing relevant, the
// virtual-node taint exactly, every taint, or the key with another effect.
var fuzzTolerations = []corev1.Toleration{
	{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule},
	VirtualNodeToleration,
	{Operator: corev1.TolerationOpExists},
	{Key: VirtualNodeToleration.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
}

// virtualNodeTaint is the taint every virtual node carries.
var virtualNodeTaint = corev1.Taint{Key: VirtualNodeToleration.Key, Value: VirtualNodeToleration.Value, Effect: corev1.TaintEffectNoExecute}

// FuzzApply checks the merge of a pod's affinity with a policy against the
// scheduler's own matching: a node the merged pod accepts is one both the
// pod and the policy accept (never a node the policy forbids), and the other
// way round; a term said to contradict itself matches no node. It also checks
// what Apply must leave alone: the pod's own terms (which the API server
// already holds), its other tolerations and affinities; that the pod
// tolerates virtual nodes exactly when the policy says so, with no duplicate
// toleration; and that applying the policy again selects the same nodes.
func FuzzApply(f *testing.F) {
	f.Add([]byte{1, 1, 0, 1, 0, 0, 1, 2, 1, 0, 0, 0, 3, 4, 5})
	f.Add([]byte{2, 2, 1, 3, 4, 0, 2, 1, 1, 1, 0, 5, 5, 2, 0, 1})
	f.Add([]byte{0, 1, 1, 1, 2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		b := byteSource(data)
		strategies := []offloadingv1alpha1.PodOffloadingStrategy{offloadingv1alpha1.LocalStrategy, offloadingv1alpha1.RemoteStrategy, offloadingv1alpha1.LocalAndRemoteStrategy}
		policy := Policy{Strategy: strategies[b.pick(3)], ForceRemote: b.pick(4) == 0}
		if sel := b.terms(2); sel != nil {
			policy.Selector = &corev1.NodeSelector{NodeSelectorTerms: sel}
		}
		own := b.terms(2)
		pod := &corev1.Pod{}
		if own != nil {
			setRequiredTerms(pod, own)
		}
		for n := b.pick(3); n > 0; n-- {
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, fuzzTolerations[b.pick(len(fuzzTolerations))])
		}
		if b.pick(2) == 1 {
			if pod.Spec.Affinity == nil {
				pod.Spec.Affinity = &corev1.Affinity{}
			}
			pod.Spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{}
			if pod.Spec.Affinity.NodeAffinity == nil {
				pod.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
			}
			pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = []corev1.PreferredSchedulingTerm{
				{Weight: 1, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{b.requirement(false)}}}}
		}
		before := pod.DeepCopy()
		ownBefore := before.DeepCopy() // own is shared with pod: Apply must not write into it
		defer func() {
			if !equality.Semantic.DeepEqual(requiredTerms(ownBefore), own) && own != nil {
				t.Fatalf("Apply changed the pod's own terms in place: %s became %s", TermsString(requiredTerms(ownBefore)), TermsString(own))
			}
		}()
		contradictions := Apply(pod, policy)
		merged := requiredTerms(pod)
		imposed, tolerate := policy.Imposed()
		checkUntouched(t, before, pod, tolerate)
		again := pod.DeepCopy()
		Apply(again, policy)
		reapplied := requiredTerms(again)

		for i := 0; i < 16; i++ {
			n := b.node()
			inMerged, inPolicy, inOwn := matches(t, merged, n), matches(t, imposed, n), matches(t, own, n)
			if inMerged && !inPolicy {
				t.Fatalf("node %v is allowed by the merged terms %s but forbidden by the policy %s", n.Labels, TermsString(merged), TermsString(imposed))
			}
			if matches(t, reapplied, n) != inMerged {
				t.Fatalf("node %v %s: applying the policy twice changes the verdict from %v", n.Name, n.Labels, inMerged)
			}
			if inMerged != (inPolicy && inOwn) {
				t.Fatalf("node %v %s: merged %v, policy %v, pod %v", n.Name, n.Labels, inMerged, inPolicy, inOwn)
			}
			if inMerged && contradictions != nil {
				t.Fatalf("node %v matches terms said to contradict: %v", n.Labels, contradictions)
			}
			for _, term := range merged {
				if Contradiction(term) != nil && matches(t, []corev1.NodeSelectorTerm{term}, n) {
					t.Fatalf("node %v matches term %s said to contradict", n.Labels, TermsString([]corev1.NodeSelectorTerm{term}))
				}
			}
		}
	})
}

// checkUntouched compares the pod before and after Apply: only the required
// node affinity and the virtual-node toleration may change.
func checkUntouched(t *testing.T, before, after *corev1.Pod, tolerate bool) {
	t.Helper()
	if before.Spec.Affinity != nil {
		if after.Spec.Affinity == nil {
			t.Fatal("Apply dropped the pod's affinity")
		}
		if !equality.Semantic.DeepEqual(before.Spec.Affinity.PodAntiAffinity, after.Spec.Affinity.PodAntiAffinity) ||
			before.Spec.Affinity.NodeAffinity != nil && !equality.Semantic.DeepEqual(before.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
				after.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) {
			t.Fatalf("Apply changed affinities it does not own: %+v to %+v", before.Spec.Affinity, after.Spec.Affinity)
		}
	}
	had := slices.ContainsFunc(before.Spec.Tolerations, func(tl corev1.Toleration) bool { return tl.ToleratesTaint(klog.Background(), &virtualNodeTaint, false) })
	want := slices.Clone(before.Spec.Tolerations)
	if tolerate && !had {
		want = append(want, VirtualNodeToleration)
	}
	if !equality.Semantic.DeepEqual(want, after.Spec.Tolerations) && !(len(want) == 0 && len(after.Spec.Tolerations) == 0) {
		t.Fatalf("tolerations %v became %v; policy tolerates virtual nodes: %v", before.Spec.Tolerations, after.Spec.Tolerations, tolerate)
	}
	tolerates := slices.ContainsFunc(after.Spec.Tolerations, func(tl corev1.Toleration) bool { return tl.ToleratesTaint(klog.Background(), &virtualNodeTaint, false) })
	if tolerate && !tolerates {
		t.Fatalf("the policy sends the pod to virtual nodes, but its tolerations %v do not tolerate their taint", after.Spec.Tolerations)
	}
}
