package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
)

// Pods of an offloaded namespace run on the providers: a Deployment of 20
// replicas with strategy Remote runs on two providers' kwok nodes and is Ready
// at home; it scales; a ConfigMap edit reaches the providers; kubectl logs and
// exec reach the remote containers; a provider's API server crash and a home
// manager restart mid-rollout leave no duplicate; deleting the Deployment
// leaves nothing remotely.
func TestPodsRunOnProviders(t *testing.T) {
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: 2, EnableCRDs: []string{"ClusterLogs", "ClusterExec"}},
		"home", "provider-eu", "provider-us")
	home, providers := clusters[0], clusters[1:]
	whole := t // what runs until the test ends is started on it, not on a step

	step(t, "install, peer with both providers", func(t *testing.T) {
		g := NewWithT(t)
		_, err := stretchctl(t, "install", "--image", testImage, "--kubeconfig", home.Kubeconfig, "--cluster-name", "home")
		g.Expect(err).NotTo(HaveOccurred())
		for i, p := range providers {
			_, err = stretchctl(t, "install", "--image", testImage, "--kubeconfig", p.Kubeconfig, "--cluster-name", []string{"provider-eu", "provider-us"}[i])
			g.Expect(err).NotTo(HaveOccurred())
		}
	})
	stopHome := startManager(t, home)
	for _, p := range providers {
		startManager(t, p)
	}
	step(t, "peer", func(t *testing.T) {
		g := NewWithT(t)
		for _, p := range providers {
			_, err := stretchctl(t, "peer", "--kubeconfig", home.Kubeconfig, "--remote-kubeconfig", p.Kubeconfig, "--wait", "--timeout", "2m")
			g.Expect(err).NotTo(HaveOccurred())
		}
	})

	const ns = "web"
	twins := map[*kwok.Cluster]string{}
	step(t, "offload the namespace with strategy Remote", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "create", "namespace", ns)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = stretchctl(t, "offload", "namespace", ns, "--kubeconfig", home.Kubeconfig, "--pod-offloading-strategy", "Remote", "--wait")
		g.Expect(err).NotTo(HaveOccurred())
		twin, err := kubectl(t, home, "get", "namespaceoffloadings", "offloading", "-n", ns, "-o=jsonpath={.status.remoteNamespaceName}")
		g.Expect(err).NotTo(HaveOccurred())
		for _, p := range providers {
			twins[p] = twin
		}
	})

	manifest := filepath.Join(t.TempDir(), "web.yaml")
	step(t, "a Deployment of 20 replicas runs on the providers and is Ready at home", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(os.WriteFile(manifest, []byte(deployment(ns, 20, "blue")), 0o600)).To(Succeed())
		_, err := kubectl(t, home, "apply", "-f", manifest)
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) string {
			out, err := kubectl(t, home, "get", "deployment", "web", "-n", ns, "-o=jsonpath={.status.readyReplicas}")
			g.Expect(err).NotTo(HaveOccurred())
			return out
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Equal("20"))
		out, err := kubectl(t, home, "get", "pods", "-n", ns, "-o=jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{\"\\n\"}{end}")
		g.Expect(err).NotTo(HaveOccurred())
		lines := strings.Split(strings.TrimSpace(out), "\n")
		g.Expect(lines).To(HaveLen(20))
		g.Expect(lines).To(HaveEach(MatchRegexp(`^stretch-provider-(eu|us) Running$`)))
		g.Eventually(func(g Gomega) int { return remotePods(t, g, providers, twins) }).WithTimeout(time.Minute).Should(Equal(20))
	})

	step(t, "scale down and up", func(t *testing.T) {
		g := NewWithT(t)
		for _, n := range []int{5, 12} {
			_, err := kubectl(t, home, "scale", "deployment", "web", "-n", ns, "--replicas", strconv.Itoa(n))
			g.Expect(err).NotTo(HaveOccurred())
			g.Eventually(func(g Gomega) int { return remotePods(t, g, providers, twins) }).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Equal(n))
		}
	})

	step(t, "a ConfigMap edit reaches every provider", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "create", "configmap", "settings", "-n", ns, "--from-literal=color=blue")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = kubectl(t, home, "patch", "configmap", "settings", "-n", ns, "-p", `{"data":{"color":"green"}}`)
		g.Expect(err).NotTo(HaveOccurred())
		for _, p := range providers {
			g.Eventually(func(g Gomega) string {
				out, _ := kubectl(t, p, "get", "configmap", "settings", "-n", twins[p], "-o=jsonpath={.data.color}")
				return out
			}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("green"))
		}
	})

	step(t, "kubectl logs and exec reach the remote container", func(t *testing.T) {
		g := NewWithT(t)
		dir := t.TempDir()
		current, previous := filepath.Join(dir, "current.log"), filepath.Join(dir, "previous.log")
		g.Expect(os.WriteFile(current, []byte(criLog("serving on :8080")), 0o644)).To(Succeed())
		g.Expect(os.WriteFile(previous, []byte(criLog("crashed: out of memory")), 0o644)).To(Succeed())
		for _, p := range providers {
			objects := filepath.Join(dir, p.Name+".yaml")
			g.Expect(os.WriteFile(objects, []byte(fmt.Sprintf(`apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata: {name: web}
spec:
  selector: {matchNamespaces: [%[1]s]}
  logs:
  - containers: [app]
    logsFile: %[2]s
    previousLogsFile: %[3]s
    follow: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata: {name: web}
spec:
  selector: {matchNamespaces: [%[1]s]}
  execs:
  - containers: [app]
    local: {workDir: %[4]s}
`, twins[p], current, previous, dir)), 0o600)).To(Succeed())
			_, err := kubectl(t, p, "apply", "-f", objects)
			g.Expect(err).NotTo(HaveOccurred())
		}
		pod, err := kubectl(t, home, "get", "pods", "-n", ns, "-o=jsonpath={.items[0].metadata.name}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) string {
			out, err := kubectl(t, home, "logs", "-n", ns, pod)
			g.Expect(err).NotTo(HaveOccurred())
			return out
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(ContainSubstring("serving on :8080"))
		// -f streams what the container writes next.
		follow := startKubectl(t, home, "logs", "-f", "-n", ns, pod)
		g.Eventually(follow.String).WithTimeout(30 * time.Second).Should(ContainSubstring("serving on :8080"))
		f, err := os.OpenFile(current, os.O_APPEND|os.O_WRONLY, 0)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = f.WriteString(criLog("GET /healthz 200"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(f.Close()).To(Succeed())
		g.Eventually(follow.String).WithTimeout(30 * time.Second).Should(ContainSubstring("GET /healthz 200"))
		follow.stop()

		out, err := kubectl(t, home, "logs", "--previous", "-n", ns, pod)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("crashed: out of memory"))
		out, err = kubectl(t, home, "exec", "-n", ns, pod, "--", "echo", "hello from the provider")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("hello from the provider"))
		// A failing command fails at home as it fails on the provider (kwok
		// reports the exit status in an error, where a kubelet sends the code).
		out, err = kubectl(t, home, "exec", "-n", ns, pod, "--", "sh", "-c", "exit 3")
		g.Expect(err).To(HaveOccurred())
		g.Expect(out).To(ContainSubstring("exit status 3"))
	})

	step(t, "a provider's API server crash: its node goes NotReady, then everything converges", func(t *testing.T) {
		g := NewWithT(t)
		us := providers[1]
		restart, err := us.KillAPIServer()
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) string {
			out, _ := kubectl(t, home, "get", "node", "stretch-provider-us", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			return out
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("False"))
		// Meanwhile the ConfigMap changes at home.
		_, err = kubectl(t, home, "patch", "configmap", "settings", "-n", ns, "-p", `{"data":{"color":"purple"}}`)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(restart()).To(Succeed())
		g.Eventually(func(g Gomega) string {
			out, _ := kubectl(t, home, "get", "node", "stretch-provider-us", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			return out
		}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Equal("True"))
		g.Eventually(func(g Gomega) string {
			out, _ := kubectl(t, us, "get", "configmap", "settings", "-n", twins[us], "-o=jsonpath={.data.color}")
			return out
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("purple"))
		g.Eventually(func(g Gomega) int { return remotePods(t, g, providers, twins) }).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Equal(12))
	})

	step(t, "a home manager restarted mid-rollout leaves no duplicate", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(os.WriteFile(manifest, []byte(deployment(ns, 12, "red")), 0o600)).To(Succeed())
		_, err := kubectl(t, home, "apply", "-f", manifest)
		g.Expect(err).NotTo(HaveOccurred())
		stopHome()
		startManager(whole, home)
		_, err = kubectl(t, home, "rollout", "status", "deployment/web", "-n", ns, "--timeout", "3m")
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) int { return remotePods(t, g, providers, twins) }).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Equal(12))
		for _, p := range providers {
			out, err := kubectl(t, p, "get", "pods", "-n", twins[p], "-o=jsonpath={range .items[*]}{.metadata.labels.color}{\"\\n\"}{end}")
			g.Expect(err).NotTo(HaveOccurred())
			for _, c := range strings.Fields(out) {
				g.Expect(c).To(Equal("red"), "a pod of the old ReplicaSet is left on %s", p.Name)
			}
		}
	})

	step(t, "deleting the Deployment leaves nothing remotely", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "delete", "deployment", "web", "-n", ns)
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) int { return remotePods(t, g, providers, twins) }).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(BeZero())
		g.Eventually(func(g Gomega) string {
			out, err := kubectl(t, home, "get", "pods", "-n", ns, "-o=name")
			g.Expect(err).NotTo(HaveOccurred())
			return out
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(BeEmpty())
	})
}

