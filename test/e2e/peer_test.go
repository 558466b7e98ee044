package e2e

import (
	"testing"

	. "github.com/onsi/gomega"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
)

// The peering and offloading story with the real binaries: install both
// clusters, run stretch-controller-manager on each, peer, see the provider as
// a labelled, Ready virtual node with kubectl, offload a namespace and follow
// it with the FAQ's kubectl commands, unoffload; then unpeer.
func TestPeer(t *testing.T) {
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: 1}, "home", "provider-eu")
	home, provider := clusters[0], clusters[1]

	step(t, "install both clusters", func(t *testing.T) {
		g := NewWithT(t)
		_, err := stretchctl(t, "install", "--image", testImage, "--kubeconfig", home.Kubeconfig, "--cluster-name", "home")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = stretchctl(t, "install", "--image", testImage, "--kubeconfig", provider.Kubeconfig, "--cluster-name", "provider-eu", "--cluster-labels", "region=eu,provider=kwok")
		g.Expect(err).NotTo(HaveOccurred())
	})

	startManager(t, home)
	startManager(t, provider)

	step(t, "peer waits for the virtual node", func(t *testing.T) {
		g := NewWithT(t)
		out, err := stretchctl(t, "peer", "--kubeconfig", home.Kubeconfig, "--remote-kubeconfig", provider.Kubeconfig, "--wait", "--timeout", "2m")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("stretch-provider-eu"))
	})

	step(t, "kubectl shows the provider as a labelled, tainted, Ready node", func(t *testing.T) {
		g := NewWithT(t)
		out, err := kubectl(t, home, "get", "nodes", "--show-labels")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("stretch-provider-eu"))
		for _, label := range []string{"region=eu", "provider=kwok", "stretch.dev/type=virtual-node", "stretch.dev/remote-cluster-name=provider-eu", "kubernetes.io/hostname=stretch-provider-eu"} {
			g.Expect(out).To(ContainSubstring(label))
		}
		out, err = kubectl(t, home, "get", "node", "stretch-provider-eu", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}`)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(Equal("True virtual-node.stretch.dev/not-allowed"))
	})

	step(t, "status lists the healthy peer and its virtual node", func(t *testing.T) {
		g := NewWithT(t)
		out, err := stretchctl(t, "status", "--kubeconfig", home.Kubeconfig)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(MatchRegexp(`provider-eu\s+\S+\s+True\s+True\s+True`))
		g.Expect(out).To(MatchRegexp(`stretch-provider-eu\s+provider-eu\s+True`))
	})

	offloadWithKubectl(t, home, provider)

	step(t, "unpeer removes the virtual node and the tenant", func(t *testing.T) {
		g := NewWithT(t)
		_, err := stretchctl(t, "unpeer", "provider-eu", "--kubeconfig", home.Kubeconfig, "--remote-kubeconfig", provider.Kubeconfig)
		g.Expect(err).NotTo(HaveOccurred())
		out, err := kubectl(t, home, "get", "nodes")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).NotTo(ContainSubstring("stretch-provider-eu"))
		out, err = kubectl(t, provider, "get", "namespaces")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).NotTo(MatchRegexp(`stretch-tenant-\S+\s+Active`))
	})
}

// startManager runs bin/stretch-controller-manager against c until the test
// ends or stop is called (SIGINT, as a rollout would), as the chart's
// ServiceAccount, with a token from the TokenRequest API: every scenario
// then proves that the chart's RBAC is enough. stretchctl install (the
// chart) must have run on c.
func startManager(t *testing.T, c *kwok.Cluster, args ...string) (stop func()) {
	t.Helper()
	return runManager(t, c, "stretch-controller-manager", args...).Stop
}

// runManager runs the manager binary bin/<binary> as startManager does.
func runManager(t *testing.T, c *kwok.Cluster, binary string, args ...string) *testenv.ManagerProcess {
	t.Helper()
	kubeconfig, err := testenv.ServiceAccountKubeconfig(t.Context(), c.Config, wellknown.SystemNamespace, wellknown.ManagerName, t.TempDir())
	if err != nil {
		t.Fatalf("%v (was stretchctl install run on %s?)", err, c.Name)
	}
	return testenv.RunManagerBinary(t, suite, c, binary, false, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}
