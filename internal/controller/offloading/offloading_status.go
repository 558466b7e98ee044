// Package offloading is the home side of namespace offloading: it selects
// providers for each NamespaceOffloading, asks each for a twin namespace, and
// derives the status users read from what the providers answer.
package offloading

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// providerState is what the offloading controller observed of one provider
// for one NamespaceOffloading.
type providerState struct {
	// name is the provider's name (its RemoteCluster's name).
	name string
	// clusterID is the provider's cluster ID, its key in the registry.
	clusterID string
	// reachable is whether the provider's RemoteCluster says it answers
	// (APIReachable is True).
	reachable bool
	// selected is whether the cluster selector picks the provider.
	selected bool
	// request is the RemoteNamespace on the provider, nil when there is none.
	request *peeringv1alpha1.RemoteNamespace
	// err is why the provider could not be read or written, if so.
	err error
	// volumes are the home claims whose copies (and data) the provider
	// holds in the twin, each as "claim (PersistentVolume name)"; while
	// there are, an unforced unoffload keeps the twin (design §4.23).
	volumes []string
	// keepTwin is set when the twin request stays for volumes.
	keepTwin bool
	// unseen is set while the provider is unread within its grace (see
	// unreadGrace): last, what the status last said of its twin, stands.
	unseen bool
	last   twinState
}

// twinState summarises the Ready condition of a provider's twin.
type twinState int

const (
	twinAbsent twinState = iota
	twinCreating
	twinReady
	twinFailed
	twinTerminating
)

func (s providerState) twin() twinState {
	switch {
	case s.unseen:
		return s.last
	case s.request == nil:
		return twinAbsent
	case !s.request.DeletionTimestamp.IsZero() || s.request.Status.Phase == peeringv1alpha1.RemoteNamespaceTerminating:
		return twinTerminating
	case s.request.Status.Phase == peeringv1alpha1.RemoteNamespaceReady:
		return twinReady
	case s.request.Status.Phase == peeringv1alpha1.RemoteNamespaceCreationFailed:
		return twinFailed
	default:
		return twinCreating
	}
}

// lastTwin is the twin state that a provider's conditions last reported.
func lastTwin(conds offloadingv1alpha1.RemoteNamespaceConditions) twinState {
	c := meta.FindStatusCondition(conds, offloadingv1alpha1.RemoteNamespaceReadyCondition)
	switch {
	case c == nil:
		return twinAbsent
	case c.Status == metav1.ConditionTrue:
		return twinReady
	case c.Reason == offloadingv1alpha1.CreationFailedReason:
		return twinFailed
	case offloadingv1alpha1.TwinDeleting(c.Reason):
		return twinTerminating
	default:
		return twinCreating
	}
}

// computeStatus derives the whole status from what was observed. overdue
// is whether the unoffload has waited longer than timeout.
func computeStatus(off *offloadingv1alpha1.NamespaceOffloading, deleting, overdue, selectorInvalid bool, twin string, timeout time.Duration, states []providerState) offloadingv1alpha1.NamespaceOffloadingStatus {
	st := offloadingv1alpha1.NamespaceOffloadingStatus{
		OffloadingPhase:     computePhase(deleting, selectorInvalid, states),
		RemoteNamespaceName: twin,
		ObservedGeneration:  off.Generation,
	}
	for _, s := range states {
		if !s.selected && s.request == nil && s.err == nil {
			continue
		}
		if st.RemoteNamespacesConditions == nil {
			st.RemoteNamespacesConditions = map[string]offloadingv1alpha1.RemoteNamespaceConditions{}
		}
		conds := off.Status.RemoteNamespacesConditions[s.name]
		if s.unseen {
			if conds != nil {
				st.RemoteNamespacesConditions[s.name] = conds
				continue
			}
			s.err = nil // nothing known of it, and nothing wrong
		}
		stuck := ""
		if overdue {
			stuck = blocked(s, off.Namespace, twin, timeout)
		}
		setConditions(&conds, s, off.Generation, stuck)
		st.RemoteNamespacesConditions[s.name] = conds
	}
	return st
}

// computePhase derives the phase: the first that applies of Terminating,
// NoClusterSelected, Ready, AllFailed, SomeFailed and InProgress.
func computePhase(deleting, selectorInvalid bool, states []providerState) offloadingv1alpha1.OffloadingPhase {
	if deleting {
		return offloadingv1alpha1.TerminatingPhase
	}
	selected, ready, failed := 0, 0, 0
	for _, s := range states {
		if !s.selected {
			continue
		}
		selected++
		switch s.twin() {
		case twinReady:
			ready++
		case twinFailed:
			failed++
		}
	}
	switch {
	case selectorInvalid || selected == 0:
		return offloadingv1alpha1.NoClusterSelectedPhase
	case ready == selected:
		return offloadingv1alpha1.ReadyPhase
	case failed == selected:
		return offloadingv1alpha1.AllFailedPhase
	case failed > 0:
		return offloadingv1alpha1.SomeFailedPhase
	default:
		return offloadingv1alpha1.InProgressPhase
	}
}

