package checks

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/placement"
)

const homeID = "3831061c-7d69-4f16-bcd7-5ad9a4104b36"

// t0 is a whole second, as API times are.
var t0 = time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)

func createdAt(p corev1.Pod, t time.Time) corev1.Pod {
	p.CreationTimestamp = metav1.NewTime(t)
	return p
}

func virtualNode(name string, labels map[string]string) corev1.Node {
	l := map[string]string{wellknown.VirtualNodeTypeLabel: wellknown.VirtualNodeTypeValue}
	for k, v := range labels {
		l[k] = v
	}
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

// selectedWith is a selected provider's conditions as the controller writes
// them: Ready first, then OffloadingRequired.
func selectedWith(ready metav1.Condition) offloadingv1alpha1.RemoteNamespaceConditions {
	return offloadingv1alpha1.RemoteNamespaceConditions{ready, {Type: "OffloadingRequired", Status: "True", Reason: "ClusterSelected"}}
}

func ready(provider string) map[string]offloadingv1alpha1.RemoteNamespaceConditions {
	return map[string]offloadingv1alpha1.RemoteNamespaceConditions{provider: selectedWith(metav1.Condition{Type: "Ready", Status: "True", Reason: "NamespaceCreated"})}
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
		NamespaceLabels: map[string]string{wellknown.SchedulingEnabledLabel: "true"},
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
			o.Offloadings[0].Annotations = map[string]string{wellknown.ClusterSelectorErrorAnnotation: `"Near" is not a valid selector operator`}
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
			o.Offloadings[0].Status.RemoteNamespacesConditions["provider-us"] = selectedWith(metav1.Condition{Type: "Ready", Status: "False", Reason: "CreationFailed",
				Message: "AlreadyExists: namespace foo-x already exists on this provider and is not the twin of this cluster"})
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
		{name: "a name the provider refuses fails with its reason and message", change: func(o *Observed) {
			o.Offloadings[0].Status.RemoteNamespacesConditions["provider-us"] = selectedWith(metav1.Condition{Type: "Ready", Status: "False", Reason: "CreationFailed",
				Message: "Forbidden: reserved"})
			o.Offloadings[0].Status.OffloadingPhase = offloadingv1alpha1.SomeFailedPhase
		}, wantCheck: "namespaces on the providers", wantResult: Failed,
			wantDetail: "provider-eu: twin foo-" + homeID + " exists, created by Stretch for this cluster; provider-us: Forbidden: reserved",
			wantFix:    "provider-us refuses the twin name foo-" + homeID + ": unoffload, then offload with a name it accepts"},
		{name: "pod created before the offloading was Ready", change: func(o *Observed) {
			o.Offloadings[0].Status.RemoteNamespacesConditions["provider-eu"][0].LastTransitionTime = metav1.NewTime(t0.Add(10 * time.Second))
			o.Pods = []corev1.Pod{createdAt(pendingPod("early", nil, false), t0)}
		}, wantCheck: "pending pod early", wantResult: Failed,
			wantDetail: "it was not placed by Stretch: it was created at 2026-11-25T15:00:00Z, before the offloading became Ready at 2026-11-25T15:00:10Z, and it lacks the virtual-node toleration",
			wantFix:    "kubectl delete pod -n foo early"},
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

func condition(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message}
}

// TestProviders: the check of what each selected provider reports, from the
// provider itself when it was asked, else from the home status.
func TestProviders(t *testing.T) {
	selected := condition(offloadingv1alpha1.OffloadingRequiredCondition, metav1.ConditionTrue, "ClusterSelected", "")
	notSelected := condition(offloadingv1alpha1.OffloadingRequiredCondition, metav1.ConditionFalse, "ClusterNotSelected", "")
	readyCond := condition("Ready", metav1.ConditionTrue, "NamespaceCreated", "twin exists")
	failed := func(msg string) metav1.Condition {
		return condition("Ready", metav1.ConditionFalse, "CreationFailed", msg)
	}
	asked := func(phase peeringv1alpha1.RemoteNamespacePhase, reason, msg string) *Provider {
		return &Provider{Peered: true, Asked: true, Request: &peeringv1alpha1.RemoteNamespaceStatus{Phase: phase, Reason: reason, Message: msg}}
	}
	tests := []struct {
		name       string
		phase      offloadingv1alpha1.OffloadingPhase
		deleting   bool
		home       []metav1.Condition // provider-eu's conditions in the home status; nil: none
		provider   *Provider          // what was collected of provider-eu; nil: nothing
		wantResult Result
		wantDetail []string
		notDetail  string // not in the detail, when set
		wantFix    string
	}{
		{name: "ready, asked", home: []metav1.Condition{selected, readyCond}, provider: asked(peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated", "ok"),
			wantResult: Passed, wantDetail: []string{"provider-eu: twin foo-" + homeID + " exists, created by Stretch for this cluster"}},
		{name: "ready, from the home status only", home: []metav1.Condition{selected, readyCond},
			wantResult: Passed, wantDetail: []string{"provider-eu: twin foo-" + homeID + " exists"}},
		{name: "the provider could not be asked", home: []metav1.Condition{selected, readyCond}, provider: &Provider{Peered: true, AskError: "secrets is forbidden"},
			wantResult: Passed, wantDetail: []string{"exists, created by Stretch for this cluster (from the home status: provider-eu could not be asked: secrets is forbidden)"}},
		{name: "a failure the diagnosis has no special fix for", phase: offloadingv1alpha1.AllFailedPhase,
			home:       []metav1.Condition{selected, failed("QuotaExceeded: namespaces quota of 10 reached")},
			wantResult: Failed, wantDetail: []string{"provider-eu: QuotaExceeded: namespaces quota of 10 reached"},
			wantFix: "act on provider-eu's message; on provider-eu, 'kubectl get remotenamespace foo -n stretch-tenant-" + homeID + " -o yaml'"},
		{name: "a name too long, from the provider", phase: offloadingv1alpha1.AllFailedPhase, home: []metav1.Condition{selected, failed("NameTooLong: too long")},
			provider:   asked(peeringv1alpha1.RemoteNamespaceCreationFailed, peeringv1alpha1.NameTooLongReason, "twin namespace name is 64 characters long"),
			wantResult: Failed, wantDetail: []string{"provider-eu: NameTooLong: twin namespace name is 64 characters long"}, wantFix: "--remote-namespace-name NAME"},
		{name: "RBAC on the provider: the twin stays Creating", phase: offloadingv1alpha1.InProgressPhase,
			home:       []metav1.Condition{selected, condition("Ready", metav1.ConditionFalse, "Creating", "rolebindings.rbac.authorization.k8s.io is forbidden")},
			provider:   asked(peeringv1alpha1.RemoteNamespaceCreating, "GrantingAccess", "rolebindings.rbac.authorization.k8s.io is forbidden"),
			wantResult: Warning, wantDetail: []string{"provider-eu: Creating (GrantingAccess): rolebindings.rbac.authorization.k8s.io is forbidden"},
			wantFix: "the stretch-controller-manager of provider-eu does not create the twin"},
		{name: "unreachable, says the RemoteCluster", home: []metav1.Condition{selected, readyCond},
			provider:   &Provider{Peered: true, Unreachable: "APIReachable Unreachable: dial tcp 10.0.0.1:6443: connect: connection refused"},
			wantResult: Failed, wantDetail: []string{"provider-eu does not answer the home cluster: APIReachable Unreachable: dial tcp 10.0.0.1:6443", "it last reported NamespaceCreated: twin exists"},
			wantFix: "check the peering with provider-eu: 'stretchctl status' shows its conditions"},
		{name: "unreachable, says the home status", phase: offloadingv1alpha1.InProgressPhase,
			home:       []metav1.Condition{selected, condition("Ready", metav1.ConditionFalse, "Creating", "the provider is creating the twin namespace (provider not reachable: i/o timeout)")},
			wantResult: Failed, wantDetail: []string{"provider-eu does not answer the home cluster: i/o timeout; it last reported Creating: the provider is creating the twin namespace"},
			wantFix: "'stretchctl status'"},
		{name: "an unoffload held up by an unreachable provider", phase: offloadingv1alpha1.TerminatingPhase, deleting: true,
			home:       []metav1.Condition{selected, condition("Ready", metav1.ConditionFalse, "ProviderUnreachable", "provider provider-eu does not answer and may still hold twin namespace x")},
			wantResult: Failed, wantDetail: []string{"provider-eu: ProviderUnreachable: provider provider-eu does not answer"},
			wantFix: "stretchctl unoffload namespace foo --force"},
		{name: "an unoffload held up by a provider that answers but keeps its twin", phase: offloadingv1alpha1.TerminatingPhase, deleting: true,
			home: []metav1.Condition{notSelected, condition("Ready", metav1.ConditionFalse, "TwinNotDeleted",
				"provider provider-eu answers but has not deleted twin namespace foo-x within 5m0s: its request RemoteNamespace stretch-tenant-x/foo is still there (the provider last reported phase Ready, reason NamespaceCreated). Is Stretch's controller-manager running on provider provider-eu?")},
			provider:   asked(peeringv1alpha1.RemoteNamespaceTerminating, "NamespaceCreated", "twin exists"),
			wantResult: Failed, wantDetail: []string{"provider-eu: TwinNotDeleted: provider provider-eu answers but has not deleted twin namespace foo-x", "Is Stretch's controller-manager running on provider provider-eu?", "(provider-eu reports its request Terminating)"},
			notDetail: "stretch-controller-manager running on the home cluster", wantFix: "check that Stretch's controller-manager runs on provider-eu"},
		{name: "TwinNotDeleted, from the home status only", phase: offloadingv1alpha1.TerminatingPhase, deleting: true,
			home:       []metav1.Condition{notSelected, condition("Ready", metav1.ConditionFalse, "TwinNotDeleted", "provider provider-eu answers but has not deleted twin namespace foo-x")},
			provider:   &Provider{Peered: true, AskError: "timeout"},
			wantResult: Failed, wantDetail: []string{"provider-eu: TwinNotDeleted: provider provider-eu answers but has not deleted twin namespace foo-x"},
			wantFix: "stretchctl unoffload namespace foo --force"},
		{name: "a home reason the diagnosis does not know", phase: offloadingv1alpha1.TerminatingPhase, deleting: true,
			home:       []metav1.Condition{selected, condition("Ready", metav1.ConditionFalse, "SomethingNew", "what to do about it")},
			wantResult: Failed, wantDetail: []string{"provider-eu: SomethingNew: what to do about it"}, wantFix: "act on the home status's message about provider-eu"},
		{name: "the home status is stale", home: []metav1.Condition{selected, readyCond},
			provider:   asked(peeringv1alpha1.RemoteNamespaceCreationFailed, peeringv1alpha1.AlreadyExistsReason, "namespace x already exists on this provider (it has no annotation, so Stretch did not create it)"),
			wantResult: Failed, wantDetail: []string{"provider-eu: AlreadyExists: namespace x already exists on this provider (it has no annotation, so Stretch did not create it) (the home status still says NamespaceCreated: is stretch-controller-manager running on the home cluster?)"},
			wantFix: "remove or rename it on that provider"},
		{name: "no request on the provider", home: []metav1.Condition{selected, readyCond}, provider: &Provider{Peered: true, Asked: true},
			wantResult: Warning, wantDetail: []string{"provider-eu holds no request for a twin of foo in stretch-tenant-" + homeID, "the home status still says NamespaceCreated"},
			wantFix: "check that it runs"},
		{name: "no request left while unoffloading", phase: offloadingv1alpha1.TerminatingPhase, deleting: true, home: []metav1.Condition{selected, readyCond},
			provider: &Provider{Peered: true, Asked: true}, wantResult: Passed, wantDetail: []string{"provider-eu: the twin and its request are gone"}},
		{name: "a request not answered yet", phase: offloadingv1alpha1.InProgressPhase, provider: asked("", "", ""),
			wantResult: Warning, wantDetail: []string{"provider-eu: it has the request but has not answered it yet"}, wantFix: "wait, then run this again"},
		{name: "selected, nothing known yet", phase: offloadingv1alpha1.InProgressPhase, provider: &Provider{Peered: true, AskError: "timeout"},
			wantResult: Warning, wantDetail: []string{"provider-eu is selected, but the home status says nothing of its twin yet (from the home status: provider-eu could not be asked: timeout)"}},
		{name: "no longer peered", home: []metav1.Condition{selected, readyCond}, provider: &Provider{},
			wantResult: Failed, wantDetail: []string{"provider-eu: the home cluster no longer peers with it (there is no RemoteCluster provider-eu)"}, wantFix: "stretchctl peer"},
		{name: "not selected: not looked at", home: []metav1.Condition{notSelected, failed("Forbidden: x")},
			wantResult: Passed, wantDetail: []string{"no provider is selected, so none has a twin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := healthy()
			off := &o.Offloadings[0]
			off.Status.OffloadingPhase = tt.phase
			if tt.phase == "" {
				off.Status.OffloadingPhase = offloadingv1alpha1.ReadyPhase
			}
			if tt.deleting {
				off.DeletionTimestamp = &metav1.Time{Time: t0}
			}
			off.Status.RemoteNamespacesConditions = nil
			if tt.home != nil {
				off.Status.RemoteNamespacesConditions = map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-eu": tt.home}
			}
			if tt.provider != nil {
				o.Providers = map[string]Provider{"provider-eu": *tt.provider}
			}
			c := providers(o, off)
			g.Expect(c.Name).To(Equal("namespaces on the providers"))
			g.Expect(c.Result).To(Equal(tt.wantResult), "%+v", c)
			for _, d := range tt.wantDetail {
				g.Expect(c.Detail).To(ContainSubstring(d))
			}
			if tt.notDetail != "" {
				g.Expect(c.Detail).NotTo(ContainSubstring(tt.notDetail))
			}
			g.Expect(c.Fix).To(ContainSubstring(tt.wantFix))
			if c.Result != Passed {
				g.Expect(c.Fix).NotTo(BeEmpty())
			}
		})
	}
}

func TestPhaseSaysWhereToLook(t *testing.T) {
	tests := []struct {
		phase              offloadingv1alpha1.OffloadingPhase
		wantDetail, wantFx string
	}{
		{phase: offloadingv1alpha1.SomeFailedPhase, wantDetail: "phase SomeFailed: some providers could not create the twin namespace: provider-us (AlreadyExists)",
			wantFx: `the check "namespaces on the providers" below gives each provider's reason`},
		{phase: offloadingv1alpha1.NoClusterSelectedPhase, wantDetail: "phase NoClusterSelected",
			wantFx: `the checks "cluster selector syntax" and "virtual nodes against the selector" below say why`},
		{phase: offloadingv1alpha1.InProgressPhase, wantDetail: "providers are still creating", wantFx: `the check "namespaces on the providers" below says what each provider reports`},
	}
	for _, tt := range tests {
		t.Run(string(tt.phase), func(t *testing.T) {
			g := NewWithT(t)
			off := healthy().Offloadings[0]
			off.Status.OffloadingPhase = tt.phase
			off.Status.RemoteNamespacesConditions["provider-us"] = offloadingv1alpha1.RemoteNamespaceConditions{
				condition("Ready", metav1.ConditionFalse, "CreationFailed", "AlreadyExists: namespace foo-x already exists")}
			c := phase(&off)
			g.Expect(c.Result).NotTo(Equal(Passed))
			g.Expect(c.Detail).To(ContainSubstring(tt.wantDetail))
			g.Expect(c.Fix).To(ContainSubstring(tt.wantFx))
		})
	}
}

func TestTwinNameShowsTheLimits(t *testing.T) {
	g := NewWithT(t)
	o := healthy()
	g.Expect(twinName(o, &o.Offloadings[0]).Detail).To(Equal("twin foo-" + homeID + " (40 of at most 63 characters); with DefaultName a home namespace may have at most 26 characters (foo has 3)"))
	o.Offloadings[0].Spec.NamespaceMappingStrategy = offloadingv1alpha1.EnforceSameNameMapping
	g.Expect(twinName(o, &o.Offloadings[0]).Detail).To(Equal("twin foo (3 of at most 63 characters)"))
}

// TestPendingPodCreatedEarly: a pod without the virtual-node toleration is
// told early by its creation time, against the time a provider's twin last
// became Ready (or the NamespaceOffloading's creation when none is), the same
// second included; a pod with it was placed by the webhook, whenever created.
func TestPendingPodCreatedEarly(t *testing.T) {
	const check = "pending pod p"
	tests := []struct {
		name       string
		created    time.Duration // after t0
		tolerate   bool
		noReady    bool // no provider is Ready: the NamespaceOffloading's creation (t0+5s) counts
		local      bool
		owned      bool // by a ReplicaSet
		wantResult Result
		wantDetail string
		wantFix    string
	}{
		{name: "before Ready", created: 0, wantResult: Failed,
			wantDetail: "it was created at 2026-11-25T15:00:00Z, before the offloading became Ready at 2026-11-25T15:00:10Z, and it lacks the virtual-node toleration",
			wantFix:    "delete it and create it again (no controller does it for this pod): kubectl delete pod -n foo p, then create it as before"},
		{name: "before Ready, tolerating: placed by the webhook, Ready moved later", created: 0, tolerate: true, wantResult: Warning,
			wantDetail: "Pending, not scheduled yet"},
		{name: "the same second, without the toleration", created: 10 * time.Second, wantResult: Failed,
			wantDetail: "it was created at 2026-11-25T15:00:10Z, the second the offloading became Ready, and it lacks the virtual-node toleration"},
		{name: "the same second, tolerating", created: 10 * time.Second, tolerate: true, wantResult: Warning, wantDetail: "Pending, not scheduled yet"},
		{name: "after Ready, tolerating", created: 20 * time.Second, tolerate: true, wantResult: Warning, wantDetail: "Pending, not scheduled yet"},
		{name: "after Ready, without the toleration", created: 20 * time.Second, wantResult: Failed,
			wantDetail: "created after the offloading was Ready, but without the virtual-node toleration"},
		{name: "before the NamespaceOffloading, nothing Ready", created: 0, noReady: true, wantResult: Failed,
			wantDetail: "before the NamespaceOffloading was created at 2026-11-25T15:00:05Z"},
		{name: "after the NamespaceOffloading, nothing Ready", created: 7 * time.Second, noReady: true, tolerate: true, wantResult: Warning, wantDetail: "Pending, not scheduled yet"},
		{name: "before Ready, with a controller", created: 0, owned: true, wantResult: Failed, wantDetail: "before the offloading became Ready",
			wantFix: "delete it so that its controller, ReplicaSet web-5d4f, creates it again: kubectl delete pod -n foo p"},
		{name: "strategy Local: pods stay home anyway", created: 0, local: true, wantResult: Warning, wantDetail: "Pending, not scheduled yet"},
		{name: "the earliest Ready provider counts", created: 15 * time.Second, tolerate: true, wantResult: Warning, wantDetail: "Pending, not scheduled yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := healthy()
			off := &o.Offloadings[0]
			off.CreationTimestamp = metav1.NewTime(t0.Add(5 * time.Second))
			off.Status.RemoteNamespacesConditions = map[string]offloadingv1alpha1.RemoteNamespaceConditions{
				"provider-eu": selectedWith(metav1.Condition{Type: "Ready", Status: "True", Reason: "NamespaceCreated", LastTransitionTime: metav1.NewTime(t0.Add(10 * time.Second))}),
				"provider-us": selectedWith(metav1.Condition{Type: "Ready", Status: "True", Reason: "NamespaceCreated", LastTransitionTime: metav1.NewTime(t0.Add(30 * time.Second))}),
			}
			if tt.noReady {
				off.Status.OffloadingPhase = offloadingv1alpha1.InProgressPhase
				for _, conds := range off.Status.RemoteNamespacesConditions {
					conds[0].Status, conds[0].Reason = "False", "Creating"
				}
			}
			if tt.local {
				off.Spec.PodOffloadingStrategy = offloadingv1alpha1.LocalStrategy
			}
			p := createdAt(pendingPod("p", nil, tt.tolerate), t0.Add(tt.created))
			if tt.owned {
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d4f", UID: "u", Controller: ptr.To(true)}}
			}
			o.Pods = []corev1.Pod{p}
			checks := Run(o)
			g.Expect(checks).To(ContainElement(And(HaveField("Name", check), HaveField("Result", tt.wantResult),
				HaveField("Detail", ContainSubstring(tt.wantDetail)), HaveField("Fix", ContainSubstring(tt.wantFix)))), "%+v", checks)
		})
	}
}

// TestConcerned: the providers whose twin matters, as the collector and the
// checks name them.
func TestConcerned(t *testing.T) {
	required := func(status metav1.ConditionStatus) offloadingv1alpha1.RemoteNamespaceConditions {
		return offloadingv1alpha1.RemoteNamespaceConditions{condition(offloadingv1alpha1.OffloadingRequiredCondition, status, "r", "")}
	}
	tests := []struct {
		name     string
		conds    map[string]offloadingv1alpha1.RemoteNamespaceConditions
		selector *corev1.NodeSelector
		want     []string
	}{
		{name: "selected by the status and by the selector, once each", conds: map[string]offloadingv1alpha1.RemoteNamespaceConditions{
			"provider-eu": required(metav1.ConditionTrue), "provider-ap": required(metav1.ConditionTrue)}, selector: regionIn("eu"),
			want: []string{"provider-ap", "provider-eu"}},
		{name: "deselected by the status, picked by the selector", conds: map[string]offloadingv1alpha1.RemoteNamespaceConditions{
			"provider-eu": required(metav1.ConditionFalse), "provider-us": required(metav1.ConditionFalse)}, selector: regionIn("eu"),
			want: []string{"provider-eu"}},
		{name: "the selector picks every node", want: []string{"provider-eu", "provider-us"}},
		{name: "a selector that cannot be parsed picks none", conds: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-us": required(metav1.ConditionTrue)},
			selector: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: "Near"}}}}},
			want:     []string{"provider-us"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := healthy()
			off := Offloading(o)
			off.Spec.ClusterSelector, off.Status.RemoteNamespacesConditions = tt.selector, tt.conds
			g.Expect(Concerned(off, SelectorPicks(off, o.VirtualNodes)...)).To(Equal(tt.want))
		})
	}
}

