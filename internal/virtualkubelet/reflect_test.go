package virtualkubelet_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
	"stretch.dev/stretch/internal/virtualkubelet"
)

// notes returns the messages of the events of that reason about object
// name in ns.
func notes(g Gomega, ns, name, reason string) []string {
	list := &eventsv1.EventList{}
	g.Expect(home.Client.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

// inTwin reports whether the twin holds an object like obj of that name.
func inTwin(g Gomega, twin, name string, obj client.Object) bool {
	err := eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false
	}
	g.Expect(err).NotTo(HaveOccurred())
	return true
}

// The annotation stretch.dev/skip-reflection: "true" keeps a home object at
// home: not reflected, its copy deleted when it is added, reflected again
// when it goes; a pod that needs such an object says so, once per object.
func TestSkipReflection(t *testing.T) {
	g := newG(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ns := "private"
	twin := offload(t, g, ns)
	atHome := metav1.ObjectMeta{Namespace: ns, Annotations: map[string]string{wellknown.SkipReflectionAnnotation: "true"}}
	named := func(m metav1.ObjectMeta, name string) metav1.ObjectMeta { m.Name = name; return m }

	t.Run("objects with the annotation stay at home", func(t *testing.T) {
		g := newG(t)
		g.Expect(home.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: named(atHome, "local-cfg"), Data: map[string]string{"k": "v"}})).To(Succeed())
		g.Expect(home.Client.Create(ctx, &corev1.Secret{ObjectMeta: named(atHome, "local-secret"), StringData: map[string]string{"k": "v"}})).To(Succeed())
		g.Expect(home.Client.Create(ctx, &corev1.Service{ObjectMeta: named(atHome, "local-svc"),
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "x"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})).To(Succeed())
		g.Expect(home.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}, Data: map[string]string{"k": "v"}})).To(Succeed())
		// Reflection runs: the object without the annotation is there.
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "shared", &corev1.ConfigMap{}) }).Should(BeTrue())
		g.Consistently(func(g Gomega) {
			g.Expect(inTwin(g, twin, "local-cfg", &corev1.ConfigMap{})).To(BeFalse())
			g.Expect(inTwin(g, twin, "local-secret", &corev1.Secret{})).To(BeFalse())
			g.Expect(inTwin(g, twin, "local-svc", &corev1.Service{})).To(BeFalse())
		}).WithTimeout(2 * time.Second).Should(Succeed())
	})

	t.Run("a pod that needs one gets a Warning event, once per object", func(t *testing.T) {
		g := newG(t)
		pod := boundPod(ns, "reader")
		pod.Spec.ServiceAccountName, pod.Spec.Volumes = "", []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "local-cfg"}}}}}
		pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "local-secret"}}}}
		g.Expect(home.Client.Create(ctx, pod)).To(Succeed())
		g.Eventually(func(g Gomega) []string { return notes(g, ns, "reader", virtualkubelet.KeptAtHomeReason) }).Should(ConsistOf(
			"ConfigMap private/local-cfg is kept at home by its annotation stretch.dev/skip-reflection=true and is not reflected to provider eu: the remote pod cannot start until it is reflected (remove the annotation) or the pod stops using it",
			"Secret private/local-secret is kept at home by its annotation stretch.dev/skip-reflection=true and is not reflected to provider eu: the remote pod cannot start until it is reflected (remove the annotation) or the pod stops using it",
		))
		// The pod is synced again at each change: not said again.
		for _, v := range []string{"1", "2"} {
			edit(t, home.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reader"}}, func(p *corev1.Pod) { p.Labels["release"] = v })
			g.Eventually(func(g Gomega) map[string]string { return remotePod(g, twin, "reader").Labels }).Should(HaveKeyWithValue("release", v))
		}
		g.Consistently(func(g Gomega) []int32 { return counts(g, ns, "reader", virtualkubelet.KeptAtHomeReason) }).
			WithTimeout(2 * time.Second).Should(Equal([]int32{1, 1}))
	})

	t.Run("the annotation added later deletes the copy; the pods that need it say so", func(t *testing.T) {
		g := newG(t)
		later := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"}, Data: map[string]string{"k": "v"}}
		g.Expect(home.Client.Create(ctx, later)).To(Succeed())
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "later", &corev1.ConfigMap{}) }).Should(BeTrue())
		pod := boundPod(ns, "late-reader")
		pod.Spec.ServiceAccountName, pod.Spec.Volumes = "", nil
		pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "K", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "later"}, Key: "k"}}}}
		g.Expect(home.Client.Create(ctx, pod)).To(Succeed())
		g.Eventually(func(g Gomega) { remotePod(g, twin, "late-reader") }).Should(Succeed())
		g.Expect(notes(g, ns, "late-reader", virtualkubelet.KeptAtHomeReason)).To(BeEmpty())

		edit(t, home.Client, later, func(c *corev1.ConfigMap) {
			metav1.SetMetaDataAnnotation(&c.ObjectMeta, wellknown.SkipReflectionAnnotation, "true")
		})
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "later", &corev1.ConfigMap{}) }).Should(BeFalse())
		g.Eventually(func(g Gomega) []string { return notes(g, ns, "late-reader", virtualkubelet.KeptAtHomeReason) }).Should(ConsistOf(
			HavePrefix("ConfigMap private/later is kept at home")))
	})

	t.Run("the annotation removed reflects the object again", func(t *testing.T) {
		g := newG(t)
		for _, obj := range []client.Object{
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "local-svc"}},
		} {
			edit(t, home.Client, obj, func(o client.Object) {
				a := o.GetAnnotations()
				delete(a, wellknown.SkipReflectionAnnotation)
				o.SetAnnotations(a)
			})
		}
		g.Eventually(func(g Gomega) {
			cm := &corev1.ConfigMap{}
			g.Expect(inTwin(g, twin, "later", cm)).To(BeTrue())
			g.Expect(cm.Data).To(Equal(map[string]string{"k": "v"}))
			svc := &corev1.Service{}
			g.Expect(inTwin(g, twin, "local-svc", svc)).To(BeTrue())
			g.Expect(svc.Spec.Selector).To(Equal(map[string]string{"app": "x"}))
		}).Should(Succeed())
	})
}

