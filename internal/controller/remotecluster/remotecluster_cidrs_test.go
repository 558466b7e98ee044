package remotecluster_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/controller/remotecluster"
	"stretch.dev/stretch/internal/testenv"
)

// createNode creates a node with pod CIDRs on s until the test ends.
func createNode(t *testing.T, g *WithT, s *testenv.APIServer, name string, cidrs ...string) {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidrs[0], PodCIDRs: cidrs}}
	g.Expect(s.Client.Create(context.Background(), node)).To(Succeed())
	t.Cleanup(func() { g.Expect(client.IgnoreNotFound(s.Client.Delete(context.Background(), node))).To(Succeed()) })
}

// The PodCIDRsDistinct condition (docs/design.md §4.22) follows the pod
// CIDRs of the provider's nodes, of this cluster's nodes and of the other
// providers: Unknown while a side does not say them, False with a Warning
// event when they overlap, True otherwise.
func TestPodCIDRsDistinct(t *testing.T) {
	g := newG(t)
	rc, _, _ := peeredWith(t, g, eu, euID)
	cidrs := func(g Gomega) (metav1.Condition, []string) {
		got := &peeringv1alpha1.RemoteCluster{}
		g.Expect(home.Client.Get(context.Background(), client.ObjectKeyFromObject(rc), got)).To(Succeed())
		return condition(g, rc, peeringv1alpha1.PodCIDRsDistinctCondition), got.Status.PodCIDRs
	}

	// provider-eu's nodes say no pod CIDRs.
	g.Eventually(func(g Gomega) {
		c, _ := cidrs(g)
		g.Expect(c.Status).To(Equal(metav1.ConditionUnknown))
		g.Expect(c.Reason).To(Equal(remotecluster.ReasonPodCIDRsUnknown))
	}).Should(Succeed())

	createNode(t, g, eu, "eu-pods-a", "10.244.0.0/24")
	createNode(t, g, eu, "eu-pods-b", "10.244.1.0/24")
	createNode(t, g, home, "home-pods-a", "10.96.0.0/24")
	g.Eventually(func(g Gomega) {
		c, got := cidrs(g)
		g.Expect(got).To(Equal([]string{"10.244.0.0/23"}))
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
	}).Should(Succeed())

	// A home node in the provider's range.
	createNode(t, g, home, "home-pods-b", "10.244.1.0/24")
	g.Eventually(func(g Gomega) {
		c, _ := cidrs(g)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(remotecluster.ReasonPodCIDRsOverlap))
		g.Expect(c.Message).To(HavePrefix("pod CIDR 10.244.0.0/23 of provider provider-eu overlaps 10.244.1.0/24 of this cluster: "))
	}).Should(Succeed())
	g.Eventually(func(g Gomega) []string {
		list := &eventsv1.EventList{}
		g.Expect(home.Client.List(context.Background(), list)).To(Succeed())
		var notes []string
		for _, e := range list.Items {
			if e.Regarding.Name == rc.Name && e.Reason == remotecluster.ReasonPodCIDRsOverlap {
				notes = append(notes, e.Note)
			}
		}
		return notes
	}).Should(ConsistOf(HavePrefix("pod CIDR 10.244.0.0/23 of provider provider-eu overlaps")))

	g.Expect(home.Client.Delete(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "home-pods-b"}})).To(Succeed())
	g.Eventually(func(g Gomega) metav1.ConditionStatus { c, _ := cidrs(g); return c.Status }).Should(Equal(metav1.ConditionTrue))

	// A second provider in the first one's range: each says so.
	createNode(t, g, us, "us-pods", "10.244.1.128/25")
	g.Expect(us.Client.Status().Update(context.Background(), readyNode(g, us, "us-pods"))).To(Succeed())
	rcUS := peer(t, usID.Name, usID.ID, adminKubeconfig(t, us))
	for _, x := range []struct {
		rc   *peeringv1alpha1.RemoteCluster
		want string
	}{
		{rcUS, "pod CIDR 10.244.1.128/25 of provider provider-us overlaps 10.244.0.0/23 of provider provider-eu: "},
		{rc, "pod CIDR 10.244.0.0/23 of provider provider-eu overlaps 10.244.1.128/25 of provider provider-us: "},
	} {
		g.Eventually(func(g Gomega) string {
			c := condition(g, x.rc, peeringv1alpha1.PodCIDRsDistinctCondition)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			return c.Message
		}).Should(HavePrefix(x.want))
	}
	deleteAndWait(g, rcUS)
}

// readyNode returns node name of s, Ready.
func readyNode(g *WithT, s *testenv.APIServer, name string) *corev1.Node {
	node := &corev1.Node{}
	g.Expect(s.Client.Get(context.Background(), client.ObjectKey{Name: name}, node)).To(Succeed())
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	return node
}
