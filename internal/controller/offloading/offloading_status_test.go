package offloading

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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
	kept := req(peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated", "twin exists")
	kept.Spec = peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: "ns", RemoteNamespaceName: "t"}
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
		{name: "overdue, answering but keeping its request", state: providerState{request: deleting}, stuck: "provider p answers but has not deleted twin t",
			wantRequired: metav1.ConditionFalse, wantRequiredReason: "ClusterNotSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "TwinNotDeleted", wantMessageSubstring: "provider p answers but has not deleted twin t"},
		{name: "deleting, not overdue, is Terminating", state: providerState{request: deleting},
			wantRequired: metav1.ConditionFalse, wantRequiredReason: "ClusterNotSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "Terminating", wantMessageSubstring: "deleting the twin"},
		{name: "unoffload keeping the twin for claims names them and the fix", state: providerState{name: "p", request: kept, keepTwin: true, volumes: []string{"a (PersistentVolume pvc-1, Bound)"}},
			wantRequired: metav1.ConditionFalse, wantRequiredReason: "ClusterNotSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "RemoteVolumesHeld",
			wantMessageSubstring: "provider p keeps twin namespace t: it holds the copies of claims a (PersistentVolume pvc-1, Bound) of namespace ns"},
		{name: "overdue, still keeping the twin for claims", state: providerState{name: "p", request: kept, keepTwin: true, volumes: []string{"a"}}, stuck: "stuck",
			wantRequired: metav1.ConditionFalse, wantRequiredReason: "ClusterNotSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "RemoteVolumesHeld", wantMessageSubstring: "claims a of namespace ns"},
		{name: "claims no longer keep a request already withdrawn", state: providerState{name: "p", request: deleting, keepTwin: true, volumes: []string{"a"}},
			wantRequired: metav1.ConditionFalse, wantRequiredReason: "ClusterNotSelected", wantReady: metav1.ConditionFalse, wantReadyReason: "Terminating"},
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

func TestHolding(t *testing.T) {
	down := errors.New("connection refused")
	withdrawn := req(peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated", "")
	tests := []struct {
		name         string
		states       []providerState
		force        bool
		overdue      bool
		wantHeld     []string
		wantReleased []string
	}{
		{name: "all done", states: []providerState{{name: "eu"}, {name: "us"}}},
		{name: "a request still there holds", states: []providerState{{name: "eu", request: withdrawn}, {name: "us"}}, wantHeld: []string{"eu"}},
		{name: "a provider that does not answer holds", states: []providerState{{name: "eu", err: down}}, wantHeld: []string{"eu"}},
		{name: "overdue alone releases nothing", overdue: true, states: []providerState{{name: "eu", err: down}, {name: "us", request: withdrawn}},
			wantHeld: []string{"eu", "us"}},
		{name: "force releases one that does not answer at once", force: true, states: []providerState{{name: "eu", err: down}, {name: "us", request: withdrawn}},
			wantHeld: []string{"us"}, wantReleased: []string{"eu"}},
		{name: "force releases one that answers once overdue", force: true, overdue: true, states: []providerState{{name: "eu", err: down}, {name: "us", request: withdrawn}},
			wantReleased: []string{"eu", "us"}},
		{name: "one not read yet, which answers, is waited for even forced", force: true, overdue: true, states: []providerState{{name: "eu", err: down, unseen: true}},
			wantHeld: []string{"eu"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			held, released := holding(tt.states, tt.force, tt.overdue)
			g.Expect(names(held)).To(ConsistOf(tt.wantHeld))
			g.Expect(names(released)).To(ConsistOf(tt.wantReleased))
		})
	}
}

func TestBlockedAndLeftMessages(t *testing.T) {
	const twin = "shop-0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"
	rn := req(peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated", "")
	rn.Namespace, rn.Name = "stretch-tenant-0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a", "shop"
	down := providerState{name: "eu", err: errors.New("connection refused")}
	keeping := providerState{name: "us", request: rn}
	var many []providerState
	for i := range 20 {
		s := keeping
		s.name = fmt.Sprintf("provider-%d-in-a-region-with-a-rather-long-name", i)
		many = append(many, s)
	}
	tests := []struct {
		name string
		got  string
		want []string
	}{
		{name: "status, does not answer", got: blocked(down, "shop", twin, time.Minute),
			want: []string{"provider eu does not answer", "twin namespace " + twin, "stretchctl unoffload namespace shop --force"}},
		{name: "status, answers but keeps the request", got: blocked(keeping, "shop", twin, time.Minute),
			want: []string{"provider us answers but has not deleted twin namespace " + twin + " within 1m0s",
				"its request RemoteNamespace " + rn.Namespace + "/shop is still there (the provider last reported phase Ready, reason NamespaceCreated)",
				"Is Stretch's controller-manager running on provider us?", "stuck Terminating", "kubectl get namespace " + twin + " -o yaml",
				"stretchctl unoffload namespace shop --force", "stay on provider us"}},
		{name: "status, nothing held", got: blocked(providerState{name: "eu"}, "shop", twin, time.Minute)},
		{name: "event, blocked", got: blockedSummary([]providerState{down, keeping}, twin),
			want: []string{"provider eu does not answer and may still hold twin namespace " + twin,
				"provider us answers but has not deleted twin namespace " + twin + " (its request RemoteNamespace " + rn.Namespace + "/shop is still there: is Stretch running on provider us?)"}},
		{name: "event, blocked by many providers with long names: the fix survives the cut", got: blockedNote("shop", time.Minute, many, twin),
			want: []string{"unoffload of namespace shop is blocked after 1m0s; to finish without the providers it waits for, " + forceHint("shop"), "provider " + many[0].name, "..."}},
		{name: "event, left behind", got: leftSummary([]providerState{down, keeping}, twin),
			want: []string{"provider eu did not answer: its twin namespace " + twin,
				"provider us answered but had not deleted twin namespace " + twin + ": the twin and its withdrawn request RemoteNamespace " + rn.Namespace + "/shop stay there"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			if len(tt.want) == 0 {
				g.Expect(tt.got).To(BeEmpty())
			}
			for _, w := range tt.want {
				g.Expect(tt.got).To(ContainSubstring(w))
			}
		})
	}
}

func TestNote(t *testing.T) {
	tests := []struct {
		name    string
		msg     string
		wantLen int
	}{
		{name: "short", msg: "blocked", wantLen: 7},
		{name: "at the limit", msg: strings.Repeat("a", 1024), wantLen: 1024},
		{name: "over the limit", msg: strings.Repeat("a", 2000), wantLen: 1024},
		{name: "a rune cut in two is dropped", msg: strings.Repeat("a", 1020) + "é" + strings.Repeat("b", 10), wantLen: 1023},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := note(tt.msg)
			g.Expect(got).To(HaveLen(tt.wantLen))
			g.Expect(utf8.ValidString(got)).To(BeTrue())
		})
	}
}

func TestMarkUnseen(t *testing.T) {
	readyConds := offloadingv1alpha1.RemoteNamespaceConditions{{Type: offloadingv1alpha1.RemoteNamespaceReadyCondition, Status: metav1.ConditionTrue, Reason: "NamespaceCreated"}}
	notListed := unusable{error: errors.New("not listed yet"), unread: true}
	tests := []struct {
		name       string
		reachable  bool          // what the provider's RemoteCluster says
		since      time.Duration // how long ago the provider was first unread; 0: never
		err        error
		wantUnseen bool
	}{
		{name: "unread, answering, within the grace", reachable: true, since: time.Second, err: notListed, wantUnseen: true},
		{name: "unread past the grace", reachable: true, since: unreadGrace + time.Second, err: notListed},
		{name: "unread and not answering, or never probed", since: time.Second, err: notListed},
		{name: "read, its probe failing", reachable: true, since: time.Second, err: unusable{error: errors.New("probe failed")}},
		{name: "read, a request failing", reachable: true, since: time.Second, err: errors.New("timeout")},
		{name: "read", reachable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			r := &Reconciler{}
			if tt.since > 0 {
				r.unread.Store("id", time.Now().Add(-tt.since))
			}
			states := []providerState{{name: "eu", clusterID: "id", reachable: tt.reachable, selected: true, err: tt.err}}
			last := offloadingv1alpha1.NamespaceOffloadingStatus{RemoteNamespacesConditions: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"eu": readyConds}}
			left := r.markUnseen(states, last)
			g.Expect(states[0].unseen).To(Equal(tt.wantUnseen))
			if !tt.wantUnseen {
				g.Expect(left).To(BeZero())
				return
			}
			g.Expect(left).To(BeNumerically("~", unreadGrace-tt.since, time.Second))
			g.Expect(states[0].twin()).To(Equal(twinReady), "what the status last said stands")
		})
	}
}

// TestComputeStatusKeepsTheCallersOrder: the caller's states stay in the
// order of its peers.
func TestComputeStatusKeepsTheCallersOrder(t *testing.T) {
	g := NewWithT(t)
	states := []providerState{{name: "us", selected: true}, {name: "eu", selected: true}}
	st := computeStatus(&offloadingv1alpha1.NamespaceOffloading{}, false, false, false, "twin", time.Minute, states)
	g.Expect(names(states)).To(Equal([]string{"us", "eu"}))
	g.Expect(st.RemoteNamespacesConditions).To(HaveKey("eu"))
	g.Expect(st.RemoteNamespacesConditions).To(HaveKey("us"))
}

// TestUnseenProviderKeepsItsStatus is a home manager just started: its
// status is not recomputed from a provider it has not read yet.
func TestUnseenProviderKeepsItsStatus(t *testing.T) {
	g := NewWithT(t)
	off := &offloadingv1alpha1.NamespaceOffloading{}
	off.Namespace, off.Generation = "shop", 1
	states := []providerState{{name: "eu", selected: true, request: ready}}
	off.Status = computeStatus(off, false, false, false, "twin", time.Minute, states)
	g.Expect(off.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))

	unseen := []providerState{{name: "eu", selected: true, err: errors.New("not listed yet"), unseen: true, last: lastTwin(off.Status.RemoteNamespacesConditions["eu"])}}
	g.Expect(computeStatus(off, false, false, false, "twin", time.Minute, unseen)).To(Equal(off.Status))

	// Never reported on: it is being sent, and nothing is said to be wrong.
	fresh := &offloadingv1alpha1.NamespaceOffloading{}
	st := computeStatus(fresh, false, false, false, "twin", time.Minute, []providerState{{name: "eu", selected: true, err: errors.New("not listed yet"), unseen: true}})
	g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.InProgressPhase))
	c := meta.FindStatusCondition(st.RemoteNamespacesConditions["eu"], offloadingv1alpha1.RemoteNamespaceReadyCondition)
	g.Expect(c.Message).NotTo(ContainSubstring("not listed yet"))
}

