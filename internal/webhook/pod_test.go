package webhook_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/webhook/certs"
	podwebhook "stretch.dev/stretch/internal/webhook/pod"
)

func req(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

var (
	onVirtual  = req(peeringv1alpha1.VirtualNodeTypeLabel, corev1.NodeSelectorOpIn, peeringv1alpha1.VirtualNodeTypeValue)
	offVirtual = req(peeringv1alpha1.VirtualNodeTypeLabel, corev1.NodeSelectorOpNotIn, peeringv1alpha1.VirtualNodeTypeValue)
	regionEU   = req("region", corev1.NodeSelectorOpIn, "eu")
	zoneA      = req("zone", corev1.NodeSelectorOpIn, "a")
	notN1      = req("metadata.name", corev1.NodeSelectorOpNotIn, "n1")
)

func term(exprs []corev1.NodeSelectorRequirement, fields ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: exprs, MatchFields: fields}
}

// requiredTerms is nil-safe: until the webhook's cache sees an edit, a pod
// may come back without the affinity the test waits for.
func requiredTerms(p *corev1.Pod) []corev1.NodeSelectorTerm {
	if p.Spec.Affinity == nil || p.Spec.Affinity.NodeAffinity == nil || p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

func list(rs ...corev1.NodeSelectorRequirement) []corev1.NodeSelectorRequirement { return rs }

func TestPodPlacement(t *testing.T) {
	serve(t, certs.Options{})
	ctx := context.Background()
	namespace(t, "placed", true)
	off := offloadingIn(t, "placed", offloadingv1alpha1.NamespaceOffloadingSpec{}, offloadingv1alpha1.ReadyPhase)

	euSelector := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(regionEU))}}
	// The pod's own terms: a label and a matchFields term, ORed.
	own := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(zoneA)), term(nil, notN1)}}
	tests := []struct {
		strategy  offloadingv1alpha1.PodOffloadingStrategy
		selector  *corev1.NodeSelector
		affinity  *corev1.NodeSelector
		wantTerms []corev1.NodeSelectorTerm // nil: no required affinity
		tolerate  bool
	}{
		{offloadingv1alpha1.LocalStrategy, nil, nil, nil, false},
		{offloadingv1alpha1.LocalStrategy, euSelector, nil, nil, false},
		{offloadingv1alpha1.LocalStrategy, nil, own, own.NodeSelectorTerms, false},
		{offloadingv1alpha1.LocalStrategy, euSelector, own, own.NodeSelectorTerms, false},
		{offloadingv1alpha1.RemoteStrategy, nil, nil, []corev1.NodeSelectorTerm{term(list(onVirtual))}, true},
		{offloadingv1alpha1.RemoteStrategy, euSelector, nil, []corev1.NodeSelectorTerm{term(list(regionEU, onVirtual))}, true},
		{offloadingv1alpha1.RemoteStrategy, nil, own, []corev1.NodeSelectorTerm{term(list(zoneA, onVirtual)), term(list(onVirtual), notN1)}, true},
		{offloadingv1alpha1.RemoteStrategy, euSelector, own, []corev1.NodeSelectorTerm{term(list(zoneA, regionEU, onVirtual)), term(list(regionEU, onVirtual), notN1)}, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, nil, nil, nil, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, euSelector, nil, []corev1.NodeSelectorTerm{term(list(regionEU, onVirtual)), term(list(offVirtual))}, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, nil, own, own.NodeSelectorTerms, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, euSelector, own, []corev1.NodeSelectorTerm{
			term(list(zoneA, regionEU, onVirtual)), term(list(zoneA, offVirtual)),
			term(list(regionEU, onVirtual), notN1), term(list(offVirtual), notN1)}, true},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/selector=%t/own=%t", tt.strategy, tt.selector != nil, tt.affinity != nil)
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			edit(t, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
				o.Spec.PodOffloadingStrategy, o.Spec.ClusterSelector = tt.strategy, tt.selector
			})
			g.Eventually(func(g Gomega) {
				got := create(g, pod("placed", tt.affinity), true)
				if tt.wantTerms == nil {
					g.Expect(got.Spec.Affinity).To(BeNil())
				} else {
					g.Expect(requiredTerms(got)).To(Equal(tt.wantTerms))
				}
				if tt.tolerate {
					g.Expect(got.Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
				} else {
					g.Expect(got.Spec.Tolerations).NotTo(ContainElement(HaveField("Key", peeringv1alpha1.VirtualNodeTaintKey)))
				}
			}).WithTimeout(10 * time.Second).Should(Succeed()) // the webhook reads the offloading from a cache
		})
	}

	t.Run("runtimeClassName stretch goes to virtual nodes whatever the strategy", func(t *testing.T) {
		g := NewWithT(t)
		edit(t, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
			o.Spec.PodOffloadingStrategy, o.Spec.ClusterSelector = offloadingv1alpha1.LocalStrategy, euSelector
		})
		g.Eventually(func(g Gomega) {
			p := pod("placed", nil)
			p.Spec.RuntimeClassName = ptr.To(peeringv1alpha1.RuntimeClassName)
			got := create(g, p, true)
			g.Expect(requiredTerms(got)).To(Equal([]corev1.NodeSelectorTerm{term(list(regionEU, onVirtual))}))
			g.Expect(got.Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	})

	t.Run("contradicting terms: admitted, with a warning and an event", func(t *testing.T) {
		g := NewWithT(t)
		edit(t, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
			o.Spec.PodOffloadingStrategy, o.Spec.ClusterSelector = offloadingv1alpha1.RemoteStrategy, &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(zoneA))}}
		})
		wc := newWarningClient(t)
		p := pod("placed", &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(req("zone", corev1.NodeSelectorOpIn, "b")))}})
		p.GenerateName, p.Name = "", "contradicts"
		g.Eventually(func(g Gomega) {
			cur := p.DeepCopy()
			g.Expect(client.IgnoreAlreadyExists(wc.Create(ctx, cur))).To(Succeed())
			got := &corev1.Pod{}
			g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
			g.Expect(got.Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
		}).WithTimeout(10 * time.Second).Should(Succeed())
		g.Expect(wc.take()).To(ContainElement(And(
			ContainSubstring("no node can match the node affinity of this pod"),
			ContainSubstring("zone In (b) contradicts zone In (a)"))))
		g.Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(home.Client.List(ctx, events, client.InNamespace("placed"))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(
				HaveField("Reason", podwebhook.ContradictionReason),
				HaveField("Regarding.Name", "contradicts"),
				HaveField("Note", ContainSubstring("zone In (b) contradicts zone In (a)")))))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	})
}

