package remotecluster_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/controller/remotecluster"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
	"stretch.dev/stretch/internal/remote"
	"stretch.dev/stretch/internal/testenv"
)

const probeInterval = time.Second

var (
	home, eu, us *testenv.APIServer
	homeID       = uuid.NewString()
	euID         = identity.Identity{ID: uuid.NewString(), Name: "provider-eu", Labels: map[string]string{"region": "eu", "provider": "aws"}}
	usID         = identity.Identity{ID: uuid.NewString(), Name: "provider-us", Labels: map[string]string{"region": "us", "zone": "a"}}
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	testenv.Main(m, func(s []*testenv.APIServer) {
		home, eu, us = s[0], s[1], s[2]
		if err := setUp(context.Background()); err != nil {
			panic(err)
		}
	}, "home", "provider-eu", "provider-us")
}

// setUp installs the identities, and gives provider-eu nodes: two Ready
// arm64 ones that count, one cordoned and one NotReady that do not.
// provider-us has no nodes.
func setUp(ctx context.Context) error {
	for s, id := range map[*testenv.APIServer]identity.Identity{home: {ID: homeID, Name: "home"}, eu: euID, us: usID} {
		if err := s.InstallIdentity(ctx, id); err != nil {
			return err
		}
	}
	for _, n := range []struct {
		name                 string
		ready, unschedulable bool
	}{{"eu-1", true, false}, {"eu-2", true, false}, {"eu-cordoned", true, true}, {"eu-not-ready", false, false}} {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{corev1.LabelArchStable: "arm64", corev1.LabelOSStable: "linux"}},
			Spec:       corev1.NodeSpec{Unschedulable: n.unschedulable},
		}
		if err := eu.Client.Create(ctx, node); err != nil {
			return err
		}
		status := corev1.ConditionTrue
		if !n.ready {
			status = corev1.ConditionFalse
		}
		node.Status = corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
				corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
		}
		if err := eu.Client.Status().Update(ctx, node); err != nil {
			return fmt.Errorf("node %s: %w", n.name, err)
		}
	}
	return nil
}

func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	return g
}

// startController runs the remotecluster controller on the home cluster
// until the test ends (or stop is called), with its own peer registry;
// adjust, if given, changes the reconciler first.
func startController(t *testing.T, adjust ...func(*remotecluster.Reconciler)) (*remote.Registry, func()) {
	t.Helper()
	reg := remote.NewRegistry(home.Scheme, remote.Options{Timeout: 5 * time.Second})
	stop := testenv.StartControllers(t, home.Config, func(mgr ctrl.Manager) error {
		if err := mgr.Add(reg); err != nil {
			return err
		}
		r := &remotecluster.Reconciler{
			Client:        mgr.GetClient(),
			Registry:      reg,
			Recorder:      mgr.GetEventRecorder("stretch-remotecluster"),
			ProbeInterval: probeInterval,
		}
		for _, a := range adjust {
			a(r)
		}
		return r.SetupWithManager(mgr)
	})
	return reg, stop
}

func adminKubeconfig(t *testing.T, s *testenv.APIServer) []byte {
	t.Helper()
	data, err := os.ReadFile(s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// peer does what 'stretchctl peer' does on the home cluster: the kubeconfig
// Secret (unless kubeconfig is nil) and the RemoteCluster name. When the test
// ends, both are deleted and the RemoteCluster waited for: start the
// controller before calling peer.
func peer(t *testing.T, name, clusterID string, kubeconfig []byte, mutate ...func(*peeringv1alpha1.RemoteCluster)) *peeringv1alpha1.RemoteCluster {
	t.Helper()
	g := newG(t)
	ctx := t.Context()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: peering.SecretName(name)},
		Data:       map[string][]byte{peering.KubeconfigKey: kubeconfig},
	}
	if kubeconfig != nil {
		g.Expect(home.Client.Create(ctx, secret)).To(Succeed())
	}
	rc := &peeringv1alpha1.RemoteCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: peeringv1alpha1.RemoteClusterSpec{
			ClusterID:           clusterID,
			KubeconfigSecretRef: peeringv1alpha1.SecretKeyReference{Namespace: secret.Namespace, Name: secret.Name, Key: peering.KubeconfigKey},
		},
	}
	for _, m := range mutate {
		m(rc)
	}
	g.Expect(home.Client.Create(ctx, rc)).To(Succeed())
	t.Cleanup(func() {
		g.Expect(client.IgnoreNotFound(home.Client.Delete(context.Background(), secret))).To(Succeed())
		deleteAndWait(g, rc)
	})
	return rc
}

