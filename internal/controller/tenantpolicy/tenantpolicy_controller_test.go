package tenantpolicy

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/cli/install"
	"stretch.dev/stretch/internal/controller/tenant"
	"stretch.dev/stretch/internal/tenancy"
	"stretch.dev/stretch/internal/testenv"
)

var provider *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { provider = s[0] }, "provider")
}

// Each test has home clusters of its own.
const (
	usageHomeID    = "6b6b6b6b-0000-4000-8000-000000000001"
	neighbourID    = "6b6b6b6b-0000-4000-8000-000000000002"
	tightenHomeID  = "6b6b6b6b-0000-4000-8000-000000000003"
	quietHomeID    = "6b6b6b6b-0000-4000-8000-000000000004"
	misplacedNSKey = "default"
)

// startProvider installs Stretch on the provider and runs the tenant
// controller, which makes the twins, and this one.
func startProvider(t *testing.T) {
	t.Helper()
	if _, err := install.Install(context.Background(), provider.Client, install.Options{ClusterName: "provider"}, io.Discard); err != nil {
		t.Fatalf("installing Stretch on the provider: %v", err)
	}
	provider.FinalizeNamespaces(t)
	testenv.StartControllers(t, provider.Config, func(mgr ctrl.Manager) error {
		if err := (&tenant.Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("tenant")}).SetupWithManager(mgr); err != nil {
			return err
		}
		return (&Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)
	})
}

// twin has the tenant controller create a twin for a home cluster, as its
// request does, and waits until it is Ready.
func twin(t *testing.T, homeClusterID, homeNamespace, name string) {
	t.Helper()
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	ctx := context.Background()
	tenantNS := peeringv1alpha1.TenantNamespace(homeClusterID)
	if err := provider.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenantNS}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rn := &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenantNS, Name: homeNamespace},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: homeNamespace, HomeClusterID: homeClusterID, RemoteNamespaceName: name},
	}
	g.Expect(provider.Client.Create(ctx, rn)).To(Succeed())
	// Withdrawn while the controllers still run, so that the test can run
	// again on the same API server.
	t.Cleanup(func() {
		g.Expect(client.IgnoreNotFound(provider.Client.Delete(ctx, rn))).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKeyFromObject(rn), rn))
		}).Should(BeTrue(), "RemoteNamespace %s is gone", client.ObjectKeyFromObject(rn))
	})
	g.Eventually(func(g Gomega) {
		g.Expect(provider.Client.Get(ctx, client.ObjectKeyFromObject(rn), rn)).To(Succeed())
		g.Expect(rn.Status.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceReady), rn.Status.Message)
	}).Should(Succeed())
}

// remotePod creates, as the provider's admin, a pod of a home cluster in a
// twin, labelled as the virtual kubelet labels them, with the given
// requests per container; init, when set, is an init container's.
func remotePod(g Gomega, homeClusterID, namespace, name string, init corev1.ResourceList, containers ...corev1.ResourceList) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name,
		Labels: map[string]string{wellknown.OriginClusterIDLabel: homeClusterID}}}
	if init != nil {
		pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "pause", Resources: corev1.ResourceRequirements{Requests: init}}}
	}
	for i, r := range containers {
		c := corev1.Container{Name: string(rune('a' + i)), Image: "pause", Resources: corev1.ResourceRequirements{Requests: r}}
		// Extended resources cannot be overcommitted: their limit is their request.
		for name, q := range r {
			if strings.Contains(string(name), "/") {
				if c.Resources.Limits == nil {
					c.Resources.Limits = corev1.ResourceList{}
				}
				c.Resources.Limits[name] = q
			}
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	g.ExpectWithOffset(1, provider.Client.Create(context.Background(), pod)).To(Succeed())
	return pod
}

func policyOf(g Gomega, homeClusterID string) *peeringv1alpha1.TenantPolicy {
	p := &peeringv1alpha1.TenantPolicy{}
	g.ExpectWithOffset(1, provider.Client.Get(context.Background(), policyKey(homeClusterID), p)).To(Succeed())
	return p
}

func createPolicy(t *testing.T, namespace string, spec peeringv1alpha1.TenantPolicySpec) *peeringv1alpha1.TenantPolicy {
	t.Helper()
	p := &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: wellknown.TenantPolicyName}, Spec: spec}
	if err := provider.Client.Create(context.Background(), p); err != nil {
		t.Fatalf("creating TenantPolicy %s/%s: %v", namespace, p.Name, err)
	}
	t.Cleanup(func() { _ = provider.Client.Delete(context.Background(), p.DeepCopy()) })
	return p
}

