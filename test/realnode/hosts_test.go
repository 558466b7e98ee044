package realnode

import (
	"net/netip"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	rn "stretch.dev/stretch/internal/testenv/realnode"
)

// TestSeparateHosts starts two clusters, each on a host of its own, and
// checks what the multi-cluster tests rely on: distinct addresses and
// ranges, API servers on non-loopback addresses that pods of the other
// cluster reach, and a link that Cut breaks, both ways, and Heal restores.
func TestSeparateHosts(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	pause, testapp := buildImages(ctx, t, t.TempDir())

	clusters := startClusters(t,
		rn.ClusterOptions{Name: "east", Pause: pause, Images: []*rn.Image{testapp}},
		rn.ClusterOptions{Name: "west", Pause: pause, Images: []*rn.Image{testapp}})
	east, west := clusters[0], clusters[1]

	lan := netip.MustParsePrefix("198.18.255.0/24")
	for _, c := range []*rn.Cluster{east, west} {
		u, err := url.Parse(c.Server)
		g.Expect(err).NotTo(HaveOccurred())
		addr := netip.MustParseAddr(u.Hostname())
		g.Expect(addr).To(Equal(c.Host.Addr), "the API server listens on its host's address")
		g.Expect(addr.IsLoopback()).To(BeFalse())
		g.Expect(lan.Contains(addr)).To(BeTrue())
	}
	g.Expect(east.Host.Addr).NotTo(Equal(west.Host.Addr))
	g.Expect(east.Host.Name).NotTo(Equal(west.Host.Name))
	g.Expect(east.ServiceCIDR.Overlaps(west.ServiceCIDR)).To(BeFalse())
	g.Expect(east.Nodes[0].PodCIDR.Overlaps(west.Nodes[0].PodCIDR)).To(BeFalse())

	// A pod of each cluster, and the API server of the other.
	pods := map[*rn.Cluster]string{}
	for _, c := range []*rn.Cluster{east, west} {
		cs, err := kubernetes.NewForConfig(c.Config)
		g.Expect(err).NotTo(HaveOccurred())
		createReader(ctx, g, cs, "default", "testapp")
		_, err = cs.CoreV1().Pods("default").Create(ctx, testappPod("default", "testapp", testapp.Ref), metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		waitRunningReady(ctx, g, cs, "default", "testapp")
		pods[c] = "testapp"
	}
	dial := func(from, to *rn.Cluster) (string, int) {
		u, _ := url.Parse(to.Server)
		out, code, err := runKubectl(ctx, from.Kubeconfig, "-n", "default", "exec", pods[from], "--", "/testapp", "dial", u.Host)
		g.Expect(err).NotTo(HaveOccurred())
		return out, code
	}
	for _, pair := range [][2]*rn.Cluster{{east, west}, {west, east}} {
		out, code := dial(pair[0], pair[1])
		g.Expect(code).To(BeZero(), "a pod of %s dials the API server of %s: %s", pair[0].Name, pair[1].Name, out)
	}

	// Cut at east: neither reaches the other, and this machine still
	// reaches both (kubectl exec goes through the API server and kubelet
	// of the pod's own cluster).
	g.Expect(east.Host.Cut(west.Host)).To(Succeed())
	g.Expect(east.Host.CutFrom()).To(Equal([]netip.Addr{west.Host.Addr}))
	g.Expect(east.Host.Cut(west.Host)).To(Succeed(), "cutting twice is a no-op")
	for _, pair := range [][2]*rn.Cluster{{east, west}, {west, east}} {
		out, code := dial(pair[0], pair[1])
		g.Expect(code).To(Equal(1), "%s → %s after the cut: %s", pair[0].Name, pair[1].Name, out)
		g.Expect(out).To(ContainSubstring("i/o timeout"), "a cut link drops packets, it does not refuse them")
	}

	g.Expect(east.Host.Heal(west.Host)).To(Succeed())
	g.Expect(east.Host.CutFrom()).To(BeEmpty())
	for _, pair := range [][2]*rn.Cluster{{east, west}, {west, east}} {
		g.Eventually(func() int {
			_, code := dial(pair[0], pair[1])
			return code
		}).WithTimeout(30*time.Second).Should(BeZero(), "%s → %s after the heal", pair[0].Name, pair[1].Name)
	}
}
