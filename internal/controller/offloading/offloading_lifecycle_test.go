package offloading_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
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

// eventReasons returns the reasons of the Warning events about off.
func eventReasons(g Gomega, off *offloadingv1alpha1.NamespaceOffloading) []string {
	list := &eventsv1.EventList{}
	g.Expect(home.Client.List(context.Background(), list, client.InNamespace(off.Namespace))).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Name == off.Name && e.Type == corev1.EventTypeWarning {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
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
	v, ok := n.Labels[offloadingv1alpha1.SchedulingEnabledLabel]
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
	edit(t, home.Client, ns, func(n *corev1.Namespace) { delete(n.Labels, offloadingv1alpha1.SchedulingEnabledLabel) })
	g.Eventually(hasLabel).Should(BeTrue())
	edit(t, home.Client, ns, func(n *corev1.Namespace) { n.Labels[offloadingv1alpha1.SchedulingEnabledLabel] = "false" })
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
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "early", Labels: map[string]string{offloadingv1alpha1.SchedulingEnabledLabel: "true"}}}
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
		st := get(g, off).Status
		g.Expect(st.OffloadingPhase).To(Equal(offloadingv1alpha1.TerminatingPhase))
		g.Expect(st.RemoteNamespacesConditions).NotTo(HaveKey("provider-eu"), "eu is done")
		g.Expect(st.RemoteNamespacesConditions["provider-us"]).To(ContainElement(And(
			HaveField("Type", offloadingv1alpha1.RemoteNamespaceReadyCondition),
			HaveField("Reason", offloadingv1alpha1.ProviderUnreachableReason),
			HaveField("Message", ContainSubstring("provider provider-us does not answer")),
			HaveField("Message", ContainSubstring(name)),
			HaveField("Message", ContainSubstring("stretchctl unoffload namespace stranded --force")),
			HaveField("Message", ContainSubstring("kubectl annotate namespaceoffloading offloading -n stranded offloading.stretch.dev/force-unoffload=true")))))
		g.Expect(eventReasons(g, off)).To(ContainElement("UnoffloadBlocked"))
	}).Should(Succeed())
	g.Expect(get(g, off).Finalizers).To(ContainElement(offloadingv1alpha1.NamespaceOffloadingFinalizer), "not finished without --force")

	// --force finishes it.
	edit(t, home.Client, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
		o.Annotations = map[string]string{offloadingv1alpha1.ForceUnoffloadAnnotation: "true"}
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

func TestControllersRestartMidOffloadAndUnoffload(t *testing.T) {
	g := newG(t)
	rg := stretch(t)
	ctx := context.Background()
	name := "restart-" + homeID

	// Providers do not answer yet: the requests wait.
	rg.StopTenant(eu)
	rg.StopTenant(us)
	off := offload(t, "restart", nil)
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.InProgressPhase))
		for _, s := range []*testenv.APIServer{eu, us} {
			_, err := request(s, "restart")
			g.Expect(err).NotTo(HaveOccurred())
		}
	}).Should(Succeed())
	rg.StopHome()
	rg.StartTenant(eu)
	rg.StartTenant(us)
	rg.StartHome()
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
	}).Should(Succeed())

	// Unoffload, with the providers stopped half-way and the home manager
	// restarted.
	rg.StopTenant(eu)
	rg.StopTenant(us)
	g.Expect(home.Client.Delete(ctx, off)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, off).Status.OffloadingPhase).To(Equal(offloadingv1alpha1.TerminatingPhase))
		rn, err := request(eu, "restart")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(rn.DeletionTimestamp).NotTo(BeNil())
	}).Should(Succeed())
	rg.StopHome()
	rg.StartTenant(eu)
	rg.StartTenant(us)
	rg.StartHome()
	unoffload(t, off)
	for _, s := range []*testenv.APIServer{eu, us} {
		g.Eventually(func() bool { return apierrors.IsNotFound(twin(s, name)) }).Should(BeTrue(), s.Name)
	}
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
		g.Expect(got.Annotations).NotTo(HaveKey(offloadingv1alpha1.ClusterSelectorErrorAnnotation), "valid, just unmatched")
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
