package crash

import (
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// replicas is the size of the Deployment of each offloaded namespace.
const replicas = 6

// point is a moment of an operation, observed on the clusters, at which the
// home manager is killed. reached holds from that moment on, so that a
// manager faster than the observer still meets it, a little later.
type point struct {
	name    string
	reached func(snapshot) bool
}

// operation is what a user does (start), the kill points it passes, and the
// state it converges to (done, asserted once the manager is back).
type operation struct {
	name   string
	start  func(g *WithT, ns string)
	points []point
	done   func(g Gomega, ns string, snap snapshot)
}

// kill is one SIGKILL of the home manager.
type kill struct {
	operation, point, state string
}

// TestHomeManagerKilled SIGKILLs the home stretch-controller-manager at kill
// points of four operations on an offloaded namespace, and starts it again
// at once: offload, pods offloaded with a reflected ConfigMap, a rollout
// (the ConfigMap changes, every pod is replaced), unoffload. After each
// operation, with its kills behind it, everything converges: one request and
// one twin, each made once; exactly one remote pod per home pod, none left
// over, every home pod Ready; after unoffload no request, twin or remote pod
// is left and the pods run Ready at home. No duplicate ever exists (checked
// on every observation). 'make test' kills at every other point of one
// cycle; -full (make chaos) at every point of two cycles.
func TestHomeManagerKilled(t *testing.T) {
	s := setUp(t)
	g := newG(t)
	cycles, every := 1, 2
	if *full {
		cycles, every = 2, 1
	}
	var kills []kill
	start := time.Now()
	for cycle := range cycles {
		ns := fmt.Sprintf("crash-%d", cycle)
		s.remember = remembered{}
		index := 0
		for _, op := range s.operations() {
			op.start(g, ns)
			for _, p := range op.points {
				index++
				if (index-1)%every != 0 {
					continue
				}
				var at snapshot
				g.Eventually(func(g Gomega) {
					at = s.observe(g, ns)
					g.Expect(p.reached(at)).To(BeTrue())
				}).WithPolling(10*time.Millisecond).Should(Succeed(), "%s: kill point %q reached", op.name, p.name)
				s.killHome(g)
				kills = append(kills, kill{op.name, p.name, at.String()})
				t.Logf("kill %d (%s: %s) at: %s", len(kills), op.name, p.name, at)
			}
			g.Eventually(func(g Gomega) { op.done(g, ns, s.observe(g, ns)) }).Should(Succeed(), "%s of namespace %s converges after the kills", op.name, ns)
			t.Logf("%s of namespace %s converged", op.name, ns)
		}
		g.Expect(client.IgnoreNotFound(s.home.Client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))).To(Succeed())
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%d kills of the home manager in %s:\n| # | operation | kill point | state observed at the kill |\n| --- | --- | --- | --- |\n", len(kills), time.Since(start).Round(time.Second))
	for i, k := range kills {
		fmt.Fprintf(&table, "| %d | %s | %s | %s |\n", i+1, k.operation, k.point, k.state)
	}
	t.Log(table.String())
	if *full {
		g.Expect(len(kills)).To(BeNumerically(">=", 20), "kill points of the full run")
	}
}

// operations are the four operations of a cycle, in order.
func (s *stretch) operations() []operation {
	vnode := peeringv1alpha1.VirtualNodeName(providerName)
	return []operation{{
		name: "offload",
		start: func(g *WithT, ns string) {
			g.Expect(s.home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
			s.create(g, &offloadingv1alpha1.NamespaceOffloading{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.NamespaceOffloadingName},
				Spec:       offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy},
			})
		},
		points: []point{
			{"request written on the provider", func(at snapshot) bool { return len(at.requests) > 0 }},
			{"twin created", func(at snapshot) bool { return len(at.twins) > 0 }},
			{"twin Ready on the provider", func(at snapshot) bool {
				return len(at.requests) > 0 && at.requests[0].Status.Phase == peeringv1alpha1.RemoteNamespaceReady
			}},
		},
		done: func(g Gomega, ns string, snap snapshot) {
			g.Expect(snap.off).NotTo(BeNil())
			g.Expect(snap.off.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
			g.Expect(snap.requests).To(HaveLen(1))
			g.Expect(snap.twins).To(HaveLen(1))
			g.Expect(snap.twins[0].Name).To(Equal(s.twinName(ns)))
			g.Expect(snap.twins[0].Annotations).To(HaveKeyWithValue(wellknown.RemoteNamespaceOriginAnnotation, s.homeID))
			home := &corev1.Namespace{}
			g.Expect(s.home.Client.Get(ctx, client.ObjectKey{Name: ns}, home)).To(Succeed())
			g.Expect(home.Labels).To(HaveKeyWithValue(wellknown.SchedulingEnabledLabel, "true"))
		},
	}, {
		name: "pod offload",
		start: func(g *WithT, ns string) {
			s.create(g, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}, Data: map[string]string{"color": "blue"}})
			s.create(g, deployment(ns, "blue"))
		},
		points: []point{
			{"reflected ConfigMap in the twin", func(at snapshot) bool { return at.configMap != nil }},
			{"first remote pod", func(at snapshot) bool { return at.remoteCount() > 0 }},
			{fmt.Sprintf("%d of %d remote pods", replicas/2, replicas), func(at snapshot) bool { return at.remoteCount() >= replicas/2 }},
			{"every remote pod", func(at snapshot) bool { return at.remoteCount() >= replicas }},
		},
		done: func(g Gomega, ns string, snap snapshot) {
			s.expectOneRemotePodEach(g, snap, replicas)
			g.Expect(snap.configMap).NotTo(BeNil())
			g.Expect(snap.configMap.Data).To(Equal(map[string]string{"color": "blue"}))
		},
	}, {
		name: "rollout",
		start: func(g *WithT, ns string) {
			s.update(g, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}}, func(o client.Object) {
				o.(*corev1.ConfigMap).Data = map[string]string{"color": "red"}
			})
			s.update(g, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}, func(o client.Object) {
				o.(*appsv1.Deployment).Spec.Template.Labels["color"] = "red"
			})
		},
		points: []point{
			{"an old pod Terminating", func(at snapshot) bool { return len(colored(at.livePods(""), "blue")) < replicas }},
			{fmt.Sprintf("%d new remote pods", replicas/2), func(at snapshot) bool {
				n := 0
				for _, pods := range at.remote {
					n += len(colored(pods, "red"))
				}
				return n >= replicas/2
			}},
		},
		done: func(g Gomega, ns string, snap snapshot) {
			s.expectOneRemotePodEach(g, snap, replicas)
			g.Expect(colored(snap.homePods, "red")).To(HaveLen(replicas), "every pod replaced")
			g.Expect(snap.configMap).NotTo(BeNil())
			g.Expect(snap.configMap.Data).To(Equal(map[string]string{"color": "red"}))
		},
	}, {
		name: "unoffload",
		start: func(g *WithT, ns string) {
			g.Expect(client.IgnoreNotFound(s.home.Client.Delete(ctx, &offloadingv1alpha1.NamespaceOffloading{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.NamespaceOffloadingName},
			}))).To(Succeed())
		},
		points: []point{
			{"NamespaceOffloading Terminating", func(at snapshot) bool { return at.off == nil || at.off.DeletionTimestamp != nil }},
			{"home pods on the virtual node deleted", func(at snapshot) bool { return len(at.livePods(vnode)) == 0 }},
			{"twin Terminating", func(at snapshot) bool { return len(at.twins) == 0 || at.twins[0].DeletionTimestamp != nil }},
			{"request gone", func(at snapshot) bool { return len(at.requests) == 0 }},
		},
		done: func(g Gomega, ns string, snap snapshot) {
			g.Expect(snap.off).To(BeNil(), "NamespaceOffloading gone, its finalizer removed")
			g.Expect(snap.requests).To(BeEmpty())
			g.Expect(snap.twins).To(BeEmpty())
			g.Expect(snap.remoteCount()).To(BeZero(), "remote pods left")
			g.Expect(snap.homePods).To(HaveLen(replicas), "home pods (none left Terminating)")
			for _, p := range snap.homePods {
				g.Expect(p.Spec.NodeName).NotTo(Equal(vnode), "pod %s came home", p.Name)
				g.Expect(podReady(&p)).To(BeTrue(), "home pod %s Ready at home", p.Name)
			}
			home := &corev1.Namespace{}
			g.Expect(s.home.Client.Get(ctx, client.ObjectKey{Name: ns}, home)).To(Succeed())
			g.Expect(home.Labels).NotTo(HaveKey(wellknown.SchedulingEnabledLabel))
		},
	}}
}

// create creates obj, retrying while the API server cannot call the
// webhooks of a manager that was just killed.
func (s *stretch) create(g *WithT, obj client.Object) {
	g.Eventually(func() error {
		err := s.home.Client.Create(ctx, obj)
		if err != nil && !apierrors.IsAlreadyExists(err) {
			s.t.Logf("creating %T %s: %v", obj, obj.GetName(), err)
			return err
		}
		return nil
	}).Should(Succeed())
}

// update reads obj, changes it and writes it, again on conflicts.
func (s *stretch) update(g *WithT, obj client.Object, change func(client.Object)) {
	g.Eventually(func() error {
		if err := s.home.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return s.home.Client.Update(ctx, obj)
	}).Should(Succeed())
}

// colored are the pods labelled color.
func colored(pods []corev1.Pod, color string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.Labels["color"] == color {
			out = append(out, p)
		}
	}
	return out
}

// deployment is Deployment web of replicas pods labelled color, which read
// ConfigMap settings.
func deployment(ns, color string) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "color": color}},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{
						Name: "app", Image: "registry.example/web:1",
						Env: []corev1.EnvVar{{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
							LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "color",
						}}}},
					}},
				},
			},
		},
	}
}