// streaming is a command whose output is read while it runs.
type streaming struct {
	mu   sync.Mutex
	out  bytes.Buffer
	stop func()
}

func (s *streaming) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *streaming) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// startKubectl runs kubectl against c in the background, until stop or the
// end of the test.
func startKubectl(t *testing.T, c *kwok.Cluster, args ...string) *streaming {
	t.Helper()
	s := &streaming{}
	cmd := exec.Command(binaries.kubectl, append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", t.TempDir()}, args...)...)
	cmd.Stdout, cmd.Stderr = s, s
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	s.stop = func() {
		if !done {
			done = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Logf("$ kubectl %s\n%s", strings.Join(args, " "), s.String())
		}
	}
	t.Cleanup(s.stop)
	return s
}

// remotePods counts the pods of the twins on the providers.
func remotePods(t *testing.T, g Gomega, providers []*kwok.Cluster, twins map[*kwok.Cluster]string) int {
	n := 0
	for _, p := range providers {
		out, err := kubectl(t, p, "get", "pods", "-n", twins[p], "-o=name")
		g.Expect(err).NotTo(HaveOccurred())
		n += len(strings.Fields(out))
	}
	return n
}

// deployment is a Deployment of the given replicas, whose pods carry color.
func deployment(ns string, replicas int, color string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %s}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, color: %s}}
    spec:
      containers:
      - name: app
        image: registry.example/web:%s
        env:
        - name: COLOR
          valueFrom: {configMapKeyRef: {name: settings, key: color, optional: true}}
`, ns, replicas, color, color)
}

// criLog is one line of a container log file, as the kubelet writes it.
func criLog(line string) string {
	return time.Now().UTC().Format(time.RFC3339Nano) + " stdout F " + line + "\n"
}
