package tenancy

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

func TestPodViolations(t *testing.T) {
	labelled := func(spec corev1.PodSpec) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{wellknown.OriginClusterIDLabel: homeID}}, Spec: spec}
	}
	allowBatch := &peeringv1alpha1.TenantPolicy{Spec: peeringv1alpha1.TenantPolicySpec{PriorityClasses: []string{"batch-low", "batch-high"}}}
	tests := []struct {
		name            string
		policy          *peeringv1alpha1.TenantPolicy
		pod             *corev1.Pod
		defaultPriority string
		want            []string // substrings, one per violation; none: allowed
	}{
		{name: "plain pod", pod: labelled(corev1.PodSpec{})},
		{name: "twin's default account", pod: labelled(corev1.PodSpec{ServiceAccountName: "default"})},
		{name: "no origin label", pod: &corev1.Pod{}, want: []string{"lacks the label stretch.dev/origin-cluster-id=" + homeID}},
		{name: "another home's label", pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{wellknown.OriginClusterIDLabel: "other"}}},
			want: []string{"stretch.dev/origin-cluster-id=other names another home cluster"}},
		{name: "node name", pod: labelled(corev1.PodSpec{NodeName: "cp-1"}), want: []string{"names node cp-1 in spec.nodeName"}},
		{name: "control-plane toleration", pod: labelled(corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}}),
			want: []string{"tolerates the control-plane taint node-role.kubernetes.io/control-plane"}},
		{name: "master toleration", pod: labelled(corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "node-role.kubernetes.io/master", Operator: corev1.TolerationOpEqual}}}),
			want: []string{"control-plane taint node-role.kubernetes.io/master"}},
		{name: "toleration of everything", pod: labelled(corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}}),
			want: []string{"tolerates every taint"}},
		{name: "ordinary tolerations", pod: labelled(corev1.PodSpec{Tolerations: []corev1.Toleration{
			{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}, {Key: "gpu", Operator: corev1.TolerationOpEqual, Value: "yes"}}})},
		{name: "provider's account", pod: labelled(corev1.PodSpec{ServiceAccountName: "kube-proxy"}), want: []string{"runs as ServiceAccount kube-proxy"}},
		{name: "priority class, none allowed", pod: labelled(corev1.PodSpec{PriorityClassName: "system-node-critical"}),
			want: []string{"names priority class system-node-critical, and the policy allows none"}},
		{name: "priority class allowed", policy: allowBatch, pod: labelled(corev1.PodSpec{PriorityClassName: "batch-low"})},
		{name: "priority class not allowed", policy: allowBatch, pod: labelled(corev1.PodSpec{PriorityClassName: "system-cluster-critical"}),
			want: []string{"the policy allows batch-high, batch-low"}},
		{name: "provider's default class", pod: labelled(corev1.PodSpec{PriorityClassName: "normal"}), defaultPriority: "normal"},
		{name: "everything at once", pod: &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n", ServiceAccountName: "x", PriorityClassName: "y"}},
			want: []string{"lacks the label", "spec.nodeName", "ServiceAccount x", "priority class y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			why := PodViolations(tt.policy, tt.pod, homeID, tt.defaultPriority)
			g.Expect(why).To(HaveLen(len(tt.want)), "%q", why)
			for i, w := range tt.want {
				g.Expect(why[i]).To(ContainSubstring(w))
			}
		})
	}
}

func TestTolerationViolationsOnUpdate(t *testing.T) {
	g := NewWithT(t)
	cp := corev1.Toleration{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists}
	notReady := corev1.Toleration{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists}
	// Kept from before: an update cannot remove tolerations, and the pod
	// was already admitted with it (by an older release, say).
	g.Expect(TolerationViolations([]corev1.Toleration{cp}, []corev1.Toleration{cp, notReady})).To(BeEmpty())
	g.Expect(TolerationViolations([]corev1.Toleration{notReady}, []corev1.Toleration{notReady, cp})).To(ConsistOf(ContainSubstring("control-plane")))
}

// list is a ResourceList of name, quantity pairs.
func list(kv ...string) corev1.ResourceList {
	r := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		r[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return r
}

func TestLimitViolations(t *testing.T) {
	tests := []struct {
		name                    string
		limits, usage, requests corev1.ResourceList
		want                    []string
	}{
		{name: "no limits", requests: list("cpu", "100")},
		{name: "fits exactly", limits: list("cpu", "2", "pods", "3"), usage: list("cpu", "1500m", "pods", "2"), requests: list("cpu", "500m")},
		{name: "cpu over", limits: list("cpu", "2"), usage: list("cpu", "1800m"), requests: list("cpu", "500m"),
			want: []string{"its cpu request of 500m would bring the home cluster's cpu to 2300m, over the limit of 2 (1800m used)"}},
		{name: "pods full", limits: list("pods", "3"), usage: list("pods", "3"), requests: list(),
			want: []string{"runs 3 pods on this provider already, and the policy allows 3"}},
		{name: "no request of a limited resource", limits: list("memory", "1Gi"), usage: list(), requests: list("cpu", "1"),
			want: []string{"requests no memory, which the policy limits to 1Gi"}},
		{name: "extended resource", limits: list("nvidia.com/gpu", "1"), usage: list("nvidia.com/gpu", "1"), requests: list("nvidia.com/gpu", "1"),
			want: []string{"nvidia.com/gpu request of 1 would bring the home cluster's nvidia.com/gpu to 2, over the limit of 1"}},
		{name: "sorted by resource", limits: list("pods", "1", "cpu", "1"), usage: list("pods", "1", "cpu", "1"), requests: list("cpu", "1"),
			want: []string{"cpu request", "pods on this provider"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			why := LimitViolations(tt.limits, tt.usage, tt.requests)
			g.Expect(why).To(HaveLen(len(tt.want)), "%q", why)
			for i, w := range tt.want {
				g.Expect(why[i]).To(ContainSubstring(w))
			}
		})
	}
}