// peeredWith starts the controller, peers with provider s (named after it,
// with its admin kubeconfig) and waits until the virtual node is Ready.
func peeredWith(t *testing.T, g *WithT, s *testenv.APIServer, id identity.Identity, mutate ...func(*peeringv1alpha1.RemoteCluster)) (*peeringv1alpha1.RemoteCluster, *remote.Registry, func()) {
	t.Helper()
	reg, stop := startController(t)
	rc := peer(t, id.Name, id.ID, adminKubeconfig(t, s), mutate...)
	expectReady(g, rc)
	return rc, reg, stop
}

// deleteAndWait deletes rc and waits until the controller let it go.
func deleteAndWait(g *WithT, rc *peeringv1alpha1.RemoteCluster) {
	ctx := context.Background()
	g.Expect(client.IgnoreNotFound(home.Client.Delete(ctx, rc))).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(rc), &peeringv1alpha1.RemoteCluster{}))
	}).Should(BeTrue(), "RemoteCluster %s is deleted", rc.Name)
}

func virtualNode(g Gomega, rc *peeringv1alpha1.RemoteCluster) *corev1.Node {
	node := &corev1.Node{}
	g.Expect(home.Client.Get(context.Background(), client.ObjectKey{Name: peeringv1alpha1.VirtualNodeName(rc.Name)}, node)).To(Succeed())
	return node
}

func nodeReady(node *corev1.Node) corev1.NodeCondition {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{}
}

func condition(g Gomega, rc *peeringv1alpha1.RemoteCluster, t string) metav1.Condition {
	got := &peeringv1alpha1.RemoteCluster{}
	g.Expect(home.Client.Get(context.Background(), client.ObjectKeyFromObject(rc), got)).To(Succeed())
	c := meta.FindStatusCondition(got.Status.Conditions, t)
	g.Expect(c).NotTo(BeNil(), "condition %s", t)
	return *c
}

// expectReady waits until the virtual node of rc is Ready and every
// condition of rc is True.
func expectReady(g *WithT, rc *peeringv1alpha1.RemoteCluster) {
	g.Eventually(func(g Gomega) {
		g.Expect(nodeReady(virtualNode(g, rc)).Status).To(Equal(corev1.ConditionTrue))
		for _, t := range []string{peeringv1alpha1.APIReachableCondition, peeringv1alpha1.AuthenticatedCondition, peeringv1alpha1.VirtualNodeReadyCondition} {
			g.Expect(condition(g, rc, t).Status).To(Equal(metav1.ConditionTrue), t)
		}
	}).Should(Succeed())
}

func virtualNodeLabels(rc *peeringv1alpha1.RemoteCluster, arch string, extra map[string]string) map[string]string {
	labels := map[string]string{
		"stretch.dev/type":                "virtual-node",
		"stretch.dev/remote-cluster-id":   rc.Spec.ClusterID,
		"stretch.dev/remote-cluster-name": rc.Name,
		"kubernetes.io/hostname":          "stretch-" + rc.Name,
		"kubernetes.io/os":                "linux",
		"kubernetes.io/arch":              arch,
	}
	maps.Copy(labels, extra)
	return labels
}