func TestPodsCreatedTooEarlyAreRejected(t *testing.T) {
	serve(t, certs.Options{})
	ctx := context.Background()

	// Labelled beforehand, not offloaded yet.
	namespace(t, "early", true)
	g := NewWithT(t)
	err := home.Client.Create(ctx, pod("early", nil))
	g.Expect(err).To(MatchError(And(ContainSubstring("no NamespaceOffloading named \"offloading\""), ContainSubstring("retry"))))

	for _, phase := range []offloadingv1alpha1.OffloadingPhase{"", offloadingv1alpha1.InProgressPhase} {
		off := offloadingIn(t, "early", offloadingv1alpha1.NamespaceOffloadingSpec{}, phase)
		g.Eventually(func() error { return home.Client.Create(ctx, pod("early", nil), client.DryRunAll) }).
			WithTimeout(10*time.Second).Should(MatchError(And(ContainSubstring("is being offloaded"), ContainSubstring("retry in a few seconds"))), "phase %q", phase)
		g.Expect(home.Client.Delete(ctx, off)).To(Succeed())
		g.Eventually(func() bool { return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(off), off)) }).Should(BeTrue())
	}

	// Being unoffloaded: admitted, left alone.
	off := offloadingIn(t, "early", offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy}, offloadingv1alpha1.TerminatingPhase)
	g.Eventually(func(g Gomega) {
		got := create(g, pod("early", nil), true)
		g.Expect(got.Spec.Tolerations).NotTo(ContainElement(placement.VirtualNodeToleration))
		g.Expect(got.Spec.Affinity).To(BeNil())
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Ready: placed.
	off.Status.OffloadingPhase = offloadingv1alpha1.ReadyPhase
	g.Expect(home.Client.Status().Update(ctx, off)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(create(g, pod("early", nil), true).Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// A namespace without the label never calls the webhook.
	namespace(t, "unlabelled", false)
	offloadingIn(t, "unlabelled", offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy}, offloadingv1alpha1.InProgressPhase)
	got := create(g, pod("unlabelled", nil), true)
	g.Expect(got.Spec.Tolerations).NotTo(ContainElement(placement.VirtualNodeToleration))
}

// edit changes the NamespaceOffloading, retrying on conflicts.
func edit(t *testing.T, off *offloadingv1alpha1.NamespaceOffloading, change func(*offloadingv1alpha1.NamespaceOffloading)) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		cur := &offloadingv1alpha1.NamespaceOffloading{}
		if err := home.Client.Get(context.Background(), client.ObjectKeyFromObject(off), cur); err != nil {
			return err
		}
		change(cur)
		return home.Client.Update(context.Background(), cur)
	}).Should(Succeed())
}
