// Package realnode tests the real-node harness end to end: a control plane
// and real nodes (containerd, runc, CNI, kubelet) on this machine, and pods
// of the test app on them, with the behaviours that kwok only fakes.
package realnode

import (
	"bytes"
	"context"
	"errors"
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
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/machine"
	rn "stretch.dev/stretch/internal/testenv/realnode"
)

const testappPackage = "./test/realnode/testapp"

// artifactDir is where logs go when a test fails: _artifacts/realnode/<test>.
func artifactDir(t *testing.T) string {
	root, err := machine.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "_artifacts", "realnode", filepath.FromSlash(t.Name()))
}

// keepArtifacts says whether to keep the logs: when the test failed, and
// always with STRETCH_KEEP_ARTIFACTS=1 (to compare with a failed run).
func keepArtifacts(t *testing.T) bool {
	return t.Failed() || os.Getenv("STRETCH_KEEP_ARTIFACTS") == "1"
}

// buildImages builds the pause and test app images.
func buildImages(ctx context.Context, t *testing.T, dir string) (pause, testapp *rn.Image) {
	t.Helper()
	start := time.Now()
	pause, err := rn.BuildPauseImage(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if testapp, err = rn.BuildImage(ctx, dir, testappPackage); err != nil {
		t.Fatal(err)
	}
	t.Logf("images %s and %s built in %s", pause.Ref, testapp.Ref, time.Since(start).Round(time.Millisecond))
	return pause, testapp
}

func TestPodOnRealNode(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	pause, testapp := buildImages(ctx, t, t.TempDir())

	// Two nodes: each its own containerd, kubelet, cgroup root, bridges.
	cluster := startClusters(t, rn.ClusterOptions{Name: "home", Nodes: 2, Pause: pause, Images: []*rn.Image{testapp}})[0]
	cp, nodes := cluster.ControlPlane, cluster.Nodes

	cs, err := kubernetes.NewForConfig(cp.Config)
	g.Expect(err).NotTo(HaveOccurred())
	const ns = "default"
	createReader(ctx, g, cs, ns, "testapp")
	// The scheduler places the test app on the second node; a pod on the
	// first stays running until the node stops, whose Stop must remove its
	// container, mounts and network namespace as well.
	pod := testappPod(ns, "testapp", testapp.Ref)
	pod.Spec.NodeSelector = map[string]string{corev1.LabelHostname: nodes[1].Name}
	keeper := testappPod(ns, "keeper", testapp.Ref)
	keeper.Spec.NodeName = nodes[0].Name
	start := time.Now()
	for _, p := range []*corev1.Pod{pod, keeper} {
		_, err = cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
	}

	// Running and Ready through the real readiness probe, in a container
	// that containerd runs.
	for _, p := range []*corev1.Pod{pod, keeper} {
		waitRunningReady(ctx, g, cs, ns, p.Name)
	}
	t.Logf("pods %s and %s Ready %s after their creation", pod.Name, keeper.Name, time.Since(start).Round(time.Millisecond))
	p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Spec.NodeName).To(Equal(nodes[1].Name))
	for _, node := range nodes {
		mem, err := node.ResidentMemory()
		g.Expect(err).NotTo(HaveOccurred())
		t.Logf("node %s with one pod: resident memory: %s", node.Name, formatMemory(mem, "kubelet", "containerd", "shims"))
	}

	kubectl := func(args ...string) (string, int, error) {
		return runKubectl(ctx, cp.Kubeconfig, append([]string{"-n", ns}, args...)...)
	}

	// kubectl logs: the API server streams the container log from the
	// kubelet, which reads the file containerd writes.
	g.Eventually(func(g Gomega) {
		out, code, err := kubectl("logs", pod.Name)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(BeZero(), out)
		g.Expect(out).To(ContainSubstring("testapp: started on"))
		// The token the kubelet projected authenticates the pod as its
		// ServiceAccount, which may read its own pod; it reached the API
		// server through the kubernetes Service, which kube-proxy
		// serves.
		g.Expect(out).To(MatchRegexp(`api: GET /api/v1/namespaces/default/pods/testapp: 200 OK: .*"name":"testapp"`))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	// kubectl exec passes the command's real exit code back.
	for _, want := range []int{0, 3, 42} {
		out, code, err := kubectl("exec", pod.Name, "--", "/testapp", "exit", strconv.Itoa(want))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(Equal(want), "kubectl exec ... -- /testapp exit %d: %s", want, out)
	}
	out, code, err := kubectl("exec", pod.Name, "--", "/testapp", "echo", "hello", "from", "exec")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(BeZero(), out)
	g.Expect(out).To(Equal("hello from exec\n"))
	// Exactly the ServiceAccount's rights: nothing in kube-system.
	out, code, err = kubectl("exec", pod.Name, "--", "/testapp", "api", "/api/v1/namespaces/kube-system/pods")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(1), out)
	g.Expect(out).To(ContainSubstring("403 Forbidden"))
	g.Expect(out).To(ContainSubstring("system:serviceaccount:default:testapp"))

	// The pod reaches the API server on the host's address and the other
	// node's pod, and nothing off the machine: it has no default route.
	keeperPod, err := cs.CoreV1().Pods(ns).Get(ctx, keeper.Name, metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	for _, addr := range []string{strings.TrimPrefix(cp.Server, "https://"), keeperPod.Status.PodIP + ":8080"} {
		out, code, err = kubectl("exec", pod.Name, "--", "/testapp", "dial", addr)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(code).To(BeZero(), out)
	}
	out, code, err = kubectl("exec", pod.Name, "--", "/testapp", "dial", "192.0.2.1:443")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(1), out)
	g.Expect(out).To(ContainSubstring("network is unreachable"))

	// Deletion delivers SIGTERM: follow the log until the container ends.
	follow := exec.CommandContext(ctx, mustBinary(t, "kubectl"), "--kubeconfig", cp.Kubeconfig, "-n", ns, "logs", "-f", pod.Name)
	var followed testenv.SyncBuffer
	follow.Stdout, follow.Stderr = &followed, &followed
	g.Expect(follow.Start()).To(Succeed())
	followDone := make(chan error, 1)
	go func() { followDone <- follow.Wait() }()
	g.Eventually(followed.Len).WithTimeout(30 * time.Second).Should(BeNumerically(">", 0))
	g.Expect(cs.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{})).To(Succeed())
	select {
	case err := <-followDone:
		g.Expect(err).NotTo(HaveOccurred(), followed.String())
	case <-time.After(time.Minute):
		_ = follow.Process.Kill()
		t.Fatalf("kubectl logs -f did not end within a minute of the deletion:\n%s", followed.String())
	}
	g.Expect(followed.String()).To(ContainSubstring("testapp: received SIGTERM, exiting 0 in 1s"))
	g.Expect(followed.String()).To(ContainSubstring("testapp: exiting 0 after SIGTERM"))
	g.Eventually(func() bool {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}).WithTimeout(time.Minute).Should(BeTrue())
}

