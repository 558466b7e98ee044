package virtualkubelet_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv/fleet"
)

// endpointSliceController is the managed-by value of Kubernetes' own
// EndpointSlice controller.
const endpointSliceController = "endpointslice-controller.k8s.io"

// slices returns the EndpointSlices of Service svc in namespace ns of c
// whose managed-by label is manager.
func slicesOf(g Gomega, c client.Client, ns, svc, manager string) []discoveryv1.EndpointSlice {
	list := &discoveryv1.EndpointSliceList{}
	g.Expect(c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{
		discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: manager,
	})).To(Succeed())
	return list.Items
}

// endpointsOf returns the endpoints of those slices, by address.
func endpointsOf(g Gomega, c client.Client, ns, svc, manager string) map[string]discoveryv1.Endpoint {
	out := map[string]discoveryv1.Endpoint{}
	for _, s := range slicesOf(g, c, ns, svc, manager) {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				out[a] = e
			}
		}
	}
	return out
}

// setPodStatus makes the pod ns/name of c Running at ip, ready or not.
func setPodStatus(t *testing.T, c client.Client, ns, name, ip string, ready bool) {
	t.Helper()
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return err
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, StartTime: &now,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: now}}}
		return c.Status().Update(ctx, p)
	})
	if err != nil {
		t.Fatalf("setting the status of pod %s/%s: %v", ns, name, err)
	}
}

