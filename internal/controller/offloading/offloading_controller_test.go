package offloading_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/controller/offloading"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
)

var (
	home, eu, us *testenv.APIServer
	homeID       = uuid.NewString()
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { home, eu, us = s[0], s[1], s[2] }, "home", "provider-eu", "provider-us")
}

// stretch runs Stretch on home and both providers, peered. opts adjust the
// offloading controller.
func stretch(t *testing.T, opts ...func(*offloading.Reconciler)) *fleet.Stretch {
	t.Helper()
	return fleet.Run(t, home, homeID, []fleet.Provider{
		{Server: eu, Labels: map[string]string{"region": "eu"}},
		{Server: us, Labels: map[string]string{"region": "us"}},
	}, opts...)
}

func offload(t *testing.T, ns string, sel *corev1.NodeSelector) *offloadingv1alpha1.NamespaceOffloading {
	t.Helper()
	g := NewWithT(t)
	g.Expect(home.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "offloading"},
		Spec: offloadingv1alpha1.NamespaceOffloadingSpec{ClusterSelector: sel}}
	g.Expect(home.Client.Create(context.Background(), off)).To(Succeed())
	return off
}

func get(g Gomega, off *offloadingv1alpha1.NamespaceOffloading) *offloadingv1alpha1.NamespaceOffloading {
	got := &offloadingv1alpha1.NamespaceOffloading{}
	g.Expect(home.Client.Get(context.Background(), client.ObjectKeyFromObject(off), got)).To(Succeed())
	return got
}

// selector is a one-requirement cluster selector.
func selector(key string, op corev1.NodeSelectorOperator, values ...string) *corev1.NodeSelector {
	return &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}}}
}

func region(op corev1.NodeSelectorOperator, values ...string) *corev1.NodeSelector {
	return selector("region", op, values...)
}

// newG is a Gomega whose Eventually waits long enough for three clusters.
func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	return g
}

func TestOffloadSelectedProvidersOnly(t *testing.T) {
	g := newG(t)
	stretch(t)
	ctx := context.Background()

	off := offload(t, "shop", region(corev1.NodeSelectorOpIn, "eu"))
	twin := "shop-" + homeID
	g.Eventually(func(g Gomega) {
		st := get(g, off).Status
		g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		g.Expect(st.RemoteNamespaceName).To(Equal(twin))
		g.Expect(st.RemoteNamespacesConditions).To(HaveKey("provider-eu"))
		g.Expect(st.RemoteNamespacesConditions).NotTo(HaveKey("provider-us"))
	}).Should(Succeed())
	ns := &corev1.Namespace{}
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: twin}, ns)).To(Succeed())
	g.Expect(ns.Annotations).To(HaveKeyWithValue(wellknown.RemoteNamespaceOriginAnnotation, homeID))
	g.Expect(apierrors.IsNotFound(us.Client.Get(ctx, client.ObjectKey{Name: twin}, &corev1.Namespace{}))).To(BeTrue())

	// The selector widens: the twin set follows, and the status says which
	// generation it is for.
	generation := get(g, off).Generation
	g.Expect(get(g, off).Status.ObservedGeneration).To(Equal(generation))
	g.Eventually(func() error {
		cur := get(g, off)
		cur.Spec.ClusterSelector = region(corev1.NodeSelectorOpIn, "eu", "us")
		return home.Client.Update(ctx, cur)
	}).Should(Succeed())
	g.Eventually(func() error { return us.Client.Get(ctx, client.ObjectKey{Name: twin}, &corev1.Namespace{}) }).Should(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, off)
		g.Expect(cur.Generation).To(BeNumerically(">", generation))
		g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
		g.Expect(cur.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
	}).Should(Succeed())

	// A selector that cannot be parsed selects nothing and says why; fixed, it clears.
	g.Eventually(func() error {
		cur := get(g, off)
		cur.Spec.ClusterSelector = region("Near", "eu")
		return home.Client.Update(ctx, cur)
	}).Should(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, off)
		g.Expect(cur.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.NoClusterSelectedPhase))
		g.Expect(cur.Status.ObservedGeneration).To(Equal(cur.Generation))
		g.Expect(cur.Annotations).To(HaveKeyWithValue(wellknown.ClusterSelectorErrorAnnotation, ContainSubstring(`Unsupported value: "Near"`)))
		g.Expect(warnings(g, off)).To(ContainElement(warning("InvalidClusterSelector",
			"spec.clusterSelector cannot be parsed, so no provider is selected", `Unsupported value: "Near"`)))
	}).Should(Succeed())
	g.Eventually(func() error {
		cur := get(g, off)
		cur.Spec.ClusterSelector = region(corev1.NodeSelectorOpIn, "eu")
		return home.Client.Update(ctx, cur)
	}).Should(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, off)
		g.Expect(cur.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		g.Expect(cur.Annotations).NotTo(HaveKey(wellknown.ClusterSelectorErrorAnnotation))
	}).Should(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(us.Client.Get(ctx, client.ObjectKey{Name: twin}, &corev1.Namespace{}))
	}).Should(BeTrue())

	// Unoffload: the twins go, then the NamespaceOffloading.
	g.Expect(home.Client.Delete(ctx, off)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(eu.Client.Get(ctx, client.ObjectKey{Name: twin}, &corev1.Namespace{}))
	}).Should(BeTrue())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(off), &offloadingv1alpha1.NamespaceOffloading{}))
	}).Should(BeTrue())
}

