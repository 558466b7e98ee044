package tenancy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// What a pod in a twin may not do whatever the policy: Pod Security
// Admission covers the host and privilege escalations (see
// PodSecurityLabels); these rules cover what it does not, all of which would
// let a home cluster reach past its twins into the provider's own nodes,
// identities and scheduling.

// controlPlaneTaints are the taints that keep workloads off a cluster's
// control plane; a home cluster's pods may not tolerate them.
var controlPlaneTaints = []string{"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"}

// twinServiceAccount is the only ServiceAccount a home cluster's pod runs as:
// the twin's default one, which Stretch grants nothing (the pod's own token
// is the home cluster's, mounted from a Secret).
const twinServiceAccount = "default"

// PodViolations says why the rules of a twin refuse a pod of home cluster
// home, in a few words each; none when they allow it. p is the home
// cluster's TenantPolicy (nil: none, so the defaults), and defaultPriority
// the provider's global default priority class ("" when it has none), which
// the API server gives pods that name none.
func PodViolations(p *peeringv1alpha1.TenantPolicy, pod *corev1.Pod, home, defaultPriority string) []string {
	var why []string
	switch got, ok := pod.Labels[wellknown.OriginClusterIDLabel]; {
	case !ok:
		why = append(why, fmt.Sprintf("it lacks the label %s=%s, which counts it against the home cluster's limits", wellknown.OriginClusterIDLabel, home))
	case got != home:
		why = append(why, fmt.Sprintf("its label %s=%s names another home cluster than the twin's (%s)", wellknown.OriginClusterIDLabel, got, home))
	}
	if pod.Spec.NodeName != "" {
		why = append(why, fmt.Sprintf("it names node %s in spec.nodeName: the provider's scheduler places pods", pod.Spec.NodeName))
	}
	why = append(why, TolerationViolations(nil, pod.Spec.Tolerations)...)
	if sa := pod.Spec.ServiceAccountName; sa != "" && sa != twinServiceAccount {
		why = append(why, fmt.Sprintf("it runs as ServiceAccount %s: pods run as the twin's %s ServiceAccount", sa, twinServiceAccount))
	}
	if pc := pod.Spec.PriorityClassName; pc != "" && pc != defaultPriority && !slices.Contains(priorityClasses(p), pc) {
		why = append(why, fmt.Sprintf("it names priority class %s, and the policy allows %s", pc, orNone(priorityClasses(p))))
	}
	return why
}

// TolerationViolations says which tolerations, of those in tolerations that
// are not in before (an update may only add some), tolerate the provider's
// control-plane taints, or every taint.
func TolerationViolations(before, tolerations []corev1.Toleration) []string {
	var why []string
	for _, t := range tolerations {
		if slices.ContainsFunc(before, func(b corev1.Toleration) bool { return b.MatchToleration(&t) }) {
			continue
		}
		switch {
		case t.Key == "" && t.Operator == corev1.TolerationOpExists:
			why = append(why, "it tolerates every taint (a toleration with operator Exists and no key), the control plane's included")
		case slices.Contains(controlPlaneTaints, t.Key):
			why = append(why, fmt.Sprintf("it tolerates the control-plane taint %s", t.Key))
		}
	}
	return why
}

func priorityClasses(p *peeringv1alpha1.TenantPolicy) []string {
	if p == nil {
		return nil
	}
	return p.Spec.PriorityClasses
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	s := slices.Sorted(slices.Values(names))
	return strings.Join(s, ", ")
}

// LimitViolations says which of limits a new pod that requests requests
// would go over, the home cluster's pods using usage already (pods
// included); and which limited resources the pod does not request at all,
// since a pod that requests nothing of a limited resource could use any of
// it (as with a ResourceQuota, it must say).
func LimitViolations(limits, usage, requests corev1.ResourceList) []string {
	var why []string
	for _, name := range slices.Sorted(maps.Keys(limits)) {
		limit := limits[name]
		want := requests[name]
		if name == corev1.ResourcePods {
			want = *resource.NewQuantity(1, resource.DecimalSI)
		} else if _, ok := requests[name]; !ok {
			why = append(why, fmt.Sprintf("it requests no %s, which the policy limits to %s: set resources.requests.%s on its containers", name, limit.String(), name))
			continue
		}
		used := usage[name]
		total := used.DeepCopy()
		total.Add(want)
		switch {
		case total.Cmp(limit) <= 0:
		case name == corev1.ResourcePods:
			why = append(why, fmt.Sprintf("the home cluster runs %s pods on this provider already, and the policy allows %s", used.String(), limit.String()))
		default:
			why = append(why, fmt.Sprintf("its %s request of %s would bring the home cluster's %s to %s, over the limit of %s (%s used)",
				name, want.String(), name, total.String(), limit.String(), used.String()))
		}
	}
	return why
}