// updatePolicy changes the spec of p as its admin does, again when the
// controller's status write got in between.
func updatePolicy(g Gomega, p *peeringv1alpha1.TenantPolicy, change func(*peeringv1alpha1.TenantPolicy)) {
	g.EventuallyWithOffset(1, func() error {
		if err := provider.Client.Get(context.Background(), client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		change(p)
		return provider.Client.Update(context.Background(), p)
	}).Should(Succeed())
}

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

// gauge is the value of a stretch_tenant_* series, or nil when absent.
func gauge(g Gomega, name, home, res string) *float64 {
	families, err := metrics.Registry.Gather()
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "home_cluster_id") == home && label(m, "resource") == res {
				v := m.GetGauge().GetValue()
				return &v
			}
		}
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestUsage: status.used sums what the home cluster's pods request across
// its twins, by the effective pod request rule, and follows the pods; the
// gauges say the same; a home cluster without a policy gets none.
func TestUsage(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startProvider(t)
	front, back := "front-"+usageHomeID, "back-"+usageHomeID
	twin(t, usageHomeID, "front", front)
	twin(t, usageHomeID, "back", back)
	twin(t, neighbourID, "front", "front-"+neighbourID)
	policy := createPolicy(t, peeringv1alpha1.TenantNamespace(usageHomeID), peeringv1alpha1.TenantPolicySpec{Limits: rl("cpu", "2", "memory", "1Gi", "nvidia.com/gpu", "2")})

	web := remotePod(g, usageHomeID, front, "web", nil, rl("cpu", "100m", "memory", "64Mi"))
	// An init container larger than the containers counts, not their sum.
	remotePod(g, usageHomeID, back, "db", rl("cpu", "1"), rl("cpu", "100m", "memory", "64Mi"), rl("cpu", "100m", "memory", "64Mi"))
	remotePod(g, usageHomeID, back, "gpu", nil, rl("nvidia.com/gpu", "1"))
	done := remotePod(g, usageHomeID, back, "done", nil, rl("cpu", "4"))
	done.Status.Phase = corev1.PodSucceeded
	g.Expect(provider.Client.Status().Update(ctx, done)).To(Succeed())
	// Another home cluster's pods are its own.
	remotePod(g, neighbourID, "front-"+neighbourID, "web", nil, rl("cpu", "8"))

	expectUsed := func(want corev1.ResourceList) {
		g.Eventually(func(g Gomega) {
			got := policyOf(g, usageHomeID).Status.Used
			g.Expect(equality.Semantic.DeepEqual(got, want)).To(BeTrue(), "used %v, want %v", got, want)
		}).Should(Succeed())
	}
	expectUsed(rl("pods", "3", "cpu", "1100m", "memory", "192Mi", "nvidia.com/gpu", "1"))
	p := policyOf(g, usageHomeID)
	g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
	enforced := meta.FindStatusCondition(p.Status.Conditions, tenancy.EnforcedCondition)
	g.Expect(enforced).NotTo(BeNil())
	g.Expect(enforced.Status).To(Equal(metav1.ConditionTrue), enforced.Message)
	g.Expect(enforced.Message).To(Equal("all 2 twins of home cluster " + usageHomeID + " carry Pod Security level baseline and are allowed by the policy"))

	g.Expect(gauge(g, "stretch_tenant_used", usageHomeID, "cpu")).To(HaveValue(BeNumerically("~", 1.1)))
	g.Expect(gauge(g, "stretch_tenant_used", usageHomeID, "pods")).To(HaveValue(BeEquivalentTo(3)))
	g.Expect(gauge(g, "stretch_tenant_limit", usageHomeID, "memory")).To(HaveValue(BeEquivalentTo(1 << 30)))
	g.Expect(gauge(g, "stretch_tenant_limit", usageHomeID, "nvidia.com/gpu")).To(HaveValue(BeEquivalentTo(2)))
	g.Expect(gauge(g, "stretch_tenant_used", neighbourID, "cpu")).To(BeNil(), "no policy, no series")

	// A pod going, a limit added: the status follows.
	g.Expect(provider.Client.Delete(ctx, web)).To(Succeed())
	updatePolicy(g, policy, func(p *peeringv1alpha1.TenantPolicy) { p.Spec.Limits["ephemeral-storage"] = resource.MustParse("10Gi") })
	expectUsed(rl("pods", "2", "cpu", "1", "memory", "128Mi", "nvidia.com/gpu", "1", "ephemeral-storage", "0"))
	g.Eventually(func(g Gomega) {
		p := policyOf(g, usageHomeID)
		g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
	}).Should(Succeed())

	// Nothing was created for the home cluster without a policy.
	list := &peeringv1alpha1.TenantPolicyList{}
	g.Expect(provider.Client.List(ctx, list, client.InNamespace(peeringv1alpha1.TenantNamespace(neighbourID)))).To(Succeed())
	g.Expect(list.Items).To(BeEmpty())
}

