package virtualkubelet_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
)

// inTwin reports whether the twin holds an object like obj of that name.
func inTwin(g Gomega, twin, name string, obj client.Object) bool {
	err := eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false
	}
	g.Expect(err).NotTo(HaveOccurred())
	return true
}

// A provider's controllers add their own keys and finalizers to a
// reflected Service (a load balancer's): they stay through updates of the
// home Service, which are written once, while keys removed at home go. A
// copy made by an older release, which did not list the keys it set, gets
// the lists at its next sync and loses nothing.
func TestReflectionKeepsWhatTheProviderAdds(t *testing.T) {
	g := newG(t)
	st := fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ns := "lb"
	twin := offload(t, g, ns)
	const (
		lbFinalizer = "service.kubernetes.io/load-balancer-cleanup"
		lbPool      = "metallb.universe.tf/ip-allocated-from-pool"
	)
	homeKey := metav1.ObjectMeta{Namespace: ns, Name: "web"}
	remoteKey := metav1.ObjectMeta{Namespace: twin, Name: "web"}
	remoteSvc := func(g Gomega) *corev1.Service {
		s := &corev1.Service{}
		g.Expect(inTwin(g, twin, "web", s)).To(BeTrue())
		return s
	}
	g.Expect(home.Client.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"example.com/owner": "team-a"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	})).To(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(remoteSvc(g).Labels).To(HaveKeyWithValue("tier", "front")) }).Should(Succeed())
	t.Cleanup(func() { // should a subtest fail before the finalizer goes
		s := &corev1.Service{}
		if err := eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "web"}, s); err == nil && len(s.Finalizers) > 0 {
			s.Finalizers = nil
			_ = eu.Client.Update(ctx, s)
		}
	})

	t.Run("the provider's keys and finalizer stay; keys removed at home go", func(t *testing.T) {
		g := newG(t)
		// As a load balancer controller of the provider would.
		edit(t, eu.Client, &corev1.Service{ObjectMeta: remoteKey}, func(s *corev1.Service) {
			s.Finalizers = append(s.Finalizers, lbFinalizer)
			s.Annotations[lbPool] = "pool-a"
			s.Labels["provider.example/zone"] = "a"
		})
		s := remoteSvc(g)
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
		g.Expect(eu.Client.Status().Update(ctx, s)).To(Succeed())

		edit(t, home.Client, &corev1.Service{ObjectMeta: homeKey}, func(s *corev1.Service) {
			delete(s.Labels, "tier")
			delete(s.Annotations, "example.com/owner")
			s.Labels["release"] = "2"
			s.Spec.Ports[0].Port = 8080
		})
		g.Eventually(func(g Gomega) {
			s := remoteSvc(g)
			g.Expect(s.Spec.Ports[0].Port).To(BeEquivalentTo(8080))
			g.Expect(s.Labels).To(HaveKeyWithValue("release", "2"))
			g.Expect(s.Labels).NotTo(HaveKey("tier"), "removed at home, removed here")
			g.Expect(s.Annotations).NotTo(HaveKey("example.com/owner"), "removed at home, removed here")
			g.Expect(s.Labels).To(HaveKeyWithValue("provider.example/zone", "a"), "the provider's label stays")
			g.Expect(s.Annotations).To(HaveKeyWithValue(lbPool, "pool-a"), "the provider's annotation stays")
			g.Expect(s.Finalizers).To(ConsistOf(lbFinalizer), "the provider's finalizer stays")
			g.Expect(s.Status.LoadBalancer.Ingress).To(ConsistOf(HaveField("IP", "192.0.2.10")))
			g.Expect(strings.Split(s.Annotations[wellknown.RemotePodManagedLabelsAnnotation], ",")).To(ConsistOf(
				"app", "release", wellknown.ReflectedLabel, wellknown.OriginClusterIDLabel, wellknown.OriginNamespaceLabel))
		}).Should(Succeed())

		// What the provider added makes no write: the copy is in sync.
		before, err := testenv.APIWrites(ctx, eu.Config)
		g.Expect(err).NotTo(HaveOccurred())
		edit(t, eu.Client, &corev1.Service{ObjectMeta: remoteKey}, func(s *corev1.Service) { s.Annotations["provider.example/seen"] = "yes" })
		g.Consistently(func(g Gomega) int64 {
			after, err := testenv.APIWrites(ctx, eu.Config)
			g.Expect(err).NotTo(HaveOccurred())
			return after.Since(before)["PUT services"]
		}).WithTimeout(2*time.Second).Should(BeEquivalentTo(1), "the provider's own edit only")
	})

	t.Run("a copy an older release made, without the lists of keys, gets them at its next sync", func(t *testing.T) {
		g := newG(t)
		st.StopHome()
		// As an older release left it: no lists; a key of the provider.
		edit(t, eu.Client, &corev1.Service{ObjectMeta: remoteKey}, func(s *corev1.Service) {
			delete(s.Annotations, wellknown.RemotePodManagedLabelsAnnotation)
			delete(s.Annotations, wellknown.RemotePodManagedAnnotationsAnnotation)
			s.Labels["legacy.example/rack"] = "r1"
		})
		st.StartHome()
		g.Eventually(func(g Gomega) {
			s := remoteSvc(g)
			// The home Service's keys of now count as set by Stretch.
			g.Expect(strings.Split(s.Annotations[wellknown.RemotePodManagedLabelsAnnotation], ",")).To(ConsistOf(
				"app", "release", wellknown.ReflectedLabel, wellknown.OriginClusterIDLabel, wellknown.OriginNamespaceLabel))
			g.Expect(s.Annotations).To(HaveKeyWithValue(wellknown.RemotePodManagedAnnotationsAnnotation, ""))
			g.Expect(s.Labels).To(HaveKeyWithValue("legacy.example/rack", "r1"))
			g.Expect(s.Finalizers).To(ConsistOf(lbFinalizer))
		}).Should(Succeed())

		// Tracked from now on: a label removed at home goes; the provider's stay.
		edit(t, home.Client, &corev1.Service{ObjectMeta: homeKey}, func(s *corev1.Service) { delete(s.Labels, "release") })
		g.Eventually(func(g Gomega) map[string]string { return remoteSvc(g).Labels }).Should(And(
			Not(HaveKey("release")), HaveKeyWithValue("legacy.example/rack", "r1"), HaveKeyWithValue("provider.example/zone", "a")))
		g.Expect(slices.Contains(remoteSvc(g).Finalizers, lbFinalizer)).To(BeTrue())
	})

	t.Run("a copy whose home object went while the manager was down is deleted", func(t *testing.T) {
		g := newG(t)
		st.StopHome()
		g.Expect(home.Client.Delete(ctx, &corev1.Service{ObjectMeta: homeKey})).To(Succeed())
		// The load balancer controller lets it go once it is deleted.
		edit(t, eu.Client, &corev1.Service{ObjectMeta: remoteKey}, func(s *corev1.Service) { s.Finalizers = nil })
		st.StartHome()
		// Nothing of the namespace is left at home: only the look the
		// kubelet takes into its twins when it starts finds the copy.
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "web", &corev1.Service{}) }).Should(BeFalse())
	})
}