// setConditions updates the provider's conditions in place, keeping the
// transition times of those that did not change. stuck, when not empty, is
// why an overdue unoffload still waits for this provider.
func setConditions(conds *offloadingv1alpha1.RemoteNamespaceConditions, s providerState, generation int64, stuck string) {
	setOffloadingRequired(conds, s.selected, generation)
	setReady(conds, s, generation, stuck)
}

func setOffloadingRequired(conds *offloadingv1alpha1.RemoteNamespaceConditions, selected bool, generation int64) {
	c := metav1.Condition{Type: offloadingv1alpha1.OffloadingRequiredCondition, ObservedGeneration: generation,
		Status: metav1.ConditionTrue, Reason: offloadingv1alpha1.ClusterSelectedReason, Message: "the cluster selector selects this provider"}
	if !selected {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, offloadingv1alpha1.ClusterNotSelectedReason, "the cluster selector does not select this provider"
	}
	meta.SetStatusCondition((*[]metav1.Condition)(conds), c)
}

func setReady(conds *offloadingv1alpha1.RemoteNamespaceConditions, s providerState, generation int64, stuck string) {
	c := metav1.Condition{Type: offloadingv1alpha1.RemoteNamespaceReadyCondition, ObservedGeneration: generation, Status: metav1.ConditionFalse}
	switch s.twin() {
	case twinReady:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, offloadingv1alpha1.NamespaceCreatedReason, s.request.Status.Message
	case twinFailed:
		c.Reason = offloadingv1alpha1.CreationFailedReason
		c.Message = offloadingv1alpha1.CreationFailedMessage(s.request.Status.Reason, s.request.Status.Message)
	case twinTerminating:
		c.Reason, c.Message = offloadingv1alpha1.TerminatingReason, "the provider is deleting the twin namespace"
	case twinCreating:
		c.Reason, c.Message = offloadingv1alpha1.CreatingReason, "the provider is creating the twin namespace"
		if s.request.Status.Message != "" {
			c.Message = s.request.Status.Message
		}
	default:
		c.Reason, c.Message = offloadingv1alpha1.CreatingReason, "the request for a twin namespace is being sent to the provider"
	}
	switch {
	case s.keepTwin && s.request != nil && s.request.DeletionTimestamp.IsZero():
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, offloadingv1alpha1.RemoteVolumesHeldReason, volumesHeld(s, s.request.Spec.HomeNamespace, s.request.Spec.RemoteNamespaceName)
	case s.err != nil && stuck != "":
		c.Reason, c.Message = offloadingv1alpha1.ProviderUnreachableReason, fmt.Sprintf("%s: %v", stuck, s.err)
	case s.request != nil && stuck != "":
		c.Reason, c.Message = offloadingv1alpha1.TwinNotDeletedReason, stuck
	case s.err != nil:
		// What we last saw stands, but the user learns why it may be stale.
		c.Message = offloadingv1alpha1.UnreachableMessage(c.Message, s.err)
	}
	meta.SetStatusCondition((*[]metav1.Condition)(conds), c)
}

// holding sorts out the providers an unoffload still waits for (held): those
// that could not be read or written, and those that still hold a twin
// request. force releases the first at once, and the others once the
// unoffload is overdue: a provider that answers is given the timeout to
// delete its twin.
func holding(states []providerState, force, overdue bool) (held, released []providerState) {
	for _, s := range states {
		switch {
		case s.unseen:
			// Its request is not known yet, and it answers: it is
			// waited for, forced or not.
			held = append(held, s)
		case s.err != nil && force, s.err == nil && s.request != nil && force && overdue:
			released = append(released, s)
		case s.err != nil, s.request != nil:
			held = append(held, s)
		}
	}
	return held, released
}

// stateErrors returns the providers' errors.
func stateErrors(states []providerState) []error {
	errs := make([]error, len(states))
	for i, s := range states {
		errs[i] = s.err
	}
	return errs
}

// names returns the providers' names.
func names(states []providerState) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = s.name
	}
	return out
}

