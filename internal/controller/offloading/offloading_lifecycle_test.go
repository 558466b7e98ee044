package offloading_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/controller/offloading"
	"stretch.dev/stretch/internal/testenv"
)

// twin reads namespace name on a provider.
func twin(s *testenv.APIServer, name string) error {
	return s.Client.Get(context.Background(), client.ObjectKey{Name: name}, &corev1.Namespace{})
}

// request reads the RemoteNamespace of home namespace ns on a provider.
func request(s *testenv.APIServer, ns string) (*peeringv1alpha1.RemoteNamespace, error) {
	rn := &peeringv1alpha1.RemoteNamespace{}
	err := s.Client.Get(context.Background(), client.ObjectKey{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: ns}, rn)
	return rn, err
}

// edit changes obj on c, retrying on conflicts with the controllers.
func edit[T client.Object](t *testing.T, c client.Client, obj T, change func(T)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return c.Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatalf("editing %s: %v", obj.GetName(), err)
	}
}

// readyOn expects the provider's Ready condition of off to be True.
func readyOn(g Gomega, st offloadingv1alpha1.NamespaceOffloadingStatus, provider string) {
	g.Expect(st.RemoteNamespacesConditions[provider]).To(ContainElement(And(
		HaveField("Type", offloadingv1alpha1.RemoteNamespaceReadyCondition), HaveField("Status", metav1.ConditionTrue))), "provider %s", provider)
}

// unoffload deletes off and waits until it is gone.
func unoffload(t *testing.T, off *offloadingv1alpha1.NamespaceOffloading) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(client.IgnoreNotFound(home.Client.Delete(context.Background(), off))).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(home.Client.Get(context.Background(), client.ObjectKeyFromObject(off), &offloadingv1alpha1.NamespaceOffloading{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
}

// warnings returns the Warning events about off.
func warnings(g Gomega, off *offloadingv1alpha1.NamespaceOffloading) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(home.Client.List(context.Background(), list, client.InNamespace(off.Namespace))).To(Succeed())
	var events []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == off.Name && e.Type == corev1.EventTypeWarning {
			events = append(events, e)
		}
	}
	return events
}

// eventReasons returns the reasons of the Warning events about off.
func eventReasons(g Gomega, off *offloadingv1alpha1.NamespaceOffloading) []string {
	var reasons []string
	for _, e := range warnings(g, off) {
		reasons = append(reasons, e.Reason)
	}
	return reasons
}

// warning matches an event of that reason whose note has every part.
func warning(reason string, parts ...string) OmegaMatcher {
	matchers := []OmegaMatcher{HaveField("Reason", reason)}
	for _, p := range parts {
		matchers = append(matchers, HaveField("Note", ContainSubstring(p)))
	}
	return And(matchers...)
}

// offloadingsInPhase reads stretch_namespace_offloadings{phase} as scraped.
func offloadingsInPhase(g Gomega, phase offloadingv1alpha1.OffloadingPhase) float64 {
	families, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != "stretch_namespace_offloadings" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == string(phase) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func schedulingLabel(g Gomega, ns string) (string, bool) {
	n := &corev1.Namespace{}
	g.Expect(home.Client.Get(context.Background(), client.ObjectKey{Name: ns}, n)).To(Succeed())
	v, ok := n.Labels[wellknown.SchedulingEnabledLabel]
	return v, ok
}

func TestSchedulingLabelFollowsStrategy(t *testing.T) {
	g := newG(t)
	stretch(t)
	off := offload(t, "labelled", region(corev1.NodeSelectorOpIn, "eu"))

	hasLabel := func(g Gomega) bool {
		v, ok := schedulingLabel(g, "labelled")
		return ok && v == "true"
	}
	g.Eventually(hasLabel).Should(BeTrue(), "LocalAndRemote (the default) labels the namespace")

	edit(t, home.Client, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
		o.Spec.PodOffloadingStrategy = offloadingv1alpha1.LocalStrategy
	})
	g.Eventually(hasLabel).Should(BeFalse(), "Local: pods stay home, the webhook has nothing to do")

	edit(t, home.Client, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
		o.Spec.PodOffloadingStrategy = offloadingv1alpha1.RemoteStrategy
	})
	g.Eventually(hasLabel).Should(BeTrue())

	// Removed by hand, it comes back; a wrong value is corrected.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "labelled"}}
	edit(t, home.Client, ns, func(n *corev1.Namespace) { delete(n.Labels, wellknown.SchedulingEnabledLabel) })
	g.Eventually(hasLabel).Should(BeTrue())
	edit(t, home.Client, ns, func(n *corev1.Namespace) { n.Labels[wellknown.SchedulingEnabledLabel] = "false" })
	g.Eventually(hasLabel).Should(BeTrue())

	unoffload(t, off)
	_, ok := schedulingLabel(g, "labelled")
	g.Expect(ok).To(BeFalse(), "an unoffloaded namespace's new pods stay home")
}

