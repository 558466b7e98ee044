package faults

import (
	"fmt"
	"math"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/testenv/faults"
	"stretch.dev/stretch/internal/testenv/fleet"
)

// flaky are the faults of an API server having a bad day: writes conflict,
// priority and fairness throttles, some answers are lost after the change
// was made, and some requests fail outright.
func flaky() []faults.Fault {
	writes := []string{"create", "update", "patch", "delete"}
	return []faults.Fault{
		{Code: 409, Share: 0.2, Verbs: []string{"update", "patch"}},
		{Code: 429, Share: 0.05},
		{Code: 500, Share: 0.1, Verbs: []string{"create"}, AfterServing: true},
		{Code: 500, Share: 0.1, Verbs: append(writes, "get", "list")},
	}
}

// TestClientFaults runs Stretch with every client it has (the home side's
// of home and of the provider, the tenant controller's of the provider)
// going through a faults.Injector: offload, pod offload and unoffload
// converge, with nothing duplicated; and while the provider answers 500 to
// everything, the home side retries with backoff instead of hot-looping.
func TestClientFaults(t *testing.T) {
	g := newG(t)
	homeF := faults.NewInjector(1, flaky()...)
	peerF := faults.NewInjector(2, flaky()...)
	tenantF := faults.NewInjector(3, flaky()...)
	fleet.RunWith(t, home, homeID, []fleet.Provider{{Server: eu}}, fleet.Options{
		HomeTransport: homeF.Wrap, PeerTransport: peerF.Wrap, TenantTransport: tenantF.Wrap,
	})
	defer func() {
		t.Logf("requests by verb (\"\" is the total): home %v, peer %v, tenant %v", homeF.Counts(), peerF.Counts(), tenantF.Counts())
		t.Logf("faults injected by code: home %v, peer %v, tenant %v", homeF.Injected(), peerF.Injected(), tenantF.Injected())
	}()

	ns := unique("flaky")
	off := offload(g, ns)
	var twinUID string
	t.Run("offload converges: Ready, one request, one twin", func(t *testing.T) {
		g := newG(t)
		expectReady(g, off)
		g.Eventually(func(g Gomega) {
			requests, nss := twins(g, ns)
			g.Expect(requests).To(HaveLen(1))
			g.Expect(nss).To(HaveLen(1))
			g.Expect(nss[0].Name).To(Equal(ns + "-" + homeID))
			twinUID = string(nss[0].UID)
		}).Should(Succeed())
	})

	const pods = 5
	for i := range pods {
		g.Expect(home.Client.Create(ctx, boundPod(ns, fmt.Sprintf("web-%d", i)))).To(Succeed())
	}
	var remoteUIDs map[string]string
	t.Run("pods converge: one remote pod each, status home", func(t *testing.T) {
		g := newG(t)
		g.Eventually(func(g Gomega) {
			remoteUIDs = expectOneRemotePodEach(g, ns)
			g.Expect(remoteUIDs).To(HaveLen(pods))
		}).Should(Succeed())
		g.Eventually(func(g Gomega) {
			runRemotePods(g, ns)
			expectHomePodsRunning(g, ns)
		}).Should(Succeed())
		g.Expect(expectOneRemotePodEach(g, ns)).To(Equal(remoteUIDs), "no remote pod recreated")
	})

	t.Run("a provider answering 500 to everything: backoff, no hot loop, then convergence", func(t *testing.T) {
		g := newG(t)
		before := peerF.Counts()
		start := time.Now()
		peerF.SetDown(true)
		// Work for the home side while the provider is down: a new pod.
		g.Expect(home.Client.Create(ctx, boundPod(ns, "late"))).To(Succeed())
		// The window lasts until the home side has seen the provider fail
		// (its RemoteCluster says it is unreachable, its virtual node is
		// NotReady), and at least 10 s, long enough for backoffs to grow.
		g.Eventually(func(g Gomega) {
			node := &corev1.Node{}
			g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: peeringv1alpha1.VirtualNodeName(eu.Name)}, node)).To(Succeed())
			g.Expect(nodeReady(node)).To(BeFalse())
			g.Expect(time.Since(start)).To(BeNumerically(">=", 10*time.Second))
		}).Should(Succeed())
		after := peerF.Counts()
		peerF.SetDown(false)
		window := time.Since(start)
		during := map[string]int{}
		for verb, n := range after {
			during[verb] = n - before[verb]
		}
		bound := hotLoopBound(window)
		t.Logf("provider down for %s: %d requests to it (bound %d), by verb %v", window.Round(time.Millisecond), during[""], bound, during)
		g.Expect(during[""]).To(BeNumerically("<=", bound), "requests to a provider that answers 500 to everything, by verb %v", during)
		g.Expect(during[""]).To(BeNumerically(">", 0), "the home side gave up on the provider")

		g.Eventually(func(g Gomega) {
			uids := expectOneRemotePodEach(g, ns)
			g.Expect(uids).To(HaveLen(pods + 1))
			for name, uid := range remoteUIDs {
				g.Expect(uids).To(HaveKeyWithValue(name, uid), "remote pod of %s kept", name)
			}
			runRemotePods(g, ns)
			expectHomePodsRunning(g, ns)
		}).Should(Succeed())
		g.Eventually(func(g Gomega) {
			node := &corev1.Node{}
			g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: peeringv1alpha1.VirtualNodeName(eu.Name)}, node)).To(Succeed())
			g.Expect(nodeReady(node)).To(BeTrue())
		}).Should(Succeed())
		_, nss := twins(g, ns)
		g.Expect(nss).To(ConsistOf(HaveField("UID", BeEquivalentTo(twinUID))), "the twin was not recreated")
	})

	t.Run("unoffload converges: no request, twin or remote pod left", func(t *testing.T) {
		unoffload(newG(t), off)
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// hotLoopBound is the most requests the home side may send a provider that
// answers 500 to everything for window, when every source of requests backs
// off:
//   - the RemoteCluster probe runs once per probe interval (1 s in the fleet)
//     and sends at most a few requests (identity, nodes): 5 per second;
//   - each watch of the peer's cache (nodes and the reflected kinds, under
//     10) relists with client-go's reflector backoff (0.8 s doubling, at
//     most 30 s): per kind at most 2·(log2(window/0.8 s)+2) list and watch
//     requests;
//   - each work item failing (the NamespaceOffloading, the 6 pods, their
//     reflected objects: under 20 items) is requeued with the workqueue's
//     exponential backoff (5 ms doubling): log2(window/5 ms)+2 retries, of a
//     few (3) requests each.
//
// A hot loop sends a request per round trip (under 1 ms locally): thousands
// per second, far above this.
func hotLoopBound(window time.Duration) int {
	s := window.Seconds()
	probe := 5 * s
	watches := 10 * 2 * (math.Log2(s/0.8) + 2)
	items := 20 * 3 * (math.Log2(s/0.005) + 2)
	return int(probe + watches + items)
}