// TestMatchFieldsSelectsByVirtualNodeName: matchFields picks providers by
// their virtual node's name, stretch-<provider>.
func TestMatchFieldsSelectsByVirtualNodeName(t *testing.T) {
	g := newG(t)
	stretch(t)
	off := offload(t, "by-name", &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{
		{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{peeringv1alpha1.VirtualNodeName("provider-eu")}}}}}})
	name := "by-name-" + homeID
	g.Eventually(func(g Gomega) {
		st := get(g, off).Status
		g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		readyOn(g, st, "provider-eu")
		g.Expect(st.RemoteNamespacesConditions).NotTo(HaveKey("provider-us"))
		g.Expect(twin(eu, name)).To(Succeed())
	}).Should(Succeed())
	g.Consistently(func(g Gomega) {
		_, err := request(us, "by-name")
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no request on us")
		g.Expect(apierrors.IsNotFound(twin(us, name))).To(BeTrue(), "no twin on us")
	}).WithTimeout(time.Second).Should(Succeed())
	unoffload(t, off)
}

// TestSteadyStateWritesNothing: once Ready, the reconciles that unrelated
// changes bring write neither the NamespaceOffloading nor its request.
func TestSteadyStateWritesNothing(t *testing.T) {
	g := newG(t)
	stretch(t)
	off := offload(t, "steady", region(corev1.NodeSelectorOpIn, "eu"))
	bystander := offload(t, "steady-bystander", selector("tier", corev1.NodeSelectorOpIn, "gold"))
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		g.Expect(get(g, bystander).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.NoClusterSelectedPhase))
	}).Should(Succeed())
	rn, err := request(eu, "steady")
	g.Expect(err).NotTo(HaveOccurred())
	offVersion, requestVersion := get(g, off).ResourceVersion, rn.ResourceVersion

	// A virtual-node label change wakes every NamespaceOffloading (the
	// bystander shows it did), a label on the home namespace this one, a
	// label on the twin its request.
	rc := &peeringv1alpha1.RemoteCluster{ObjectMeta: metav1.ObjectMeta{Name: "provider-eu"}}
	edit(t, home.Client, rc, func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Labels = map[string]string{"tier": "gold"} })
	t.Cleanup(func() { edit(t, home.Client, rc, func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Labels = nil }) })
	edit(t, home.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "steady"}}, func(ns *corev1.Namespace) { ns.Labels["team"] = "web" })
	edit(t, eu.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "steady-" + homeID}}, func(ns *corev1.Namespace) { ns.Labels["touched"] = "yes" })
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, bystander).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
	}).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, off).ResourceVersion).To(Equal(offVersion), "the NamespaceOffloading is not written")
		rn, err := request(eu, "steady")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(rn.ResourceVersion).To(Equal(requestVersion), "its request is not written")
	}).WithTimeout(3 * time.Second).Should(Succeed())
	g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
	unoffload(t, bystander)
	unoffload(t, off)
}