// refusedPod is a pod bound to the virtual node of provider, with the
// PodOffloadedCondition the virtual kubelet writes when provider refuses it.
func refusedPod(name, provider string, status corev1.ConditionStatus, reason, words string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "foo", Name: name},
		Spec:   corev1.PodSpec{NodeName: peeringv1alpha1.VirtualNodeName(provider)},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {
		Type: offloadingv1alpha1.PodOffloadedCondition, Status: status, Reason: reason,
		Message: "provider " + provider + " refused the pod: " + words + "; change the pod to meet the provider's policy (a changed pod is tried at once), or ask the admin of provider " +
			provider + " to allow it (the pod stays Pending and is tried again every 30s, up to every 5m)"}}
	return p
}

// TestRefusedPods: pods whose remote pod a provider refused make one check
// that names each, bound to a few, with the provider's words and what
// lifts the refusal; none such, no check, as for pending pods.
func TestRefusedPods(t *testing.T) {
	const privileged = `pods "web-1" is forbidden: violates PodSecurity "baseline:latest": privileged (container "app" must not set securityContext.privileged=true)`
	refused := func(name, provider, words string) corev1.Pod {
		return refusedPod(name, provider, corev1.ConditionFalse, offloadingv1alpha1.RefusedByProviderReason, words)
	}
	running := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "foo", Name: "ok"}, Spec: corev1.PodSpec{NodeName: "stretch-provider-eu"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	many := []corev1.Pod{running}
	for _, name := range []string{"w-7", "w-3", "w-1", "w-6", "w-2", "w-5", "w-4"} {
		many = append(many, refused(name, "provider-eu", `pods "`+name+`" is forbidden: exceeded quota: pods`))
	}
	long := strings.Repeat("é", 400) // 800 bytes: cut on a rune boundary
	tests := []struct {
		name       string
		pods       []corev1.Pod
		want       bool // a check
		wantDetail string
		wantEnd    string // the end of the detail, when set
		notDetail  []string
		wantFix    []string
	}{
		{name: "refused", pods: []corev1.Pod{running, refused("web-1", "provider-eu", privileged)}, want: true,
			wantDetail: "1 pod is Pending, refused by its provider: web-1 on stretch-provider-eu: " + privileged,
			notDetail:  []string{"change the pod to meet", "provider provider-eu refused the pod"},
			wantFix: []string{"change each pod (or its controller's template)", "tried again at once", "ask the admin of provider-eu",
				"'stretchctl policy show " + homeID + "'", "'stretchctl policy set " + homeID + "' with --limits, --priority-classes or --pod-security",
				"within 5 minutes", "kubectl describe pod -n foo NAME"}},
		{name: "not refused: no check", pods: []corev1.Pod{running, pendingPod("web-1", nil, true)}},
		{name: "condition True: no check", pods: []corev1.Pod{refusedPod("web-1", "provider-eu", corev1.ConditionTrue, "Offloaded", "")}},
		{name: "another reason: no check", pods: []corev1.Pod{refusedPod("web-1", "provider-eu", corev1.ConditionFalse, "SomethingElse", privileged)}},
		{name: "several pods, several providers: sorted, each provider's admin", want: true,
			pods:       []corev1.Pod{refused("b", "provider-us", "quota"), running, refused("a", "provider-eu", privileged)},
			wantDetail: "2 pods are Pending, refused by their provider: a on stretch-provider-eu: " + privileged + "; b on stretch-provider-us: quota",
			wantFix:    []string{"ask the admin of provider-eu, provider-us to allow it"}},
		{name: "many pods: the first five, then how many more", pods: many, want: true,
			wantDetail: `7 pods are Pending, refused by their provider: w-1 on stretch-provider-eu: pods "w-1" is forbidden: exceeded quota: pods; w-2 on`,
			wantEnd:    `; w-5 on stretch-provider-eu: pods "w-5" is forbidden: exceeded quota: pods; and 2 more`, notDetail: []string{"w-6 on", "w-7 on"}},
		{name: "a long message is cut", pods: []corev1.Pod{refused("web-1", "provider-eu", long)}, want: true,
			wantDetail: "web-1 on stretch-provider-eu: " + strings.Repeat("é", 148) + "...", notDetail: []string{strings.Repeat("é", 149)}},
		{name: "a message in another form is quoted whole", want: true,
			pods:       []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.PodSpec{NodeName: "stretch-provider-eu"}, Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: "stretch.dev/Offloaded", Status: "False", Reason: "RefusedByProvider", Message: "denied by webhook policy.example.com"}}}}},
			wantDetail: "x on stretch-provider-eu: denied by webhook policy.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := healthy()
			o.Pods = tt.pods
			checks := Run(o)
			var found []Check
			for _, c := range checks {
				if c.Name == "pods refused by providers" {
					found = append(found, c)
				}
			}
			if !tt.want {
				g.Expect(found).To(BeEmpty())
				g.Expect(checks).To(ContainElement(HaveField("Name", "phase")), "the other checks ran")
				return
			}
			g.Expect(found).To(HaveLen(1), "one check for every refused pod")
			c := found[0]
			g.Expect(c.Result).To(Equal(Failed))
			g.Expect(c.Detail).To(ContainSubstring(tt.wantDetail))
			g.Expect(c.Detail).To(HaveSuffix(tt.wantEnd))
			for _, s := range tt.notDetail {
				g.Expect(c.Detail).NotTo(ContainSubstring(s))
			}
			for _, s := range tt.wantFix {
				g.Expect(c.Fix).To(ContainSubstring(s))
			}
			g.Expect(c.Fix).NotTo(BeEmpty())
			g.Expect(AllPassed(checks)).To(BeFalse())
		})
	}
}

