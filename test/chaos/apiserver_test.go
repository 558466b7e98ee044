package chaos

import (
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// offloaded is the home namespace offloaded (strategy Remote), rolled out and
// unoffloaded while the provider's API server is down.
const offloaded = "chaos"

// TestProviderAPIServerKilled kills the provider's kube-apiserver (SIGKILL)
// during an offload, during a pod rollout and during an unoffload, and
// starts it again once home has seen the provider gone. After each, the
// system converges with no duplicate and nothing left behind, and the
// provider's own objects, a namespace with the twin name of a home
// namespace among them, are byte-for-byte unchanged.
func TestProviderAPIServerKilled(t *testing.T) {
	w := setUp(t)
	var before snapshot

	// nothingLost runs at the end of every scenario.
	nothingLost := func(t *testing.T, g *WithT) {
		t.Helper()
		w.expectUnchanged(t, g, before)
		w.expectClashRefused(g)
		w.dup.ExpectNone(t, g)
		w.expectHomeManagerRunning(g)
	}

	step(t, "a provider namespace with a twin's name is refused, never touched", func(t *testing.T) {
		g := newG(t)
		w.createForeign(g)
		before = w.snapshotForeign(g)
		g.Expect(w.home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clashing}})).To(Succeed())
		// LocalAndRemote: with no provider to go to (AllFailed), the pod
		// webhook refuses Remote pods, which could never start.
		g.Expect(stretchctl(t, "offload", "namespace", clashing, "--kubeconfig", w.home.Kubeconfig, "--pod-offloading-strategy", "LocalAndRemote")).To(Succeed())
		w.expectClashRefused(g)
		// A pod of that namespace, with what it needs, is bound to the
		// virtual node all the same (by spec.nodeName): none of it may
		// reach the provider's namespace.
		meta := metav1.ObjectMeta{Namespace: clashing, Name: "settings"}
		g.Expect(w.home.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"color": "home"}})).To(Succeed())
		g.Expect(w.home.Client.Create(ctx, &corev1.Secret{ObjectMeta: meta, StringData: map[string]string{"password": "home's own"}})).To(Succeed())
		g.Eventually(func() error { return w.home.Client.Create(ctx, clashPod()) }).Should(Succeed())
		g.Eventually(func(g Gomega) {
			pod := &corev1.Pod{}
			g.Expect(w.home.Client.Get(ctx, client.ObjectKeyFromObject(clashPod()), pod)).To(Succeed())
			g.Expect(pod.Spec.NodeName).To(Equal(peeringv1alpha1.VirtualNodeName(providerName)))
		}).Should(Succeed(), "the pod of %s bound to the virtual node", clashing)
		nothingLost(t, g)
	})

	step(t, "killed during an offload", func(t *testing.T) {
		g := newG(t)
		g.Expect(w.home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: offloaded}})).To(Succeed())
		g.Expect(stretchctl(t, "offload", "namespace", offloaded, "--kubeconfig", w.home.Kubeconfig, "--pod-offloading-strategy", "Remote")).To(Succeed())
		restart := w.killProvider(t, g)
		t.Logf("phase while the provider is down: %q", w.offloading(g, offloaded).Status.OffloadingPhase)
		restart()
		twin := offloaded + "-" + w.homeID
		g.Eventually(func(g Gomega) {
			w.keepProviderManager(t)
			off := w.offloading(g, offloaded)
			g.Expect(off).NotTo(BeNil())
			g.Expect(off.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
			g.Expect(off.Status.RemoteNamespaceName).To(Equal(twin))
			requests, nss := w.twins(g, offloaded)
			g.Expect(requests).To(HaveLen(1), "one request")
			g.Expect(nss).To(HaveLen(1), "one twin")
			g.Expect(nss[0].Name).To(Equal(twin))
			g.Expect(nss[0].Annotations).To(HaveKeyWithValue(wellknown.RemoteNamespaceOriginAnnotation, w.homeID))
		}).Should(Succeed(), "offloaded: Ready, one twin")
		nothingLost(t, g)
	})

	step(t, "killed during a pod rollout", func(t *testing.T) {
		g := newG(t)
		g.Expect(w.home.Client.Create(ctx, deployment(4, "blue"))).To(Succeed())
		g.Eventually(func(g Gomega) {
			w.expectRolledOut(g, 4, "blue")
		}).Should(Succeed(), "4 blue pods Ready, each with one remote pod")
		// Scale up and change the template at once: the ReplicaSet
		// controller at home creates and deletes pods while the provider is
		// down.
		g.Eventually(func() error {
			d := &appsv1.Deployment{}
			if err := w.home.Client.Get(ctx, client.ObjectKeyFromObject(deployment(0, "")), d); err != nil {
				return err
			}
			d.Spec.Replicas = ptr.To[int32](6)
			d.Spec.Template.Labels["color"] = "red"
			return w.home.Client.Update(ctx, d)
		}).Should(Succeed())
		restart := w.killProvider(t, g)
		g.Eventually(func(g Gomega) {
			g.Expect(w.homePods(g, "red")).NotTo(BeEmpty())
		}).Should(Succeed(), "the rollout goes on at home while the provider is down")
		t.Logf("%d red pods at home while the provider is down", len(w.homePods(g, "red")))
		restart()
		g.Eventually(func(g Gomega) {
			w.keepProviderManager(t)
			w.expectRolledOut(g, 6, "red")
		}).Should(Succeed(), "6 red pods Ready, each with one remote pod, no other remote pod")
		nothingLost(t, g)
	})

	step(t, "killed during an unoffload", func(t *testing.T) {
		g := newG(t)
		g.Expect(stretchctl(t, "unoffload", "namespace", offloaded, "--kubeconfig", w.home.Kubeconfig, "--yes")).To(Succeed())
		restart := w.killProvider(t, g)
		g.Eventually(func(g Gomega) {
			off := w.offloading(g, offloaded)
			g.Expect(off).NotTo(BeNil(), "gone while the provider is down")
			g.Expect(off.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.TerminatingPhase))
		}).Should(Succeed(), "Terminating while the provider is down")
		restart()
		g.Eventually(func(g Gomega) {
			w.keepProviderManager(t)
			g.Expect(w.offloading(g, offloaded)).To(BeNil(), "the NamespaceOffloading is gone")
			requests, nss := w.twins(g, offloaded)
			g.Expect(requests).To(BeEmpty(), "requests left")
			g.Expect(nss).To(BeEmpty(), "twins left")
			g.Expect(w.remotePods(g, offloaded)).To(BeEmpty(), "remote pods left")
			// The Deployment's pods run at home again.
			d := &appsv1.Deployment{}
			g.Expect(w.home.Client.Get(ctx, client.ObjectKeyFromObject(deployment(0, "")), d)).To(Succeed())
			g.Expect(d.Status.ReadyReplicas).To(BeEquivalentTo(6))
			for _, p := range w.homePods(g, "red") {
				g.Expect(p.Spec.NodeName).To(Equal(w.home.FakeNodes[0]), "pod %s", p.Name)
			}
			ns := &corev1.Namespace{}
			g.Expect(w.home.Client.Get(ctx, client.ObjectKey{Name: offloaded}, ns)).To(Succeed())
			g.Expect(ns.Labels).NotTo(HaveKey(wellknown.SchedulingEnabledLabel))
		}).Should(Succeed(), "unoffloaded: nothing left on the provider, the pods back home")
		nothingLost(t, g)
	})

	step(t, "unoffloading the refused namespace leaves the provider's namespace as it was", func(t *testing.T) {
		g := newG(t)
		g.Expect(stretchctl(t, "unoffload", "namespace", clashing, "--kubeconfig", w.home.Kubeconfig, "--yes", "--wait")).To(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(w.offloading(g, clashing)).To(BeNil())
			requests, nss := w.twins(g, clashing)
			g.Expect(requests).To(BeEmpty())
			g.Expect(nss).To(BeEmpty())
			pods := &corev1.PodList{}
			g.Expect(w.home.Client.List(ctx, pods, client.InNamespace(clashing))).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty(), "the pod on the virtual node deleted at home")
		}).Should(Succeed())
		w.expectUnchanged(t, g, before)
		w.dup.ExpectNone(t, g)
		t.Logf("the provider's manager was started again %d times", w.managerRestarts)
	})
}

