package placement

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
)

var (
	isVirtual  = expr("stretch.dev/type", corev1.NodeSelectorOpIn, "virtual-node")
	notVirtual = expr("stretch.dev/type", corev1.NodeSelectorOpNotIn, "virtual-node")
	regionEU   = expr("region", corev1.NodeSelectorOpIn, "eu")
	zoneA      = expr("zone", corev1.NodeSelectorOpIn, "a")
)

func fields(rs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchFields: rs}
}

func TestForcesRemote(t *testing.T) {
	tests := []struct {
		name         string
		runtimeClass *string
		want         bool
	}{
		{name: "no runtime class"},
		{name: "another runtime class", runtimeClass: ptr.To("gvisor")},
		{name: "an empty runtime class", runtimeClass: ptr.To("")},
		{name: "runtime class stretch", runtimeClass: ptr.To("stretch"), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(ForcesRemote(&corev1.PodSpec{RuntimeClassName: tt.runtimeClass})).To(Equal(tt.want))
		})
	}
}

func TestImposed(t *testing.T) {
	euOnly := terms(exprs(regionEU))
	byName := terms(fields(expr("metadata.name", corev1.NodeSelectorOpIn, "stretch-eu")))
	tests := []struct {
		name         string
		policy       Policy
		wantTerms    []corev1.NodeSelectorTerm
		wantTolerate bool
	}{
		{"Local, empty selector", Policy{Strategy: offloadingv1alpha1.LocalStrategy}, nil, false},
		{"Local, selector", Policy{Strategy: offloadingv1alpha1.LocalStrategy, Selector: euOnly}, nil, false},
		{"Remote, empty selector", Policy{Strategy: offloadingv1alpha1.RemoteStrategy},
			[]corev1.NodeSelectorTerm{exprs(isVirtual)}, true},
		{"Remote, selector", Policy{Strategy: offloadingv1alpha1.RemoteStrategy, Selector: euOnly},
			[]corev1.NodeSelectorTerm{exprs(regionEU, isVirtual)}, true},
		{"Remote, matchFields kept", Policy{Strategy: offloadingv1alpha1.RemoteStrategy, Selector: byName},
			[]corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{isVirtual}, MatchFields: byName.NodeSelectorTerms[0].MatchFields}}, true},
		{"LocalAndRemote, empty selector", Policy{Strategy: offloadingv1alpha1.LocalAndRemoteStrategy}, nil, true},
		{"LocalAndRemote, selector", Policy{Strategy: offloadingv1alpha1.LocalAndRemoteStrategy, Selector: euOnly},
			[]corev1.NodeSelectorTerm{exprs(regionEU, isVirtual), exprs(notVirtual)}, true},
		{"default strategy is LocalAndRemote", Policy{Selector: euOnly},
			[]corev1.NodeSelectorTerm{exprs(regionEU, isVirtual), exprs(notVirtual)}, true},
		// clusterSelector: {nodeSelectorTerms: []} selects every provider, as
		// an absent one does.
		{"Remote, no terms", Policy{Strategy: offloadingv1alpha1.RemoteStrategy, Selector: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{}}},
			[]corev1.NodeSelectorTerm{exprs(isVirtual)}, true},
		{"LocalAndRemote, no terms", Policy{Strategy: offloadingv1alpha1.LocalAndRemoteStrategy, Selector: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{}}}, nil, true},
		{"LocalAndRemote, matchFields kept", Policy{Strategy: offloadingv1alpha1.LocalAndRemoteStrategy, Selector: byName},
			[]corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{isVirtual}, MatchFields: byName.NodeSelectorTerms[0].MatchFields}, exprs(notVirtual)}, true},
		{"runtime class forces Remote, even with Local", Policy{Strategy: offloadingv1alpha1.LocalStrategy, Selector: euOnly, ForceRemote: true},
			[]corev1.NodeSelectorTerm{exprs(regionEU, isVirtual)}, true},
		{"runtime class, LocalAndRemote, empty selector", Policy{Strategy: offloadingv1alpha1.LocalAndRemoteStrategy, ForceRemote: true},
			[]corev1.NodeSelectorTerm{exprs(isVirtual)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, tolerate := tt.policy.Imposed()
			g.Expect(got).To(Equal(tt.wantTerms))
			g.Expect(tolerate).To(Equal(tt.wantTolerate))
		})
	}
}

