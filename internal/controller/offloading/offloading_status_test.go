package offloading

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

func req(phase peeringv1alpha1.RemoteNamespacePhase, reason, message string) *peeringv1alpha1.RemoteNamespace {
	return &peeringv1alpha1.RemoteNamespace{Status: peeringv1alpha1.RemoteNamespaceStatus{Phase: phase, Reason: reason, Message: message}}
}

var (
	ready    = req(peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated", "twin exists")
	failed   = req(peeringv1alpha1.RemoteNamespaceCreationFailed, peeringv1alpha1.AlreadyExistsReason, "namespace exists")
	creating = req(peeringv1alpha1.RemoteNamespaceCreating, "", "")
)

func TestComputePhase(t *testing.T) {
	tests := []struct {
		name            string
		deleting        bool
		selectorInvalid bool
		states          []providerState
		want            offloadingv1alpha1.OffloadingPhase
	}{
		{name: "deleting wins over everything", deleting: true, selectorInvalid: true, want: offloadingv1alpha1.TerminatingPhase},
		{name: "no provider at all", want: offloadingv1alpha1.NoClusterSelectedPhase},
		{name: "invalid selector", selectorInvalid: true, states: []providerState{{name: "eu", request: ready}}, want: offloadingv1alpha1.NoClusterSelectedPhase},
		{name: "none selected", states: []providerState{{name: "eu"}, {name: "us"}}, want: offloadingv1alpha1.NoClusterSelectedPhase},
		{name: "all ready", states: []providerState{{name: "eu", selected: true, request: ready}, {name: "us", selected: true, request: ready}}, want: offloadingv1alpha1.ReadyPhase},
		{name: "unselected leftovers do not count", states: []providerState{{name: "eu", selected: true, request: ready}, {name: "us", request: failed}}, want: offloadingv1alpha1.ReadyPhase},
		{name: "all failed", states: []providerState{{name: "eu", selected: true, request: failed}, {name: "us", selected: true, request: failed}}, want: offloadingv1alpha1.AllFailedPhase},
		{name: "some failed", states: []providerState{{name: "eu", selected: true, request: ready}, {name: "us", selected: true, request: failed}}, want: offloadingv1alpha1.SomeFailedPhase},
		{name: "some failed, others still creating", states: []providerState{{name: "eu", selected: true, request: creating}, {name: "us", selected: true, request: failed}}, want: offloadingv1alpha1.SomeFailedPhase},
		{name: "in progress", states: []providerState{{name: "eu", selected: true, request: ready}, {name: "us", selected: true}}, want: offloadingv1alpha1.InProgressPhase},
		{name: "unreachable provider is in progress", states: []providerState{{name: "eu", selected: true, err: errors.New("refused")}}, want: offloadingv1alpha1.InProgressPhase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(computePhase(tt.deleting, tt.selectorInvalid, tt.states)).To(Equal(tt.want))
		})
	}
}

func TestSetConditions(t *testing.T) {
	deleting := req(peeringv1alpha1.RemoteNamespaceReady, "", "")
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	tests := []struct {
		name                 string
		state                providerState
		wantRequired         metav1.ConditionStatus
		wantRequiredReason   string
		wantReady            metav1.ConditionStatus
		wantReadyReason      string
		wantMessageSubstring string
		stuck                string
	}{
		{name: "ready", state: providerState{selected: true, request: ready},
			wantRequired: metav1.ConditionTrue, wantRequiredReason: "ClusterSelected", wantReady: metav1.ConditionTrue, wantReadyReason: "NamespaceCreated", wantMessageSubstring: "twin exists"},
		{name: "failed carries the provider's reason", state: providerState{selected: true, request: failed},
			wantRequired: metav1.ConditionTrue, wantRequiredReason: "ClusterSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "CreationFailed", wantMessageSubstring: "AlreadyExists: namespace exists"},
		{name: "not yet sent", state: providerState{selected: true},
			wantRequired: metav1.ConditionTrue, wantRequiredReason: "ClusterSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "Creating", wantMessageSubstring: "being sent"},
		{name: "deselected, twin going", state: providerState{request: deleting},
			wantRequired: metav1.ConditionFalse, wantRequiredReason: "ClusterNotSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "Terminating"},
		{name: "unreachable", state: providerState{selected: true, request: creating, err: errors.New("connection refused")},
			wantRequired: metav1.ConditionTrue, wantRequiredReason: "ClusterSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "Creating", wantMessageSubstring: "provider not reachable: connection refused"},
		{name: "overdue unoffload names what is stuck", state: providerState{request: deleting, err: errors.New("connection refused")}, stuck: "provider p may still hold twin t",
			wantRequired: metav1.ConditionFalse, wantRequiredReason: "ClusterNotSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "ProviderUnreachable", wantMessageSubstring: "provider p may still hold twin t: connection refused"},
		{name: "overdue but answering is still Terminating", state: providerState{request: deleting}, stuck: "provider p may still hold twin t",
			wantRequired: metav1.ConditionFalse, wantRequiredReason: "ClusterNotSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "Terminating", wantMessageSubstring: "deleting the twin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			var conds offloadingv1alpha1.RemoteNamespaceConditions
			setConditions(&conds, tt.state, 3, tt.stuck)
			req := meta.FindStatusCondition(conds, offloadingv1alpha1.OffloadingRequiredCondition)
			g.Expect(req.Status).To(Equal(tt.wantRequired))
			g.Expect(req.Reason).To(Equal(tt.wantRequiredReason))
			rdy := meta.FindStatusCondition(conds, offloadingv1alpha1.RemoteNamespaceReadyCondition)
			g.Expect(rdy.Status).To(Equal(tt.wantReady))
			g.Expect(rdy.Reason).To(Equal(tt.wantReadyReason))
			g.Expect(rdy.Message).To(ContainSubstring(tt.wantMessageSubstring))
			g.Expect(rdy.ObservedGeneration).To(Equal(int64(3)))
		})
	}
}

func TestSetConditionsKeepsTransitionTime(t *testing.T) {
	g := NewWithT(t)
	var conds offloadingv1alpha1.RemoteNamespaceConditions
	setConditions(&conds, providerState{selected: true, request: ready}, 1, "")
	first := meta.FindStatusCondition(conds, offloadingv1alpha1.RemoteNamespaceReadyCondition).LastTransitionTime
	setConditions(&conds, providerState{selected: true, request: ready}, 2, "")
	g.Expect(meta.FindStatusCondition(conds, offloadingv1alpha1.RemoteNamespaceReadyCondition).LastTransitionTime).To(Equal(first))
}