// startClusters starts clusters in parallel, which the test stops,
// checking that nothing is left; their logs go to artifactDir when the test
// fails.
func startClusters(t *testing.T, opts ...rn.ClusterOptions) []*rn.Cluster {
	t.Helper()
	logs := artifactDir(t)
	clusters := make([]*rn.Cluster, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		o.LogDir, o.Logf = logs, t.Logf
		wg.Go(func() { clusters[i], errs[i] = rn.StartCluster(t.Context(), o) })
	}
	wg.Wait()
	for _, c := range clusters {
		if c == nil {
			continue
		}
		t.Cleanup(func() {
			if keepArtifacts(t) {
				_ = c.ExportLogs(logs)
				t.Logf("logs of cluster %s: %s", c.Name, logs)
			}
			if err := c.Stop(); err != nil {
				t.Error(err)
			}
			if err := c.Stop(); err != nil {
				t.Errorf("second Stop: %v", err)
			}
			if left := c.Leftovers(); len(left) > 0 {
				t.Errorf("cluster %s left after Stop: %v", c.Name, left)
			}
		})
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, c := range clusters {
		mem, err := c.ResidentMemory()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("cluster %s: %d nodes, started in %s (control plane %s); resident memory: %s", c.Name, len(c.Nodes),
			c.StartedIn.Round(time.Millisecond), c.ControlPlane.StartedIn.Round(time.Millisecond),
			formatMemory(mem, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "containerd", "shims"))
	}
	return clusters
}

// waitRunningReady waits until pod ns/name is Running with one container,
// Ready, that containerd runs.
func waitRunningReady(ctx context.Context, g Gomega, cs kubernetes.Interface, ns, name string) {
	g.Eventually(func(g Gomega) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod status: %+v", p.Status)
		g.Expect(p.Status.ContainerStatuses).To(HaveLen(1))
		cst := p.Status.ContainerStatuses[0]
		g.Expect(cst.Ready).To(BeTrue(), "container status: %+v", cst)
		g.Expect(cst.ContainerID).To(HavePrefix("containerd://"))
		g.Expect(p.Status.PodIP).NotTo(BeEmpty())
	}).WithTimeout(2 * time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
}

// runKubectl runs kubectl with kubeconfig and returns its output (stdout
// and stderr) and exit code; err is for a kubectl that could not run.
func runKubectl(ctx context.Context, kubeconfig string, args ...string) (string, int, error) {
	bin, err := machine.Binary("kubectl")
	if err != nil {
		return "", -1, err
	}
	return runCommand(ctx, bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

// runCommand runs bin and returns its output (stdout and stderr) and exit
// code; err is for a command that could not run.
func runCommand(ctx context.Context, bin string, args ...string) (string, int, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return out.String(), exitErr.ExitCode(), nil
	}
	if err != nil {
		return out.String(), -1, err
	}
	return out.String(), 0, nil
}

func mustBinary(t *testing.T, name string) string {
	path, err := machine.Binary(name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// testappPod runs the test app as ServiceAccount testapp, with a readiness
// probe on /readyz.
func testappPod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "testapp",
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           image,
				ImagePullPolicy: corev1.PullNever,
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env: []corev1.EnvVar{
					{Name: "TESTAPP_TERM_GRACE", Value: "1s"},
					{Name: "TESTAPP_API_PATH", Value: fmt.Sprintf("/api/v1/namespaces/%s/pods/%s", ns, name)},
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("http")}},
					PeriodSeconds: 1,
				},
				LivenessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
					PeriodSeconds: 5,
				},
			}},
		},
	}
}

// createReader makes ServiceAccount ns/name, allowed to get pods in ns.
func createReader(ctx context.Context, g Gomega, cs kubernetes.Interface, ns, name string) {
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
}

func formatMemory(mem map[string]int64, names ...string) string {
	var parts []string
	var total int64
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f MiB", name, float64(mem[name])/(1<<20)))
		total += mem[name]
	}
	return fmt.Sprintf("%s (total %.0f MiB)", strings.Join(parts, ", "), float64(total)/(1<<20))
}