func TestCombine(t *testing.T) {
	tests := []struct {
		name         string
		own, imposed []corev1.NodeSelectorTerm
		want         []corev1.NodeSelectorTerm
	}{
		{"nothing imposed keeps the pod's terms", []corev1.NodeSelectorTerm{exprs(zoneA)}, nil, []corev1.NodeSelectorTerm{exprs(zoneA)}},
		{"no own terms takes the imposed", nil, []corev1.NodeSelectorTerm{exprs(isVirtual)}, []corev1.NodeSelectorTerm{exprs(isVirtual)}},
		{"term by term product",
			[]corev1.NodeSelectorTerm{exprs(zoneA), fields(expr("metadata.name", corev1.NodeSelectorOpNotIn, "n1"))},
			[]corev1.NodeSelectorTerm{exprs(regionEU, isVirtual), exprs(notVirtual)},
			[]corev1.NodeSelectorTerm{
				exprs(zoneA, regionEU, isVirtual),
				exprs(zoneA, notVirtual),
				{MatchExpressions: []corev1.NodeSelectorRequirement{regionEU, isVirtual}, MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpNotIn, "n1")}},
				{MatchExpressions: []corev1.NodeSelectorRequirement{notVirtual}, MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpNotIn, "n1")}},
			}},
		{"a repeated requirement appears once", []corev1.NodeSelectorTerm{exprs(isVirtual)}, []corev1.NodeSelectorTerm{exprs(isVirtual)}, []corev1.NodeSelectorTerm{exprs(isVirtual)}},
		{"an empty own term still matches nothing", []corev1.NodeSelectorTerm{{}}, []corev1.NodeSelectorTerm{exprs(isVirtual)}, []corev1.NodeSelectorTerm{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(Combine(tt.own, tt.imposed)).To(Equal(tt.want))
		})
	}
}

func TestContradiction(t *testing.T) {
	tests := []struct {
		name string
		term corev1.NodeSelectorTerm
		want []string
	}{
		{"disjoint In", exprs(zoneA, expr("zone", corev1.NodeSelectorOpIn, "b")), []string{"zone In (a)", "zone In (b)"}},
		{"overlapping In", exprs(expr("zone", corev1.NodeSelectorOpIn, "a", "b"), expr("zone", corev1.NodeSelectorOpIn, "b", "c")), nil},
		{"In all excluded by NotIn", exprs(isVirtual, notVirtual), []string{"stretch.dev/type In (virtual-node)", "stretch.dev/type NotIn (virtual-node)"}},
		{"NotIn alone", exprs(notVirtual), nil},
		{"Exists and DoesNotExist", exprs(expr("gpu", corev1.NodeSelectorOpExists), expr("gpu", corev1.NodeSelectorOpDoesNotExist)), []string{"gpu Exists", "gpu DoesNotExist"}},
		{"In and DoesNotExist", exprs(zoneA, expr("zone", corev1.NodeSelectorOpDoesNotExist)), []string{"zone In (a)", "zone DoesNotExist"}},
		{"NotIn and DoesNotExist", exprs(expr("zone", corev1.NodeSelectorOpNotIn, "a"), expr("zone", corev1.NodeSelectorOpDoesNotExist)), nil},
		{"empty range", exprs(expr("cpu", corev1.NodeSelectorOpGt, "4"), expr("cpu", corev1.NodeSelectorOpLt, "5")), []string{"cpu Gt 4", "cpu Lt 5"}},
		{"one integer left", exprs(expr("cpu", corev1.NodeSelectorOpGt, "4"), expr("cpu", corev1.NodeSelectorOpLt, "6")), nil},
		{"the integer left is excluded", exprs(expr("cpu", corev1.NodeSelectorOpGt, "4"), expr("cpu", corev1.NodeSelectorOpLt, "6"), expr("cpu", corev1.NodeSelectorOpNotIn, "5")),
			[]string{"cpu Gt 4", "cpu Lt 6", "cpu NotIn (5)"}},
		{"In outside the range", exprs(expr("cpu", corev1.NodeSelectorOpIn, "2", "x"), expr("cpu", corev1.NodeSelectorOpGt, "4")), []string{"cpu In (2,x)", "cpu Gt 4"}},
		{"Gt the largest integer", exprs(expr("cpu", corev1.NodeSelectorOpGt, "9223372036854775807")), []string{"cpu Gt 9223372036854775807"}},
		{"names disjoint", fields(expr("metadata.name", corev1.NodeSelectorOpIn, "a"), expr("metadata.name", corev1.NodeSelectorOpIn, "b")),
			[]string{"metadata.name In (a)", "metadata.name In (b)"}},
		{"other keys do not interfere", exprs(zoneA, regionEU), nil},
		{"empty term", corev1.NodeSelectorTerm{}, []string{"an empty term, which matches no node"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(Contradiction(tt.term)).To(Equal(tt.want))
		})
	}
}

