package diagnose

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/placement"
)

const homeID = "3831061c-7d69-4f16-bcd7-5ad9a4104b36"

func virtualNode(name string, labels map[string]string) corev1.Node {
	l := map[string]string{peeringv1alpha1.VirtualNodeTypeLabel: peeringv1alpha1.VirtualNodeTypeValue}
	for k, v := range labels {
		l[k] = v
	}
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func ready(provider string) map[string]offloadingv1alpha1.RemoteNamespaceConditions {
	return map[string]offloadingv1alpha1.RemoteNamespaceConditions{provider: {{Type: "Ready", Status: "True", Reason: "NamespaceCreated"}}}
}

func regionIn(values ...string) *corev1.NodeSelector {
	return &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
		{Key: "region", Operator: corev1.NodeSelectorOpIn, Values: values}}}}}
}

// healthy is a namespace offloaded to provider-eu, every check passing.
func healthy() Observed {
	return Observed{
		Namespace:       "foo",
		HomeClusterID:   homeID,
		NamespaceLabels: map[string]string{offloadingv1alpha1.SchedulingEnabledLabel: "true"},
		Offloadings: []offloadingv1alpha1.NamespaceOffloading{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "foo", Name: "offloading"},
			Spec:       offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy, ClusterSelector: regionIn("eu")},
			Status:     offloadingv1alpha1.NamespaceOffloadingStatus{OffloadingPhase: offloadingv1alpha1.ReadyPhase, RemoteNamespacesConditions: ready("provider-eu")},
		}},
		VirtualNodes: []corev1.Node{virtualNode("stretch-provider-eu", map[string]string{"region": "eu"}), virtualNode("stretch-provider-us", map[string]string{"region": "us"})},
	}
}

func pendingPod(name string, terms []corev1.NodeSelectorTerm, tolerate bool) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "foo", Name: name}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	if terms != nil {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
	if tolerate {
		p.Spec.Tolerations = []corev1.Toleration{placement.VirtualNodeToleration}
	}
	return p
}

