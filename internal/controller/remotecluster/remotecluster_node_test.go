package remotecluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

func TestDesiredLabels(t *testing.T) {
	amd := platform{os: "linux", arch: "amd64"}
	for _, tc := range []struct {
		name        string
		provider    map[string]string
		admin       map[string]string
		p           platform
		want        map[string]string // on top of the virtual-node labels
		wantInvalid []string
	}{
		{name: "no extra labels", p: amd, want: map[string]string{}},
		{name: "provider and admin labels", provider: map[string]string{"region": "eu"}, admin: map[string]string{"team": "a"}, p: amd,
			want: map[string]string{"region": "eu", "team": "a"}},
		{name: "admin wins over provider", provider: map[string]string{"region": "eu", "provider": "aws"}, admin: map[string]string{"provider": "onprem"}, p: amd,
			want: map[string]string{"region": "eu", "provider": "onprem"}},
		{name: "nobody overrides the virtual-node labels", provider: map[string]string{wellknown.VirtualNodeTypeLabel: "x"},
			admin: map[string]string{corev1.LabelHostname: "y", wellknown.RemoteClusterIDLabel: "z"}, p: amd, want: map[string]string{}},
		{name: "invalid labels are left out", provider: map[string]string{"bad key": "v", "ok": "v"}, admin: map[string]string{"k": "bad value!"}, p: amd,
			want: map[string]string{"ok": "v"}, wantInvalid: []string{"bad key=v", "k=bad value!"}},
		{name: "platform", p: platform{os: "linux", arch: "arm64"}, want: map[string]string{corev1.LabelArchStable: "arm64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			rc := testRemoteCluster()
			rc.Spec.Labels = tc.admin
			want := map[string]string{
				wellknown.VirtualNodeTypeLabel:   "virtual-node",
				wellknown.RemoteClusterIDLabel:   rc.Spec.ClusterID,
				wellknown.RemoteClusterNameLabel: "provider-eu",
				corev1.LabelHostname:             "stretch-provider-eu",
				corev1.LabelOSStable:             "linux",
				corev1.LabelArchStable:           "amd64",
			}
			for k, v := range tc.want {
				want[k] = v
			}
			got, invalid := desiredLabels(rc, tc.provider, tc.p)
			g.Expect(got).To(Equal(want))
			g.Expect(invalid).To(Equal(tc.wantInvalid))
		})
	}
}

func TestApplyLabels(t *testing.T) {
	for _, tc := range []struct {
		name        string
		labels      map[string]string
		annotation  string
		desired     map[string]string
		want        map[string]string
		wantManaged string
	}{
		{name: "new node", desired: map[string]string{"b": "1", "a": "2"}, want: map[string]string{"a": "2", "b": "1"}, wantManaged: "a,b"},
		{name: "a label we set is no longer wanted", labels: map[string]string{"a": "1", "gone": "x"}, annotation: "a,gone",
			desired: map[string]string{"a": "1"}, want: map[string]string{"a": "1"}, wantManaged: "a"},
		{name: "labels others set are kept", labels: map[string]string{"a": "1", "theirs": "x"}, annotation: "a",
			desired: map[string]string{"a": "2", "new": "y"}, want: map[string]string{"a": "2", "new": "y", "theirs": "x"}, wantManaged: "a,new"},
		{name: "our labels changed by others are restored", labels: map[string]string{"a": "changed"}, annotation: "a",
			desired: map[string]string{"a": "1"}, want: map[string]string{"a": "1"}, wantManaged: "a"},
		{name: "a key others set first is taken over", labels: map[string]string{"a": "theirs"},
			desired: map[string]string{"a": "ours"}, want: map[string]string{"a": "ours"}, wantManaged: "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: tc.labels}}
			if tc.annotation != "" {
				node.Annotations = map[string]string{wellknown.VirtualNodeManagedLabelsAnnotation: tc.annotation}
			}
			applyLabels(node, tc.desired)
			g.Expect(node.Labels).To(Equal(tc.want))
			g.Expect(node.Annotations).To(HaveKeyWithValue(wellknown.VirtualNodeManagedLabelsAnnotation, tc.wantManaged))
		})
	}
}

