package podplacement_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/webhook/certs"
	"stretch.dev/stretch/internal/webhook/podplacement"
	"stretch.dev/stretch/internal/webhook/webhooktest"
)

func req(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

var (
	onVirtual  = req(wellknown.VirtualNodeTypeLabel, corev1.NodeSelectorOpIn, wellknown.VirtualNodeTypeValue)
	offVirtual = req(wellknown.VirtualNodeTypeLabel, corev1.NodeSelectorOpNotIn, wellknown.VirtualNodeTypeValue)
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
	webhooktest.Serve(t, home, certs.Options{})
	ctx := context.Background()
	webhooktest.Namespace(t, home, "placed", true)
	off := webhooktest.OffloadingIn(t, home, "placed", offloadingv1alpha1.NamespaceOffloadingSpec{}, offloadingv1alpha1.ReadyPhase)

	euSelector := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(regionEU))}}
	byName := req("metadata.name", corev1.NodeSelectorOpIn, "stretch-provider-eu")
	nameSelector := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(nil, byName)}}
	// Written as clusterSelector: {nodeSelectorTerms: []}: every provider.
	noTerms := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{}}
	selectorNames := map[*corev1.NodeSelector]string{nil: "none", euSelector: "region", nameSelector: "matchFields", noTerms: "no-terms"}
	// The pod's own terms: a label and a matchFields term, ORed.
	own := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(zoneA)), term(nil, notN1)}}
	tests := []struct {
		strategy  offloadingv1alpha1.PodOffloadingStrategy
		selector  *corev1.NodeSelector
		affinity  *corev1.NodeSelector
		wantTerms []corev1.NodeSelectorTerm // nil: no required affinity
		tolerate  bool
	}{
		// Under Local the controller removes the label, so these pods only
		// reach the webhook when a user set it by hand.
		{offloadingv1alpha1.LocalStrategy, nil, nil, nil, false},
		{offloadingv1alpha1.LocalStrategy, euSelector, nil, nil, false},
		{offloadingv1alpha1.LocalStrategy, nil, own, own.NodeSelectorTerms, false},
		{offloadingv1alpha1.LocalStrategy, euSelector, own, own.NodeSelectorTerms, false},
		{offloadingv1alpha1.RemoteStrategy, nil, nil, []corev1.NodeSelectorTerm{term(list(onVirtual))}, true},
		{offloadingv1alpha1.RemoteStrategy, euSelector, nil, []corev1.NodeSelectorTerm{term(list(regionEU, onVirtual))}, true},
		{offloadingv1alpha1.RemoteStrategy, nil, own, []corev1.NodeSelectorTerm{term(list(zoneA, onVirtual)), term(list(onVirtual), notN1)}, true},
		{offloadingv1alpha1.RemoteStrategy, euSelector, own, []corev1.NodeSelectorTerm{term(list(zoneA, regionEU, onVirtual)), term(list(regionEU, onVirtual), notN1)}, true},
		{offloadingv1alpha1.RemoteStrategy, nameSelector, nil, []corev1.NodeSelectorTerm{term(list(onVirtual), byName)}, true},
		{offloadingv1alpha1.RemoteStrategy, nameSelector, own, []corev1.NodeSelectorTerm{term(list(zoneA, onVirtual), byName), term(list(onVirtual), notN1, byName)}, true},
		{offloadingv1alpha1.RemoteStrategy, noTerms, nil, []corev1.NodeSelectorTerm{term(list(onVirtual))}, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, nil, nil, nil, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, euSelector, nil, []corev1.NodeSelectorTerm{term(list(regionEU, onVirtual)), term(list(offVirtual))}, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, nil, own, own.NodeSelectorTerms, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, euSelector, own, []corev1.NodeSelectorTerm{
			term(list(zoneA, regionEU, onVirtual)), term(list(zoneA, offVirtual)),
			term(list(regionEU, onVirtual), notN1), term(list(offVirtual), notN1)}, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, nameSelector, nil, []corev1.NodeSelectorTerm{term(list(onVirtual), byName), term(list(offVirtual))}, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, noTerms, nil, nil, true},
		{offloadingv1alpha1.LocalAndRemoteStrategy, noTerms, own, own.NodeSelectorTerms, true},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/selector=%s/own=%t", tt.strategy, selectorNames[tt.selector], tt.affinity != nil)
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			webhooktest.Edit(t, home, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
				o.Spec.PodOffloadingStrategy, o.Spec.ClusterSelector = tt.strategy, tt.selector
			})
			g.Eventually(func(g Gomega) {
				got := webhooktest.Create(g, home, webhooktest.Pod("placed", tt.affinity), true)
				if tt.wantTerms == nil {
					g.Expect(got.Spec.Affinity).To(BeNil())
				} else {
					g.Expect(requiredTerms(got)).To(Equal(tt.wantTerms))
				}
				if tt.tolerate {
					g.Expect(got.Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
				} else {
					g.Expect(got.Spec.Tolerations).NotTo(ContainElement(HaveField("Key", wellknown.VirtualNodeTaintKey)))
				}
			}).WithTimeout(10 * time.Second).Should(Succeed()) // the webhook reads the offloading from a cache
		})
	}

	contradictions := []struct {
		name     string
		strategy offloadingv1alpha1.PodOffloadingStrategy
		selector *corev1.NodeSelector
		// podName empty: the pod has a generateName only.
		podName  string
		affinity *corev1.NodeSelector
		want     []string
		// The event is on the pod when it has a name, else on the
		// NamespaceOffloading, naming the pod by its generateName.
		regardingKind, regardingName, note string
	}{
		{name: "Remote, a named pod", strategy: offloadingv1alpha1.RemoteStrategy,
			selector: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(zoneA))}},
			podName:  "contradicts", affinity: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(req("zone", corev1.NodeSelectorOpIn, "b")))}},
			want:          []string{"podOffloadingStrategy Remote", "zone In (b) contradicts zone In (a)"},
			regardingKind: "Pod", regardingName: "contradicts", note: "pod contradicts: "},
		// The pod asks for a virtual node outside the selector: neither the
		// remote terms nor the local one can match.
		{name: "LocalAndRemote, a pod with a generateName only", strategy: offloadingv1alpha1.LocalAndRemoteStrategy, selector: euSelector,
			affinity: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(onVirtual, req("region", corev1.NodeSelectorOpIn, "us")))}},
			want: []string{"podOffloadingStrategy LocalAndRemote", "region In (us) contradicts region In (eu)",
				"stretch.dev/type In (virtual-node) contradicts stretch.dev/type NotIn (virtual-node)"},
			regardingKind: "NamespaceOffloading", regardingName: wellknown.NamespaceOffloadingName, note: "pod app-*: "},
	}
	for _, tt := range contradictions {
		t.Run("contradicting terms: admitted, with a warning and an event/"+tt.name, func(t *testing.T) {
			g := NewWithT(t)
			webhooktest.Edit(t, home, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
				o.Spec.PodOffloadingStrategy, o.Spec.ClusterSelector = tt.strategy, tt.selector
			})
			warned := ContainElement(containsAll(append([]string{"no node can match the node affinity of this pod"}, tt.want...)...))
			wc := webhooktest.NewWarningClient(t, home)
			p := webhooktest.Pod("placed", tt.affinity)
			if tt.podName != "" {
				p.GenerateName, p.Name = "", tt.podName
			}
			// A dry run first, until the webhook's cache has the edit: it
			// records no event.
			g.Eventually(func(g Gomega) {
				g.Expect(wc.Create(ctx, p.DeepCopy(), client.DryRunAll)).To(Succeed())
				g.Expect(wc.Take()).To(warned)
			}).WithTimeout(10 * time.Second).Should(Succeed())
			created := p.DeepCopy()
			g.Expect(wc.Create(ctx, created)).To(Succeed())
			g.Expect(created.Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
			g.Expect(wc.Take()).To(warned)
			g.Eventually(func(g Gomega) {
				events := &eventsv1.EventList{}
				g.Expect(home.Client.List(ctx, events, client.InNamespace("placed"))).To(Succeed())
				g.Expect(events.Items).To(ContainElement(And(
					HaveField("Reason", podplacement.ContradictionReason),
					HaveField("Regarding.Kind", tt.regardingKind),
					HaveField("Regarding.Name", tt.regardingName),
					HaveField("Note", And(HavePrefix(tt.note), ContainSubstring(tt.want[1]))))))
			}).WithTimeout(10 * time.Second).Should(Succeed())
		})
	}
}