func TestApply(t *testing.T) {
	g := NewWithT(t)
	pod := &corev1.Pod{Spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: terms(exprs(expr("zone", corev1.NodeSelectorOpIn, "b")))}}}}
	sel := terms(exprs(zoneA))
	why := Apply(pod, Policy{Strategy: offloadingv1alpha1.RemoteStrategy, Selector: sel})
	g.Expect(pod.Spec.Tolerations).To(Equal([]corev1.Toleration{VirtualNodeToleration}))
	g.Expect(requiredTerms(pod)).To(Equal([]corev1.NodeSelectorTerm{exprs(expr("zone", corev1.NodeSelectorOpIn, "b"), zoneA, isVirtual)}))
	g.Expect(why).To(ConsistOf(`term 0 (zone In (b) AND zone In (a) AND stretch.dev/type In (virtual-node)): zone In (b) contradicts zone In (a)`))

	// A toleration that covers the taint already is enough.
	pod = &corev1.Pod{Spec: corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}}
	g.Expect(Apply(pod, Policy{})).To(BeEmpty())
	g.Expect(pod.Spec.Tolerations).To(HaveLen(1))
	g.Expect(pod.Spec.Affinity).To(BeNil(), "LocalAndRemote with an empty selector imposes no affinity")

	// One satisfiable term is enough not to warn.
	pod = &corev1.Pod{Spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: terms(exprs(expr("zone", corev1.NodeSelectorOpIn, "b")))}}}}
	g.Expect(Apply(pod, Policy{Strategy: offloadingv1alpha1.LocalAndRemoteStrategy, Selector: sel})).To(BeEmpty())
	g.Expect(requiredTerms(pod)).To(HaveLen(2))

	// Local changes nothing.
	pod = &corev1.Pod{}
	g.Expect(Apply(pod, Policy{Strategy: offloadingv1alpha1.LocalStrategy, Selector: sel})).To(BeEmpty())
	g.Expect(pod).To(Equal(&corev1.Pod{}))
}

func TestApplyContradictions(t *testing.T) {
	usVirtual := terms(exprs(isVirtual, expr("region", corev1.NodeSelectorOpIn, "us")))
	tests := []struct {
		name   string
		policy Policy
		own    *corev1.NodeSelector
		want   []string
	}{
		{"Remote, the pod's zone against the selector's", Policy{Strategy: offloadingv1alpha1.RemoteStrategy, Selector: terms(exprs(zoneA))},
			terms(exprs(expr("zone", corev1.NodeSelectorOpIn, "b"))),
			[]string{"term 0 (zone In (b) AND zone In (a) AND stretch.dev/type In (virtual-node)): zone In (b) contradicts zone In (a)"}},
		// A virtual node outside the selector: the remote term has the wrong
		// region, the local one excludes virtual nodes.
		{"LocalAndRemote, a virtual node the selector does not pick", Policy{Strategy: offloadingv1alpha1.LocalAndRemoteStrategy, Selector: terms(exprs(regionEU))}, usVirtual,
			[]string{
				"term 0 (stretch.dev/type In (virtual-node) AND region In (us) AND region In (eu)): region In (us) contradicts region In (eu)",
				"term 1 (stretch.dev/type In (virtual-node) AND region In (us) AND stretch.dev/type NotIn (virtual-node)): stretch.dev/type In (virtual-node) contradicts stretch.dev/type NotIn (virtual-node)",
			}},
		{"LocalAndRemote, a pod that may run at home", Policy{Strategy: offloadingv1alpha1.LocalAndRemoteStrategy, Selector: terms(exprs(regionEU))},
			terms(exprs(expr("region", corev1.NodeSelectorOpIn, "us"))), nil},
		{"LocalAndRemote, empty selector: nothing imposed", Policy{Strategy: offloadingv1alpha1.LocalAndRemoteStrategy}, usVirtual, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: tt.own}}}}
			NewWithT(t).Expect(Apply(pod, tt.policy)).To(Equal(tt.want))
		})
	}
}
