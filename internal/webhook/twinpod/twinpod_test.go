package twinpod_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
)

var provider *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { provider = s[0] }, "provider")
}

var identityOnce sync.Once

// serve runs the provider's manager (controllers and webhooks) until the
// test ends.
func serve(t *testing.T) {
	t.Helper()
	identityOnce.Do(func() {
		if err := provider.InstallIdentity(context.Background(), identity.Identity{ID: uuid.NewString(), Name: "provider"}); err != nil {
			t.Fatal(err)
		}
	})
	fleet.ServeProvider(t, provider.Config)
}

// twin creates a namespace as the tenant controller creates the twin of
// home namespace homeNamespace of home cluster home, and the tenant
// namespace of that home.
func twin(t *testing.T, g Gomega, home, homeNamespace string) string {
	t.Helper()
	ctx := context.Background()
	name := homeNamespace + "-" + home
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: peeringv1alpha1.TenantNamespace(home)}},
		{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels:      map[string]string{wellknown.OriginClusterIDLabel: home, wellknown.OriginNamespaceLabel: homeNamespace},
			Annotations: map[string]string{wellknown.RemoteNamespaceOriginAnnotation: home}}},
	} {
		g.Expect(client.IgnoreAlreadyExists(provider.Client.Create(ctx, ns))).To(Succeed())
	}
	return name
}

// serveTwin serves the provider's webhooks until the test ends, and returns
// a new home cluster's ID and its twin shop, once the API server calls the
// twin pod admission there.
func serveTwin(t *testing.T, g Gomega) (home, ns string) {
	t.Helper()
	serve(t)
	home = uuid.NewString()
	ns = twin(t, g, home, "shop")
	waitAdmission(g, ns, home)
	return home, ns
}

func pod(ns, name, home string, change func(*corev1.PodSpec)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{wellknown.OriginClusterIDLabel: home}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/app:1"}}}}
	if change != nil {
		change(&p.Spec)
	}
	return p
}

func withRequests(kv ...string) func(*corev1.PodSpec) {
	return func(s *corev1.PodSpec) {
		r := corev1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			r[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
		}
		s.Containers[0].Resources.Requests = r
	}
}

func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	return g
}

// expectRefused creates p and expects the webhook's refusal with every
// substring of want, and no pod.
func expectRefused(g Gomega, p *corev1.Pod, want ...string) {
	err := provider.Client.Create(context.Background(), p.DeepCopy())
	g.ExpectWithOffset(1, apierrors.IsForbidden(err)).To(BeTrue(), "creating %s/%s: %v", p.Namespace, p.Name, err)
	g.ExpectWithOffset(1, err.Error()).To(ContainSubstring(`admission webhook "twinpods.peering.stretch.dev" denied the request`))
	for _, w := range want {
		g.ExpectWithOffset(1, err.Error()).To(ContainSubstring(w))
	}
	g.ExpectWithOffset(1, apierrors.IsNotFound(provider.Client.Get(context.Background(), client.ObjectKeyFromObject(p), &corev1.Pod{}))).To(BeTrue())
}

// waitAdmission waits until the API server calls the webhook in twin ns.
func waitAdmission(g Gomega, ns, home string) {
	g.Eventually(func(g Gomega) {
		err := provider.Client.Create(context.Background(), pod(ns, "probe", home, func(s *corev1.PodSpec) { s.NodeName = "probe" }))
		if err == nil {
			g.Expect(provider.Client.Delete(context.Background(), pod(ns, "probe", home, nil), client.GracePeriodSeconds(0))).To(Succeed())
		}
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	}).Should(Succeed())
}