func TestSchedulingLabelSetBeforehand(t *testing.T) {
	g := newG(t)
	stretch(t)
	ctx := context.Background()
	// The user labels the namespace before offloading it (§4.11); the label
	// stays, and the offloading keeps it.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "early", Labels: map[string]string{wellknown.SchedulingEnabledLabel: "true"}}}
	g.Expect(home.Client.Create(ctx, ns)).To(Succeed())
	g.Consistently(func(g Gomega) bool { _, ok := schedulingLabel(g, "early"); return ok }).WithTimeout(time.Second).Should(BeTrue(),
		"no NamespaceOffloading yet: the label is the user's")
	off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "early", Name: "offloading"}}
	g.Expect(home.Client.Create(ctx, off)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		v, _ := schedulingLabel(g, "early")
		g.Expect(v).To(Equal("true"))
	}).Should(Succeed())
	unoffload(t, off)
}

func TestUnoffloadDeletesPodsOnVirtualNodes(t *testing.T) {
	g := newG(t)
	stretch(t)
	ctx := context.Background()
	off := offload(t, "pods", region(corev1.NodeSelectorOpIn, "eu"))
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
	}).Should(Succeed())

	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "pods", Name: name},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}}
	}
	remotePod, localPod := pod("remote", peeringv1alpha1.VirtualNodeName("provider-eu")), pod("local", "home-node-1")
	for _, p := range []*corev1.Pod{remotePod, localPod} {
		g.Expect(home.Client.Create(ctx, p)).To(Succeed())
		t.Cleanup(func() { _ = home.Client.Delete(context.Background(), p, client.GracePeriodSeconds(0)) })
	}

	unoffload(t, off)
	got := &corev1.Pod{}
	err := home.Client.Get(ctx, client.ObjectKeyFromObject(remotePod), got)
	// No kubelet ends the pod here: it is at least being deleted.
	g.Expect(apierrors.IsNotFound(err) || err == nil && got.DeletionTimestamp != nil).To(BeTrue(), "the pod on the virtual node is deleted: %v", err)
	g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(localPod), got)).To(Succeed())
	g.Expect(got.DeletionTimestamp).To(BeNil(), "pods on home nodes are left alone")
}

func TestUnreachableProviderDoesNotBlockUnoffloadForever(t *testing.T) {
	g := newG(t)
	stretch(t, func(r *offloading.Reconciler) { r.UnoffloadTimeout = 3 * time.Second })
	ctx := context.Background()
	off := offload(t, "stranded", nil)
	name := "stranded-" + homeID
	g.Eventually(func(g Gomega) {
		st := get(g, off).Status
		g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		readyOn(g, st, "provider-us")
	}).Should(Succeed())

	g.Expect(us.StopAPIServerOnly()).To(Succeed())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = us.RestartAPIServer()
		}
	})
	g.Expect(home.Client.Delete(ctx, off)).To(Succeed())

	// eu deletes its twin; us does not answer, and after the timeout the
	// status says so, naming the twin and the way out.
	g.Eventually(func() bool { return apierrors.IsNotFound(twin(eu, name)) }).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		blockedOnUS(g, off, offloadingv1alpha1.ProviderUnreachableReason,
			"provider provider-us does not answer", name,
			"stretchctl unoffload namespace stranded --force",
			"kubectl annotate namespaceoffloading offloading -n stranded offloading.stretch.dev/force-unoffload=true")
		g.Expect(eventReasons(g, off)).To(ContainElement("UnoffloadBlocked"))
	}).Should(Succeed())
	g.Expect(get(g, off).Finalizers).To(ContainElement(wellknown.NamespaceOffloadingFinalizer), "not finished without --force")

	// --force finishes it.
	edit(t, home.Client, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
		o.Annotations = map[string]string{wellknown.ForceUnoffloadAnnotation: "true"}
	})
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, off)).To(ContainElement("ForcedUnoffload"))
	}).Should(Succeed())
	unoffload(t, off)

	// When us answers again, the orphan request is withdrawn and its twin goes.
	g.Expect(us.RestartAPIServer()).To(Succeed())
	restarted = true
	g.Eventually(func() bool {
		_, err := request(us, "stranded")
		return apierrors.IsNotFound(err) && apierrors.IsNotFound(twin(us, name))
	}).WithTimeout(60 * time.Second).Should(BeTrue())
}