// A provider's controllers add their own keys and finalizers to a
// reflected Service (a load balancer's): they stay through updates of the
// home Service, which are written once, while keys removed at home go. A
// copy made by an older release, which did not list the keys it set, gets
// the lists at its next sync and loses nothing.
func TestReflectionKeepsWhatTheProviderAdds(t *testing.T) {
	g := newG(t)
	st := fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ns := "lb"
	twin := offload(t, g, ns)
	const (
		lbFinalizer = "service.kubernetes.io/load-balancer-cleanup"
		lbPool      = "metallb.universe.tf/ip-allocated-from-pool"
	)
	homeKey := metav1.ObjectMeta{Namespace: ns, Name: "web"}
	remoteKey := metav1.ObjectMeta{Namespace: twin, Name: "web"}
	remoteSvc := func(g Gomega) *corev1.Service {
		s := &corev1.Service{}
		g.Expect(inTwin(g, twin, "web", s)).To(BeTrue())
		return s
	}
	g.Expect(home.Client.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"example.com/owner": "team-a"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	})).To(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(remoteSvc(g).Labels).To(HaveKeyWithValue("tier", "front")) }).Should(Succeed())
	t.Cleanup(func() { // should a subtest fail before the finalizer goes
		s := &corev1.Service{}
		if err := eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "web"}, s); err == nil && len(s.Finalizers) > 0 {
			s.Finalizers = nil
			_ = eu.Client.Update(ctx, s)
		}
	})

	t.Run("the provider's keys and finalizer stay; keys removed at home go", func(t *testing.T) {
		g := newG(t)
		// As a load balancer controller of the provider would.
		edit(t, eu.Client, &corev1.Service{ObjectMeta: remoteKey}, func(s *corev1.Service) {
			s.Finalizers = append(s.Finalizers, lbFinalizer)
			s.Annotations[lbPool] = "pool-a"
			s.Labels["provider.example/zone"] = "a"
		})
		s := remoteSvc(g)
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
		g.Expect(eu.Client.Status().Update(ctx, s)).To(Succeed())

		edit(t, home.Client, &corev1.Service{ObjectMeta: homeKey}, func(s *corev1.Service) {
			delete(s.Labels, "tier")
			delete(s.Annotations, "example.com/owner")
			s.Labels["release"] = "2"
			s.Spec.Ports[0].Port = 8080
		})
		g.Eventually(func(g Gomega) {
			s := remoteSvc(g)
			g.Expect(s.Spec.Ports[0].Port).To(BeEquivalentTo(8080))
			g.Expect(s.Labels).To(HaveKeyWithValue("release", "2"))
			g.Expect(s.Labels).NotTo(HaveKey("tier"), "removed at home, removed here")
			g.Expect(s.Annotations).NotTo(HaveKey("example.com/owner"), "removed at home, removed here")
			g.Expect(s.Labels).To(HaveKeyWithValue("provider.example/zone", "a"), "the provider's label stays")
			g.Expect(s.Annotations).To(HaveKeyWithValue(lbPool, "pool-a"), "the provider's annotation stays")
			g.Expect(s.Finalizers).To(ConsistOf(lbFinalizer), "the provider's finalizer stays")
			g.Expect(s.Status.LoadBalancer.Ingress).To(ConsistOf(HaveField("IP", "192.0.2.10")))
			g.Expect(strings.Split(s.Annotations[wellknown.RemotePodManagedLabelsAnnotation], ",")).To(ConsistOf(
				"app", "release", wellknown.ReflectedLabel, wellknown.OriginClusterIDLabel, wellknown.OriginNamespaceLabel))
		}).Should(Succeed())

		// What the provider added makes no write: the copy is in sync.
		before, err := testenv.APIWrites(ctx, eu.Config)
		g.Expect(err).NotTo(HaveOccurred())
		edit(t, eu.Client, &corev1.Service{ObjectMeta: remoteKey}, func(s *corev1.Service) { s.Annotations["provider.example/seen"] = "yes" })
		g.Consistently(func(g Gomega) int64 {
			after, err := testenv.APIWrites(ctx, eu.Config)
			g.Expect(err).NotTo(HaveOccurred())
			return after.Since(before)["PUT services"]
		}).WithTimeout(2*time.Second).Should(BeEquivalentTo(1), "the provider's own edit only")
	})

	t.Run("a copy an older release made, without the lists of keys, gets them at its next sync", func(t *testing.T) {
		g := newG(t)
		st.StopHome()
		// As an older release left it: no lists; a key of the provider.
		edit(t, eu.Client, &corev1.Service{ObjectMeta: remoteKey}, func(s *corev1.Service) {
			delete(s.Annotations, wellknown.RemotePodManagedLabelsAnnotation)
			delete(s.Annotations, wellknown.RemotePodManagedAnnotationsAnnotation)
			s.Labels["legacy.example/rack"] = "r1"
		})
		st.StartHome()
		g.Eventually(func(g Gomega) {
			s := remoteSvc(g)
			// The home Service's keys of now count as set by Stretch.
			g.Expect(strings.Split(s.Annotations[wellknown.RemotePodManagedLabelsAnnotation], ",")).To(ConsistOf(
				"app", "release", wellknown.ReflectedLabel, wellknown.OriginClusterIDLabel, wellknown.OriginNamespaceLabel))
			g.Expect(s.Annotations).To(HaveKeyWithValue(wellknown.RemotePodManagedAnnotationsAnnotation, ""))
			g.Expect(s.Labels).To(HaveKeyWithValue("legacy.example/rack", "r1"))
			g.Expect(s.Finalizers).To(ConsistOf(lbFinalizer))
		}).Should(Succeed())

		// Tracked from now on: a label removed at home goes; the provider's stay.
		edit(t, home.Client, &corev1.Service{ObjectMeta: homeKey}, func(s *corev1.Service) { delete(s.Labels, "release") })
		g.Eventually(func(g Gomega) map[string]string { return remoteSvc(g).Labels }).Should(And(
			Not(HaveKey("release")), HaveKeyWithValue("legacy.example/rack", "r1"), HaveKeyWithValue("provider.example/zone", "a")))
		g.Expect(slices.Contains(remoteSvc(g).Finalizers, lbFinalizer)).To(BeTrue())
	})

	t.Run("a copy whose home object went while the manager was down is deleted", func(t *testing.T) {
		g := newG(t)
		st.StopHome()
		g.Expect(home.Client.Delete(ctx, &corev1.Service{ObjectMeta: homeKey})).To(Succeed())
		// The load balancer controller lets it go once it is deleted.
		edit(t, eu.Client, &corev1.Service{ObjectMeta: remoteKey}, func(s *corev1.Service) { s.Finalizers = nil })
		st.StartHome()
		// Nothing of the namespace is left at home: only the look the
		// kubelet takes into its twins when it starts finds the copy.
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "web", &corev1.Service{}) }).Should(BeFalse())
	})
}

