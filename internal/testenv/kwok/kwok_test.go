package kwok_test

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned/typed/metrics/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

func TestCluster(t *testing.T) {
	g := NewWithT(t)
	podCIDR, serviceCIDR := netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("10.120.0.0/16")

	var c *kwok.Cluster
	logDir := t.TempDir()
	// Registered first, so it runs after the Stop that StartKwokClusterForTest registers.
	t.Cleanup(func() {
		if c != nil {
			g.Expect(c.Running()).To(BeEmpty(), "component processes left after Stop")
			g.Expect(c.Root()).NotTo(BeADirectory(), "workdir left after Stop")
			for _, name := range append(kwok.Components(), "kwokctl-create", "kwokctl-delete") {
				g.Expect(filepath.Join(logDir, name+".log")).To(BeAnExistingFile(), "exported to LogDir on Stop")
			}
		}
	})
	start := time.Now()
	c = testenv.StartKwokClusterForTest(t, "kwok", "kwok", kwok.Options{
		FakeNodes: 1, LogDir: logDir, EnableCRDs: kwok.ContainersCRDs,
		PodCIDR: podCIDR.String(), ServiceCIDR: serviceCIDR.String(),
	})
	ready := time.Since(start)
	mem, err := c.ResidentMemory()
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("kwok cluster %s: create to ready %s, resident memory %d MiB (%v)", c.Name, ready.Round(time.Millisecond), mem>>20, c.PIDs())
	g.Expect(c.Running()).To(ConsistOf(kwok.Components()), "every component runs")
	g.Expect(c.FakeNodes).To(Equal([]string{"kwok-node-0"}))

	t.Run("every component listens on 127.0.0.1 only", func(t *testing.T) {
		g := NewWithT(t)
		addrs := listenAddresses(t, c)
		for name := range c.PIDs() {
			g.Expect(addrs[name]).NotTo(BeEmpty(), "%s listens", name)
			for _, addr := range addrs[name] {
				host, _, err := net.SplitHostPort(addr)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(host).To(Equal("127.0.0.1"), "%s listens on %s", name, addr)
			}
		}
	})

	t.Run("a pod is scheduled onto the kwok node and runs", func(t *testing.T) {
		g := NewWithT(t)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kwok-pod"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}
		g.Expect(c.Client.Create(t.Context(), pod)).To(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(c.Client.Get(t.Context(), client.ObjectKeyFromObject(pod), pod)).To(Succeed())
			g.Expect(pod.Spec.NodeName).To(Equal("kwok-node-0"))
			g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
		}).WithTimeout(time.Minute).WithPolling(100 * time.Millisecond).Should(Succeed())
		ip, err := netip.ParseAddr(pod.Status.PodIP)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(podCIDR.Contains(ip)).To(BeTrue(), "pod IP %s in PodCIDR %s", ip, podCIDR)

		node := &corev1.Node{}
		g.Expect(c.Client.Get(t.Context(), client.ObjectKey{Name: "kwok-node-0"}, node)).To(Succeed())
		g.Expect(node.Status.NodeInfo.OSImage).To(Equal(kwok.NodeOSImage))
		g.Expect(node.Status.NodeInfo.ContainerRuntimeVersion).To(HavePrefix("kwok-"), "kwok fills in the rest")
	})

	t.Run("Services get cluster IPs from ServiceCIDR", func(t *testing.T) {
		g := NewWithT(t)
		svc := &corev1.Service{}
		g.Expect(c.Client.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: "kubernetes"}, svc)).To(Succeed())
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(serviceCIDR.Contains(ip)).To(BeTrue(), "cluster IP %s in ServiceCIDR %s", ip, serviceCIDR)
	})

	t.Run("kubectl logs and exec answer as Containers says", func(t *testing.T) {
		g := NewWithT(t)
		dir := t.TempDir()
		logs, previous := filepath.Join(dir, "app.log"), filepath.Join(dir, "previous.log")
		at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
		g.Expect(os.WriteFile(logs, []byte(kwok.CRILog(at, "listening on :8080", "ready")), 0o644)).To(Succeed())
		g.Expect(os.WriteFile(previous, []byte(kwok.CRILog(at, "out of memory")), 0o644)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(dir, "greeting"), []byte("hello from the container's folder\n"), 0o644)).To(Succeed())
		objects, err := kwok.Containers{
			Name: "app", Namespaces: []string{"default"},
			LogsFile: logs, PreviousLogsFile: previous,
			ExecDir: dir, ExecEnv: map[string]string{"WHERE": "kwok-node-0"},
		}.Objects()
		g.Expect(err).NotTo(HaveOccurred())
		for _, o := range objects {
			g.Expect(c.Client.Create(t.Context(), o)).To(Succeed())
		}
		kubectl, err := machine.Binary("kubectl")
		g.Expect(err).NotTo(HaveOccurred())
		run := func(args ...string) (string, error) {
			out, err := exec.CommandContext(t.Context(), kubectl, append([]string{"--kubeconfig", c.Kubeconfig, "-n", "default"}, args...)...).CombinedOutput()
			return string(out), err
		}
		// kwok reads the objects through an informer: the first answers may
		// predate them.
		g.Eventually(func(g Gomega) string {
			out, err := run("logs", "kwok-pod")
			g.Expect(err).NotTo(HaveOccurred(), out)
			return out
		}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Equal("listening on :8080\nready\n"))
		out, err := run("logs", "--previous", "kwok-pod")
		g.Expect(err).NotTo(HaveOccurred(), out)
		g.Expect(out).To(Equal("out of memory\n"))
		g.Eventually(func(g Gomega) string {
			out, err := run("exec", "kwok-pod", "--", "sh", "-c", `echo "on $WHERE: $(cat greeting)"`)
			g.Expect(err).NotTo(HaveOccurred(), out)
			return out
		}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Equal("on kwok-node-0: hello from the container's folder\n"))
	})

	t.Run("kwok leaves a node without its annotation alone", func(t *testing.T) {
		g := NewWithT(t)
		node := kwok.NewNode("not-kwok")
		delete(node.Annotations, kwok.NodeAnnotation)
		g.Expect(c.Client.Create(t.Context(), node)).To(Succeed())
		g.Consistently(func(g Gomega) {
			g.Expect(c.Client.Get(t.Context(), client.ObjectKeyFromObject(node), node)).To(Succeed())
			g.Expect(kwok.NodeReady(node)).To(BeFalse(), "conditions: %v", node.Status.Conditions)
			g.Expect(node.Status.Addresses).To(BeEmpty(), "kwok sets the addresses of the nodes it manages")
		}).WithTimeout(5 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	})
}