func TestVirtualNode(t *testing.T) {
	g := newG(t)
	ctx := t.Context()
	rc, _, _ := peeredWith(t, g, eu, euID, func(rc *peeringv1alpha1.RemoteCluster) {
		rc.Spec.Labels = map[string]string{"team": "blue", "provider": "onprem"}
		rc.Spec.Resources = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("6")}
	})

	node := virtualNode(g, rc)
	// The provider's labels and the admin's, the admin's winning; arm64 is
	// the majority of the provider's nodes.
	g.Expect(node.Labels).To(Equal(virtualNodeLabels(rc, "arm64", map[string]string{"region": "eu", "provider": "onprem", "team": "blue"})))
	// The API server's TaintNodesByCondition admission adds not-ready to
	// every new node; kube-controller-manager, which envtest lacks, would
	// remove it once the node is Ready.
	g.Expect(node.Spec.Taints).To(ConsistOf(
		corev1.Taint{Key: "virtual-node.stretch.dev/not-allowed", Value: "true", Effect: corev1.TaintEffectNoExecute},
		corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule},
	))
	g.Expect(node.Spec.Unschedulable).To(BeFalse())
	g.Expect(metav1.GetControllerOf(node)).To(HaveField("Name", rc.Name))
	// Two Ready schedulable nodes count; cpu is capped by the spec.
	want := corev1.ResourceList{"cpu": resource.MustParse("6"), "memory": resource.MustParse("16Gi"), "pods": resource.MustParse("220"), "ephemeral-storage": resource.MustParse("200Gi")}
	for _, list := range []corev1.ResourceList{node.Status.Capacity, node.Status.Allocatable} {
		g.Expect(list).To(HaveLen(len(want)))
		for name, q := range want {
			g.Expect(list.Name(name, "").Cmp(q)).To(BeZero(), "%s: %s", name, list.Name(name, ""))
		}
	}
	g.Expect(nodeReady(node).Reason).To(Equal(remotecluster.ReasonProviderReady))

	lease := &coordinationv1.Lease{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: node.Name}, lease)).To(Succeed())
	g.Expect(lease.Spec.HolderIdentity).To(HaveValue(Equal(node.Name)))
	g.Expect(lease.Spec.LeaseDurationSeconds).To(HaveValue(Equal(int32(40))))
	g.Expect(lease.OwnerReferences).To(ConsistOf(HaveField("UID", node.UID)))
	renewed := lease.Spec.RenewTime.Time
	g.Eventually(func(g Gomega) {
		g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(lease), lease)).To(Succeed())
		g.Expect(lease.Spec.RenewTime.Time).To(BeTemporally(">", renewed))
	}).Should(Succeed(), "the Lease is renewed")

	got := &peeringv1alpha1.RemoteCluster{}
	g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(rc), got)).To(Succeed())
	g.Expect(got.Status.ClusterName).To(Equal("provider-eu"))
	g.Expect(got.Status.Labels).To(Equal(euID.Labels))
	g.Expect(got.Status.Capacity.Cpu().Cmp(resource.MustParse("8"))).To(BeZero(), "the status shows the capacity before the caps")
	g.Expect(got.Status.LastHeartbeatTime).NotTo(BeNil())
	g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
}

func TestVirtualNodeRepaired(t *testing.T) {
	g := newG(t)
	ctx := t.Context()
	rc, _, _ := peeredWith(t, g, eu, euID)

	node := virtualNode(g, rc)
	edit(g, node, func(node *corev1.Node) {
		node.Spec.Taints = nil
		node.Labels["stretch.dev/type"] = "changed"
	})
	g.Eventually(func(g Gomega) {
		node := virtualNode(g, rc)
		g.Expect(node.Spec.Taints).To(ContainElement(HaveField("Key", "virtual-node.stretch.dev/not-allowed")))
		g.Expect(node.Labels).To(HaveKeyWithValue("stretch.dev/type", "virtual-node"))
	}).Should(Succeed())

	g.Expect(home.Client.Delete(ctx, node)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(virtualNode(g, rc).UID).NotTo(Equal(node.UID))
	}).Should(Succeed(), "a deleted virtual node is created again")
	expectReady(g, rc)
}

