package checks

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/placement"
)

func strategy(o Observed, off *offloadingv1alpha1.NamespaceOffloading) Check {
	s := off.Spec.PodOffloadingStrategy
	if s == "" {
		s = offloadingv1alpha1.LocalAndRemoteStrategy
	}
	detail := map[offloadingv1alpha1.PodOffloadingStrategy]string{
		offloadingv1alpha1.LocalAndRemoteStrategy: "pods run at home or on the selected providers",
		offloadingv1alpha1.RemoteStrategy:         "pods run only on the selected providers",
		offloadingv1alpha1.LocalStrategy:          "pods stay home: only the twin namespaces are created",
	}[s]
	c := Check{Name: "pod offloading strategy", Result: Passed, Detail: fmt.Sprintf("%s: %s", s, detail)}
	if pending := pendingNames(o.Pods); s == offloadingv1alpha1.LocalStrategy && len(pending) > 0 {
		c.Result = Warning
		c.Detail += fmt.Sprintf("; pods %s are Pending at home", strings.Join(pending, ", "))
		c.Fix = fmt.Sprintf(`if they should run on providers: kubectl patch namespaceoffloading offloading -n %s --type merge -p '{"spec":{"podOffloadingStrategy":"LocalAndRemote"}}', then recreate them`, off.Namespace)
	}
	return c
}

func pendingNames(pods []corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		if p.Status.Phase == corev1.PodPending && p.Spec.NodeName == "" {
			names = append(names, p.Name)
		}
	}
	return names
}

// pendingPods checks each Pending pod: terms that contradict, creation before
// the namespace was ready, and the scheduler's last word.
func pendingPods(o Observed, off *offloadingv1alpha1.NamespaceOffloading) []Check {
	var checks []Check
	labelled := o.NamespaceLabels[wellknown.SchedulingEnabledLabel] == "true"
	remote := off.Spec.PodOffloadingStrategy != offloadingv1alpha1.LocalStrategy
	ready := readySince(off)
	for _, pod := range o.Pods {
		if pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" {
			continue
		}
		c := Check{Name: "pending pod " + pod.Name, Result: Warning, Detail: "Pending, not scheduled yet"}
		if msg := lastFailedScheduling(o.Events, pod.Name); msg != "" {
			c.Detail = "the scheduler says: " + msg
		}
		terms := requiredTerms(&pod)
		if len(terms) > 0 && allContradict(terms) {
			var why []string
			for i, t := range terms {
				why = append(why, fmt.Sprintf("term %d: %s", i, strings.Join(placement.Contradiction(t), " contradicts ")))
			}
			c.Result = Failed
			c.Detail = "no node can ever match its node affinity: " + strings.Join(why, "; ") + "; " + c.Detail
			c.Fix = "fix the pod's own nodeAffinity or the NamespaceOffloading's clusterSelector so that they can agree"
		} else if why := createdEarly(&pod, off, ready); remote && why != "" {
			c.Result = Failed
			c.Detail = "it was not placed by Stretch: " + why + ": " + c.Detail
			c.Fix = recreate(&pod)
		} else if remote && labelled && !tolerates(&pod) {
			c.Result = Failed
			c.Detail = "it was not placed by Stretch: created after the offloading was Ready, but without the virtual-node toleration that Stretch's webhook adds (was the webhook configuration missing?): " + c.Detail
			c.Fix = "check that stretch-controller-manager serves its webhooks, then " + recreate(&pod)
		} else {
			c.Fix = "see the scheduler's message; kubectl describe pod -n " + pod.Namespace + " " + pod.Name
		}
		checks = append(checks, c)
	}
	return checks
}

// recreate says how to have the pod created again, now that Stretch would
// place it: by its controller, if it has one.
func recreate(pod *corev1.Pod) string {
	if owner := metav1.GetControllerOf(pod); owner != nil {
		return fmt.Sprintf("delete it so that its controller, %s %s, creates it again: kubectl delete pod -n %s %s", owner.Kind, owner.Name, pod.Namespace, pod.Name)
	}
	return fmt.Sprintf("delete it and create it again (no controller does it for this pod): kubectl delete pod -n %s %s, then create it as before", pod.Namespace, pod.Name)
}

// readySince is when, as far as the status tells, the offloading could place
// pods: the earliest LastTransitionTime of the selected providers' Ready
// conditions that are True now. That is each provider's latest change to
// Ready, not the first time its twin was Ready: a twin that was Ready, then
// not, then Ready again moves it later. Zero when none is Ready.
func readySince(off *offloadingv1alpha1.NamespaceOffloading) time.Time {
	var since time.Time
	for _, name := range off.Status.SelectedProviders() {
		if r := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition); r != nil && r.Status == metav1.ConditionTrue &&
			(since.IsZero() || r.LastTransitionTime.Before(&metav1.Time{Time: since})) {
			since = r.LastTransitionTime.Time
		}
	}
	return since
}

// createdEarly says why a pod was created before Stretch could place it, or
// "". A pod with the virtual-node toleration that Stretch's webhook adds was
// placed by the webhook, whenever it was created (readySince moves later when
// a twin becomes Ready again, or another provider is selected). For a pod
// without it, the creation time tells why it lacks it: compared with the time
// the offloading became Ready (the webhook turns pods away before that), or,
// when no provider is Ready, with the NamespaceOffloading's creation. Both
// have a resolution of a second: a pod created within that second is early.
func createdEarly(pod *corev1.Pod, off *offloadingv1alpha1.NamespaceOffloading, ready time.Time) string {
	if tolerates(pod) {
		return ""
	}
	event := "the offloading became Ready"
	if ready.IsZero() {
		ready, event = off.CreationTimestamp.Time, "the NamespaceOffloading was created"
	}
	created := pod.CreationTimestamp.Time
	if ready.IsZero() || created.IsZero() || created.After(ready) {
		return ""
	}
	const lacks = ", and it lacks the virtual-node toleration that Stretch's webhook adds"
	if created.Equal(ready) {
		return fmt.Sprintf("it was created at %s, the second %s%s", created.UTC().Format(time.RFC3339), event, lacks)
	}
	return fmt.Sprintf("it was created at %s, before %s at %s%s", created.UTC().Format(time.RFC3339), event, ready.UTC().Format(time.RFC3339), lacks)
}

func requiredTerms(pod *corev1.Pod) []corev1.NodeSelectorTerm {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

func allContradict(terms []corev1.NodeSelectorTerm) bool {
	for _, t := range terms {
		if placement.Contradiction(t) == nil {
			return false
		}
	}
	return true
}

func tolerates(pod *corev1.Pod) bool {
	for _, t := range pod.Spec.Tolerations {
		if t.Key == wellknown.VirtualNodeTaintKey || t.Key == "" && t.Operator == corev1.TolerationOpExists {
			return true
		}
	}
	return false
}

// lastFailedScheduling is the note of the newest FailedScheduling event
// about the pod.
func lastFailedScheduling(events []eventsv1.Event, pod string) string {
	var newest *eventsv1.Event
	for i := range events {
		e := &events[i]
		if e.Reason != "FailedScheduling" || e.Regarding.Kind != "Pod" || e.Regarding.Name != pod {
			continue
		}
		if newest == nil || eventTime(e).After(eventTime(newest)) {
			newest = e
		}
	}
	if newest == nil {
		return ""
	}
	return newest.Note
}

func eventTime(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	default:
		return e.DeprecatedLastTimestamp.Time
	}
}