// expectClashRefused checks that offloading home namespace clashing fails on
// the provider with AlreadyExists: the namespace with its twin name is not
// Stretch's.
func (w *world) expectClashRefused(g *WithT) {
	g.Eventually(func(g Gomega) {
		off := w.offloading(g, clashing)
		g.Expect(off).NotTo(BeNil())
		g.Expect(off.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.AllFailedPhase))
		ready := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[providerName], offloadingv1alpha1.RemoteNamespaceReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(offloadingv1alpha1.CreationFailedReason))
		g.Expect(ready.Message).To(HavePrefix("AlreadyExists: "))
		requests, _ := w.twins(g, clashing)
		g.Expect(requests).To(HaveLen(1))
		g.Expect(requests[0].Status.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceCreationFailed))
		g.Expect(requests[0].Status.Reason).To(Equal(peeringv1alpha1.AlreadyExistsReason))
		g.Expect(w.remotePods(g, clashing)).To(BeEmpty())
	}).Should(Succeed(), "offloading %s fails with AlreadyExists", clashing)
}

// clashPod is a pod of home namespace clashing that needs its ConfigMap and
// Secret.
func clashPod() *corev1.Pod {
	ref := corev1.LocalObjectReference{Name: "settings"}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: clashing, Name: "web"},
		Spec: corev1.PodSpec{
			NodeName: peeringv1alpha1.VirtualNodeName(providerName),
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example/web:1",
				EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref}}, {SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref}}},
			}},
		},
	}
}