func TestLabelsPropagate(t *testing.T) {
	g := newG(t)
	ctx := t.Context()
	rc, _, _ := peeredWith(t, g, us, usID, func(rc *peeringv1alpha1.RemoteCluster) {
		rc.Spec.Labels = map[string]string{"team": "blue"}
	})
	g.Expect(virtualNode(g, rc).Labels).To(Equal(virtualNodeLabels(rc, "amd64", map[string]string{"region": "us", "zone": "a", "team": "blue"})))

	// Someone else labels the node.
	edit(g, virtualNode(g, rc), func(node *corev1.Node) { node.Labels["example.com/owner"] = "ops" })

	// The provider's labels change (changed, added, removed) ...
	setIdentityLabels(t, us, usID, map[string]string{"region": "us-east", "tier": "gold"})
	// ... and so do the admin's.
	got := rc.DeepCopy()
	edit(g, got, func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Labels = map[string]string{"env": "prod"} })

	g.Eventually(func(g Gomega) {
		g.Expect(virtualNode(g, rc).Labels).To(Equal(virtualNodeLabels(rc, "amd64",
			map[string]string{"region": "us-east", "tier": "gold", "env": "prod", "example.com/owner": "ops"})))
	}).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(rc), got)).To(Succeed())
		g.Expect(got.Status.Labels).To(Equal(map[string]string{"region": "us-east", "tier": "gold"}))
	}).Should(Succeed())
}

// setIdentityLabels changes the cluster labels of a provider until the test ends.
func setIdentityLabels(t *testing.T, s *testenv.APIServer, id identity.Identity, labels map[string]string) {
	t.Helper()
	set := func(labels map[string]string) error {
		changed := id
		changed.Labels = labels
		cm := &corev1.ConfigMap{}
		if err := s.Client.Get(context.Background(), identity.Key, cm); err != nil {
			return err
		}
		cm.Data = changed.ConfigMap().Data
		return s.Client.Update(context.Background(), cm)
	}
	if err := set(labels); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := set(id.Labels); err != nil {
			t.Error(err)
		}
	})
}

func TestCordon(t *testing.T) {
	g := newG(t)
	rc, _, _ := peeredWith(t, g, us, usID)

	for _, cordoned := range []bool{true, false} {
		edit(g, rc.DeepCopy(), func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.Cordoned = cordoned })
		g.Eventually(func(g Gomega) {
			g.Expect(virtualNode(g, rc).Spec.Unschedulable).To(Equal(cordoned))
		}).Should(Succeed())
	}
}

func TestProviderDown(t *testing.T) {
	g := newG(t)
	rc, _, _ := peeredWith(t, g, us, usID)

	g.Expect(us.StopAPIServerOnly()).To(Succeed())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			g.Expect(us.RestartAPIServer()).To(Succeed())
		}
	})
	g.Eventually(func(g Gomega) {
		ready := nodeReady(virtualNode(g, rc))
		g.Expect(ready.Status).To(Equal(corev1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(remotecluster.ReasonUnreachable))
		g.Expect(ready.Message).To(ContainSubstring("provider provider-us"))
		c := condition(g, rc, peeringv1alpha1.APIReachableCondition)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(remotecluster.ReasonUnreachable))
		g.Expect(condition(g, rc, peeringv1alpha1.AuthenticatedCondition).Status).To(Equal(metav1.ConditionUnknown))
		g.Expect(condition(g, rc, peeringv1alpha1.VirtualNodeReadyCondition).Reason).To(Equal(remotecluster.ReasonUnreachable))
	}).Should(Succeed())

	g.Expect(us.RestartAPIServer()).To(Succeed())
	restarted = true
	expectReady(g, rc)
}

