package checks

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// refusedPodsCheck is the name of the check of the pods providers refused.
const refusedPodsCheck = "pods refused by providers"

// Bounds of what refusedPods quotes: a few pods, each with the start of the
// provider's words; 'kubectl describe pod' shows them whole.
const (
	maxRefusedPods      = 5
	maxRefusalMessage   = 300
	refusalMessageTrail = "..."
)

// refusalRetryMax is how long, at most, the virtual kubelet waits before it
// tries a refused pod again (the max of its refusalRetries): what a
// provider's admin changes is noticed within it.
const refusalRetryMax = "5 minutes"

// refusedPods checks the pods bound to a virtual node whose remote pod the
// provider refused (their PodOffloadedCondition is False with reason
// RefusedByProvider): they stay Pending until the pod or the provider's
// policy changes. Like pendingPods, it says nothing when there are none.
func refusedPods(o Observed) []Check {
	type refused struct{ pod, node, words string }
	var found []refused
	var providers []string
	for _, pod := range o.Pods {
		c := podCondition(&pod, offloadingv1alpha1.PodOffloadedCondition)
		if c == nil || c.Status != corev1.ConditionFalse || c.Reason != offloadingv1alpha1.RefusedByProviderReason {
			continue
		}
		provider := strings.TrimPrefix(pod.Spec.NodeName, wellknown.VirtualNodePrefix)
		found = append(found, refused{pod: pod.Name, node: pod.Spec.NodeName, words: providerWords(provider, c.Message)})
		if provider != "" && !slices.Contains(providers, provider) {
			providers = append(providers, provider)
		}
	}
	if len(found) == 0 {
		return nil
	}
	slices.SortFunc(found, func(a, b refused) int { return strings.Compare(a.pod, b.pod) })
	slices.Sort(providers)
	var lines []string
	for _, r := range found[:min(len(found), maxRefusedPods)] {
		lines = append(lines, fmt.Sprintf("%s on %s: %s", r.pod, orDash(r.node), r.words))
	}
	if more := len(found) - maxRefusedPods; more > 0 {
		lines = append(lines, fmt.Sprintf("and %d more", more))
	}
	subject := "1 pod is Pending, refused by its provider"
	if len(found) > 1 {
		subject = fmt.Sprintf("%d pods are Pending, refused by their provider", len(found))
	}
	home := o.HomeClusterID
	if home == "" {
		home = "<home cluster ID>"
	}
	admins := "their provider"
	if len(providers) > 0 {
		admins = strings.Join(providers, ", ")
	}
	return []Check{{Name: refusedPodsCheck, Result: Failed,
		Detail: fmt.Sprintf("%s: %s", subject, strings.Join(lines, "; ")),
		Fix: fmt.Sprintf("change each pod (or its controller's template) to meet what the provider's message names; a changed pod is tried again at once. "+
			"Or ask the admin of %s to allow it: against that provider, 'stretchctl policy show %s' shows this cluster's policy and "+
			"'stretchctl policy set %s' with --limits, --priority-classes or --pod-security changes it (baseline is the loosest level a provider grants: a pod that needs privileged must change); "+
			"a refusal by another admission webhook of the provider is the admin's to lift too; the pods are tried again within %s of such a change. "+
			"'kubectl describe pod -n %s NAME' shows the provider's whole message",
			admins, home, home, refusalRetryMax, o.Namespace)}}
}

// providerWords is what the provider said in a refusal condition's message:
// the virtual kubelet writes "provider P refused the pod: WORDS; change the
// pod to meet...", and the rest is this check's Fix. A message in another
// form is quoted whole. Either is cut to maxRefusalMessage bytes.
func providerWords(provider, msg string) string {
	words := strings.TrimPrefix(msg, fmt.Sprintf("provider %s refused the pod: ", provider))
	if i := strings.LastIndex(words, "; change the pod to meet the provider's policy"); i >= 0 {
		words = words[:i]
	}
	if len(words) > maxRefusalMessage {
		words = strings.ToValidUTF8(words[:maxRefusalMessage-len(refusalMessageTrail)], "") + refusalMessageTrail
	}
	return words
}

// podCondition returns the condition of pod of type t, if any.
func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