func TestApplyTaint(t *testing.T) {
	ours := corev1.Taint{Key: wellknown.VirtualNodeTaintKey, Value: "true", Effect: corev1.TaintEffectNoExecute}
	theirs := corev1.Taint{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute}
	for _, tc := range []struct {
		name   string
		taints []corev1.Taint
		want   []corev1.Taint
	}{
		{"none", nil, []corev1.Taint{ours}},
		{"already there", []corev1.Taint{ours}, []corev1.Taint{ours}},
		{"others' taints are kept", []corev1.Taint{theirs}, []corev1.Taint{theirs, ours}},
		{"ours with another value or effect is replaced", []corev1.Taint{{Key: ours.Key, Value: "x", Effect: corev1.TaintEffectNoSchedule}, theirs},
			[]corev1.Taint{theirs, ours}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			node := &corev1.Node{Spec: corev1.NodeSpec{Taints: tc.taints}}
			applyTaint(node)
			g.Expect(node.Spec.Taints).To(Equal(tc.want))
		})
	}
}

func providerNode(name string, ready, unschedulable bool, arch string, cpu, memory string) corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelArchStable: arch, corev1.LabelOSStable: "linux"}},
		Spec:       corev1.NodeSpec{Unschedulable: unschedulable},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory),
				corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
				"nvidia.com/gpu": resource.MustParse("1"),
				// Neither an extended resource nor one a virtual node offers.
				"hugepages-2Mi":                    resource.MustParse("1Gi"),
				"example.kubernetes.io/widget":     resource.MustParse("3"),
				"attachable-volumes-aws-ebs":       resource.MustParse("39"),
				"requests.example.com/quota-style": resource.MustParse("5"),
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
		},
	}
}

func TestCapacity(t *testing.T) {
	virtual := providerNode("stretch-other", true, false, "amd64", "100", "100Gi")
	virtual.Labels[wellknown.VirtualNodeTypeLabel] = wellknown.VirtualNodeTypeValue
	nodes := []corev1.Node{
		providerNode("a", true, false, "arm64", "4", "8Gi"),
		providerNode("b", true, false, "arm64", "3500m", "8Gi"),
		providerNode("cordoned", true, true, "amd64", "16", "64Gi"),
		providerNode("not-ready", false, false, "amd64", "16", "64Gi"),
		virtual,
	}
	for _, tc := range []struct {
		name  string
		nodes []corev1.Node
		caps  corev1.ResourceList
		want  map[corev1.ResourceName]string
	}{
		{"no nodes", nil, nil, map[corev1.ResourceName]string{"cpu": "0", "memory": "0", "pods": "0", "ephemeral-storage": "0"}},
		{"ready schedulable real nodes only, extended resources included", nodes, nil,
			map[corev1.ResourceName]string{"cpu": "7500m", "memory": "16Gi", "pods": "220", "ephemeral-storage": "200Gi", "nvidia.com/gpu": "2"}},
		{"caps lower, never raise", nodes, corev1.ResourceList{"cpu": resource.MustParse("6"), "pods": resource.MustParse("1000"), "nvidia.com/gpu": resource.MustParse("1")},
			map[corev1.ResourceName]string{"cpu": "6", "memory": "16Gi", "pods": "220", "ephemeral-storage": "200Gi", "nvidia.com/gpu": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := capped(capacityOf(tc.nodes), tc.caps)
			g.Expect(got).To(HaveLen(len(tc.want)))
			for name, q := range tc.want {
				g.Expect(got).To(HaveKey(name))
				v := got[name]
				g.Expect(v.Cmp(resource.MustParse(q))).To(BeZero(), "%s: got %s, want %s", name, v.String(), q)
			}
		})
	}
}

func TestIsExtendedResource(t *testing.T) {
	for _, tc := range []struct {
		name corev1.ResourceName
		want bool
	}{
		{"nvidia.com/gpu", true},
		{"example.com/foo", true},
		{"amd.com/gpu", true},
		{"hardware-vendor.example/foo", true},
		// Native resources: no domain, or the kubernetes.io/ namespace.
		{"cpu", false},
		{"memory", false},
		{"pods", false},
		{"ephemeral-storage", false},
		{"hugepages-2Mi", false},
		{"kubernetes.io/foo", false},
		{"example.kubernetes.io/foo", false},
		// Quota names are not resources a node has.
		{"requests.nvidia.com/gpu", false},
		// Not a qualified name once quotas prefix it.
		{"nvidia.com/", false},
		{"/gpu", false},
		{"Nvidia_Com/gpu", false},
		{"nvidia.com/gpu/a", false},
		{"nvidia.com/-gpu", false},
	} {
		t.Run(string(tc.name), func(t *testing.T) {
			NewWithT(t).Expect(isExtendedResource(tc.name)).To(Equal(tc.want))
		})
	}
}