// blocked says, for the provider's Ready condition, why an overdue unoffload
// still waits for it and what to do; empty when it does not wait for it.
func blocked(s providerState, namespace, twin string, timeout time.Duration) string {
	switch {
	case s.keepTwin && s.err == nil:
		return volumesHeld(s, namespace, twin)
	case s.err != nil:
		// setReady appends the provider's error.
		return fmt.Sprintf("provider %s does not answer and may still hold twin namespace %s with everything in it; when it is gone for good, %s",
			s.name, twin, forceHint(namespace))
	case s.request != nil:
		return fmt.Sprintf("provider %s answers but has not deleted twin namespace %s within %s: its request RemoteNamespace %s/%s is still there (%s). "+
			"Is Stretch's controller-manager running on provider %s? It deletes the twin, then the request. If it runs, the twin may be stuck Terminating: "+
			"'kubectl get namespace %s -o yaml' on provider %s shows what holds it. To finish without waiting, %s; the twin and its request then stay on provider %s until Stretch deletes them there",
			s.name, twin, timeout, s.request.Namespace, s.request.Name, reported(s.request), s.name, twin, s.name, forceHint(namespace), s.name)
	}
	return ""
}

// volumesHeld says, for the provider's Ready condition and the event, that
// an unoffload keeps its twin for the copies of claims it holds, and how
// to finish.
func volumesHeld(s providerState, namespace, twin string) string {
	return fmt.Sprintf("provider %s keeps twin namespace %s: it holds the copies of claims %s of namespace %s, with their data, which Stretch deletes only with your own delete. "+
		"Delete those claims at home (first scale their pods' owners to 0; PersistentVolumes left Released by reclaim policy Retain too): their copies go with them and the unoffload finishes; "+
		"or, to delete the twin with the claims and their data, %s",
		s.name, twin, strings.Join(s.volumes, ", "), namespace, forceHint(namespace))
}

// forceHint says how to finish an unoffload without the providers that do
// not answer.
func forceHint(namespace string) string {
	return fmt.Sprintf("run 'stretchctl unoffload namespace %s --force' (or: kubectl annotate namespaceoffloading %s -n %s %s=true)",
		namespace, wellknown.NamespaceOffloadingName, namespace, wellknown.ForceUnoffloadAnnotation)
}

// reported says what the provider last wrote in a request's status.
func reported(rn *peeringv1alpha1.RemoteNamespace) string {
	if rn.Status.Phase == "" {
		return "the provider never reported on it"
	}
	return fmt.Sprintf("the provider last reported phase %s, reason %s", rn.Status.Phase, rn.Status.Reason)
}

// blockedNote is the note of the event that says an overdue unoffload is
// blocked: the fix first, so that cutting a long list of providers to the
// events API's limit never cuts it, then what each provider may still hold.
func blockedNote(namespace string, timeout time.Duration, held []providerState, twin string) string {
	return note(fmt.Sprintf("unoffload of namespace %s is blocked after %s; to finish without the providers it waits for, %s. Each provider's condition in the status of NamespaceOffloading %s/%s says why: %s",
		namespace, timeout, forceHint(namespace), namespace, wellknown.NamespaceOffloadingName, blockedSummary(held, twin)))
}

// blockedSummary names, for an event, what each provider an overdue
// unoffload waits for may still hold.
func blockedSummary(held []providerState, twin string) string {
	parts := make([]string, len(held))
	for i, s := range held {
		if s.unseen {
			parts[i] = fmt.Sprintf("provider %s, which answers, has not been read yet since this controller started", s.name)
			continue
		}
		if s.err != nil {
			parts[i] = fmt.Sprintf("provider %s does not answer and may still hold twin namespace %s", s.name, twin)
			continue
		}
		if s.keepTwin {
			parts[i] = fmt.Sprintf("provider %s keeps twin namespace %s for the copies of claims %s", s.name, twin, strings.Join(s.volumes, ", "))
			continue
		}
		parts[i] = fmt.Sprintf("provider %s answers but has not deleted twin namespace %s (its request RemoteNamespace %s/%s is still there: is Stretch running on provider %s?)",
			s.name, twin, s.request.Namespace, s.request.Name, s.name)
	}
	return strings.Join(parts, "; ")
}

// leftSummary names, for an event, what a forced unoffload leaves on each
// provider it did not wait for.
func leftSummary(released []providerState, twin string) string {
	parts := make([]string, len(released))
	for i, s := range released {
		if s.err != nil {
			parts[i] = fmt.Sprintf("provider %s did not answer: its twin namespace %s, and its request if it has one, are deleted when it answers again while still peered", s.name, twin)
			continue
		}
		parts[i] = fmt.Sprintf("provider %s answered but had not deleted twin namespace %s: the twin and its withdrawn request RemoteNamespace %s/%s stay there until Stretch deletes them on provider %s (or delete them there by hand)",
			s.name, twin, s.request.Namespace, s.request.Name, s.name)
	}
	return strings.Join(parts, "; ")
}

// noteLimit is the longest note the events API accepts.
const noteLimit = 1024

// note cuts msg to what the events API accepts: a longer note loses the
// whole event.
func note(msg string) string {
	if len(msg) <= noteLimit {
		return msg
	}
	return strings.ToValidUTF8(msg[:noteLimit-3], "") + "..."
}