// deployment is Deployment web of namespace offloaded, whose pods carry color.
func deployment(replicas int32, color string) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: offloaded, Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "color": color}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:" + color}}},
			},
		},
	}
}

// homePods returns the pods of namespace offloaded at home with color, those
// being deleted included.
func (w *world) homePods(g Gomega, color string) []corev1.Pod {
	list := &corev1.PodList{}
	g.Expect(w.home.Client.List(ctx, list, client.InNamespace(offloaded), client.MatchingLabels{"color": color})).To(Succeed())
	return list.Items
}

// expectRolledOut checks that Deployment web has n Ready pods of color at
// home, on the virtual node, and no other pod; that each has exactly one
// remote pod, Running with the same color; and that no other remote pod of
// the namespace exists.
func (w *world) expectRolledOut(g Gomega, n int32, color string) {
	d := &appsv1.Deployment{}
	g.Expect(w.home.Client.Get(ctx, client.ObjectKeyFromObject(deployment(0, "")), d)).To(Succeed())
	g.Expect(d.Status.ObservedGeneration).To(Equal(d.Generation))
	g.Expect(d.Status.UpdatedReplicas).To(Equal(n))
	g.Expect(d.Status.ReadyReplicas).To(Equal(n))
	g.Expect(d.Status.Replicas).To(Equal(n))

	list := &corev1.PodList{}
	g.Expect(w.home.Client.List(ctx, list, client.InNamespace(offloaded))).To(Succeed())
	g.Expect(list.Items).To(HaveLen(int(n)), "home pods")
	remote := w.remotePods(g, offloaded)
	for _, p := range list.Items {
		g.Expect(p.DeletionTimestamp).To(BeNil(), "home pod %s being deleted", p.Name)
		g.Expect(p.Labels).To(HaveKeyWithValue("color", color), "home pod %s", p.Name)
		g.Expect(p.Spec.NodeName).To(Equal(peeringv1alpha1.VirtualNodeName(providerName)), "home pod %s", p.Name)
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		}
		g.Expect(ready).To(BeTrue(), "home pod %s Ready", p.Name)
		g.Expect(remote[string(p.UID)]).To(HaveLen(1), "remote pods of home pod %s", p.Name)
		r := remote[string(p.UID)][0]
		g.Expect(r.Status.Phase).To(Equal(corev1.PodRunning), "remote pod of %s", p.Name)
		g.Expect(r.Labels).To(HaveKeyWithValue("color", color), "remote pod of %s", p.Name)
		g.Expect(r.DeletionTimestamp).To(BeNil(), "remote pod of %s being deleted", p.Name)
	}
	g.Expect(remote).To(HaveLen(len(list.Items)), "remote pods whose home pod is gone (orphans)")
}