// TestFAQFailures reproduces the FAQ's SomeFailed and AllFailed cases and
// the object with the wrong name.
func TestFAQFailures(t *testing.T) {
	stretch(t)
	ctx := context.Background()

	t.Run("a 27-character namespace fails everywhere with NameTooLong", func(t *testing.T) {
		g := NewWithT(t)
		ns := "abcdefghijklmnopqrstuvwxyz0" // 27 characters
		off := offload(t, ns, nil)
		g.Eventually(func(g Gomega) {
			st := get(g, off).Status
			g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.AllFailedPhase))
			for _, p := range []string{"provider-eu", "provider-us"} {
				g.Expect(st.RemoteNamespacesConditions[p]).To(ContainElement(And(
					HaveField("Type", offloadingv1alpha1.RemoteNamespaceReadyCondition),
					HaveField("Reason", offloadingv1alpha1.CreationFailedReason),
					HaveField("Message", ContainSubstring("NameTooLong")),
					HaveField("Message", ContainSubstring("at most 26 characters")))))
			}
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	t.Run("an existing namespace on one provider gives SomeFailed and is untouched", func(t *testing.T) {
		g := NewWithT(t)
		twin := "taken-" + homeID
		existing := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: twin}}
		g.Expect(us.Client.Create(ctx, existing)).To(Succeed())
		off := offload(t, "taken", nil)
		g.Eventually(func(g Gomega) {
			st := get(g, off).Status
			g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.SomeFailedPhase))
			g.Expect(st.RemoteNamespacesConditions["provider-us"]).To(ContainElement(HaveField("Message", ContainSubstring("AlreadyExists"))))
			g.Expect(st.RemoteNamespacesConditions["provider-eu"]).To(ContainElement(And(
				HaveField("Type", offloadingv1alpha1.RemoteNamespaceReadyCondition), HaveField("Status", metav1.ConditionTrue))))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		g.Expect(home.Client.Delete(ctx, off)).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(off), &offloadingv1alpha1.NamespaceOffloading{}))
		}).WithTimeout(30 * time.Second).Should(BeTrue())
		got := &corev1.Namespace{}
		g.Expect(us.Client.Get(ctx, client.ObjectKey{Name: twin}, got)).To(Succeed())
		g.Expect(got.ResourceVersion).To(Equal(existing.ResourceVersion), "the existing namespace is never modified, not even on unoffload")
	})

	t.Run("only the object named offloading is reconciled", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "misnamed"}})).To(Succeed())
		off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "misnamed", Name: "my-offloading"}}
		g.Expect(home.Client.Create(ctx, off)).To(Succeed())
		g.Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(home.Client.List(ctx, events, client.InNamespace("misnamed"))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(HaveField("Reason", "IgnoredName"), HaveField("Type", corev1.EventTypeWarning))))
		}).Should(Succeed())
		g.Consistently(func(g Gomega) {
			cur := get(g, off)
			g.Expect(cur.Status.OffloadingPhase).To(BeEmpty())
			g.Expect(cur.Finalizers).To(BeEmpty())
		}).WithTimeout(2 * time.Second).Should(Succeed())

		// Virtual-node label changes wake every NamespaceOffloading (the
		// watcher shows that they did), but the ignored one is not told
		// again: a repeated event would become a series.
		watcher := offload(t, "misnamed-watcher", selector("tier", corev1.NodeSelectorOpIn, "gold"))
		rc := &peeringv1alpha1.RemoteCluster{ObjectMeta: metav1.ObjectMeta{Name: "provider-eu"}}
		t.Cleanup(func() { edit(t, home.Client, rc, func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Labels = nil }) })
		for _, labels := range []map[string]string{{"tier": "gold"}, nil} {
			edit(t, home.Client, rc, func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Labels = labels })
			want := offloadingv1alpha1.NoClusterSelectedPhase
			if labels != nil {
				want = offloadingv1alpha1.ReadyPhase
			}
			g.Eventually(func(g Gomega) {
				g.Expect(get(g, watcher).Status.OffloadingPhase).To(Equal(want))
			}).WithTimeout(30 * time.Second).Should(Succeed())
		}
		g.Consistently(func(g Gomega) {
			ignored := warnings(g, off)
			g.Expect(ignored).To(HaveLen(1))
			g.Expect(ignored[0].Reason).To(Equal("IgnoredName"))
			g.Expect(ignored[0].Series).To(BeNil(), "said once")
		}).WithTimeout(2 * time.Second).Should(Succeed())
		unoffload(t, watcher)
	})
}