// containsAll matches a string that contains each of subs.
func containsAll(subs ...string) types.GomegaMatcher {
	ms := make([]types.GomegaMatcher, 0, len(subs))
	for _, sub := range subs {
		ms = append(ms, ContainSubstring(sub))
	}
	return And(ms...)
}

func TestPodsCreatedTooEarlyAreRejected(t *testing.T) {
	webhooktest.Serve(t, home, certs.Options{})
	ctx := context.Background()

	// Labelled beforehand, not offloaded yet.
	webhooktest.Namespace(t, home, "early", true)
	g := NewWithT(t)
	err := home.Client.Create(ctx, webhooktest.Pod("early", nil))
	g.Expect(err).To(MatchError(And(ContainSubstring("no NamespaceOffloading named \"offloading\""), ContainSubstring("retry"))))

	for _, phase := range []offloadingv1alpha1.OffloadingPhase{"", offloadingv1alpha1.InProgressPhase} {
		off := webhooktest.OffloadingIn(t, home, "early", offloadingv1alpha1.NamespaceOffloadingSpec{}, phase)
		g.Eventually(func() error { return home.Client.Create(ctx, webhooktest.Pod("early", nil), client.DryRunAll) }).
			WithTimeout(10*time.Second).Should(MatchError(And(ContainSubstring("is being offloaded"), ContainSubstring("retry in a few seconds"))), "phase %q", phase)
		g.Expect(home.Client.Delete(ctx, off)).To(Succeed())
		g.Eventually(func() bool { return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(off), off)) }).Should(BeTrue())
	}

	// Being unoffloaded: admitted, left alone.
	off := webhooktest.OffloadingIn(t, home, "early", offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy}, offloadingv1alpha1.TerminatingPhase)
	g.Eventually(func(g Gomega) {
		got := webhooktest.Create(g, home, webhooktest.Pod("early", nil), true)
		g.Expect(got.Spec.Tolerations).NotTo(ContainElement(placement.VirtualNodeToleration))
		g.Expect(got.Spec.Affinity).To(BeNil())
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Ready: placed.
	off.Status.OffloadingPhase = offloadingv1alpha1.ReadyPhase
	g.Expect(home.Client.Status().Update(ctx, off)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(webhooktest.Create(g, home, webhooktest.Pod("early", nil), true).Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// A namespace without the label, or with it set to anything but true,
	// never calls the webhook: its pods are admitted as they are, even
	// while the offloading is InProgress (when the webhook would refuse them).
	for ns, value := range map[string]string{"unlabelled": "", "labelled-false": "false"} {
		webhooktest.NamespaceLabelled(t, home, ns, value)
		webhooktest.OffloadingIn(t, home, ns, offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy}, offloadingv1alpha1.InProgressPhase)
		calls := webhooktest.PodWebhookCalls(g)
		p := webhooktest.Pod(ns, nil)
		got := webhooktest.Create(g, home, p, false)
		g.Expect(got.Spec.Tolerations).NotTo(ContainElement(placement.VirtualNodeToleration), ns)
		g.Expect(got.Spec.Affinity).To(BeNil(), ns)
		g.Expect(webhooktest.PodWebhookCalls(g)).To(Equal(calls), "namespace %s called the pod webhook", ns)
	}
}