// TestFAQCases: one row per failure case of the FAQ, each failing the check
// the FAQ points at, with its fix.
func TestFAQCases(t *testing.T) {
	tests := []struct {
		name       string
		change     func(*Observed)
		wantCheck  string
		wantResult Result
		wantDetail string
		wantFix    string
	}{
		{name: "healthy", change: func(*Observed) {}, wantCheck: "phase", wantResult: Passed, wantDetail: "every selected provider has its twin"},
		{name: "wrong name", change: func(o *Observed) { o.Offloadings[0].Name = "my-offloading" },
			wantCheck: "NamespaceOffloading named offloading", wantResult: Failed, wantDetail: `reconciles only the one named "offloading"`, wantFix: "stretchctl offload namespace foo"},
		{name: "not offloaded", change: func(o *Observed) { o.Offloadings = nil },
			wantCheck: "NamespaceOffloading named offloading", wantResult: Failed, wantDetail: "it has no NamespaceOffloading", wantFix: "stretchctl offload namespace foo"},
		{name: "selector syntax error", change: func(o *Observed) {
			o.Offloadings[0].Spec.ClusterSelector = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: "Near"}}}}}
			o.Offloadings[0].Annotations = map[string]string{offloadingv1alpha1.ClusterSelectorErrorAnnotation: `"Near" is not a valid selector operator`}
			o.Offloadings[0].Status = offloadingv1alpha1.NamespaceOffloadingStatus{OffloadingPhase: offloadingv1alpha1.NoClusterSelectedPhase}
		}, wantCheck: "cluster selector syntax", wantResult: Failed, wantDetail: `"Near" is not a valid selector operator`, wantFix: "fix spec.clusterSelector"},
		{name: "labels do not match", change: func(o *Observed) {
			o.Offloadings[0].Spec.ClusterSelector = regionIn("ap")
			o.Offloadings[0].Status = offloadingv1alpha1.NamespaceOffloadingStatus{OffloadingPhase: offloadingv1alpha1.NoClusterSelectedPhase}
		}, wantCheck: "virtual nodes against the selector", wantResult: Failed, wantDetail: "stretch-provider-eu is not selected: term 0 needs region In (ap)", wantFix: "kubectl get nodes --show-labels"},
		{name: "name too long", change: func(o *Observed) {
			o.Namespace = "abcdefghijklmnopqrstuvwxyz0"
			o.Offloadings[0].Namespace = o.Namespace
		}, wantCheck: "twin namespace name", wantResult: Failed, wantDetail: "at most 26 characters", wantFix: "--namespace-mapping-strategy SelectedName"},
		{name: "conflicting namespace", change: func(o *Observed) {
			o.Offloadings[0].Status.OffloadingPhase = offloadingv1alpha1.SomeFailedPhase
			o.Offloadings[0].Status.RemoteNamespacesConditions["provider-us"] = offloadingv1alpha1.RemoteNamespaceConditions{{Type: "Ready", Status: "False", Reason: "CreationFailed",
				Message: "AlreadyExists: namespace foo-x already exists on this provider and is not the twin of this cluster"}}
		}, wantCheck: "namespaces on the providers", wantResult: Failed, wantDetail: "provider-us: AlreadyExists", wantFix: "remove or rename it on that provider"},
		{name: "contradictory pod terms", change: func(o *Observed) {
			o.Pods = []corev1.Pod{pendingPod("web-1", []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}, {Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}}}}, true)}
			o.Events = []eventsv1.Event{{Reason: "FailedScheduling", Regarding: corev1.ObjectReference{Kind: "Pod", Name: "web-1"},
				EventTime: metav1.NewMicroTime(time.Now()), Note: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}}
		}, wantCheck: "pending pod web-1", wantResult: Failed, wantDetail: "zone In (a) contradicts zone In (b); the scheduler says: 0/3 nodes are available", wantFix: "fix the pod's own nodeAffinity"},
		{name: "strategy keeps pods home", change: func(o *Observed) {
			o.Offloadings[0].Spec.PodOffloadingStrategy = offloadingv1alpha1.LocalStrategy
			o.Pods = []corev1.Pod{pendingPod("web-1", nil, false)}
		}, wantCheck: "pod offloading strategy", wantResult: Warning, wantDetail: "Local: pods stay home", wantFix: `"podOffloadingStrategy":"LocalAndRemote"`},
		{name: "a name the provider refuses is not a conflict", change: func(o *Observed) {
			o.Offloadings[0].Status.RemoteNamespacesConditions["provider-us"] = offloadingv1alpha1.RemoteNamespaceConditions{{Type: "Ready", Status: "False", Reason: "CreationFailed",
				Message: "Forbidden: reserved"}}
			o.Offloadings[0].Status.OffloadingPhase = offloadingv1alpha1.SomeFailedPhase
		}, wantCheck: "namespaces on the providers", wantResult: Passed,
			wantDetail: "no provider reports a conflicting namespace; provider-eu: the twin exists, created by Stretch for this cluster; provider-us: no conflicting namespace reported (CreationFailed)"},
		{name: "pod created before the offloading", change: func(o *Observed) {
			o.Pods = []corev1.Pod{pendingPod("early", nil, false)}
		}, wantCheck: "pending pod early", wantResult: Failed, wantDetail: "not placed by Stretch", wantFix: "kubectl delete pod -n foo early"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := healthy()
			tt.change(&o)
			checks := Run(o)
			g.Expect(checks).To(ContainElement(And(
				HaveField("Name", tt.wantCheck),
				HaveField("Result", tt.wantResult),
				HaveField("Detail", ContainSubstring(tt.wantDetail)),
				HaveField("Fix", ContainSubstring(tt.wantFix)))), "%+v", checks)
			g.Expect(AllPassed(checks)).To(Equal(tt.name == "healthy"))
			g.Expect(checks).NotTo(ContainElement(And(HaveField("Result", Not(Equal(Passed))), HaveField("Fix", BeEmpty()))), "every check that does not pass says what to do")
		})
	}
}