// TestTwinPodRules: whatever the policy, a pod in a twin may not name a
// node, tolerate the control plane, run as another account, name a priority
// class the policy does not list, or hide whose it is; the message names the
// rule, the policy and what to do. Pods outside twins are left alone.
func TestTwinPodRules(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	home, ns := serveTwin(t, g)

	g.Expect(provider.Client.Create(ctx, pod(ns, "plain", home, nil))).To(Succeed())

	cp := corev1.Toleration{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	for _, tt := range []struct {
		name   string
		change func(*corev1.PodSpec)
		want   string
	}{
		{"node-name", func(s *corev1.PodSpec) { s.NodeName = "provider-cp-1" }, "it names node provider-cp-1 in spec.nodeName"},
		{"control-plane", func(s *corev1.PodSpec) { s.Tolerations = []corev1.Toleration{cp} }, "tolerates the control-plane taint"},
		{"everything", func(s *corev1.PodSpec) { s.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}} }, "tolerates every taint"},
		{"account", func(s *corev1.PodSpec) { s.ServiceAccountName = "builder" }, "runs as ServiceAccount builder"},
		{"priority", func(s *corev1.PodSpec) { s.PriorityClassName = "system-node-critical" }, "names priority class system-node-critical, and the policy allows none"},
	} {
		expectRefused(g, pod(ns, tt.name, home, tt.change), tt.want,
			fmt.Sprintf("pod %s/%s of home cluster %s is not allowed by the rules of twin namespaces", ns, tt.name, home),
			"'stretchctl policy show "+home+"' on the provider")
	}
	unlabelled := pod(ns, "unlabelled", home, nil)
	unlabelled.Labels = nil
	expectRefused(g, unlabelled, "lacks the label stretch.dev/origin-cluster-id="+home)
	foreign := pod(ns, "foreign", home, nil)
	foreign.Labels[wellknown.OriginClusterIDLabel] = uuid.NewString()
	expectRefused(g, foreign, "names another home cluster")

	t.Run("an update may not add control-plane tolerations nor change the origin label", func(t *testing.T) {
		g := newG(t)
		p := &corev1.Pod{}
		g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "plain"}, p)).To(Succeed())
		added := p.DeepCopy()
		added.Spec.Tolerations = append(added.Spec.Tolerations, cp)
		err := provider.Client.Update(ctx, added)
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		g.Expect(err.Error()).To(ContainSubstring("tolerates the control-plane taint"))
		relabelled := p.DeepCopy()
		relabelled.Labels[wellknown.OriginClusterIDLabel] = "someone-else"
		err = provider.Client.Update(ctx, relabelled)
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		g.Expect(err.Error()).To(ContainSubstring("changes the label stretch.dev/origin-cluster-id"))
		other := p.DeepCopy()
		other.Labels["app"] = "web"
		g.Expect(provider.Client.Update(ctx, other)).To(Succeed())
	})

	t.Run("the policy's priority classes, and the provider's default, are allowed", func(t *testing.T) {
		g := newG(t)
		for _, pc := range []*schedulingv1.PriorityClass{
			{ObjectMeta: metav1.ObjectMeta{Name: "batch-" + home[:8]}, Value: 10},
		} {
			g.Expect(provider.Client.Create(ctx, pc)).To(Succeed())
		}
		policy := &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(home), Name: wellknown.TenantPolicyName},
			Spec: peeringv1alpha1.TenantPolicySpec{PriorityClasses: []string{"batch-" + home[:8]}}}
		g.Expect(provider.Client.Create(ctx, policy)).To(Succeed())
		g.Eventually(func() error {
			return provider.Client.Create(ctx, pod(ns, "batch", home, func(s *corev1.PodSpec) { s.PriorityClassName = "batch-" + home[:8] }))
		}).Should(Succeed())
		expectRefused(g, pod(ns, "critical", home, func(s *corev1.PodSpec) { s.PriorityClassName = "system-cluster-critical" }),
			"the policy allows batch-"+home[:8], "TenantPolicy "+policy.Namespace+"/policy")
	})

	t.Run("pods outside twins are left alone", func(t *testing.T) {
		g := newG(t)
		g.Expect(provider.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "own-" + home[:8]}})).To(Succeed())
		own := pod("own-"+home[:8], "own", home, func(s *corev1.PodSpec) { s.NodeName = "provider-cp-1"; s.Tolerations = []corev1.Toleration{cp} })
		own.Labels = nil
		g.Expect(provider.Client.Create(ctx, own)).To(Succeed())
	})
}