// Clusters started at once get distinct ports (kwokctl alone would give them
// the same ones) and both work; the options reach kwokctl.
func TestClustersInParallel(t *testing.T) {
	g := NewWithT(t)
	clusters := testenv.StartKwokClustersForTest(t, "kwok", kwok.Options{
		EnableCRDs:       []string{"ClusterLogs", "ClusterExec"},
		DisableQPSLimits: true,
	}, "parallel-a", "parallel-b")

	ports := map[int]string{}
	for _, c := range clusters {
		for _, p := range c.Ports() {
			g.Expect(ports).NotTo(HaveKey(p), "port %d of %s", p, c.Name)
			ports[p] = c.Name
		}
		for name, addrs := range listenAddresses(t, c) {
			for _, addr := range addrs {
				_, port, _ := net.SplitHostPort(addr)
				p, _ := strconv.Atoi(port)
				g.Expect(ports).To(HaveKeyWithValue(p, c.Name), "%s of %s listens on %s", name, c.Name, addr)
			}
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(c.Client.Get(t.Context(), client.ObjectKey{Name: "clusterlogs.kwok.x-k8s.io"}, crd)).To(Succeed())
		g.Expect(c.Config.QPS).To(BeNumerically("<", 0))
	}
}

// Options that kwokctl or a component would refuse late are refused before
// anything starts, saying what to give instead; so are Containers whose
// paths kwok would resolve against its own directory.
func TestOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts kwok.Options
		want string
	}{
		{"not a range", kwok.Options{PodCIDR: "10.20.0.0"}, `PodCIDR "10.20.0.0": `},
		{"host bits", kwok.Options{ServiceCIDR: "10.120.0.1/16"}, `ServiceCIDR "10.120.0.1/16" has host bits set: give the range's first address, 10.120.0.0/16`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, err := kwok.Start(t.Context(), "refused", tc.opts)
			g.Expect(c).To(BeNil())
			g.Expect(err).To(MatchError(ContainSubstring("kwok cluster refused: " + tc.want)))
		})
	}
	for _, tc := range []struct {
		name       string
		containers kwok.Containers
		want       []string
	}{
		{"relative paths", kwok.Containers{Name: "app", LogsFile: "app.log", PreviousLogsFile: "old.log", ExecDir: "."},
			[]string{`LogsFile "app.log" is not an absolute path`, `PreviousLogsFile "old.log"`, `ExecDir "."`}},
		{"no name", kwok.Containers{LogsFile: "/a.log", ExecDir: "/"}, []string{"Name is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := tc.containers.Manifest()
			for _, want := range tc.want {
				g.Expect(err).To(MatchError(ContainSubstring(want)))
			}
		})
	}
}

