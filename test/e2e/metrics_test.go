package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/resource"

	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
)

// Resource usage of offloaded pods with the real metrics-server on both
// sides (docs/design.md §4.24): the provider's metrics-server reports kwok's
// emulated usage of the remote pods; the home manager's kubelet API serves it
// to the home cluster's metrics-server, which scrapes the virtual node like
// any kubelet; 'kubectl top pod' and 'kubectl top node' at home show it, and
// an HPA at home scales the offloaded Deployment on CPU, its new replicas
// offloaded too. One provider: every virtual node of a manager shares one
// kubelet endpoint, which gives node figures only with one virtual node.
func TestMetricsOfOffloadedPods(t *testing.T) {
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: 1, MetricsServer: true}, "home", "provider-eu")
	home, provider := clusters[0], clusters[1]

	step(t, "install, peer", func(t *testing.T) {
		g := NewWithT(t)
		_, err := stretchctl(t, "install", "--image", testImage, "--kubeconfig", home.Kubeconfig, "--cluster-name", "home")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = stretchctl(t, "install", "--image", testImage, "--kubeconfig", provider.Kubeconfig, "--cluster-name", "provider-eu")
		g.Expect(err).NotTo(HaveOccurred())
	})
	startManager(t, home)
	startManager(t, provider)
	step(t, "peer", func(t *testing.T) {
		g := NewWithT(t)
		_, err := stretchctl(t, "peer", "--kubeconfig", home.Kubeconfig, "--remote-kubeconfig", provider.Kubeconfig, "--wait", "--timeout", "2m")
		g.Expect(err).NotTo(HaveOccurred())
	})

	const ns = "shop"
	twin := offloadRemote(t, home, ns)

	// Each pod requests 100m of CPU and, as kwok emulates it on the
	// provider, uses 300m (and 64Mi): 300% of its request.
	const request, usage, memory = 100, 300, 64 << 20
	// What 'kubectl top' and metrics-server show is a rate over two scrapes
	// of counters: near the emulated figure, not always equal to it.
	const tolerance = usage / 10
	manifest := filepath.Join(t.TempDir(), "api.yaml")
	step(t, "a Deployment of one replica runs on the provider", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(os.WriteFile(manifest, []byte(busyDeployment(ns, request, usage, memory)), 0o600)).To(Succeed())
		_, err := kubectl(t, home, "apply", "-f", manifest)
		g.Expect(err).NotTo(HaveOccurred())
		waitOffloaded(t, g, home, provider, ns, twin, 1)
	})

	step(t, "kubectl top pod on the provider shows kwok's emulated usage", func(t *testing.T) {
		g := NewWithT(t)
		g.Eventually(func(g Gomega) {
			top := topPods(t, g, provider, twin)
			g.Expect(top).To(HaveLen(1))
			for _, p := range top {
				g.Expect(p.cpu).To(BeNumerically("~", usage, tolerance))
				g.Expect(p.memory).To(Equal(int64(memory)))
			}
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	})

	step(t, "kubectl top pod and node at home show it, through the virtual node's kubelet API", func(t *testing.T) {
		g := NewWithT(t)
		pod, err := kubectl(t, home, "get", "pods", "-n", ns, "-o=jsonpath={.items[0].metadata.name}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) {
			top := topPods(t, g, home, ns)
			g.Expect(top).To(HaveKey(pod))
			g.Expect(top[pod].cpu).To(BeNumerically("~", usage, tolerance))
			g.Expect(top[pod].memory).To(Equal(int64(memory)))
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		// The node's figures are its pods' (the one virtual node of the
		// manager): the NodeMetrics of metrics-server.
		g.Eventually(func(g Gomega) {
			out, err := kubectl(t, home, "top", "node", "stretch-provider-eu", "--no-headers")
			g.Expect(err).NotTo(HaveOccurred())
			fields := strings.Fields(out)
			g.Expect(fields).To(HaveLen(5)) // NAME CPU CPU% MEMORY MEMORY%
			g.Expect(fields[0]).To(Equal("stretch-provider-eu"))
			g.Expect(milliCPU(g, fields[1])).To(BeNumerically("~", usage, tolerance))
		}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	})

	step(t, "an HPA at home scales the Deployment on CPU; the new replicas are offloaded", func(t *testing.T) {
		g := NewWithT(t)
		// Target 100% of the request; at 300% the HPA wants
		// ceil(1 × 300 / 100) = 3 replicas, its maximum.
		hpa := filepath.Join(t.TempDir(), "hpa.yaml")
		g.Expect(os.WriteFile(hpa, []byte(fmt.Sprintf(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: api, namespace: %s}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 100}
`, ns)), 0o600)).To(Succeed())
		_, err := kubectl(t, home, "apply", "-f", hpa)
		g.Expect(err).NotTo(HaveOccurred())
		describe := func() string {
			out, _ := kubectl(t, home, "describe", "hpa", "api", "-n", ns)
			return out
		}
		g.Eventually(func(g Gomega) {
			out, err := kubectl(t, home, "get", "hpa", "api", "-n", ns, "-o=jsonpath={.status.desiredReplicas} {.status.currentMetrics[0].resource.current.averageUtilization}")
			g.Expect(err).NotTo(HaveOccurred())
			var desired, utilization int
			_, err = fmt.Sscan(out, &desired, &utilization)
			g.Expect(err).NotTo(HaveOccurred(), "HPA status %q", out)
			g.Expect(desired).To(Equal(3))
			g.Expect(utilization).To(BeNumerically("~", 100*usage/request, 100*tolerance/request))
		}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Succeed(), describe)
		waitOffloaded(t, g, home, provider, ns, twin, 3)
		// The new replicas are measured at home too.
		g.Eventually(func(g Gomega) {
			top := topPods(t, g, home, ns)
			g.Expect(top).To(HaveLen(3))
			for _, p := range top {
				g.Expect(p.cpu).To(BeNumerically("~", usage, tolerance))
			}
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	})
}

// waitOffloaded waits until Deployment api of ns has n ready replicas at
// home, every one on the provider's virtual node, and the twin n pods.
func waitOffloaded(t *testing.T, g Gomega, home, provider *kwok.Cluster, ns, twin string, n int) {
	t.Helper()
	g.Eventually(func(g Gomega) {
		out, err := kubectl(t, home, "get", "deployment", "api", "-n", ns, "-o=jsonpath={.status.readyReplicas}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(Equal(fmt.Sprint(n)))
		out, err = kubectl(t, home, "get", "pods", "-n", ns, "-o=jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{\"\\n\"}{end}")
		g.Expect(err).NotTo(HaveOccurred())
		lines := strings.Split(strings.TrimSpace(out), "\n")
		g.Expect(lines).To(HaveLen(n))
		g.Expect(lines).To(HaveEach("stretch-provider-eu Running"))
		out, err = kubectl(t, provider, "get", "pods", "-n", twin, "-o=name")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(strings.Fields(out)).To(HaveLen(n))
	}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
}

// podTop is one line of 'kubectl top pod'.
type podTop struct {
	cpu    int64 // millicores
	memory int64 // bytes
}

// topPods runs 'kubectl top pod' in ns of c and returns its lines by pod.
func topPods(t *testing.T, g Gomega, c *kwok.Cluster, ns string) map[string]podTop {
	t.Helper()
	out, err := kubectl(t, c, "top", "pod", "-n", ns, "--no-headers")
	g.Expect(err).NotTo(HaveOccurred())
	top := map[string]podTop{}
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		g.Expect(fields).To(HaveLen(3), "line %q", line) // NAME CPU MEMORY
		mem, err := resource.ParseQuantity(fields[2])
		g.Expect(err).NotTo(HaveOccurred())
		top[fields[0]] = podTop{cpu: milliCPU(g, fields[1]), memory: mem.Value()}
	}
	return top
}

// milliCPU parses a CPU figure of 'kubectl top' ("300m").
func milliCPU(g Gomega, s string) int64 {
	q, err := resource.ParseQuantity(s)
	g.Expect(err).NotTo(HaveOccurred())
	return q.MilliValue()
}

// busyDeployment is Deployment api of one replica whose container requests
// request millicores and, on a kwok node with metrics-server, uses usage
// millicores and memory bytes.
func busyDeployment(ns string, request, usage, memory int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api}
      annotations: {%s: %dm, %s: "%d"}
    spec:
      containers:
      - name: app
        image: registry.example/api:1
        resources: {requests: {cpu: %dm}}
`, ns, kwok.UsageCPUAnnotation, usage, kwok.UsageMemoryAnnotation, memory, request)
}