// TestTwinPodLimits: a pod that would take the home cluster over a limit of
// its TenantPolicy, across all its twins, is refused, and so is one that
// does not request a limited resource; pods created together never go over
// a limit together; room freed is usable again.
func TestTwinPodLimits(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	home, ns := serveTwin(t, g)
	other := twin(t, g, home, "cart")
	policy := &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(home), Name: wellknown.TenantPolicyName},
		Spec: peeringv1alpha1.TenantPolicySpec{Limits: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("4"), corev1.ResourceCPU: resource.MustParse("1")}}}
	g.Expect(provider.Client.Create(ctx, policy)).To(Succeed())
	g.Eventually(func(g Gomega) {
		expectRefused(g, pod(ns, "no-requests", home, nil), "requests no cpu, which the policy limits to 1", "TenantPolicy "+policy.Namespace+"/policy")
	}).Should(Succeed())

	// Ten pods at once, in two twins, for room for four: exactly four get in.
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, refused := 0, []string{}
	var failed []error
	for i := range 10 {
		wg.Go(func() {
			in := ns
			if i%2 == 1 {
				in = other
			}
			err := provider.Client.Create(ctx, pod(in, fmt.Sprintf("burst-%d", i), home, withRequests("cpu", "100m")))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case apierrors.IsForbidden(err):
				refused = append(refused, err.Error())
			default:
				failed = append(failed, err)
			}
		})
	}
	wg.Wait()
	g.Expect(failed).To(BeEmpty())
	g.Expect(created).To(Equal(4))
	g.Expect(refused).To(HaveLen(6))
	g.Expect(refused).To(HaveEach(ContainSubstring("runs 4 pods on this provider already, and the policy allows 4")))
	g.Eventually(func(g Gomega) {
		got := &peeringv1alpha1.TenantPolicy{}
		g.Expect(provider.Client.Get(ctx, client.ObjectKeyFromObject(policy), got)).To(Succeed())
		g.Expect(got.Status.Used.Pods().Value()).To(Equal(int64(4)))
	}).Should(Succeed())

	t.Run("cpu", func(t *testing.T) {
		g := newG(t)
		g.Expect(provider.Client.Patch(ctx, policy, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"limits":{"pods":"10"}}}`)))).To(Succeed())
		g.Eventually(func() error {
			return provider.Client.Create(ctx, pod(ns, "half", home, withRequests("cpu", "500m")))
		}).Should(Succeed())
		expectRefused(g, pod(ns, "too-much", home, withRequests("cpu", "200m")),
			"its cpu request of 200m would bring the home cluster's cpu to 1100m, over the limit of 1 (900m used)")
	})

	t.Run("room freed is usable again", func(t *testing.T) {
		g := newG(t)
		g.Expect(provider.Client.Delete(ctx, pod(ns, "half", home, nil), client.GracePeriodSeconds(0))).To(Succeed())
		g.Eventually(func() error {
			return provider.Client.Create(ctx, pod(ns, "after", home, withRequests("cpu", "200m")))
		}).Should(Succeed())
	})

	t.Run("terminated pods count for nothing", func(t *testing.T) {
		g := newG(t)
		p := &corev1.Pod{}
		g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "after"}, p)).To(Succeed())
		p.Status.Phase = corev1.PodSucceeded
		g.Expect(provider.Client.Status().Update(ctx, p)).To(Succeed())
		g.Eventually(func() error {
			return provider.Client.Create(ctx, pod(ns, "again", home, withRequests("cpu", "500m")))
		}).Should(Succeed())
	})
}