// TestPodCIDROverlaps: a selected provider whose pod CIDRs overlap makes a
// Warning that quotes its RemoteCluster's condition; a provider that is not
// selected, or no overlap, makes no check.
func TestPodCIDROverlaps(t *testing.T) {
	const overlap = "pod CIDR 10.244.0.0/16 of provider provider-eu overlaps 10.244.3.0/24 of this cluster: ..."
	tests := []struct {
		name      string
		providers map[string]Provider
		want      string // the detail; empty: no check
	}{
		{name: "no overlap", providers: map[string]Provider{"provider-eu": {Peered: true, Asked: true}}},
		{name: "selected provider overlaps", providers: map[string]Provider{"provider-eu": {Peered: true, PodCIDROverlap: overlap}},
			want: "provider-eu: " + overlap},
		{name: "a provider not selected overlaps", providers: map[string]Provider{"provider-us": {Peered: true, PodCIDROverlap: overlap}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := healthy()
			o.Providers = tt.providers
			var found []Check
			for _, c := range Run(o) {
				if c.Name == podCIDRsCheck {
					found = append(found, c)
				}
			}
			if tt.want == "" {
				g.Expect(found).To(BeEmpty())
				return
			}
			g.Expect(found).To(ConsistOf(And(HaveField("Result", Warning), HaveField("Detail", tt.want),
				HaveField("Fix", ContainSubstring("give the clusters distinct pod CIDRs")))))
		})
	}
}
