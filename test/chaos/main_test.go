package chaos

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

// suite names the artifacts folder: _artifacts/chaos/.
const suite = "chaos"

// providerName is the provider's cluster name, hence its virtual node's.
const providerName = "provider"

var ctx = context.Background()

func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(3 * time.Minute)
	g.SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	return g
}

// step runs one step of a scenario as a subtest and stops the scenario when
// it fails: the next steps build on it.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

// world is a home cluster peered with one provider, each running its
// stretch-controller-manager.
type world struct {
	// t is the whole test: what runs until its end is started on it.
	t              *testing.T
	home, provider *kwok.Cluster
	homeID         string
	homeManager    *testenv.ManagerProcess
	// providerManager is replaced when it exits (see keepProviderManager).
	providerManager *testenv.ManagerProcess
	// managerRestarts counts the provider managers started again.
	managerRestarts int
	dup             *testenv.Duplicates
}

// setUp starts home (one kwok node, for the pods that stay local) and a
// provider (one kwok node, for the offloaded pods), installs Stretch on
// both, runs their managers and peers them.
func setUp(t *testing.T) *world {
	g := newG(t)
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: 1}, "home", providerName)
	w := &world{t: t, home: clusters[0], provider: clusters[1]}
	step(t, "install, run the managers, peer", func(t *testing.T) {
		g := newG(t)
		for name, c := range map[string]*kwok.Cluster{"home": w.home, providerName: w.provider} {
			g.Expect(stretchctl(t, "install", "--out-of-cluster", "--kubeconfig", c.Kubeconfig, "--cluster-name", name)).To(Succeed())
		}
		w.homeManager = testenv.RunManager(w.t, suite, w.home, false)
		w.providerManager = testenv.RunManager(w.t, suite, w.provider, false)
		g.Expect(stretchctl(t, "peer", "--kubeconfig", w.home.Kubeconfig, "--remote-kubeconfig", w.provider.Kubeconfig, "--wait", "--timeout", "2m")).To(Succeed())
	})
	id, err := identity.Load(ctx, w.home.Client)
	g.Expect(err).NotTo(HaveOccurred())
	w.homeID = id.ID
	w.dup = testenv.WatchDuplicates(t, w.provider.Config, w.homeID)
	return w
}

// stretchctl runs bin/stretchctl.
func stretchctl(t *testing.T, args ...string) error {
	t.Helper()
	return testenv.Command(t, "stretchctl")(args...)
}

// killProvider kills the provider's kube-apiserver (SIGKILL) and waits until
// home sees the provider gone (its virtual node NotReady), so that the work
// in flight meets the outage. It returns what starts the API server again and
// waits until it answers.
func (w *world) killProvider(t *testing.T, g *WithT) (restart func()) {
	t.Helper()
	start, err := w.provider.KillAPIServer()
	g.Expect(err).NotTo(HaveOccurred())
	t.Log("provider kube-apiserver killed")
	g.Eventually(func(g Gomega) {
		g.Expect(w.virtualNodeReady(g)).To(BeFalse())
	}).Should(Succeed(), "home sees the provider gone: virtual node NotReady")
	return func() {
		t.Helper()
		g.Expect(start()).To(Succeed())
		g.Eventually(func() error {
			return w.provider.Client.Get(ctx, client.ObjectKey{Name: metav1.NamespaceDefault}, &corev1.Namespace{})
		}).Should(Succeed(), "the provider's API server answers again")
		t.Log("provider kube-apiserver restarted")
	}
}

func (w *world) virtualNodeReady(g Gomega) bool {
	node := &corev1.Node{}
	g.Expect(w.home.Client.Get(ctx, client.ObjectKey{Name: peeringv1alpha1.VirtualNodeName(providerName)}, node)).To(Succeed())
	return kwok.NodeReady(node)
}

// keepProviderManager starts the provider's manager again when it exited:
// a manager whose leader Lease cannot be renewed (its API server is down
// for longer than the renew deadline) exits, and its Deployment would start
// it again. Convergence checks call it on every poll.
func (w *world) keepProviderManager(t *testing.T) {
	if machine.ProcessRunning(w.providerManager.PID) {
		return
	}
	t.Logf("the provider's manager (pid %d) exited while its API server was down; starting it again, as its Deployment would", w.providerManager.PID)
	w.providerManager.Stop()
	w.providerManager = testenv.RunManager(w.t, suite, w.provider, false)
	w.managerRestarts++
}

// expectHomeManagerRunning checks that the home manager survived: the
// provider's outage is no reason for it to exit.
func (w *world) expectHomeManagerRunning(g Gomega) {
	g.Expect(machine.ProcessRunning(w.homeManager.PID)).To(BeTrue(), "the home manager exited")
}

// offloading returns the NamespaceOffloading of ns, nil when gone.
func (w *world) offloading(g Gomega, ns string) *offloadingv1alpha1.NamespaceOffloading {
	off := &offloadingv1alpha1.NamespaceOffloading{}
	err := w.home.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "offloading"}, off)
	if apierrors.IsNotFound(err) {
		return nil
	}
	g.Expect(err).NotTo(HaveOccurred())
	return off
}

// twins returns what the provider holds for home namespace ns: the
// RemoteNamespaces of home's tenant and the twin namespaces.
func (w *world) twins(g Gomega, ns string) ([]peeringv1alpha1.RemoteNamespace, []corev1.Namespace) {
	rns := &peeringv1alpha1.RemoteNamespaceList{}
	g.Expect(w.provider.Client.List(ctx, rns, client.InNamespace(peeringv1alpha1.TenantNamespace(w.homeID)))).To(Succeed())
	var requests []peeringv1alpha1.RemoteNamespace
	for _, r := range rns.Items {
		if r.Spec.HomeNamespace == ns {
			requests = append(requests, r)
		}
	}
	nss := &corev1.NamespaceList{}
	g.Expect(w.provider.Client.List(ctx, nss, client.MatchingLabels{
		wellknown.OriginClusterIDLabel: w.homeID,
		wellknown.OriginNamespaceLabel: ns,
	})).To(Succeed())
	return requests, nss.Items
}

// remotePods returns the provider's pods offloaded from home namespace ns,
// in every namespace, by the UID of their home pod.
func (w *world) remotePods(g Gomega, ns string) map[string][]corev1.Pod {
	list := &corev1.PodList{}
	g.Expect(w.provider.Client.List(ctx, list, client.MatchingLabels{
		wellknown.OriginClusterIDLabel: w.homeID,
		wellknown.OriginNamespaceLabel: ns,
	})).To(Succeed())
	out := map[string][]corev1.Pod{}
	for _, p := range list.Items {
		uid := p.Annotations[wellknown.OriginPodUIDAnnotation]
		out[uid] = append(out[uid], p)
	}
	return out
}
