package tenancy

import (
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

const homeID = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"

func TestNaming(t *testing.T) {
	tests := []struct {
		twin, homeNamespace string
		want                peeringv1alpha1.TwinNaming
	}{
		{"shop-" + homeID, "shop", peeringv1alpha1.DefaultNameTwin},
		{"shop", "shop", peeringv1alpha1.EnforceSameNameTwin},
		{"web", "shop", peeringv1alpha1.SelectedNameTwin},
		// Another home cluster's suffix is not this one's DefaultName.
		{"shop-7d3c2b1a-5f6d-4e3c-8b1a-0b8e9a5c3d1f", "shop", peeringv1alpha1.SelectedNameTwin},
		// The DefaultName of another home namespace is a SelectedName.
		{"cart-" + homeID, "shop", peeringv1alpha1.SelectedNameTwin},
		{"shop-" + homeID + "-x", "shop", peeringv1alpha1.SelectedNameTwin},
	}
	for _, tt := range tests {
		t.Run(tt.twin, func(t *testing.T) {
			NewWithT(t).Expect(Naming(tt.twin, tt.homeNamespace, homeID)).To(Equal(tt.want))
		})
	}
}

func TestCheckTwin(t *testing.T) {
	policy := func(spec peeringv1alpha1.TenantPolicySpec) *peeringv1alpha1.TenantPolicy {
		return &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: wellknown.TenantPolicyName}, Spec: spec}
	}
	defaultOnly := []peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin}
	tests := []struct {
		name   string
		policy *peeringv1alpha1.TenantPolicy
		twin   string
		want   []string // substrings of the message; none: allowed
	}{
		{name: "no policy allows all", policy: nil, twin: "anything"},
		{name: "empty policy allows all", policy: policy(peeringv1alpha1.TenantPolicySpec{}), twin: "anything"},
		{name: "allowed naming", policy: policy(peeringv1alpha1.TenantPolicySpec{TwinNamings: defaultOnly}), twin: "shop-" + homeID},
		{name: "SelectedName refused", policy: policy(peeringv1alpha1.TenantPolicySpec{TwinNamings: defaultOnly}), twin: "web",
			want: []string{"TenantPolicy stretch-tenant-" + homeID + "/policy", `twin namespace "web" of home namespace shop`, "its naming is SelectedName and the policy allows only DefaultName", "namespaceMappingStrategy DefaultName"}},
		{name: "EnforceSameName refused, two allowed", policy: policy(peeringv1alpha1.TenantPolicySpec{TwinNamings: []peeringv1alpha1.TwinNaming{peeringv1alpha1.SelectedNameTwin, peeringv1alpha1.DefaultNameTwin}}), twin: "shop",
			want: []string{"its naming is EnforceSameName and the policy allows only DefaultName or SelectedName"}},
		{name: "pattern matches", policy: policy(peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "team-[a-z]+"}), twin: "team-web"},
		{name: "pattern is anchored", policy: policy(peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "team-[a-z]+"}), twin: "team-web-2",
			want: []string{`does not match the policy's twinNamePattern "team-[a-z]+"`, "choose a twin name that matches it"}},
		{name: "alternation is anchored as a whole", policy: policy(peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "a|b"}), twin: "ab",
			want: []string{"does not match"}},
		{name: "invalid pattern refuses", policy: policy(peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "team-("}), twin: "team-web",
			want: []string{`twinNamePattern "team-(" is not a valid RE2 regular expression`, "allows no new twin", "must fix the pattern"}},
		{name: "naming is checked before the pattern", policy: policy(peeringv1alpha1.TenantPolicySpec{TwinNamings: defaultOnly, TwinNamePattern: "("}), twin: "web",
			want: []string{"its naming is SelectedName"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			p := CheckTwin(tt.policy, tt.twin, "shop", homeID)
			if len(tt.want) == 0 {
				g.Expect(p).To(BeNil())
				return
			}
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.Reason).To(Equal(peeringv1alpha1.PolicyDeniedReason))
			for _, w := range tt.want {
				g.Expect(p.Message).To(ContainSubstring(w))
			}
		})
	}
}

func TestPodSecurity(t *testing.T) {
	g := NewWithT(t)
	g.Expect(PodSecurityLevel(nil)).To(Equal(peeringv1alpha1.PodSecurityBaseline))
	g.Expect(PodSecurityLevel(&peeringv1alpha1.TenantPolicy{})).To(Equal(peeringv1alpha1.PodSecurityBaseline))
	restricted := &peeringv1alpha1.TenantPolicy{Spec: peeringv1alpha1.TenantPolicySpec{PodSecurity: peeringv1alpha1.PodSecurityRestricted}}
	g.Expect(PodSecurityLevel(restricted)).To(Equal(peeringv1alpha1.PodSecurityRestricted))

	labels := PodSecurityLabels(peeringv1alpha1.PodSecurityRestricted)
	g.Expect(labels).To(Equal(map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
		"pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/warn-version": "latest",
		"pod-security.kubernetes.io/audit": "restricted", "pod-security.kubernetes.io/audit-version": "latest",
	}))

	tests := []struct {
		name   string
		labels map[string]string
		want   []string
	}{
		{name: "all there, other labels kept", labels: merge(labels, map[string]string{"team": "a"}), want: nil},
		{name: "none", labels: nil, want: sortedKeys(labels)},
		{name: "one removed", labels: without(labels, "pod-security.kubernetes.io/warn"), want: []string{"pod-security.kubernetes.io/warn"}},
		{name: "one weakened", labels: merge(labels, map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}), want: []string{"pod-security.kubernetes.io/enforce"}},
		{name: "version pinned", labels: merge(labels, map[string]string{"pod-security.kubernetes.io/enforce-version": "v1.20"}), want: []string{"pod-security.kubernetes.io/enforce-version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(PodSecurityDrift(tt.labels, peeringv1alpha1.PodSecurityRestricted)).To(Equal(tt.want))
		})
	}
}

