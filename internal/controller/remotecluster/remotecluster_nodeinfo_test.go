package remotecluster_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/controller/remotecluster"
	"stretch.dev/stretch/internal/version"
)

// What 'kubectl get nodes -o wide' shows of a virtual node: Stretch's
// version as the kubelet's, and the OS image, kernel and container runtime
// most of the provider's usable nodes report; they follow the provider's
// nodes, and stay as last seen while the provider is down.
func TestVirtualNodeNodeInfo(t *testing.T) {
	g := newG(t)
	debian, alpine := "Debian GNU/Linux 13 (trixie)", "Alpine Linux v3.22"
	// The usable nodes agree on the image and the runtime and tie on the
	// kernel (the smaller value wins). The cordoned and the NotReady ones
	// would win every field if they counted.
	setNodeInfo(t, g, map[string]corev1.NodeSystemInfo{
		"eu-1":         {OSImage: debian, KernelVersion: "6.18.1", ContainerRuntimeVersion: "containerd://2.4.2"},
		"eu-2":         {OSImage: debian, KernelVersion: "6.12.9", ContainerRuntimeVersion: "containerd://2.4.2"},
		"eu-cordoned":  {OSImage: alpine, KernelVersion: "5.15.0", ContainerRuntimeVersion: "containerd://1.7.0"},
		"eu-not-ready": {OSImage: alpine, KernelVersion: "5.15.0", ContainerRuntimeVersion: "containerd://1.7.0"},
	})
	rc, _, _ := peeredWith(t, g, eu, euID)

	want := corev1.NodeSystemInfo{
		KubeletVersion:          remotecluster.KubeletVersion(version.Version),
		OSImage:                 debian,
		KernelVersion:           "6.12.9",
		ContainerRuntimeVersion: "containerd://2.4.2",
		OperatingSystem:         "linux",
		Architecture:            "arm64",
	}
	g.Eventually(func(g Gomega) corev1.NodeSystemInfo {
		return virtualNode(g, rc).Status.NodeInfo
	}).Should(Equal(want))

	// The provider upgrades its runtime on its usable nodes.
	setNodeInfo(t, g, map[string]corev1.NodeSystemInfo{
		"eu-1": {OSImage: debian, KernelVersion: "6.18.1", ContainerRuntimeVersion: "containerd://2.5.0"},
		"eu-2": {OSImage: debian, KernelVersion: "6.12.9", ContainerRuntimeVersion: "containerd://2.5.0"},
	})
	want.ContainerRuntimeVersion = "containerd://2.5.0"
	g.Eventually(func(g Gomega) corev1.NodeSystemInfo {
		return virtualNode(g, rc).Status.NodeInfo
	}).Should(Equal(want))

	g.Expect(eu.StopAPIServerOnly()).To(Succeed())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			g.Expect(eu.RestartAPIServer()).To(Succeed())
		}
	})
	g.Eventually(func(g Gomega) corev1.ConditionStatus {
		return nodeReady(virtualNode(g, rc)).Status
	}).Should(Equal(corev1.ConditionFalse))
	g.Expect(virtualNode(g, rc).Status.NodeInfo).To(Equal(want), "kept as last seen")
	g.Expect(eu.RestartAPIServer()).To(Succeed())
	restarted = true
	expectReady(g, rc)
}

// setNodeInfo sets the node info of provider-eu's nodes until the test
// ends.
func setNodeInfo(t *testing.T, g *WithT, infos map[string]corev1.NodeSystemInfo) {
	t.Helper()
	set := func(name string, info corev1.NodeSystemInfo) error {
		node := &corev1.Node{}
		if err := eu.Client.Get(context.Background(), client.ObjectKey{Name: name}, node); err != nil {
			return err
		}
		node.Status.NodeInfo = info
		return eu.Client.Status().Update(context.Background(), node)
	}
	for name, info := range infos {
		g.Expect(set(name, info)).To(Succeed(), "node %s", name)
		t.Cleanup(func() { g.Expect(set(name, corev1.NodeSystemInfo{})).To(Succeed(), "node %s", name) })
	}
}

func TestKubeletVersion(t *testing.T) {
	for _, tc := range []struct{ stretch, want string }{
		{"v0.3.1", "v0.3.1-stretch"},
		{"0.3.1", "v0.3.1-stretch"},
		{"v0.4.0-rc.1", "v0.4.0-rc.1.stretch"},
		{"v1.2.3+build.7", "v1.2.3-stretch+build.7"},
		{"dev", "v0.0.0-stretch+dev"},
		{"8e23b54-dirty", "v0.0.0-stretch+8e23b54-dirty"},
		{"feature/x..y", "v0.0.0-stretch+feature-x.y"},
		{"", "v0.0.0-stretch"},
	} {
		t.Run(tc.stretch, func(t *testing.T) {
			g := NewWithT(t)
			got := remotecluster.KubeletVersion(tc.stretch)
			g.Expect(got).To(Equal(tc.want))
			g.Expect(got).To(MatchRegexp(`^v\d+\.\d+\.\d+-[0-9A-Za-z.-]+(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`), "a semantic version")
		})
	}
}