// TestProviderThatKeepsItsTwinDoesNotBlockUnoffloadForever: a provider
// whose API server answers but whose Stretch is stopped (or whose twin is
// stuck Terminating) never deletes its twin; after the timeout the status
// and an event say so, and the force annotation finishes the unoffload.
func TestProviderThatKeepsItsTwinDoesNotBlockUnoffloadForever(t *testing.T) {
	g := newG(t)
	rg := stretch(t, func(r *offloading.Reconciler) { r.UnoffloadTimeout = 3 * time.Second })
	ctx := context.Background()
	off := offload(t, "kept", nil)
	name := "kept-" + homeID
	tenant := peeringv1alpha1.TenantNamespace(homeID)
	g.Eventually(func(g Gomega) {
		st := get(g, off).Status
		g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		readyOn(g, st, "provider-us")
	}).Should(Succeed())

	rg.StopTenant(us)
	g.Expect(home.Client.Delete(ctx, off)).To(Succeed())

	// eu deletes its twin; us answers but does not, and after the timeout
	// the status says which provider, which twin, and why.
	g.Eventually(func(g Gomega) {
		g.Expect(apierrors.IsNotFound(twin(eu, name))).To(BeTrue())
		_, err := request(eu, "kept")
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	}).Should(Succeed())
	g.Eventually(func(g Gomega) {
		blockedOnUS(g, off, offloadingv1alpha1.TwinNotDeletedReason,
			"provider provider-us answers but has not deleted twin namespace "+name,
			"its request RemoteNamespace "+tenant+"/kept is still there",
			"Is Stretch's controller-manager running on provider provider-us?",
			"stretchctl unoffload namespace kept --force")
		g.Expect(warnings(g, off)).To(ContainElement(warning("UnoffloadBlocked",
			"provider provider-us answers but has not deleted twin namespace "+name, "is Stretch running on provider provider-us?", "stretchctl unoffload namespace kept --force")))
	}).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, off).Finalizers).To(ContainElement(wellknown.NamespaceOffloadingFinalizer))
	}).WithTimeout(time.Second).Should(Succeed(), "not finished without --force")
	rn, err := request(us, "kept")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rn.DeletionTimestamp).NotTo(BeNil(), "the request is withdrawn")

	// --force finishes it, naming what stays on us.
	edit(t, home.Client, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
		o.Annotations = map[string]string{wellknown.ForceUnoffloadAnnotation: "true"}
	})
	unoffload(t, off)
	g.Eventually(func(g Gomega) {
		g.Expect(warnings(g, off)).To(ContainElement(warning("ForcedUnoffload",
			"provider provider-us answered but had not deleted twin namespace "+name, "withdrawn request RemoteNamespace "+tenant+"/kept stay there")))
	}).Should(Succeed())
	g.Expect(twin(us, name)).To(Succeed(), "left on us until Stretch runs there again")

	// Stretch runs on us again: the withdrawn request takes its twin along.
	rg.StartTenant(us)
	g.Eventually(func() bool {
		_, err := request(us, "kept")
		return apierrors.IsNotFound(err) && apierrors.IsNotFound(twin(us, name))
	}).Should(BeTrue())
}