// TestEndpointsEverywhere: docs/design.md §4.22, with Kubernetes' own
// EndpointSlice controller (kube-controller-manager) at home and on the
// provider. The home Service lists the offloaded pod at its remote IP; the
// twin's Service lists the home pod next to the provider's own slice of the
// remote pod; readiness follows the pods; a selector-less Service's slices
// are reflected whole; the provider's edits are undone.
func TestEndpointsEverywhere(t *testing.T) {
	g := newG(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	home.RunControllerManager(t, "endpointslice")
	eu.RunControllerManager(t, "endpointslice")
	ns := "endpoints"
	twin := offload(t, g, ns)
	virtualNode := peeringv1alpha1.VirtualNodeName(eu.Name)
	// Nodes for the pods of the test: the EndpointSlice controller skips
	// a pod whose node it does not know.
	homeNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "endpoints-home-node"}}
	euNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "endpoints-eu-node"}}
	for _, c := range []struct {
		c    client.Client
		node *corev1.Node
	}{{home.Client, homeNode}, {eu.Client, euNode}} {
		g.Expect(c.c.Create(ctx, c.node)).To(Succeed())
		t.Cleanup(func() { _ = c.c.Delete(ctx, c.node) })
	}

	g.Expect(home.Client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
	}})).To(Succeed())
	local := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-local", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: homeNode.Name, Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
	g.Expect(home.Client.Create(ctx, local)).To(Succeed())
	setPodStatus(t, home.Client, ns, "web-local", "10.1.0.5", true)
	away := boundPod(ns, "web-away")
	away.Labels["app"] = "web"
	away.Spec.ServiceAccountName, away.Spec.Volumes = "", nil
	g.Expect(home.Client.Create(ctx, away)).To(Succeed())
	// The provider's scheduler and kubelet: bound to a node, running.
	g.Eventually(func(g Gomega) { remotePod(g, twin, "web-away") }).Should(Succeed())
	g.Expect(eu.Client.SubResource("binding").Create(ctx, remotePod(g, twin, "web-away"), &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "web-away"},
		Target:     corev1.ObjectReference{Kind: "Node", Name: euNode.Name},
	})).To(Succeed())
	setPodStatus(t, eu.Client, twin, "web-away", "10.20.1.7", true)

	t.Run("the home Service lists the offloaded pod at its remote IP", func(t *testing.T) {
		g := newG(t)
		g.Eventually(func(g Gomega) {
			eps := endpointsOf(g, home.Client, ns, "web", endpointSliceController)
			g.Expect(eps).To(HaveLen(2))
			g.Expect(eps).To(HaveKeyWithValue("10.1.0.5", And(
				HaveField("NodeName", HaveValue(Equal(homeNode.Name))), HaveField("Conditions.Ready", HaveValue(BeTrue())))))
			g.Expect(eps).To(HaveKeyWithValue("10.20.1.7", And(
				HaveField("NodeName", HaveValue(Equal(virtualNode))), HaveField("TargetRef.Name", "web-away"),
				HaveField("Conditions.Ready", HaveValue(BeTrue())))))
		}).Should(Succeed())
	})

	t.Run("the twin's Service lists what runs elsewhere beside the provider's own slice", func(t *testing.T) {
		g := newG(t)
		g.Eventually(func(g Gomega) {
			g.Expect(endpointsOf(g, eu.Client, twin, "web", endpointSliceController)).To(
				And(HaveLen(1), HaveKey("10.20.1.7")), "the provider's controller lists the remote pod")
			shadows := slicesOf(g, eu.Client, twin, "web", wellknown.EndpointSliceManager)
			g.Expect(shadows).To(HaveLen(1))
			s := shadows[0]
			g.Expect(s.Labels).To(HaveKeyWithValue(wellknown.ReflectedLabel, "true"))
			g.Expect(s.Labels).To(HaveKeyWithValue(wellknown.OriginClusterIDLabel, homeID))
			g.Expect(s.AddressType).To(Equal(discoveryv1.AddressTypeIPv4))
			g.Expect(s.Ports).To(ConsistOf(And(HaveField("Name", HaveValue(Equal("http"))), HaveField("Port", HaveValue(BeEquivalentTo(8080))))))
			g.Expect(s.Endpoints).To(ConsistOf(And(
				HaveField("Addresses", ConsistOf("10.1.0.5")), HaveField("Conditions.Ready", HaveValue(BeTrue())),
				HaveField("NodeName", BeNil()), HaveField("TargetRef", BeNil()), HaveField("Hints", BeNil()))),
				"the home pod only: the offloaded one is the provider's own")
		}).Should(Succeed())
		// Each leaves the other's slice alone. The provider's slice carries
		// the labels of the twin's Service, Stretch's origin labels among
		// them: Stretch must still not take it for a copy of its own.
		own := slicesOf(g, eu.Client, twin, "web", endpointSliceController)
		g.Expect(own).To(HaveLen(1))
		g.Expect(own[0].Labels).To(HaveKeyWithValue(wellknown.OriginClusterIDLabel, homeID))
		uid := slicesOf(g, eu.Client, twin, "web", wellknown.EndpointSliceManager)[0].UID
		g.Consistently(func(g Gomega) {
			g.Expect(slicesOf(g, eu.Client, twin, "web", wellknown.EndpointSliceManager)).To(ConsistOf(HaveField("UID", uid)))
			g.Expect(slicesOf(g, eu.Client, twin, "web", endpointSliceController)).To(ConsistOf(HaveField("UID", own[0].UID)))
		}).WithTimeout(3 * time.Second).Should(Succeed())
	})

	t.Run("readiness follows the pods", func(t *testing.T) {
		g := newG(t)
		setPodStatus(t, home.Client, ns, "web-local", "10.1.0.5", false)
		g.Eventually(func(g Gomega) map[string]discoveryv1.Endpoint {
			return endpointsOf(g, eu.Client, twin, "web", wellknown.EndpointSliceManager)
		}).Should(HaveKeyWithValue("10.1.0.5", HaveField("Conditions.Ready", HaveValue(BeFalse()))))
		// The remote pod's readiness reaches the home pod, hence the home
		// Service.
		setPodStatus(t, eu.Client, twin, "web-away", "10.20.1.7", false)
		g.Eventually(func(g Gomega) map[string]discoveryv1.Endpoint {
			return endpointsOf(g, home.Client, ns, "web", endpointSliceController)
		}).Should(HaveKeyWithValue("10.20.1.7", HaveField("Conditions.Ready", HaveValue(BeFalse()))))
		setPodStatus(t, home.Client, ns, "web-local", "10.1.0.5", true)
		setPodStatus(t, eu.Client, twin, "web-away", "10.20.1.7", true)
		g.Eventually(func(g Gomega) {
			g.Expect(endpointsOf(g, eu.Client, twin, "web", wellknown.EndpointSliceManager)).To(
				HaveKeyWithValue("10.1.0.5", HaveField("Conditions.Ready", HaveValue(BeTrue()))))
			g.Expect(endpointsOf(g, home.Client, ns, "web", endpointSliceController)).To(
				HaveKeyWithValue("10.20.1.7", HaveField("Conditions.Ready", HaveValue(BeTrue()))))
		}).Should(Succeed())
	})

	t.Run("edits and deletions on the provider are undone", func(t *testing.T) {
		g := newG(t)
		s := slicesOf(g, eu.Client, twin, "web", wellknown.EndpointSliceManager)[0]
		edit(t, eu.Client, &s, func(s *discoveryv1.EndpointSlice) {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.66.6.6"}})
		})
		g.Eventually(func(g Gomega) []string {
			return addresses(endpointsOf(g, eu.Client, twin, "web", wellknown.EndpointSliceManager))
		}).Should(ConsistOf("10.1.0.5"))
		g.Expect(eu.Client.Delete(ctx, &s)).To(Succeed())
		g.Eventually(func(g Gomega) {
			again := slicesOf(g, eu.Client, twin, "web", wellknown.EndpointSliceManager)
			g.Expect(again).To(HaveLen(1))
			g.Expect(again[0].UID).NotTo(Equal(s.UID))
		}).Should(Succeed())
	})

	t.Run("a slice with nothing running elsewhere has no copy", func(t *testing.T) {
		g := newG(t)
		g.Expect(home.Client.Delete(ctx, local, client.GracePeriodSeconds(0))).To(Succeed())
		g.Eventually(func(g Gomega) []discoveryv1.EndpointSlice {
			return slicesOf(g, eu.Client, twin, "web", wellknown.EndpointSliceManager)
		}).Should(BeEmpty())
		g.Expect(addresses(endpointsOf(g, home.Client, ns, "web", endpointSliceController))).To(ConsistOf("10.20.1.7"))
	})

	t.Run("a selector-less Service's slices are reflected whole, follow it, and go with it", func(t *testing.T) {
		g := newG(t)
		db := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}}}
		g.Expect(home.Client.Create(ctx, db)).To(Succeed())
		handWritten := func() *discoveryv1.EndpointSlice {
			return &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "db-a", Labels: map[string]string{discoveryv1.LabelServiceName: "db", "team": "data"}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("pg"), Port: ptr.To[int32](5432)}},
				Endpoints: []discoveryv1.Endpoint{
					// Written by hand, even naming the virtual node: kept.
					{Addresses: []string{"10.30.0.1"}, NodeName: ptr.To(virtualNode)},
					{Addresses: []string{"10.30.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
				},
			}
		}
		slice := handWritten()
		g.Expect(home.Client.Create(ctx, slice)).To(Succeed())
		copyOf := func(g Gomega) *discoveryv1.EndpointSlice {
			s := &discoveryv1.EndpointSlice{}
			if !inTwin(g, twin, "db-a", s) {
				return nil
			}
			return s
		}
		g.Eventually(func(g Gomega) {
			s := copyOf(g)
			g.Expect(s).NotTo(BeNil())
			g.Expect(s.Labels).To(HaveKeyWithValue(discoveryv1.LabelManagedBy, wellknown.EndpointSliceManager))
			g.Expect(s.Labels).To(HaveKeyWithValue("team", "data"))
			g.Expect(s.Endpoints).To(ConsistOf(
				And(HaveField("Addresses", ConsistOf("10.30.0.1")), HaveField("NodeName", BeNil())),
				And(HaveField("Addresses", ConsistOf("10.30.0.2")), HaveField("Conditions.Ready", HaveValue(BeFalse())))))
		}).Should(Succeed())

		edit(t, home.Client, slice, func(s *discoveryv1.EndpointSlice) {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.30.0.3"}})
		})
		g.Eventually(func(g Gomega) []string {
			s := copyOf(g)
			g.Expect(s).NotTo(BeNil())
			return addressesOf(s)
		}).Should(ConsistOf("10.30.0.1", "10.30.0.2", "10.30.0.3"))

		// The Service kept at home keeps its slices at home.
		edit(t, home.Client, db, func(s *corev1.Service) {
			metav1.SetMetaDataAnnotation(&s.ObjectMeta, wellknown.SkipReflectionAnnotation, "true")
		})
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "db-a", &discoveryv1.EndpointSlice{}) }).Should(BeFalse())
		edit(t, home.Client, db, func(s *corev1.Service) { delete(s.Annotations, wellknown.SkipReflectionAnnotation) })
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "db-a", &discoveryv1.EndpointSlice{}) }).Should(BeTrue())

		// Deleting the home slice deletes the copy.
		g.Expect(home.Client.Delete(ctx, slice)).To(Succeed())
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "db-a", &discoveryv1.EndpointSlice{}) }).Should(BeFalse())

		// So does deleting the Service, though a slice written by hand
		// (no owner) stays at home.
		g.Expect(home.Client.Create(ctx, handWritten())).To(Succeed())
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "db-a", &discoveryv1.EndpointSlice{}) }).Should(BeTrue())
		g.Expect(home.Client.Delete(ctx, db)).To(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(inTwin(g, twin, "db-a", &discoveryv1.EndpointSlice{})).To(BeFalse())
			g.Expect(inTwin(g, twin, "db", &corev1.Service{})).To(BeFalse())
		}).Should(Succeed())
	})
}

func addresses(eps map[string]discoveryv1.Endpoint) []string {
	var out []string
	for a := range eps {
		out = append(out, a)
	}
	return out
}

func addressesOf(s *discoveryv1.EndpointSlice) []string {
	var out []string
	for _, e := range s.Endpoints {
		out = append(out, e.Addresses...)
	}
	return out
}
