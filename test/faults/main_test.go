package faults

import (
	"context"
	"fmt"
	"sync/atomic"
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
	"stretch.dev/stretch/internal/testenv"
)

const homeID = "f4f4f4f4-0000-4000-8000-00000000000f"

var (
	home, eu *testenv.APIServer
	ctx      = context.Background()
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { home, eu = s[0], s[1] }, "home", "eu")
}

func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(2 * time.Minute)
	g.SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	return g
}

var runs atomic.Int32

// unique makes name unique in the package's run, so that -count=N reruns
// tests on the same API servers.
func unique(name string) string { return fmt.Sprintf("%s-%d", name, runs.Add(1)) }

// offload creates namespace ns at home and its NamespaceOffloading.
func offload(g *WithT, ns string) *offloadingv1alpha1.NamespaceOffloading {
	g.Expect(home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "offloading"}}
	g.Expect(home.Client.Create(ctx, off)).To(Succeed())
	return off
}

// expectReady waits until off is Ready.
func expectReady(g *WithT, off *offloadingv1alpha1.NamespaceOffloading) {
	g.Eventually(func(g Gomega) {
		got := &offloadingv1alpha1.NamespaceOffloading{}
		g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(off), got)).To(Succeed())
		g.Expect(got.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
	}).Should(Succeed(), "NamespaceOffloading %s Ready", off.Namespace)
}

// boundPod is a pod bound to eu's virtual node, as the scheduler binds it.
func boundPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			NodeName:                      peeringv1alpha1.VirtualNodeName(eu.Name),
			Containers:                    []corev1.Container{{Name: "app", Image: "nginx"}},
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}
}

// twins returns what eu holds for home namespace ns: the RemoteNamespaces
// and the twin namespaces of ns.
func twins(g Gomega, ns string) ([]peeringv1alpha1.RemoteNamespace, []corev1.Namespace) {
	rns := &peeringv1alpha1.RemoteNamespaceList{}
	g.Expect(eu.Client.List(ctx, rns, client.InNamespace(peeringv1alpha1.TenantNamespace(homeID)))).To(Succeed())
	var requests []peeringv1alpha1.RemoteNamespace
	for _, r := range rns.Items {
		if r.Spec.HomeNamespace == ns {
			requests = append(requests, r)
		}
	}
	nss := &corev1.NamespaceList{}
	g.Expect(eu.Client.List(ctx, nss, client.MatchingLabels{wellknown.OriginNamespaceLabel: ns})).To(Succeed())
	return requests, nss.Items
}

// remotePods returns the pods on eu offloaded from home namespace ns, in
// every namespace, by the UID of their home pod.
func remotePods(g Gomega, ns string) map[string][]corev1.Pod {
	list := &corev1.PodList{}
	g.Expect(eu.Client.List(ctx, list, client.MatchingLabels{wellknown.OriginNamespaceLabel: ns})).To(Succeed())
	out := map[string][]corev1.Pod{}
	for _, p := range list.Items {
		uid := p.Annotations[wellknown.OriginPodUIDAnnotation]
		out[uid] = append(out[uid], p)
	}
	return out
}

// expectOneRemotePodEach checks that each home pod of ns has exactly one
// remote pod, and no other remote pod exists; it returns their UIDs by home
// pod name.
func expectOneRemotePodEach(g Gomega, ns string) map[string]string {
	homePods := &corev1.PodList{}
	g.Expect(home.Client.List(ctx, homePods, client.InNamespace(ns))).To(Succeed())
	remote := remotePods(g, ns)
	g.Expect(remote).To(HaveLen(len(homePods.Items)), "one remote pod per home pod, and no other")
	uids := map[string]string{}
	for _, p := range homePods.Items {
		g.Expect(remote[string(p.UID)]).To(HaveLen(1), "remote pods of %s", p.Name)
		uids[p.Name] = string(remote[string(p.UID)][0].UID)
	}
	return uids
}

// runRemotePods marks every remote pod of ns Running, as the provider's
// kubelet would.
func runRemotePods(g Gomega, ns string) {
	for _, pods := range remotePods(g, ns) {
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				continue
			}
			now := metav1.Now()
			p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.20.0.7", StartTime: &now,
				Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "nginx", ImageID: "nginx@sha256:0", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
			}
			g.Expect(eu.Client.Status().Update(ctx, &p)).To(Succeed())
		}
	}
}

// expectHomePodsRunning checks that every home pod of ns is Running, its
// status brought home.
func expectHomePodsRunning(g Gomega, ns string) {
	list := &corev1.PodList{}
	g.Expect(home.Client.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	for _, p := range list.Items {
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "home pod %s", p.Name)
		g.Expect(p.Status.PodIP).To(Equal("10.20.0.7"), "home pod %s", p.Name)
	}
}

// unoffload deletes off and waits until nothing of its namespace is left
// offloaded: the NamespaceOffloading, the request and the twin on the
// provider, remote pods, and the home pods that ran on the virtual node.
func unoffload(g *WithT, off *offloadingv1alpha1.NamespaceOffloading) {
	ns := off.Namespace
	g.Expect(home.Client.Delete(ctx, off)).To(Succeed())
	g.Eventually(func(g Gomega) {
		err := home.Client.Get(ctx, client.ObjectKeyFromObject(off), off)
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "NamespaceOffloading still there: %v", err)
		requests, nss := twins(g, ns)
		g.Expect(requests).To(BeEmpty())
		g.Expect(nss).To(BeEmpty())
		g.Expect(remotePods(g, ns)).To(BeEmpty())
		list := &corev1.PodList{}
		g.Expect(home.Client.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(BeEmpty(), "pods on the virtual node deleted at home")
	}).Should(Succeed(), "namespace %s unoffloaded", ns)
}
