// Package offloading is the home side of namespace offloading: it selects
// providers for each NamespaceOffloading, asks each for a twin namespace, and
// derives the status users read from what the providers answer.
package offloading

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

// providerState is what the offloading controller observed of one provider
// for one NamespaceOffloading.
type providerState struct {
	// name is the provider's name (its RemoteCluster's name).
	name string
	// selected is whether the cluster selector picks the provider.
	selected bool
	// request is the RemoteNamespace on the provider, nil when there is none.
	request *peeringv1alpha1.RemoteNamespace
	// err is why the provider could not be read or written, if so.
	err error
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
		c.Message = fmt.Sprintf("%s: %s", s.request.Status.Reason, s.request.Status.Message)
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
	case s.err != nil && stuck != "":
		c.Reason, c.Message = offloadingv1alpha1.ProviderUnreachableReason, fmt.Sprintf("%s: %v", stuck, s.err)
	case s.err != nil:
		// What we last saw stands, but the user learns why it may be stale.
		c.Message = fmt.Sprintf("%s (provider not reachable: %v)", c.Message, s.err)
	}
	meta.SetStatusCondition((*[]metav1.Condition)(conds), c)
}