// A start that fails (here: times out inside 'kwokctl create') says why,
// with the component logs, and leaves no process behind.
func TestFailedStartLeavesNothing(t *testing.T) {
	g := NewWithT(t)
	_, err := kwok.Start(t.Context(), "too-slow", kwok.Options{Timeout: 3 * time.Second, Logf: t.Logf})
	g.Expect(err).To(MatchError(ContainSubstring("starting kwok cluster too-slow-")))
	g.Expect(err.Error()).To(ContainSubstring("--- kube-apiserver.log (last"))
	t.Log(err)
	g.Expect(findProcessesMatching("/stretch-kwok-too-slow-")).To(BeEmpty())
}

// findProcessesMatching returns the command lines that contain s.
func findProcessesMatching(s string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), s) {
			if _, running := machine.ProcessStart(mustAtoi(e.Name())); running {
				found = append(found, strings.ReplaceAll(string(cmdline), "\x00", " "))
			}
		}
	}
	return found
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// listenAddresses returns the TCP addresses each component of c listens on,
// like 'ss -ltnp': LISTEN sockets of /proc/net/tcp{,6} whose inode is an open
// file of the component's process.
func listenAddresses(t *testing.T, c *kwok.Cluster) map[string][]string {
	t.Helper()
	listening := map[string]string{} // socket inode -> address
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			listening[f[9]] = procNetAddress(t, f[1])
		}
	}
	addrs := map[string][]string{}
	for name, pid := range c.PIDs() {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if err != nil {
				continue
			}
			inode, ok := strings.CutPrefix(target, "socket:[")
			if !ok {
				continue
			}
			if addr, ok := listening[strings.TrimSuffix(inode, "]")]; ok {
				addrs[name] = append(addrs[name], addr)
			}
		}
	}
	return addrs
}

// procNetAddress decodes "0100007F:4E20" (IPv4) or 32 hex digits and a port
// (IPv6): the address is in 32-bit words of host (little-endian) byte order.
func procNetAddress(t *testing.T, s string) string {
	hexIP, hexPort, _ := strings.Cut(s, ":")
	raw, err := hex.DecodeString(hexIP)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return net.JoinHostPort(net.IP(raw).String(), strconv.FormatUint(port, 10))
}

// A cluster with metrics-server serves metrics.k8s.io: kwok's emulated usage
// of a pod (its annotations) reaches the PodMetrics and the NodeMetrics, and
// metrics-server listens on 127.0.0.1 only.
func TestMetricsServer(t *testing.T) {
	g := NewWithT(t)
	c := testenv.StartKwokClusterForTest(t, "kwok", "metrics", kwok.Options{FakeNodes: 1, MetricsServer: true})
	g.Expect(c.Running()).To(ContainElement("metrics-server"))
	for _, addr := range listenAddresses(t, c)["metrics-server"] {
		g.Expect(addr).To(HavePrefix("127.0.0.1:"))
	}
	// It reaches the API server and the kubelets with its own token, as
	// in a real cluster, not as the admin.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.PIDs()["metrics-server"]))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.Split(string(cmdline), "\x00")).To(ContainElement("--kubeconfig=" + filepath.Join(c.Root(), "metrics-server", "kubeconfig")))

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "busy", Annotations: map[string]string{
			kwok.UsageCPUAnnotation: "250m", kwok.UsageMemoryAnnotation: "64Mi",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	g.Expect(c.Client.Create(t.Context(), pod)).To(Succeed())
	var metrics *metricsclient.MetricsV1beta1Client
	metrics, err = metricsclient.NewForConfig(c.Config)
	g.Expect(err).NotTo(HaveOccurred())
	// Two scrapes make a rate: a few resolutions after the pod runs.
	g.Eventually(func(g Gomega) {
		m, err := metrics.PodMetricses("default").Get(t.Context(), "busy", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(m.Containers).To(HaveLen(1))
		g.Expect(m.Containers[0].Usage.Cpu().MilliValue()).To(BeNumerically("~", 250, 5))
		g.Expect(m.Containers[0].Usage.Memory().Value()).To(Equal(int64(64 << 20)))
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	g.Eventually(func(g Gomega) {
		m, err := metrics.NodeMetricses().Get(t.Context(), "kwok-node-0", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(m.Usage.Cpu().MilliValue()).To(BeNumerically(">=", 245))
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
}
