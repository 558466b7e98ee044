package tenancy

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv/fleet"
)

// attack is one way a home cluster could try to reach past its twins into
// the provider's nodes, identities or scheduling.
type attack struct {
	name   string
	change func(*corev1.PodSpec)
	// refused is what the provider's refusal says.
	refused string
	// dropped: a home pod cannot express it, since the virtual kubelet does
	// not copy it to the remote pod; check says the remote pod is without it.
	dropped func(Gomega, *corev1.Pod)
}

// attacks are the attempts of docs/security.md's attack list; all but the pods limit
// (TestOverLimitRefused).
var attacks = []attack{
	{name: "privileged", change: func(s *corev1.PodSpec) {
		s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	}, refused: `violates PodSecurity "baseline:latest": privileged`},
	{name: "hostpath-root", change: func(s *corev1.PodSpec) {
		s.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "root", MountPath: "/host"}}
	}, refused: `violates PodSecurity "baseline:latest": hostPath volumes`},
	{name: "host-network", change: func(s *corev1.PodSpec) { s.HostNetwork = true }, refused: `violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)`},
	{name: "host-pid", change: func(s *corev1.PodSpec) { s.HostPID = true }, refused: `violates PodSecurity "baseline:latest": host namespaces (hostPID=true)`},
	{name: "host-ipc", change: func(s *corev1.PodSpec) { s.HostIPC = true }, refused: `violates PodSecurity "baseline:latest": host namespaces (hostIPC=true)`},
	{name: "sys-admin", change: func(s *corev1.PodSpec) {
		s.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}
	}, refused: `violates PodSecurity "baseline:latest": non-default capabilities`},
	{name: "host-port", change: func(s *corev1.PodSpec) {
		s.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80}}
	}, refused: `violates PodSecurity "baseline:latest": hostPort`},
	{name: "unsafe-sysctl", change: func(s *corev1.PodSpec) {
		s.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.msgmax", Value: "65536"}}}
	}, refused: `violates PodSecurity "baseline:latest": forbidden sysctls (kernel.msgmax)`},
	{name: "control-plane-toleration", change: func(s *corev1.PodSpec) {
		s.Tolerations = []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	}, refused: "tolerates the control-plane taint node-role.kubernetes.io/control-plane"},
	{name: "priority-class", change: func(s *corev1.PodSpec) { s.PriorityClassName = "system-node-critical" },
		refused: "names priority class system-node-critical, and the policy allows none"},
	{name: "node-name", change: func(s *corev1.PodSpec) { s.NodeName = "provider-cp-1" },
		refused: "it names node provider-cp-1 in spec.nodeName",
		dropped: func(g Gomega, remote *corev1.Pod) { g.Expect(remote.Spec.NodeName).To(BeEmpty()) }},
	{name: "service-account", change: func(s *corev1.PodSpec) { s.ServiceAccountName = "kube-proxy" },
		refused: "runs as ServiceAccount kube-proxy",
		dropped: func(g Gomega, remote *corev1.Pod) {
			g.Expect(remote.Spec.ServiceAccountName).To(Or(BeEmpty(), Equal("default")))
			g.Expect(remote.Spec.AutomountServiceAccountToken).To(HaveValue(BeFalse()))
		}},
}

// TestAttacksAreRefused makes each attempt of the attack list twice: as a
// pod of an offloaded home namespace, which the home cluster's virtual
// kubelet sends to the provider, and directly in the twin with the
// credentials the provider issued to the home cluster. Each is refused by
// the provider, the home pod saying why in its condition and an event, and
// nothing is created on the provider. Two cannot be asked from home at all:
// the virtual kubelet never sends a node name nor a service account, and the
// remote pod is checked to be without them.
func TestAttacksAreRefused(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	twin, creds, node := runAttacker(t, g, "attack")

	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			t.Run("directly with the issued credentials", func(t *testing.T) {
				g := newG(t)
				p := attackPod(twin, "direct-"+a.name, a.change)
				p.Labels = map[string]string{wellknown.OriginClusterIDLabel: homeRun}
				err := creds.Create(ctx, p)
				g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "creating %s: %v", a.name, err)
				g.Expect(err.Error()).To(ContainSubstring(a.refused))
				g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKeyFromObject(p), &corev1.Pod{}))).To(BeTrue())
			})
			t.Run("as an offloaded home pod", func(t *testing.T) {
				g := newG(t)
				p := attackPod("attack", "home-"+a.name, a.change)
				if a.dropped != nil {
					// Bound to the virtual node as any offloaded pod; the
					// node it names is not the provider's to pick.
					p.Spec.NodeName = node
					g.Expect(home.Client.Create(ctx, p)).To(Succeed())
					remote := &corev1.Pod{}
					g.Eventually(func() error { return provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: p.Name}, remote) }).Should(Succeed())
					a.dropped(g, remote)
					return
				}
				p.Spec.NodeName = node
				g.Expect(home.Client.Create(ctx, p)).To(Succeed())
				expectRefusedAtHome(g, p, a.refused)
				g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: p.Name}, &corev1.Pod{}))).To(BeTrue())
			})
		})
	}
	t.Logf("%d attacks, each made twice", len(attacks))
}