// TestTightenedPolicy: a policy that forbids existing twins leaves them in
// place and its status says so; an invalid pattern is reported too.
func TestTightenedPolicy(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startProvider(t)
	twin(t, tightenHomeID, "shop", "shop-"+tightenHomeID)
	twin(t, tightenHomeID, "cart", "selected-cart")
	policy := createPolicy(t, peeringv1alpha1.TenantNamespace(tightenHomeID), peeringv1alpha1.TenantPolicySpec{
		TwinNamings: []peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin}})

	expectEnforced := func(status metav1.ConditionStatus, reason string, message ...string) {
		g.Eventually(func(g Gomega) {
			p := policyOf(g, tightenHomeID)
			c := meta.FindStatusCondition(p.Status.Conditions, tenancy.EnforcedCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.ObservedGeneration).To(Equal(p.Generation))
			g.Expect(c.Status).To(Equal(status), c.Message)
			g.Expect(c.Reason).To(Equal(reason))
			for _, m := range message {
				g.Expect(c.Message).To(ContainSubstring(m))
			}
		}).Should(Succeed())
	}
	expectEnforced(metav1.ConditionFalse, tenancy.TwinsOutsidePolicyReason,
		"1 of 2 twins were created before the policy forbade them and are kept with their workloads (not deleted): selected-cart (its naming is SelectedName and the policy allows only DefaultName)")
	ns := &corev1.Namespace{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: "selected-cart"}, ns)).To(Succeed())
	g.Expect(ns.DeletionTimestamp).To(BeNil())

	updatePolicy(g, policy, func(p *peeringv1alpha1.TenantPolicy) {
		p.Spec = peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "[a-z"}
	})
	expectEnforced(metav1.ConditionFalse, tenancy.InvalidTwinNamePatternReason, `twinNamePattern "[a-z" is not a valid RE2 regular expression`, "no new twin is created")

	updatePolicy(g, policy, func(p *peeringv1alpha1.TenantPolicy) {
		p.Spec = peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "[a-z]+-.*"}
	})
	expectEnforced(metav1.ConditionTrue, tenancy.EnforcedReason, "all 2 twins")
}

// TestStatusWrittenOnlyWhenChanged: a reconcile that finds the same usage
// and condition writes nothing.
func TestStatusWrittenOnlyWhenChanged(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startProvider(t)
	name := "quiet-" + quietHomeID
	twin(t, quietHomeID, "quiet", name)
	createPolicy(t, peeringv1alpha1.TenantNamespace(quietHomeID), peeringv1alpha1.TenantPolicySpec{})
	g.Eventually(func(g Gomega) {
		g.Expect(policyOf(g, quietHomeID).Status.Conditions).NotTo(BeEmpty())
	}).Should(Succeed())
	before := policyOf(g, quietHomeID).ResourceVersion
	reconciles := reconcileCount(g)

	// A label of the twin's changes: the policy is reconciled, nothing changed.
	ns := &corev1.Namespace{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: name}, ns)).To(Succeed())
	ns.Labels["team"] = "quiet"
	g.Expect(provider.Client.Update(ctx, ns)).To(Succeed())
	g.Eventually(func() float64 { return reconcileCount(g) }).Should(BeNumerically(">", reconciles))
	g.Expect(policyOf(g, quietHomeID).ResourceVersion).To(Equal(before))
}

// reconcileCount is how many reconciles of this controller have succeeded.
func reconcileCount(g Gomega) float64 {
	families, err := metrics.Registry.Gather()
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "controller") == "tenantpolicy" && label(m, "result") == "success" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestPolicyOutsideATenant: a TenantPolicy elsewhere applies to no one, and
// its status says so.
func TestPolicyOutsideATenant(t *testing.T) {
	g := NewWithT(t)
	startProvider(t)
	createPolicy(t, misplacedNSKey, peeringv1alpha1.TenantPolicySpec{})
	g.Eventually(func(g Gomega) {
		p := &peeringv1alpha1.TenantPolicy{}
		g.Expect(provider.Client.Get(context.Background(), client.ObjectKey{Namespace: misplacedNSKey, Name: wellknown.TenantPolicyName}, p)).To(Succeed())
		c := meta.FindStatusCondition(p.Status.Conditions, tenancy.EnforcedCondition)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(tenancy.NotInTenantNamespaceReason))
		g.Expect(c.Message).To(ContainSubstring("TenantPolicy default/policy applies to no home cluster"))
	}).Should(Succeed())
}