func TestAdvertised(t *testing.T) {
	list := func(kv ...string) corev1.ResourceList {
		l := corev1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
		}
		return l
	}
	provider := list("cpu", "8", "memory", "32Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "4")
	for _, tc := range []struct {
		name         string
		limits, caps corev1.ResourceList
		want         corev1.ResourceList
	}{
		{"no policy, no caps: the provider's figures", nil, nil, provider},
		{"limits below the provider's figures lower them", list("cpu", "2", "nvidia.com/gpu", "1", "pods", "10"), nil,
			list("cpu", "2", "memory", "32Gi", "pods", "10", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "1")},
		{"limits above never raise", list("cpu", "64", "nvidia.com/gpu", "8"), nil, provider},
		{"a zero limit offers nothing", list("nvidia.com/gpu", "0"), nil,
			list("cpu", "8", "memory", "32Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "0")},
		{"a limited resource the provider lacks stays absent", list("cpu", "2", "example.com/fpga", "2"), nil,
			list("cpu", "2", "memory", "32Gi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "4")},
		{"the spec's caps apply after the limits", list("cpu", "4", "pods", "10"), list("cpu", "1", "pods", "50"),
			list("cpu", "1", "memory", "32Gi", "pods", "10", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "4")},
		{"memory limits compare as quantities", list("memory", "16000Mi"), nil,
			list("cpu", "8", "memory", "16000Mi", "pods", "110", "ephemeral-storage", "100Gi", "nvidia.com/gpu", "4")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			before := provider.DeepCopy()
			got := advertised(provider, tc.limits, tc.caps)
			g.Expect(got).To(HaveLen(len(tc.want)))
			for name, q := range tc.want {
				g.Expect(got).To(HaveKey(name))
				v := got[name]
				g.Expect(v.Cmp(q)).To(BeZero(), "%s: got %s, want %s", name, v.String(), q.String())
			}
			g.Expect(provider).To(Equal(before), "the provider's figures are not changed")
		})
	}
}

func TestProviderPolicy(t *testing.T) {
	for _, tc := range []struct {
		name string
		tp   peeringv1alpha1.TenantPolicy
		want *peeringv1alpha1.ProviderPolicy
	}{
		{"empty: the default level, nothing else", peeringv1alpha1.TenantPolicy{}, &peeringv1alpha1.ProviderPolicy{PodSecurity: "baseline"}},
		{"empty lists stay unset", peeringv1alpha1.TenantPolicy{
			Spec:   peeringv1alpha1.TenantPolicySpec{Limits: corev1.ResourceList{}, PriorityClasses: []string{}, PodSecurity: peeringv1alpha1.PodSecurityRestricted},
			Status: peeringv1alpha1.TenantPolicyStatus{Used: corev1.ResourceList{}},
		}, &peeringv1alpha1.ProviderPolicy{PodSecurity: "restricted"}},
		{"everything", peeringv1alpha1.TenantPolicy{
			Spec: peeringv1alpha1.TenantPolicySpec{
				Limits:          corev1.ResourceList{"cpu": resource.MustParse("2"), "nvidia.com/gpu": resource.MustParse("1")},
				PriorityClasses: []string{"low"}, PodSecurity: peeringv1alpha1.PodSecurityBaseline,
				TwinNamePattern: "^team-",
			},
			Status: peeringv1alpha1.TenantPolicyStatus{Used: corev1.ResourceList{"cpu": resource.MustParse("500m")}},
		}, &peeringv1alpha1.ProviderPolicy{
			Limits:      corev1.ResourceList{"cpu": resource.MustParse("2"), "nvidia.com/gpu": resource.MustParse("1")},
			Used:        corev1.ResourceList{"cpu": resource.MustParse("500m")},
			PodSecurity: "baseline", PriorityClasses: []string{"low"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(providerPolicy(&tc.tp)).To(Equal(tc.want))
		})
	}
}

func TestPlatformOf(t *testing.T) {
	fallback := platform{os: "linux", arch: "amd64"}
	for _, tc := range []struct {
		name  string
		nodes []corev1.Node
		want  platform
	}{
		{"no nodes", nil, fallback},
		{"majority", []corev1.Node{providerNode("a", true, false, "arm64", "1", "1Gi"), providerNode("b", true, false, "arm64", "1", "1Gi"),
			providerNode("c", true, false, "amd64", "1", "1Gi")}, platform{os: "linux", arch: "arm64"}},
		{"unusable nodes do not count", []corev1.Node{providerNode("a", false, false, "arm64", "1", "1Gi"), providerNode("b", true, true, "arm64", "1", "1Gi"),
			providerNode("c", true, false, "s390x", "1", "1Gi")}, platform{os: "linux", arch: "s390x"}},
		{"ties go to the smaller name", []corev1.Node{providerNode("a", true, false, "arm64", "1", "1Gi"), providerNode("b", true, false, "amd64", "1", "1Gi")},
			platform{os: "linux", arch: "amd64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(platformOf(tc.nodes, fallback)).To(Equal(tc.want))
		})
	}
}

func TestClassify(t *testing.T) {
	rc := testRemoteCluster()
	gr := schema.GroupResource{Resource: "nodes"}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{}}
	for _, tc := range []struct {
		name     string
		err      error
		reason   string
		progress progress
	}{
		{"401", apierrors.NewUnauthorized("token expired"), ReasonUnauthorized, answered},
		{"401 wrapped", fmt.Errorf("reading ConfigMap: %w", apierrors.NewUnauthorized("")), ReasonUnauthorized, answered},
		{"403", apierrors.NewForbidden(gr, "", errors.New("no")), ReasonForbidden, authenticated},
		{"connection refused", fmt.Errorf("get: %w", syscall.ECONNREFUSED), ReasonUnreachable, notReached},
		{"dial error", refused, ReasonUnreachable, notReached},
		{"timeout", context.DeadlineExceeded, ReasonUnreachable, notReached},
		{"503", apierrors.NewServiceUnavailable("starting"), ReasonUnreachable, notReached},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			f := classify(rc, tc.err)
			g.Expect(f.reason).To(Equal(tc.reason))
			g.Expect(f.progress).To(Equal(tc.progress))
			g.Expect(f.message).To(ContainSubstring(tc.err.Error()))
		})
	}
}

func TestApplyNodeStatus(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ready := readiness{metav1.ConditionTrue, ReasonProviderReady, "provider provider-eu answers"}
	capacity := capacityOf(nil)
	p := platform{os: "linux", arch: "arm64"}

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stretch-provider-eu"}}
	applyNodeStatus(node, capacity, p, kubeletEndpoint{}, ready, now)
	g.Expect(node.Status.NodeInfo.Architecture).To(Equal("arm64"))
	g.Expect(node.Status.Conditions).To(HaveLen(1))
	c := node.Status.Conditions[0]
	g.Expect(c.Status).To(Equal(corev1.ConditionTrue))
	g.Expect(c.LastTransitionTime.Time).To(Equal(now))

	// Nothing changed a minute later: nothing to write.
	before := node.DeepCopy()
	applyNodeStatus(node, capacity, p, kubeletEndpoint{}, ready, now.Add(time.Minute))
	g.Expect(node.Status).To(Equal(before.Status))

	// Not ready: transition and heartbeat move.
	later := now.Add(2 * time.Minute)
	applyNodeStatus(node, capacity, p, kubeletEndpoint{}, readiness{metav1.ConditionFalse, ReasonUnreachable, "down"}, later)
	c = node.Status.Conditions[0]
	g.Expect(c.Status).To(Equal(corev1.ConditionFalse))
	g.Expect(c.Reason).To(Equal(ReasonUnreachable))
	g.Expect(c.LastTransitionTime.Time).To(Equal(later))
	g.Expect(c.LastHeartbeatTime.Time).To(Equal(later))

	// Others' conditions are kept; an unchanged condition is refreshed after a while.
	node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{Type: "Example", Status: corev1.ConditionTrue})
	muchLater := later.Add(nodeStatusRefresh)
	applyNodeStatus(node, capacity, p, kubeletEndpoint{}, readiness{metav1.ConditionFalse, ReasonUnreachable, "down"}, muchLater)
	g.Expect(node.Status.Conditions).To(HaveLen(2))
	g.Expect(node.Status.Conditions[0].LastHeartbeatTime.Time).To(Equal(muchLater))
	g.Expect(node.Status.Conditions[0].LastTransitionTime.Time).To(Equal(later))
	g.Expect(node.Status.Addresses).To(Equal([]corev1.NodeAddress{{Type: corev1.NodeHostName, Address: node.Name}}))
	g.Expect(node.Status.DaemonEndpoints.KubeletEndpoint.Port).To(BeZero())

	// With a kubelet API: the API server finds it at the InternalIP and port.
	applyNodeStatus(node, capacity, p, kubeletEndpoint{"127.0.0.1", 10250}, readiness{metav1.ConditionFalse, ReasonUnreachable, "down"}, muchLater)
	g.Expect(node.Status.Addresses).To(Equal([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}))
	g.Expect(node.Status.DaemonEndpoints.KubeletEndpoint.Port).To(BeEquivalentTo(10250))
}
