package podplacement_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/webhook/certs"
	"stretch.dev/stretch/internal/webhook/webhooktest"
)

func stretchPod(ns string) *corev1.Pod {
	p := webhooktest.Pod(ns, nil)
	p.Spec.RuntimeClassName = ptr.To(wellknown.RuntimeClassName)
	return p
}

// offloadedToEU makes namespace ns, offloaded with the strategy to region
// eu and Ready, and waits until a pod of runtime class stretch there is
// placed on the virtual nodes of region eu: the webhook reads the
// offloading from a cache.
func offloadedToEU(t *testing.T, ns string, labelled bool, strategy offloadingv1alpha1.PodOffloadingStrategy) {
	t.Helper()
	webhooktest.Namespace(t, home, ns, labelled)
	webhooktest.OffloadingIn(t, home, ns, offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: strategy,
		ClusterSelector: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(regionEU))}}}, offloadingv1alpha1.ReadyPhase)
	NewWithT(t).Eventually(func(g Gomega) {
		got := webhooktest.Create(g, home, stretchPod(ns), true)
		g.Expect(requiredTerms(got)).To(Equal([]corev1.NodeSelectorTerm{term(list(regionEU, onVirtual))}))
		g.Expect(got.Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

// TestRuntimeClassStretch checks that pods of runtime class stretch go to
// virtual nodes whatever the strategy, from namespaces without the
// scheduling label too, and that every pod calls the webhook at most once.
func TestRuntimeClassStretch(t *testing.T) {
	webhooktest.Serve(t, home, certs.Options{})
	ctx := context.Background()

	t.Run("strategy Local, namespace not labelled (as the controller leaves it): forced onto virtual nodes", func(t *testing.T) {
		g := NewWithT(t)
		offloadedToEU(t, "local-only", false, offloadingv1alpha1.LocalStrategy)

		calls := webhooktest.PodWebhookCalls(g)
		webhooktest.Create(g, home, stretchPod("local-only"), true)
		g.Expect(webhooktest.PodWebhookCalls(g)).To(Equal(calls + 1))
		got := webhooktest.Create(g, home, webhooktest.Pod("local-only", nil), true)
		g.Expect(webhooktest.PodWebhookCalls(g)).To(Equal(calls+1), "a pod of another class in a namespace without the label does not call the webhook")
		g.Expect(got.Spec.Affinity).To(BeNil())
	})

	t.Run("namespace not offloaded: refused, as the pod could never start", func(t *testing.T) {
		g := NewWithT(t)
		webhooktest.Namespace(t, home, "not-offloaded", false)
		err := home.Client.Create(ctx, stretchPod("not-offloaded"))
		g.Expect(err).To(MatchError(containsAll(
			"pod app-* in namespace not-offloaded has runtimeClassName stretch, which runs pods on providers only",
			"namespace not-offloaded is not offloaded",
			"offload the namespace first (kubectl stretch offload namespace not-offloaded)",
			"or remove runtimeClassName stretch to run the pod at home")))
		// Other pods there never call the webhook.
		webhooktest.Create(g, home, webhooktest.Pod("not-offloaded", nil), true)
	})

	t.Run("namespace with the label: one webhook call per pod, of either class", func(t *testing.T) {
		g := NewWithT(t)
		offloadedToEU(t, "labelled", true, offloadingv1alpha1.LocalAndRemoteStrategy)

		for _, p := range []*corev1.Pod{stretchPod("labelled"), webhooktest.Pod("labelled", nil)} {
			calls := webhooktest.PodWebhookCalls(g)
			got := webhooktest.Create(g, home, p, false)
			g.Expect(got.Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
			g.Expect(webhooktest.PodWebhookCalls(g)).To(Equal(calls+1), "runtime class %v", p.Spec.RuntimeClassName)
		}
	})

	t.Run("system namespaces never call it", func(t *testing.T) {
		g := NewWithT(t)
		calls := webhooktest.PodWebhookCalls(g)
		got := webhooktest.Create(g, home, stretchPod(metav1.NamespacePublic), true)
		g.Expect(webhooktest.PodWebhookCalls(g)).To(Equal(calls))
		g.Expect(got.Spec.Affinity).To(BeNil())
	})
}

// TestPodAdmissionByPhase checks what becomes of a pod in each phase of its
// namespace's offloading: placed as soon as one provider has its twin,
// refused (to be retried) while none has one yet, refused with the cause
// and its fix when it could only run on providers none of which will take
// it. Each namespace is labelled as the offloading controller leaves it,
// unless the row says otherwise.
func TestPodAdmissionByPhase(t *testing.T) {
	webhooktest.Serve(t, home, certs.Options{})
	ctx := context.Background()
	euSelector := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(regionEU))}}
	unparsable := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(req("region", "Near", "eu")))}}
	readyEU := webhooktest.ProviderConditions(metav1.ConditionTrue, offloadingv1alpha1.NamespaceCreatedReason, "")
	creatingUS := webhooktest.ProviderConditions(metav1.ConditionFalse, offloadingv1alpha1.CreatingReason, "the provider is creating the twin namespace")
	failedUS := webhooktest.ProviderConditions(metav1.ConditionFalse, offloadingv1alpha1.CreationFailedReason, "AlreadyExists: namespace exists and was not created by Stretch")

	type outcome int
	const (
		refused outcome = iota
		placedRemote
		placedLocalAndRemote
		unchanged
	)
	tests := []struct {
		name     string
		strategy offloadingv1alpha1.PodOffloadingStrategy
		selector *corev1.NodeSelector
		// forced: the pod has runtimeClassName stretch.
		forced    bool
		phase     offloadingv1alpha1.OffloadingPhase
		providers map[string]offloadingv1alpha1.RemoteNamespaceConditions
		// byHand: the namespace is labelled although the controller would
		// not label it (Local, Terminating).
		byHand  bool
		want    outcome
		wantMsg []string // substrings of the refusal; NS stands for the namespace
	}{
		{name: "not reconciled yet", strategy: offloadingv1alpha1.RemoteStrategy, want: refused,
			wantMsg: []string{"namespace NS is being offloaded (phase not reconciled yet)", "retry in a few seconds"}},
		{name: "InProgress, no provider ready", strategy: offloadingv1alpha1.RemoteStrategy, phase: offloadingv1alpha1.InProgressPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-us": creatingUS}, want: refused,
			wantMsg: []string{"(phase InProgress) and no provider has its twin namespace yet", "retry in a few seconds", "kubectl get namespaceoffloadings offloading -n NS"}},
		{name: "InProgress, LocalAndRemote, no provider ready", strategy: offloadingv1alpha1.LocalAndRemoteStrategy, phase: offloadingv1alpha1.InProgressPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-us": creatingUS}, want: refused,
			wantMsg: []string{"(phase InProgress) and no provider has its twin namespace yet"}},
		{name: "InProgress, a provider being added to a ready one", strategy: offloadingv1alpha1.RemoteStrategy, phase: offloadingv1alpha1.InProgressPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-eu": readyEU, "provider-us": creatingUS}, want: placedRemote},
		{name: "SomeFailed, one provider ready", strategy: offloadingv1alpha1.RemoteStrategy, phase: offloadingv1alpha1.SomeFailedPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-eu": readyEU, "provider-us": failedUS}, want: placedRemote},
		{name: "SomeFailed, none ready yet", strategy: offloadingv1alpha1.RemoteStrategy, phase: offloadingv1alpha1.SomeFailedPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-eu": creatingUS, "provider-us": failedUS}, want: refused,
			wantMsg: []string{"(phase SomeFailed) and no provider has its twin namespace yet", "retry"}},
		{name: "Ready", strategy: offloadingv1alpha1.RemoteStrategy, phase: offloadingv1alpha1.ReadyPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-eu": readyEU}, want: placedRemote},
		{name: "NoClusterSelected, Remote", strategy: offloadingv1alpha1.RemoteStrategy, phase: offloadingv1alpha1.NoClusterSelectedPhase, want: refused,
			wantMsg: []string{"namespace NS is offloaded to no provider (phase NoClusterSelected): its clusterSelector selects no provider, so this pod, which runs on providers only (podOffloadingStrategy Remote), could never start",
				"fix spec.clusterSelector of NamespaceOffloading NS/offloading (stretchctl diagnose namespace NS", "or set podOffloadingStrategy LocalAndRemote"}},
		{name: "NoClusterSelected, Remote, selector that does not parse", strategy: offloadingv1alpha1.RemoteStrategy, selector: unparsable,
			phase: offloadingv1alpha1.NoClusterSelectedPhase, want: refused,
			wantMsg: []string{"its clusterSelector selects no provider (it cannot be parsed: ", `"Near"`}},
		{name: "AllFailed, Remote", strategy: offloadingv1alpha1.RemoteStrategy, phase: offloadingv1alpha1.AllFailedPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-us": failedUS}, want: refused,
			wantMsg: []string{"namespace NS is offloaded to no provider (phase AllFailed): every selected provider failed to create the twin namespace (provider-us: AlreadyExists: namespace exists",
				"fix what the providers report (kubectl get namespaceoffloadings offloading -n NS -o yaml; stretchctl diagnose namespace NS)"}},
		{name: "NoClusterSelected, LocalAndRemote: pods run at home", strategy: offloadingv1alpha1.LocalAndRemoteStrategy, phase: offloadingv1alpha1.NoClusterSelectedPhase,
			want: placedLocalAndRemote},
		{name: "AllFailed, LocalAndRemote: pods run at home", strategy: offloadingv1alpha1.LocalAndRemoteStrategy, phase: offloadingv1alpha1.AllFailedPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-us": failedUS}, want: placedLocalAndRemote},
		{name: "NoClusterSelected, Local, runtime class stretch", strategy: offloadingv1alpha1.LocalStrategy, forced: true, phase: offloadingv1alpha1.NoClusterSelectedPhase,
			want: refused, wantMsg: []string{"(phase NoClusterSelected)", "which runs on providers only (runtimeClassName stretch)", "or remove runtimeClassName stretch to run the pod at home"}},
		{name: "InProgress, Local, runtime class stretch, no provider ready", strategy: offloadingv1alpha1.LocalStrategy, forced: true, phase: offloadingv1alpha1.InProgressPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-us": creatingUS}, want: refused, wantMsg: []string{"retry in a few seconds"}},
		{name: "InProgress, Local, runtime class stretch, a provider ready", strategy: offloadingv1alpha1.LocalStrategy, forced: true, phase: offloadingv1alpha1.InProgressPhase,
			providers: map[string]offloadingv1alpha1.RemoteNamespaceConditions{"provider-eu": readyEU, "provider-us": creatingUS}, want: placedRemote},
		{name: "InProgress, Local labelled by hand: pods stay home", strategy: offloadingv1alpha1.LocalStrategy, phase: offloadingv1alpha1.InProgressPhase, byHand: true,
			want: unchanged},
		{name: "Terminating, labelled by hand: pods stay home", strategy: offloadingv1alpha1.RemoteStrategy, phase: offloadingv1alpha1.TerminatingPhase, byHand: true,
			want: unchanged},
		{name: "Terminating, runtime class stretch", strategy: offloadingv1alpha1.RemoteStrategy, forced: true, phase: offloadingv1alpha1.TerminatingPhase, want: refused,
			wantMsg: []string{"namespace NS is being unoffloaded (phase Terminating): a pod with runtimeClassName stretch runs on providers only",
				"remove runtimeClassName stretch to run it at home, or offload the namespace again once the unoffload is over (kubectl stretch offload namespace NS)"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := fmt.Sprintf("phase-%d", i)
			// As the offloading controller labels it.
			webhooktest.Namespace(t, home, ns, tt.byHand || tt.strategy != offloadingv1alpha1.LocalStrategy && tt.phase != offloadingv1alpha1.TerminatingPhase)
			selector := euSelector
			if tt.selector != nil {
				selector = tt.selector
			}
			off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns},
				Spec:   offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: tt.strategy, ClusterSelector: selector},
				Status: offloadingv1alpha1.NamespaceOffloadingStatus{OffloadingPhase: tt.phase, RemoteNamespacesConditions: tt.providers}}
			if tt.selector == unparsable {
				off.Annotations = map[string]string{wellknown.ClusterSelectorErrorAnnotation: `spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: "Near"`}
			}
			webhooktest.OffloadingWithStatus(t, home, off)
			p := webhooktest.Pod(ns, nil)
			if tt.forced {
				p = stretchPod(ns)
			}

			if tt.want == refused {
				msgs := make([]string, 0, len(tt.wantMsg))
				for _, m := range tt.wantMsg {
					msgs = append(msgs, strings.ReplaceAll(m, "NS", ns))
				}
				// Until the webhook's cache has the offloading, the pod is
				// refused as in a namespace not offloaded.
				g.Eventually(func() error { return home.Client.Create(ctx, p.DeepCopy(), client.DryRunAll) }).
					WithTimeout(10 * time.Second).Should(MatchError(containsAll(msgs...)))
				return
			}
			g.Eventually(func(g Gomega) {
				got := webhooktest.Create(g, home, p, true)
				switch tt.want {
				case placedRemote:
					g.Expect(requiredTerms(got)).To(Equal([]corev1.NodeSelectorTerm{term(list(regionEU, onVirtual))}))
					g.Expect(got.Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
				case placedLocalAndRemote:
					g.Expect(requiredTerms(got)).To(Equal([]corev1.NodeSelectorTerm{term(list(regionEU, onVirtual)), term(list(offVirtual))}))
					g.Expect(got.Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
				case unchanged:
					g.Expect(got.Spec.Affinity).To(BeNil())
					g.Expect(got.Spec.Tolerations).NotTo(ContainElement(placement.VirtualNodeToleration))
				}
			}).WithTimeout(10 * time.Second).Should(Succeed())
		})
	}
}