func TestHomeOf(t *testing.T) {
	g := NewWithT(t)
	g.Expect(HomeOfTenant("stretch-tenant-" + homeID)).To(Equal(homeID))
	g.Expect(HomeOfTenant("stretch-tenant-x")).To(BeEmpty())
	g.Expect(HomeOfTenant("default")).To(BeEmpty())
	ann := map[string]string{wellknown.RemoteNamespaceOriginAnnotation: homeID}
	g.Expect(HomeOfTwin(map[string]string{wellknown.OriginClusterIDLabel: homeID}, ann)).To(Equal(homeID))
	g.Expect(HomeOfTwin(map[string]string{wellknown.OriginClusterIDLabel: "other"}, ann)).To(BeEmpty())
	g.Expect(HomeOfTwin(map[string]string{wellknown.OriginClusterIDLabel: homeID}, nil)).To(BeEmpty())
}

func TestUsage(t *testing.T) {
	q := resource.MustParse
	res := func(kv ...string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Requests: list(kv...)}
	}
	pod := func(phase corev1.PodPhase, init []corev1.Container, containers ...corev1.Container) corev1.Pod {
		return corev1.Pod{Spec: corev1.PodSpec{InitContainers: init, Containers: containers}, Status: corev1.PodStatus{Phase: phase}}
	}
	c := func(r corev1.ResourceRequirements) corev1.Container { return corev1.Container{Name: "c", Resources: r} }
	sidecar := func(r corev1.ResourceRequirements) corev1.Container {
		return corev1.Container{Name: "side", Resources: r, RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}
	}
	withOverhead := pod(corev1.PodRunning, nil, c(res("cpu", "100m")))
	withOverhead.Spec.Overhead = corev1.ResourceList{"cpu": q("10m"), "memory": q("5Mi")}

	tests := []struct {
		name string
		pods []corev1.Pod
		want corev1.ResourceList
	}{
		{name: "no pods", pods: nil, want: corev1.ResourceList{"pods": q("0")}},
		{name: "containers add up", pods: []corev1.Pod{pod(corev1.PodRunning, nil, c(res("cpu", "100m", "memory", "64Mi")), c(res("cpu", "200m", "memory", "64Mi")))},
			want: corev1.ResourceList{"pods": q("1"), "cpu": q("300m"), "memory": q("128Mi")}},
		{name: "a larger init container wins", pods: []corev1.Pod{pod(corev1.PodPending, []corev1.Container{c(res("cpu", "1", "memory", "10Mi"))}, c(res("cpu", "100m", "memory", "64Mi")))},
			want: corev1.ResourceList{"pods": q("1"), "cpu": q("1"), "memory": q("64Mi")}},
		{name: "a sidecar adds to the containers", pods: []corev1.Pod{pod(corev1.PodRunning, []corev1.Container{sidecar(res("cpu", "50m"))}, c(res("cpu", "100m")))},
			want: corev1.ResourceList{"pods": q("1"), "cpu": q("150m")}},
		{name: "overhead is added", pods: []corev1.Pod{withOverhead},
			want: corev1.ResourceList{"pods": q("1"), "cpu": q("110m"), "memory": q("5Mi")}},
		{name: "extended resources", pods: []corev1.Pod{pod(corev1.PodRunning, nil, c(res("nvidia.com/gpu", "1"))), pod(corev1.PodRunning, nil, c(res("nvidia.com/gpu", "2")))},
			want: corev1.ResourceList{"pods": q("2"), "nvidia.com/gpu": q("3")}},
		{name: "terminated pods do not count", pods: []corev1.Pod{pod(corev1.PodSucceeded, nil, c(res("cpu", "1"))), pod(corev1.PodFailed, nil, c(res("cpu", "1"))), pod("", nil, c(res("cpu", "1")))},
			want: corev1.ResourceList{"pods": q("1"), "cpu": q("1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := Usage(tt.pods)
			g.Expect(equality.Semantic.DeepEqual(got, tt.want)).To(BeTrue(), "got %v, want %v", got, tt.want)
		})
	}
}

func TestUsed(t *testing.T) {
	q := resource.MustParse
	usage := corev1.ResourceList{"pods": q("2"), "cpu": q("1500m"), "nvidia.com/gpu": q("1"), "ephemeral-storage": q("1Gi")}
	tests := []struct {
		name   string
		limits corev1.ResourceList
		want   corev1.ResourceList
	}{
		{name: "no limits: pods, cpu, memory", limits: nil,
			want: corev1.ResourceList{"pods": q("2"), "cpu": q("1500m"), "memory": q("0")}},
		{name: "limits add their resources, zero when unused", limits: corev1.ResourceList{"nvidia.com/gpu": q("2"), "example.com/fpga": q("1")},
			want: corev1.ResourceList{"pods": q("2"), "cpu": q("1500m"), "memory": q("0"), "nvidia.com/gpu": q("1"), "example.com/fpga": q("0")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := Used(usage, tt.limits)
			g.Expect(equality.Semantic.DeepEqual(got, tt.want)).To(BeTrue(), "got %v, want %v", got, tt.want)
		})
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func without(m map[string]string, key string) map[string]string {
	out := merge(m, nil)
	delete(out, key)
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