func TestProbeFailures(t *testing.T) {
	bogus, err := us.KubeconfigWithToken("bogus")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		clusterID     string
		kubeconfig    []byte
		reason        string
		reachable     metav1.ConditionStatus
		authenticated metav1.ConditionStatus
	}{
		{"garbage kubeconfig", usID.ID, []byte("not: a: kubeconfig"), remotecluster.ReasonKubeconfigInvalid, metav1.ConditionFalse, metav1.ConditionUnknown},
		{"missing Secret", usID.ID, nil, remotecluster.ReasonKubeconfigSecretNotFound, metav1.ConditionFalse, metav1.ConditionUnknown},
		{"wrong cluster ID", uuid.NewString(), adminKubeconfig(t, us), remotecluster.ReasonClusterIDMismatch, metav1.ConditionFalse, metav1.ConditionUnknown},
		{"revoked token", usID.ID, bogus, remotecluster.ReasonUnauthorized, metav1.ConditionTrue, metav1.ConditionFalse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newG(t)
			reg, _ := startController(t)
			rc := peer(t, "provider-us", tc.clusterID, tc.kubeconfig)
			g.Eventually(func(g Gomega) {
				ready := nodeReady(virtualNode(g, rc))
				g.Expect(ready.Status).To(Equal(corev1.ConditionFalse))
				g.Expect(ready.Reason).To(Equal(tc.reason))
				reachable := condition(g, rc, peeringv1alpha1.APIReachableCondition)
				g.Expect(reachable.Status).To(Equal(tc.reachable))
				authenticated := condition(g, rc, peeringv1alpha1.AuthenticatedCondition)
				g.Expect(authenticated.Status).To(Equal(tc.authenticated))
				for _, c := range []metav1.Condition{reachable, authenticated, condition(g, rc, peeringv1alpha1.VirtualNodeReadyCondition)} {
					if c.Status != metav1.ConditionTrue {
						g.Expect(c.Reason).To(Equal(tc.reason))
						g.Expect(c.Message).To(ContainSubstring("stretch-system/stretch-peer-provider-us"))
					}
				}
			}).Should(Succeed())
			if tc.kubeconfig == nil {
				g.Expect(reg.ClusterIDs()).To(BeEmpty(), "no credentials, no peer")
			}
		})
	}
}

func TestSecretCreatedLater(t *testing.T) {
	g := newG(t)
	_, _ = startController(t)
	rc := peer(t, "provider-us", usID.ID, nil)
	g.Eventually(func(g Gomega) {
		g.Expect(condition(g, rc, peeringv1alpha1.APIReachableCondition).Reason).To(Equal(remotecluster.ReasonKubeconfigSecretNotFound))
	}).Should(Succeed())

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: peering.SecretName(rc.Name)},
		Data:       map[string][]byte{peering.KubeconfigKey: adminKubeconfig(t, us)},
	}
	g.Expect(home.Client.Create(t.Context(), secret)).To(Succeed())
	expectReady(g, rc)
}

// TestDuplicateClusterID: a second RemoteCluster for a provider already
// peered is refused in its status and gets no virtual node; deleting it leaves
// the first peering alone.
func TestDuplicateClusterID(t *testing.T) {
	g := newG(t)
	rc, reg, _ := peeredWith(t, g, us, usID)
	dup := peer(t, "provider-us-again", usID.ID, adminKubeconfig(t, us))
	g.Eventually(func(g Gomega) {
		c := condition(g, dup, peeringv1alpha1.APIReachableCondition)
		g.Expect(c.Reason).To(Equal(remotecluster.ReasonDuplicateClusterID))
		g.Expect(c.Message).To(ContainSubstring("RemoteCluster " + rc.Name + " already peers with the provider"))
	}).Should(Succeed())
	g.Expect(apierrors.IsNotFound(home.Client.Get(t.Context(), client.ObjectKey{Name: peeringv1alpha1.VirtualNodeName(dup.Name)}, &corev1.Node{}))).To(BeTrue())

	deleteAndWait(g, dup)
	_, ok := reg.Get(usID.ID)
	g.Expect(ok).To(BeTrue(), "the first peering keeps its peer")
	expectReady(g, rc)
}

func TestDelete(t *testing.T) {
	g := newG(t)
	ctx := t.Context()
	rc, reg, _ := peeredWith(t, g, eu, euID)
	_, ok := reg.Get(euID.ID)
	g.Expect(ok).To(BeTrue())

	// Deleting does not need the Secret.
	g.Expect(home.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: peering.SecretName(rc.Name)}})).To(Succeed())
	deleteAndWait(g, rc)
	name := peeringv1alpha1.VirtualNodeName(rc.Name)
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: name}, &corev1.Node{})).To(Satisfy(apierrors.IsNotFound))
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: corev1.NamespaceNodeLease, Name: name}, &coordinationv1.Lease{})).To(Satisfy(apierrors.IsNotFound))
	_, ok = reg.Get(euID.ID)
	g.Expect(ok).To(BeFalse())
}