// onProviders returns, by provider, the UIDs of the twin request and of the
// twin namespace of home namespace ns, expecting at most one of each on
// each provider: requests in every tenant namespace and twins by their
// origin label, so that a duplicate under another name would show.
func onProviders(g Gomega, ns string) (requests, twins map[string]types.UID) {
	requests, twins = map[string]types.UID{}, map[string]types.UID{}
	for _, s := range []*testenv.APIServer{eu, us} {
		rns := &peeringv1alpha1.RemoteNamespaceList{}
		g.Expect(s.Client.List(context.Background(), rns)).To(Succeed())
		for _, rn := range rns.Items {
			if rn.Spec.HomeNamespace == ns {
				g.Expect(requests).NotTo(HaveKey(s.Name), "a second request for %s on %s: %s/%s", ns, s.Name, rn.Namespace, rn.Name)
				requests[s.Name] = rn.UID
			}
		}
		nss := &corev1.NamespaceList{}
		g.Expect(s.Client.List(context.Background(), nss, client.MatchingLabels{wellknown.OriginNamespaceLabel: ns})).To(Succeed())
		g.Expect(len(nss.Items)).To(BeNumerically("<=", 1), "twins of %s on %s", ns, s.Name)
		for _, n := range nss.Items {
			twins[s.Name] = n.UID
		}
	}
	return requests, twins
}

// versions returns the resourceVersions of objs, read again.
func versions(g Gomega, objs map[*testenv.APIServer][]client.Object) map[string]string {
	out := map[string]string{}
	for s, list := range objs {
		for _, o := range list {
			g.Expect(s.Client.Get(context.Background(), client.ObjectKeyFromObject(o), o)).To(Succeed())
			out[fmt.Sprintf("%s %T %s", s.Name, o, client.ObjectKeyFromObject(o))] = o.GetResourceVersion()
		}
	}
	return out
}

func TestControllersRestartMidOffloadAndUnoffload(t *testing.T) {
	g := newG(t)
	rg := stretch(t)
	ctx := context.Background()

	// A bystander, offloaded to eu only: neither the restarts nor the other
	// namespace's unoffload may touch it.
	other := offload(t, "restart-other", region(corev1.NodeSelectorOpIn, "eu"))
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, other).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
	}).Should(Succeed())
	otherRequest, err := request(eu, "restart-other")
	g.Expect(err).NotTo(HaveOccurred())
	bystander := map[*testenv.APIServer][]client.Object{
		home: {other, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "restart-other"}}},
		eu:   {otherRequest, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "restart-other-" + homeID}}},
	}
	bystanderVersions := versions(g, bystander)
	otherRequests, otherTwins := onProviders(g, "restart-other")
	g.Expect(otherRequests).To(HaveLen(1))
	g.Expect(otherTwins).To(HaveLen(1))

	// Mid-offload: the providers' controllers are stopped, so the requests
	// are made but no twin, and the home manager restarts.
	rg.StopTenant(eu)
	rg.StopTenant(us)
	off := offload(t, "restart", nil)
	var requests map[string]types.UID
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.InProgressPhase))
		var twins map[string]types.UID
		requests, twins = onProviders(g, "restart")
		g.Expect(requests).To(HaveKey("provider-eu"))
		g.Expect(requests).To(HaveKey("provider-us"))
		g.Expect(twins).To(BeEmpty())
	}).Should(Succeed())
	rg.StopHome()
	rg.StartTenant(eu)
	rg.StartTenant(us)
	rg.StartHome()
	var twins map[string]types.UID
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		var got map[string]types.UID
		got, twins = onProviders(g, "restart")
		g.Expect(got).To(Equal(requests), "the same requests, not made again")
		g.Expect(twins).To(HaveLen(2), "one twin on each provider")
	}).Should(Succeed())

	// Restarted once Ready, the home side makes nothing again and writes
	// nothing: the status stays Ready throughout (the pod webhook refuses
	// pods while it is not).
	readyVersion := get(g, off).ResourceVersion
	rg.StopHome()
	rg.StartHome()
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, off).ResourceVersion).To(Equal(readyVersion))
		gotRequests, gotTwins := onProviders(g, "restart")
		g.Expect(gotRequests).To(Equal(requests))
		g.Expect(gotTwins).To(Equal(twins))
	}).WithTimeout(3 * time.Second).Should(Succeed())

	// Mid-unoffload: the providers' controllers are stopped, so the requests
	// are withdrawn but the twins stay, and the home manager restarts.
	rg.StopTenant(eu)
	rg.StopTenant(us)
	g.Expect(home.Client.Delete(ctx, off)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.TerminatingPhase))
		for _, s := range []*testenv.APIServer{eu, us} {
			rn, err := request(s, "restart")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(rn.DeletionTimestamp).NotTo(BeNil(), "withdrawn on %s", s.Name)
		}
		_, got := onProviders(g, "restart")
		g.Expect(got).To(Equal(twins))
	}).Should(Succeed())
	rg.StopHome()
	rg.StartTenant(eu)
	rg.StartTenant(us)
	rg.StartHome()
	unoffload(t, off)
	g.Eventually(func(g Gomega) {
		requests, twins := onProviders(g, "restart")
		g.Expect(requests).To(BeEmpty(), "no request left on any provider")
		g.Expect(twins).To(BeEmpty(), "no twin left on any provider")
	}).Should(Succeed())

	// The home namespace stays, and the bystander is exactly as it was.
	ns := &corev1.Namespace{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: "restart"}, ns)).To(Succeed())
	g.Expect(ns.DeletionTimestamp).To(BeNil())
	g.Expect(versions(g, bystander)).To(Equal(bystanderVersions))
	gotRequests, gotTwins := onProviders(g, "restart-other")
	g.Expect(gotRequests).To(Equal(otherRequests))
	g.Expect(gotTwins).To(Equal(otherTwins))
	unoffload(t, other)
}