func TestLastTwin(t *testing.T) {
	cond := func(status metav1.ConditionStatus, reason string) offloadingv1alpha1.RemoteNamespaceConditions {
		return offloadingv1alpha1.RemoteNamespaceConditions{{Type: offloadingv1alpha1.RemoteNamespaceReadyCondition, Status: status, Reason: reason}}
	}
	tests := []struct {
		name  string
		conds offloadingv1alpha1.RemoteNamespaceConditions
		want  twinState
	}{
		{name: "never reported", want: twinAbsent},
		{name: "ready", conds: cond(metav1.ConditionTrue, offloadingv1alpha1.NamespaceCreatedReason), want: twinReady},
		{name: "failed", conds: cond(metav1.ConditionFalse, offloadingv1alpha1.CreationFailedReason), want: twinFailed},
		{name: "terminating", conds: cond(metav1.ConditionFalse, offloadingv1alpha1.TerminatingReason), want: twinTerminating},
		{name: "not deleted", conds: cond(metav1.ConditionFalse, offloadingv1alpha1.TwinNotDeletedReason), want: twinTerminating},
		{name: "creating", conds: cond(metav1.ConditionFalse, offloadingv1alpha1.CreatingReason), want: twinCreating},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(lastTwin(tt.conds)).To(Equal(tt.want))
		})
	}
}

func TestSooner(t *testing.T) {
	tests := []struct{ a, b, want time.Duration }{
		{0, 0, 0},
		{time.Second, 0, time.Second},
		{0, time.Second, time.Second},
		{time.Second, time.Minute, time.Second},
		{time.Minute, time.Second, time.Second},
		{-time.Second, time.Second, time.Second},
	}
	for _, tt := range tests {
		NewWithT(t).Expect(sooner(tt.a, tt.b)).To(Equal(tt.want), "sooner(%s, %s)", tt.a, tt.b)
	}
}