// TestOverLimitRefused: with the provider's admin limiting the home
// cluster to two pods, a third is refused, from home and directly; freeing
// one lets the home pod in.
func TestOverLimitRefused(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	twin, creds, node := runAttacker(t, g, "bounded")

	// Only this namespace's pods count: the other tests' are gone first.
	policy := &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(homeRun), Name: wellknown.TenantPolicyName}}
	g.Expect(client.IgnoreAlreadyExists(provider.Client.Create(ctx, policy))).To(Succeed())
	t.Cleanup(func() { _ = provider.Client.Delete(context.Background(), policy) })
	var used int64
	g.Eventually(func(g Gomega) {
		g.Expect(provider.Client.Get(ctx, client.ObjectKeyFromObject(policy), policy)).To(Succeed())
		g.Expect(policy.Status.ObservedGeneration).To(Equal(policy.Generation))
		used = policy.Status.Used.Pods().Value()
	}).Should(Succeed())
	limit := used + 2
	g.Expect(provider.Client.Patch(ctx, policy, client.RawPatch("application/merge-patch+json",
		fmt.Appendf(nil, `{"spec":{"limits":{"pods":"%d"}}}`, limit)))).To(Succeed())

	var pods []*corev1.Pod
	for i := range 3 {
		p := attackPod("bounded", fmt.Sprintf("web-%d", i), nil)
		p.Spec.NodeName = node
		g.Expect(home.Client.Create(ctx, p)).To(Succeed())
		pods = append(pods, p)
		if i < 2 {
			g.Eventually(func() error {
				return provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: p.Name}, &corev1.Pod{})
			}).Should(Succeed())
		}
	}
	full := fmt.Sprintf("runs %d pods on this provider already, and the policy allows %d", limit, limit)
	expectRefusedAtHome(g, pods[2], full)
	g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: pods[2].Name}, &corev1.Pod{}))).To(BeTrue())

	direct := attackPod(twin, "direct-over", nil)
	direct.Labels = map[string]string{wellknown.OriginClusterIDLabel: homeRun}
	err := creds.Create(ctx, direct)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring(full))

	// A pod of ours going brings the refused one's next try forward.
	g.Expect(home.Client.Delete(ctx, pods[0], client.GracePeriodSeconds(0))).To(Succeed())
	g.Eventually(func() error {
		return provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: pods[2].Name}, &corev1.Pod{})
	}).WithTimeout(90 * time.Second).Should(Succeed())
}

// runAttacker runs Stretch with the home cluster and the provider, offloads
// home namespace ns (unoffloaded when the test ends) and returns its twin,
// a client with the credentials the provider issued to the home cluster,
// and the provider's virtual node, once the provider's twin pod admission
// answers.
func runAttacker(t *testing.T, g Gomega, ns string) (twin string, creds client.Client, node string) {
	t.Helper()
	installProvider(t)
	fleet.Run(t, home, homeRun, []fleet.Provider{{Server: provider}})
	twin = offloadNamespace(g, ns)
	unoffloadAtEnd(t, ns)
	creds = clientFor(t, issue(t, homeRun))
	waitPodAdmission(g, twin)
	return twin, creds, peeringv1alpha1.VirtualNodeName(provider.Name)
}

// unoffloadAtEnd has home namespace ns unoffloaded, its pods deleted, when
// the test ends, before Stretch stops: the next tests see the home cluster
// without it.
func unoffloadAtEnd(t *testing.T, ns string) {
	t.Cleanup(func() {
		g := newG(t)
		ctx := context.Background()
		g.Expect(home.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0))).To(Succeed())
		off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.NamespaceOffloadingName}}
		g.Expect(client.IgnoreNotFound(home.Client.Delete(ctx, off))).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(off), off))
		}).WithTimeout(2*time.Minute).Should(BeTrue(), "namespace %s unoffloaded", ns)
	})
}

func attackPod(ns, name string, change func(*corev1.PodSpec)) *corev1.Pod {
	p := podIn(ns, name)
	if change != nil {
		change(&p.Spec)
	}
	return p
}

// expectRefusedAtHome waits until home pod p says, in its condition and a
// Warning event, that the provider refused it with words containing want.
func expectRefusedAtHome(g Gomega, p *corev1.Pod, want string) {
	ctx := context.Background()
	g.EventuallyWithOffset(1, func(g Gomega) {
		got := &corev1.Pod{}
		g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
		var cond *corev1.PodCondition
		for i := range got.Status.Conditions {
			if got.Status.Conditions[i].Type == offloadingv1alpha1.PodOffloadedCondition {
				cond = &got.Status.Conditions[i]
			}
		}
		g.Expect(cond).NotTo(BeNil(), "conditions of %s: %v", p.Name, got.Status.Conditions)
		g.Expect(cond.Status).To(Equal(corev1.ConditionFalse))
		g.Expect(cond.Reason).To(Equal(offloadingv1alpha1.RefusedByProviderReason))
		g.Expect(cond.Message).To(ContainSubstring("provider " + provider.Name + " refused the pod"))
		g.Expect(cond.Message).To(ContainSubstring(want))
		g.Expect(homeEventReasons(g, p.Namespace, p.Name)).To(ContainElement(offloadingv1alpha1.RefusedByProviderReason))
	}).Should(Succeed())
}

// waitPodAdmission waits until the provider's twin pod admission answers
// for namespace ns (the API server learns of the webhook configuration
// within a moment of its manager starting).
func waitPodAdmission(g Gomega, ns string) {
	g.EventuallyWithOffset(1, func(g Gomega) {
		p := attackPod(ns, "admission-probe", func(s *corev1.PodSpec) { s.NodeName = "probe" })
		p.Labels = map[string]string{wellknown.OriginClusterIDLabel: homeRun}
		err := provider.Client.Create(context.Background(), p)
		if err == nil {
			_ = provider.Client.Delete(context.Background(), p, client.GracePeriodSeconds(0))
		}
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	}).Should(Succeed())
}