func TestPeersRemovedAndAdded(t *testing.T) {
	g := newG(t)
	rg := stretch(t)
	ctx := context.Background()
	off := offload(t, "fleet", nil)
	name := "fleet-" + homeID
	g.Eventually(func(g Gomega) {
		st := get(g, off).Status
		readyOn(g, st, "provider-eu")
		readyOn(g, st, "provider-us")
	}).Should(Succeed())

	// A peer removed: its twin goes before the peer does. (With the
	// provider's controller stopped, the request waits, and so does the peer.)
	rg.StopTenant(us)
	rc := &peeringv1alpha1.RemoteCluster{ObjectMeta: metav1.ObjectMeta{Name: "provider-us"}}
	g.Expect(home.Client.Delete(ctx, rc)).To(Succeed())
	g.Eventually(func(g Gomega) {
		rn, err := request(us, "fleet")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(rn.DeletionTimestamp).NotTo(BeNil(), "the request is withdrawn")
	}).Should(Succeed())
	g.Consistently(func() error {
		return home.Client.Get(ctx, client.ObjectKeyFromObject(rc), &peeringv1alpha1.RemoteCluster{})
	}).
		WithTimeout(2*time.Second).Should(Succeed(), "the peer stays while the provider holds the twin")
	rg.StartTenant(us)
	g.Eventually(func(g Gomega) {
		g.Expect(apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(rc), rc))).To(BeTrue())
		g.Expect(apierrors.IsNotFound(twin(us, name))).To(BeTrue())
		st := get(g, off).Status
		g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		g.Expect(st.RemoteNamespacesConditions).NotTo(HaveKey("provider-us"))
	}).Should(Succeed())

	// A peer added: the empty selector picks it up.
	rg.Peer(us)
	g.Eventually(func(g Gomega) {
		g.Expect(twin(us, name)).To(Succeed())
		readyOn(g, get(g, off).Status, "provider-us")
	}).Should(Succeed())
	unoffload(t, off)
}

func TestVirtualNodeLabelEditsMoveTwins(t *testing.T) {
	g := newG(t)
	stretch(t)
	off := offload(t, "gold", selector("tier", corev1.NodeSelectorOpIn, "gold"))
	name := "gold-" + homeID
	g.Eventually(func(g Gomega) {
		got := get(g, off)
		g.Expect(got.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.NoClusterSelectedPhase))
		g.Expect(got.Annotations).NotTo(HaveKey(wellknown.ClusterSelectorErrorAnnotation), "valid, just unmatched")
	}).Should(Succeed())

	rc := &peeringv1alpha1.RemoteCluster{ObjectMeta: metav1.ObjectMeta{Name: "provider-us"}}
	edit(t, home.Client, rc, func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Labels = map[string]string{"tier": "gold"} })
	t.Cleanup(func() { edit(t, home.Client, rc, func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Labels = nil }) })
	g.Eventually(func(g Gomega) {
		st := get(g, off).Status
		g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
		readyOn(g, st, "provider-us")
		g.Expect(twin(us, name)).To(Succeed())
	}).Should(Succeed())
	g.Expect(apierrors.IsNotFound(twin(eu, name))).To(BeTrue())

	edit(t, home.Client, rc, func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Labels = nil })
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.NoClusterSelectedPhase))
		g.Expect(apierrors.IsNotFound(twin(us, name))).To(BeTrue())
	}).Should(Succeed())
	unoffload(t, off)
}