// A copy the provider refuses (here a ValidatingAdmissionPolicy of the
// provider's admin) is said on the home object, once per cause, in the
// provider's words; a copy written again lets the next refusal be said.
func TestRefusedReflectionIsSaidAtHome(t *testing.T) {
	g := newG(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ns := "refused-copies"
	twin := offload(t, g, ns)

	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "no-forbidden-keys"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: `!has(object.data) || !("forbidden" in object.data)`,
				Message:    "configmaps may not hold the key forbidden here",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "no-forbidden-keys"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{wellknown.OriginClusterIDLabel: homeID}}},
		},
	}
	g.Expect(eu.Client.Create(ctx, policy)).To(Succeed())
	g.Expect(eu.Client.Create(ctx, binding)).To(Succeed())
	t.Cleanup(func() {
		_ = eu.Client.Delete(ctx, binding)
		_ = eu.Client.Delete(ctx, policy)
	})
	// The policy is in force once the provider refuses a probe.
	g.Eventually(func() error {
		return eu.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "probe"},
			Data: map[string]string{"forbidden": "x"}}, client.DryRunAll)
	}).Should(MatchError(ContainSubstring("configmaps may not hold the key forbidden here")))

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}, Data: map[string]string{"forbidden": "x"}}
	g.Expect(home.Client.Create(ctx, cm)).To(Succeed())
	g.Eventually(func(g Gomega) []string { return notes(g, ns, "settings", virtualkubelet.ReflectionFailedReason) }).Should(ConsistOf(
		And(HavePrefix("provider eu refused the copy of ConfigMap refused-copies/settings in twin "+twin+": "),
			ContainSubstring("configmaps may not hold the key forbidden here"),
			ContainSubstring("keep it at home with the annotation stretch.dev/skip-reflection=true"))))
	// Retried with backoff, not said again.
	g.Consistently(func(g Gomega) []int32 { return counts(g, ns, "settings", virtualkubelet.ReflectionFailedReason) }).
		WithTimeout(3 * time.Second).Should(Equal([]int32{1}))
	g.Expect(inTwin(g, twin, "settings", &corev1.ConfigMap{})).To(BeFalse())

	// Fixed at home: reflected. Broken again: said again.
	edit(t, home.Client, cm, func(c *corev1.ConfigMap) { c.Data = map[string]string{"allowed": "x"} })
	g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "settings", &corev1.ConfigMap{}) }).Should(BeTrue())
	edit(t, home.Client, cm, func(c *corev1.ConfigMap) { c.Data["forbidden"] = "y" })
	g.Eventually(func(g Gomega) []int32 { return counts(g, ns, "settings", virtualkubelet.ReflectionFailedReason) }).Should(Equal([]int32{2}))
}

