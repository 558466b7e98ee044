package diagnose_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/cli/diagnose"
	"stretch.dev/stretch/internal/diagnose/checks"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
)

var (
	home, eu *testenv.APIServer
	homeID   = uuid.NewString()
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { home, eu = s[0], s[1] }, "home", "provider-eu")
}

func check(name string, result checks.Result, detail, fix string) gtypes.GomegaMatcher {
	return ContainElement(And(HaveField("Name", name), HaveField("Result", result),
		HaveField("Detail", ContainSubstring(detail)), HaveField("Fix", ContainSubstring(fix))))
}

func run(g Gomega, ns string) []checks.Check {
	o, err := diagnose.Collect(context.Background(), home.Client, ns)
	g.Expect(err).NotTo(HaveOccurred())
	return checks.Run(o)
}

func namespace(t *testing.T, name string) {
	NewWithT(t).Expect(home.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
}

func offloading(t *testing.T, ns, name string, spec offloadingv1alpha1.NamespaceOffloadingSpec) {
	NewWithT(t).Expect(home.Client.Create(context.Background(), &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})).To(Succeed())
}

func region(op corev1.NodeSelectorOperator, values ...string) *corev1.NodeSelector {
	return &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: op, Values: values}}}}}
}

func pod(t *testing.T, ns, name string, terms []corev1.NodeSelectorTerm, tolerate bool) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}}
	if terms != nil {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
	if tolerate {
		p.Spec.Tolerations = []corev1.Toleration{placement.VirtualNodeToleration}
	}
	NewWithT(t).Expect(home.Client.Create(context.Background(), p)).To(Succeed())
}

// refusedPod creates a privileged pod bound to the virtual node of eu, as
// the scheduler binds it: the virtual kubelet offers it to the provider.
func refusedPod(t *testing.T, ns, name string) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{
		NodeName:   peeringv1alpha1.VirtualNodeName(eu.Name),
		Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}},
	}}
	NewWithT(t).Expect(home.Client.Create(context.Background(), p)).To(Succeed())
}

