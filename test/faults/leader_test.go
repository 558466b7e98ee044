package faults

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/manager"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
	"stretch.dev/stretch/internal/testenv/kwok"
)

var leaseKey = types.NamespacedName{Namespace: wellknown.SystemNamespace, Name: "stretch-controller-manager"}

// leader returns the holder of the leader Lease, "" when none.
func leader(g Gomega) string {
	lease := &coordinationv1.Lease{}
	g.Expect(client.IgnoreNotFound(home.Client.Get(ctx, leaseKey, lease))).To(Succeed())
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// TestLeaderKilled runs the home side as leader-elected
// stretch-controller-manager processes and SIGKILLs the leader mid-work,
// twice: while a namespace's pods are being offloaded, and while a namespace
// is being offloaded. Each time the standby takes the Lease, finishes the
// work, and nothing is done twice: one request and one twin per namespace,
// one remote pod per home pod, and what existed at the kill keeps its UID.
func TestLeaderKilled(t *testing.T) {
	g := newG(t)
	fleet.RunWith(t, home, homeID, []fleet.Provider{{Server: eu}}, fleet.Options{NoHome: true})
	// Each manager points the webhooks at itself; the last killed may
	// leave them pointing at nothing, which other tests must not meet.
	t.Cleanup(func() {
		for _, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
			_ = home.Client.DeleteAllOf(ctx, obj)
		}
	})
	cluster := &kwok.Cluster{Name: home.Name, Kubeconfig: home.Kubeconfig} // RunManager needs only these
	// The default timings: the failover tested is the one users get.
	d := manager.DefaultOptions()
	run := func() *testenv.ManagerProcess {
		return testenv.RunManager(t, "faults", cluster, false, "--leader-elect-lease-duration="+d.LeaseDuration.String(),
			"--leader-elect-renew-deadline="+d.RenewDeadline.String(), "--leader-elect-retry-period="+d.RetryPeriod.String())
	}

	first := run()
	var leading string
	g.Eventually(func(g Gomega) {
		leading = leader(g)
		g.Expect(leading).NotTo(BeEmpty())
	}).Should(Succeed(), "the first manager leads")
	second := run() // the standby
	g.Eventually(func(g Gomega) {
		node := &corev1.Node{}
		g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: peeringv1alpha1.VirtualNodeName(eu.Name)}, node)).To(Succeed())
		g.Expect(nodeReady(node)).To(BeTrue())
	}).Should(Succeed(), "the virtual node Ready")

	// waitFailover waits until another manager takes the Lease from the
	// leading one, killed.
	waitFailover := func(g *WithT) {
		killed := leading
		g.Eventually(func(g Gomega) {
			leading = leader(g)
			g.Expect(leading).NotTo(Or(BeEmpty(), Equal(killed)))
		}).Should(Succeed(), "a standby takes the Lease from %s", killed)
		t.Logf("leader %s killed; %s leads", killed, leading)
	}

	var offloaded []*offloadingv1alpha1.NamespaceOffloading
	t.Run("leader killed while pods are offloaded", func(t *testing.T) {
		g := newG(t)
		const pods = 40
		ns := unique("failover-pods")
		off := offload(g, ns)
		offloaded = append(offloaded, off)
		expectReady(g, off)
		_, nss := twins(g, ns)
		g.Expect(nss).To(HaveLen(1))
		twinUID := nss[0].UID
		// Half the pods before the kill, half while no manager leads, as a
		// ReplicaSet controller creates them (retrying what fails: the
		// webhooks may point at the killed manager for a while).
		create := func(i int) {
			g.Eventually(func() error {
				err := home.Client.Create(ctx, boundPod(ns, fmt.Sprintf("web-%d", i)))
				if err != nil {
					t.Logf("creating pod web-%d: %v", i, err)
				}
				return err
			}).Should(Succeed())
		}
		for i := range pods / 2 {
			create(i)
		}
		var atKill map[string][]corev1.Pod
		g.Eventually(func(g Gomega) {
			atKill = remotePods(g, ns)
			g.Expect(atKill).NotTo(BeEmpty())
		}).WithPolling(10*time.Millisecond).Should(Succeed(), "pod offloading started")
		first.Kill()
		for i := pods / 2; i < pods; i++ {
			create(i)
		}
		t.Logf("killed with %d of %d remote pods created", len(atKill), pods)
		waitFailover(g)

		g.Eventually(func(g Gomega) {
			g.Expect(expectOneRemotePodEach(g, ns)).To(HaveLen(pods))
			now := remotePods(g, ns)
			for uid, p := range atKill {
				g.Expect(now[uid]).To(ConsistOf(HaveField("UID", p[0].UID)), "remote pod %s kept", p[0].Name)
			}
			runRemotePods(g, ns)
			expectHomePodsRunning(g, ns)
		}).Should(Succeed())
		requests, nss := twins(g, ns)
		g.Expect(requests).To(HaveLen(1))
		g.Expect(nss).To(ConsistOf(HaveField("UID", twinUID)))
	})

	t.Run("leader killed while a namespace is offloaded", func(t *testing.T) {
		g := newG(t)
		run() // the next standby
		ns := unique("failover-namespace")
		g.Expect(home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "offloading"}}
		// The webhooks may still point at the killed manager until the
		// others apply their configuration again.
		g.Eventually(func() error {
			err := home.Client.Create(ctx, off)
			if err != nil {
				t.Logf("creating the NamespaceOffloading: %v", err)
			}
			return err
		}).Should(Succeed())
		var atKill []peeringv1alpha1.RemoteNamespace
		var twinsAtKill []corev1.Namespace
		g.Eventually(func(g Gomega) {
			atKill, twinsAtKill = twins(g, ns)
			g.Expect(atKill).NotTo(BeEmpty())
		}).WithPolling(10*time.Millisecond).Should(Succeed(), "namespace offloading started")
		second.Kill()
		waitFailover(g)
		t.Logf("killed with %d requests and %d twins on the provider", len(atKill), len(twinsAtKill))

		offloaded = append(offloaded, off)
		expectReady(g, off)
		requests, nss := twins(g, ns)
		g.Expect(requests).To(ConsistOf(HaveField("UID", atKill[0].UID)), "the request was not made twice")
		g.Expect(nss).To(HaveLen(1))
		if len(twinsAtKill) > 0 {
			g.Expect(nss[0].UID).To(Equal(twinsAtKill[0].UID), "the twin was not made twice")
		}
	})

	t.Run("after failovers, unoffload leaves nothing behind", func(t *testing.T) {
		for _, off := range offloaded {
			unoffload(newG(t), off)
		}
	})
}