// Ingresses are reflected on request only: one that carries the annotation
// stretch.dev/reflect=true, or every one of a namespace whose
// NamespaceOffloading sets spec.reflectIngresses; skip-reflection wins.
func TestIngressReflection(t *testing.T) {
	g := newG(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ns := "ingresses"
	twin := offload(t, g, ns)
	ingress := func(name string, annotations map[string]string) *networkingv1.Ingress {
		return &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
				Host: name + ".example.com",
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}},
				}}}},
			}}},
		}
	}
	for _, ing := range []*networkingv1.Ingress{
		ingress("plain", nil),
		ingress("opted", map[string]string{wellknown.ReflectAnnotation: "true"}),
		ingress("kept", map[string]string{wellknown.ReflectAnnotation: "true", wellknown.SkipReflectionAnnotation: "true"}),
	} {
		g.Expect(home.Client.Create(ctx, ing)).To(Succeed())
	}
	reflectedNow := func(g Gomega) []string {
		var names []string
		for _, name := range []string{"plain", "opted", "kept"} {
			if inTwin(g, twin, name, &networkingv1.Ingress{}) {
				names = append(names, name)
			}
		}
		return names
	}

	g.Eventually(func(g Gomega) {
		copied := &networkingv1.Ingress{}
		g.Expect(inTwin(g, twin, "opted", copied)).To(BeTrue())
		g.Expect(copied.Spec.Rules).To(Equal(ingress("opted", nil).Spec.Rules))
		g.Expect(copied.Labels).To(HaveKeyWithValue(wellknown.OriginClusterIDLabel, homeID))
	}).Should(Succeed())
	g.Consistently(reflectedNow).WithTimeout(2 * time.Second).Should(Equal([]string{"opted"}))

	off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.NamespaceOffloadingName}}
	edit(t, home.Client, off, func(o *offloadingv1alpha1.NamespaceOffloading) { o.Spec.ReflectIngresses = true })
	g.Eventually(reflectedNow).Should(Equal([]string{"plain", "opted"}))
	g.Consistently(reflectedNow).WithTimeout(2 * time.Second).Should(Equal([]string{"plain", "opted"}))

	edit(t, home.Client, off, func(o *offloadingv1alpha1.NamespaceOffloading) { o.Spec.ReflectIngresses = false })
	g.Eventually(reflectedNow).Should(Equal([]string{"opted"}))
}