func TestMappingStrategies(t *testing.T) {
	stretch(t)
	ctx := context.Background()
	tests := []struct {
		namespace, remote string
		mapping           offloadingv1alpha1.NamespaceMappingStrategy
		wantTwin          string
		wantReason        string // empty: Ready on both providers
	}{
		{namespace: "abcdefghijklmnopqrstuvwxyz", mapping: offloadingv1alpha1.DefaultNameMapping, wantTwin: "abcdefghijklmnopqrstuvwxyz-" + homeID}, // 26: the longest that fits
		{namespace: "same", mapping: offloadingv1alpha1.EnforceSameNameMapping, wantTwin: "same"},
		{namespace: "selected", mapping: offloadingv1alpha1.SelectedNameMapping, remote: "chosen-name", wantTwin: "chosen-name"},
		{namespace: "default", mapping: offloadingv1alpha1.EnforceSameNameMapping, wantTwin: "default", wantReason: "Forbidden"},
		{namespace: "sneaky", mapping: offloadingv1alpha1.SelectedNameMapping, remote: "kube-sneaky", wantTwin: "kube-sneaky", wantReason: "Forbidden"},
		{namespace: "tenant", mapping: offloadingv1alpha1.SelectedNameMapping, remote: "stretch-system", wantTwin: "stretch-system", wantReason: "Forbidden"},
		{namespace: "dotted", mapping: offloadingv1alpha1.SelectedNameMapping, remote: "not.a.label", wantTwin: "not.a.label", wantReason: "InvalidName"},
	}
	for _, tt := range tests {
		t.Run(tt.namespace, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(client.IgnoreAlreadyExists(home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tt.namespace}}))).To(Succeed())
			off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: tt.namespace, Name: "offloading"},
				Spec: offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: tt.mapping, RemoteNamespaceName: tt.remote}}
			g.Expect(home.Client.Create(ctx, off)).To(Succeed())
			g.Eventually(func(g Gomega) {
				st := get(g, off).Status
				g.Expect(st.RemoteNamespaceName).To(Equal(tt.wantTwin))
				for _, p := range []string{"provider-eu", "provider-us"} {
					if tt.wantReason == "" {
						readyOn(g, st, p)
						continue
					}
					g.Expect(st.RemoteNamespacesConditions[p]).To(ContainElement(And(
						HaveField("Reason", offloadingv1alpha1.CreationFailedReason), HaveField("Message", HavePrefix(tt.wantReason+":")))), p)
				}
				if tt.wantReason != "" {
					g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.AllFailedPhase))
					g.Expect(offloadingsInPhase(g, offloadingv1alpha1.AllFailedPhase)).To(BeNumerically(">=", 1))
				} else {
					g.Expect(offloadingsInPhase(g, offloadingv1alpha1.ReadyPhase)).To(BeNumerically(">=", 1))
				}
			}).WithTimeout(30 * time.Second).Should(Succeed())
			if tt.wantReason == "" {
				g.Expect(twin(eu, tt.wantTwin)).To(Succeed())
			}
			unoffload(t, off)
			if tt.wantReason == "" {
				g.Eventually(func() bool { return apierrors.IsNotFound(twin(eu, tt.wantTwin)) }).WithTimeout(30 * time.Second).Should(BeTrue())
			} else {
				g.Expect(twin(eu, tt.wantTwin)).To(Or(Succeed(), Satisfy(apierrors.IsNotFound)), "a refused name is never touched")
			}
		})
	}
}

// blockedOnUS asserts that the unoffload of off is done on provider-eu and
// blocked on provider-us, whose Ready condition has reason and says each of
// says.
func blockedOnUS(g Gomega, off *offloadingv1alpha1.NamespaceOffloading, reason string, says ...string) {
	st := get(g, off).Status
	g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.TerminatingPhase))
	g.Expect(st.RemoteNamespacesConditions).NotTo(HaveKey("provider-eu"), "eu is done")
	c := meta.FindStatusCondition(st.RemoteNamespacesConditions["provider-us"], offloadingv1alpha1.RemoteNamespaceReadyCondition)
	g.Expect(c).NotTo(BeNil())
	g.Expect(c.Reason).To(Equal(reason))
	for _, s := range says {
		g.Expect(c.Message).To(ContainSubstring(s))
	}
}