// TestFAQFailureCases sets up each failure case of the FAQ on real API
// servers with Stretch running, and expects diagnose to find it and say
// what to do.
func TestFAQFailureCases(t *testing.T) {
	stretch := fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu, Labels: map[string]string{"region": "eu"}}})
	ctx := context.Background()

	t.Run("healthy", func(t *testing.T) {
		g := NewWithT(t)
		namespace(t, "fine")
		offloading(t, "fine", "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{ClusterSelector: region(corev1.NodeSelectorOpIn, "eu")})
		g.Eventually(func(g Gomega) {
			o, err := diagnose.Collect(ctx, home.Client, "fine")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(o.Providers).To(HaveKeyWithValue("provider-eu", HaveField("Asked", true)), "the provider is asked with the home cluster's peer credentials")
			results := checks.Run(o)
			g.Expect(checks.AllPassed(results)).To(BeTrue(), "%+v", results)
			var out bytes.Buffer
			g.Expect(diagnose.Print(&out, "fine", results)).To(Succeed())
			g.Expect(out.String()).To(ContainSubstring("✓ passed   virtual nodes against the selector: selected: stretch-provider-eu"))
			g.Expect(diagnose.Failures(results)).To(Succeed())
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	cases := []struct {
		name               string
		ns                 string // default: a fresh name
		setup              func(t *testing.T, ns string)
		check, detail, fix string
		result             checks.Result
	}{
		{name: "wrong name", setup: func(t *testing.T, ns string) {
			offloading(t, ns, "my-offloading", offloadingv1alpha1.NamespaceOffloadingSpec{})
		},
			check: "NamespaceOffloading named offloading", result: checks.Failed, detail: `reconciles only the one named "offloading"`, fix: "stretchctl offload namespace"},
		{name: "syntax error", setup: func(t *testing.T, ns string) {
			offloading(t, ns, "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{ClusterSelector: region("Near", "eu")})
		}, check: "cluster selector syntax", result: checks.Failed, detail: `"Near"`, fix: "fix spec.clusterSelector"},
		{name: "unmatched labels", setup: func(t *testing.T, ns string) {
			offloading(t, ns, "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{ClusterSelector: region(corev1.NodeSelectorOpIn, "ap")})
		}, check: "virtual nodes against the selector", result: checks.Failed, detail: "stretch-provider-eu is not selected: term 0 needs region In (ap)", fix: "kubectl get nodes --show-labels"},
		{name: "name too long", ns: "abcdefghijklmnopqrstuvwxyz0", setup: func(t *testing.T, ns string) {
			offloading(t, ns, "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{})
		},
			check: "twin namespace name", result: checks.Failed, detail: "at most 26 characters", fix: "--namespace-mapping-strategy SelectedName"},
		{name: "conflicting namespace", setup: func(t *testing.T, ns string) {
			NewWithT(t).Expect(eu.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + homeID}})).To(Succeed())
			offloading(t, ns, "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{})
		}, check: "namespaces on the providers", result: checks.Failed, detail: "provider-eu: AlreadyExists", fix: "remove or rename it on that provider"},
		{name: "wrong strategy", setup: func(t *testing.T, ns string) {
			offloading(t, ns, "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.LocalStrategy})
			pod(t, ns, "web-1", nil, false)
		}, check: "pod offloading strategy", result: checks.Warning, detail: "pods web-1 are Pending at home", fix: "podOffloadingStrategy"},
		{name: "contradictory pod terms", setup: func(t *testing.T, ns string) {
			offloading(t, ns, "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy})
			pod(t, ns, "web-1", []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}, {Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}}}}, true)
		}, check: "pending pod web-1", result: checks.Failed, detail: "zone In (a) contradicts zone In (b)", fix: "fix the pod's own nodeAffinity"},
		{name: "early pod", ns: "early-pod", setup: func(t *testing.T, ns string) {
			pod(t, ns, "early", nil, false) // before the offloading: the webhook never saw it
			offloading(t, ns, "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy})
		}, check: "pending pod early", result: checks.Failed, detail: "not placed by Stretch: it was created at", fix: "kubectl delete pod -n early-pod early"},
		{name: "a twin name the provider refuses", setup: func(t *testing.T, ns string) {
			offloading(t, ns, "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping, RemoteNamespaceName: "default"})
		}, check: "namespaces on the providers", result: checks.Failed, detail: `provider-eu: Forbidden: twin namespace name "default" is reserved on providers`,
			fix: "provider-eu refuses the twin name default"},
		{name: "a pod the provider refuses", setup: func(t *testing.T, ns string) {
			offloading(t, ns, "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{})
			// The provider holds twins to Pod Security baseline by default,
			// which refuses a privileged pod.
			twin := ns + "-" + homeID
			NewWithT(t).Eventually(func(g Gomega) {
				n := &corev1.Namespace{}
				g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: twin}, n)).To(Succeed())
				g.Expect(n.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "baseline"))
				off := &offloadingv1alpha1.NamespaceOffloading{}
				g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "offloading"}, off)).To(Succeed())
				g.Expect(off.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
			}).WithTimeout(30 * time.Second).Should(Succeed())
			refusedPod(t, ns, "priv")
		}, check: "pods refused by providers", result: checks.Failed,
			detail: `1 pod is Pending, refused by its provider: priv on stretch-provider-eu: pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged`,
			fix:    "'stretchctl policy show " + homeID + "'"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := tt.ns
			if ns == "" {
				ns = "case-" + uuid.NewString()[:8]
			}
			namespace(t, ns)
			tt.setup(t, ns)
			g.Eventually(func(g Gomega) {
				results := run(g, ns)
				g.Expect(results).To(check(tt.check, tt.result, tt.detail, tt.fix))
				g.Expect(diagnose.Failures(results)).To(MatchError(ContainSubstring("checks did not pass")))
			}).WithTimeout(30 * time.Second).Should(Succeed())
		})
	}

	_, err := diagnose.Collect(ctx, home.Client, "ghost")
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring("namespace ghost does not exist on the home cluster")))

	// With the home manager down, the home status is stale: the provider's
	// own report, read with the peer credentials, tells what is there.
	t.Run("stale home status", func(t *testing.T) {
		g := NewWithT(t)
		namespace(t, "stale")
		offloading(t, "stale", "offloading", offloadingv1alpha1.NamespaceOffloadingSpec{})
		g.Eventually(func(g Gomega) { g.Expect(checks.AllPassed(run(g, "stale"))).To(BeTrue()) }).WithTimeout(30 * time.Second).Should(Succeed())
		stretch.StopHome()
		t.Cleanup(stretch.StartHome)
		request := &peeringv1alpha1.RemoteNamespace{ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: "stale"}}
		g.Expect(eu.Client.Delete(ctx, request)).To(Succeed())
		g.Eventually(func(g Gomega) {
			results := run(g, "stale")
			g.Expect(results).To(check("phase", checks.Passed, "phase Ready", ""), "the home status has not changed")
			g.Expect(results).To(check("namespaces on the providers", checks.Warning,
				"provider-eu holds no request for a twin of stale in stretch-tenant-"+homeID+" (the home status still says NamespaceCreated: is stretch-controller-manager running on the home cluster?)",
				"check that it runs"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	t.Run("a provider that does not answer", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(eu.StopAPIServerOnly()).To(Succeed())
		t.Cleanup(func() { _ = eu.RestartAPIServer() })
		g.Eventually(func(g Gomega) {
			g.Expect(run(g, "fine")).To(check("namespaces on the providers", checks.Failed, "provider-eu does not answer the home cluster: APIReachable", "'stretchctl status'"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})
}

func TestPrintGolden(t *testing.T) {
	g := NewWithT(t)
	results := []checks.Check{
		{Name: "NamespaceOffloading named offloading", Result: checks.Passed, Detail: `namespace foo has NamespaceOffloading "offloading"`},
		{Name: "phase", Result: checks.Failed, Detail: "phase NoClusterSelected: no provider is selected", Fix: "see the checks below"},
		{Name: "pending pod web-1", Result: checks.Warning, Detail: "Pending, not scheduled yet", Fix: "kubectl describe pod -n foo web-1"},
	}
	var out bytes.Buffer
	g.Expect(diagnose.Print(&out, "foo", results)).To(Succeed())
	testenv.ExpectGolden(t, "diagnose.golden", out.Bytes())
	g.Expect(diagnose.Failures(results)).To(MatchError("2 of 3 checks did not pass: apply the fixes above, then run diagnose again"))
}