func TestControllerRestart(t *testing.T) {
	g := newG(t)
	ctx := t.Context()
	rc, _, stop := peeredWith(t, g, eu, euID)
	first := virtualNode(g, rc)
	stop()

	got := &peeringv1alpha1.RemoteCluster{}
	g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(rc), got)).To(Succeed())
	heartbeat := got.Status.LastHeartbeatTime.Time
	_, _ = startController(t)
	g.Eventually(func(g Gomega) {
		g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(rc), got)).To(Succeed())
		g.Expect(got.Status.LastHeartbeatTime.Time).To(BeTemporally(">", heartbeat))
	}).Should(Succeed(), "the new controller probes")
	expectReady(g, rc)

	nodes := &corev1.NodeList{}
	g.Expect(home.Client.List(ctx, nodes, client.MatchingLabels{wellknown.RemoteClusterIDLabel: euID.ID})).To(Succeed())
	g.Expect(nodes.Items).To(HaveLen(1))
	g.Expect(nodes.Items[0].UID).To(Equal(first.UID), "the same node, not a new one")
	g.Expect(nodes.Items[0].Labels).To(Equal(first.Labels))
	g.Expect(nodes.Items[0].Spec.Taints).To(Equal(first.Spec.Taints))

	// The second controller's cleanup runs before the first peer's: delete now.
	deleteAndWait(g, rc)
}

// After a leader failover, the new leader serves the virtual nodes' kubelet
// API at its own pod IP: it moves the address of the existing virtual node
// there, so that kubectl logs and exec keep working.
func TestKubeletAddressFollowsLeader(t *testing.T) {
	g := newG(t)
	ctx := t.Context()
	kubelet := func(address string, port int32) func(*remotecluster.Reconciler) {
		return func(r *remotecluster.Reconciler) { r.KubeletAddress, r.KubeletPort = address, port }
	}
	endpoint := func(g Gomega, rc *peeringv1alpha1.RemoteCluster) (*corev1.Node, []corev1.NodeAddress, int32) {
		node := virtualNode(g, rc)
		return node, node.Status.Addresses, node.Status.DaemonEndpoints.KubeletEndpoint.Port
	}

	// The first leader, at 198.51.100.10 (documentation addresses: nothing
	// connects to them in this test).
	_, stop := startController(t, kubelet("198.51.100.10", 10250))
	rc := peer(t, euID.Name, euID.ID, adminKubeconfig(t, eu))
	expectReady(g, rc)
	first, addresses, port := endpoint(g, rc)
	g.Expect(addresses).To(Equal([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.10"}}))
	g.Expect(port).To(BeEquivalentTo(10250))
	stop()

	// The new leader, elsewhere, on another port as well.
	_, _ = startController(t, kubelet("198.51.100.11", 10251))
	g.Eventually(func(g Gomega) {
		node, addresses, port := endpoint(g, rc)
		g.Expect(addresses).To(Equal([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.11"}}))
		g.Expect(port).To(BeEquivalentTo(10251))
		g.Expect(node.UID).To(Equal(first.UID), "the same node, not a new one")
	}).Should(Succeed(), "the new leader moves the kubelet address")
	expectReady(g, rc)

	nodes := &corev1.NodeList{}
	g.Expect(home.Client.List(ctx, nodes, client.MatchingLabels{wellknown.RemoteClusterIDLabel: euID.ID})).To(Succeed())
	g.Expect(nodes.Items).To(HaveLen(1))

	// The second controller's cleanup runs before the first peer's: delete now.
	deleteAndWait(g, rc)
}

// edit reads obj, changes it and writes it back, again on a conflict with
// the controller, which writes the same objects.
func edit[T client.Object](g Gomega, obj T, change func(T)) {
	g.Eventually(func() error {
		if err := home.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return home.Client.Update(context.Background(), obj)
	}).Should(Succeed())
}
