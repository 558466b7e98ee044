package realnode

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/utils/ptr"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/machine"
	rn "stretch.dev/stretch/internal/testenv/realnode"
)

const (
	// managerPackage is built into the image the chart runs.
	managerPackage = "./cmd/stretch-controller-manager"
	// managerNamespace and managerName are the chart's.
	managerNamespace = "stretch-system"
	managerName      = "stretch-controller-manager"
	providerName     = "provider"
	// appNamespace is offloaded with Remote, spreadNamespace with
	// LocalAndRemote.
	appNamespace    = "app"
	spreadNamespace = "spread"
	// evictAfter is how long the pods of spreadNamespace tolerate a NotReady
	// or unreachable node: short, so that the test does not wait the
	// default five minutes.
	evictAfter = 5
)

// offloadWorld is a home and a provider cluster of real nodes, on hosts of
// their own, each running the manager from the chart as pods.
type offloadWorld struct {
	home, provider     *rn.Cluster
	homeCS, providerCS kubernetes.Interface
	testapp            *rn.Image
	stretchctl         string
	homeID             string
	// spreadOffloaded tells that spreadNamespace exists and is offloaded.
	spreadOffloaded bool
}

// TestOffloadOnRealNodes is the seed's story with real containers: the
// managers run as pods from the chart; a Deployment of the test app is
// offloaded (Remote) and its pods run in containerd on the provider, with
// logs, exec, volumes, the home ServiceAccount token, signals, restarts and
// exit codes all seen from home; the leader manager pod dies and the other
// takes over; a Service over replicas at home and on the provider answers
// from every replica on both sides once the clusters' pod ranges are routed
// to each other; the link between the clusters is cut for longer than the
// node grace period and healed.
func TestOffloadOnRealNodes(t *testing.T) {
	w := setUpOffload(t)

	step(t, "the managers run as pods and their webhooks answer through their Service", w.managersAsPods)
	step(t, "a Deployment offloaded with Remote runs in real containers", w.deploymentOffloaded)
	step(t, "logs and exec reach the remote containers", w.logsAndExec)
	step(t, "port-forward and attach reach the remote containers", w.portForwardAndAttach)
	step(t, "the home ServiceAccount token reaches the home API server with its rights only", w.homeToken)
	step(t, "restarts, exit codes and OOMKilled show at home", w.restartsAndExitCodes)
	step(t, "deleting a pod at home delivers SIGTERM and honours the grace period", w.gracefulDeletion)
	step(t, "killing the leader manager pod moves the leadership and the kubelet endpoint", w.leaderFailover)
	step(t, "Services answer across the clusters once their pod ranges are routed", w.servicesAcrossClusters)
	step(t, "a partition longer than the node grace period, then a heal", w.partition)
}

func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

func setUpOffload(t *testing.T) *offloadWorld {
	ctx := t.Context()
	bin, err := machine.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	w := &offloadWorld{stretchctl: filepath.Join(bin, "stretchctl")}
	if _, err := os.Stat(w.stretchctl); err != nil {
		t.Fatalf("%v: run 'make build' first (the test runs the built stretchctl)", err)
	}
	dir := t.TempDir()
	var pause *rn.Image
	pause, w.testapp = buildImages(ctx, t, dir)
	start := time.Now()
	manager, err := rn.BuildImage(ctx, dir, managerPackage)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s built in %s", manager.Ref, time.Since(start).Round(time.Millisecond))
	images := []*rn.Image{w.testapp, manager}
	// Two home nodes: the manager's replicas spread over them, and the
	// pods evicted from the virtual node have somewhere to go.
	clusters := startClusters(t,
		rn.ClusterOptions{Name: "home", Nodes: 2, Pause: pause, Images: images},
		rn.ClusterOptions{Name: providerName, Pause: pause, Images: images})
	w.home, w.provider = clusters[0], clusters[1]
	// Before the clusters stop (cleanups run last first): the managers'
	// logs, which go with their pods.
	t.Cleanup(func() {
		if !keepArtifacts(t) {
			return
		}
		for _, c := range clusters {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, _, err := runKubectl(ctx, c.Kubeconfig, "logs", "-n", managerNamespace, "-l", "app.kubernetes.io/name="+managerName, "--prefix", "--tail=-1")
			cancel()
			if err == nil {
				err = os.MkdirAll(artifactDir(t), 0o755)
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(artifactDir(t), c.Name+"-managers.log"), []byte(out), 0o644)
			}
			if err != nil {
				t.Logf("saving the managers' logs of %s: %v", c.Name, err)
			}
		}
	})
	for _, c := range []struct {
		cs  *kubernetes.Interface
		rnc *rn.Cluster
	}{{&w.homeCS, w.home}, {&w.providerCS, w.provider}} {
		cs, err := kubernetes.NewForConfig(c.rnc.Config)
		if err != nil {
			t.Fatal(err)
		}
		*c.cs = cs
	}

	// The chart, with the image imported into every node, in both
	// clusters; the API server URLs are the hosts' addresses.
	for _, c := range []*rn.Cluster{w.home, w.provider} {
		w.run(t, "install", "--kubeconfig", c.Kubeconfig, "--image", manager.Ref, "--cluster-name", c.Name,
			"--api-server-url", c.Server, "--set", "image.pullPolicy=Never", "--wait", "--timeout", "3m")
	}
	w.run(t, "peer", "--kubeconfig", w.home.Kubeconfig, "--remote-kubeconfig", w.provider.Kubeconfig, "--wait", "--timeout", "3m")
	cm, err := w.homeCS.CoreV1().ConfigMaps(wellknown.SystemNamespace).Get(ctx, wellknown.IdentityConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromConfigMap(cm)
	if err != nil {
		t.Fatal(err)
	}
	w.homeID = id.ID
	return w
}

// run runs stretchctl and fails the test if it fails.
func (w *offloadWorld) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, code, err := runCommand(ctx, w.stretchctl, args...)
	t.Logf("$ stretchctl %s\n%s", strings.Join(args, " "), out)
	if err != nil || code != 0 {
		t.Fatalf("stretchctl %s: exit %d, %v", args[0], code, err)
	}
	return out
}

// kubectl runs kubectl against c and returns its output and exit code.
func (w *offloadWorld) kubectl(t *testing.T, c *rn.Cluster, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, code, err := runKubectl(ctx, c.Kubeconfig, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out, code
}

func (w *offloadWorld) managersAsPods(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	for _, c := range []struct {
		rnc *rn.Cluster
		cs  kubernetes.Interface
	}{{w.home, w.homeCS}, {w.provider, w.providerCS}} {
		d, err := c.cs.AppsV1().Deployments(managerNamespace).Get(ctx, managerName, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(d.Status.ReadyReplicas).To(BeEquivalentTo(2), "cluster %s", c.rnc.Name)
		pods := w.managerPods(g, c.cs)
		g.Expect(pods).To(HaveLen(2))
		for _, p := range pods {
			g.Expect(p.Status.ContainerStatuses[0].ContainerID).To(HavePrefix("containerd://"), "pod %s", p.Name)
		}
		// The NamespaceOffloading webhook, reached by the API server
		// through the stretch-webhook Service (kube-proxy's rules on the
		// host), refuses a name other than offloading in its own words.
		manifest := filepath.Join(t.TempDir(), "named.yaml")
		g.Expect(os.WriteFile(manifest, []byte(`apiVersion: offloading.stretch.dev/v1alpha1
kind: NamespaceOffloading
metadata: {name: named, namespace: default}
spec: {}
`), 0o644)).To(Succeed())
		out, code := w.kubectl(t, c.rnc, "apply", "--dry-run=server", "-f", manifest)
		g.Expect(code).NotTo(BeZero(), out)
		g.Expect(out).To(ContainSubstring(`the name must be "offloading"`), "cluster %s", c.rnc.Name)
	}
}

// managerPods returns the manager's running pods.
func (w *offloadWorld) managerPods(g Gomega, cs kubernetes.Interface) []corev1.Pod {
	pods, err := cs.CoreV1().Pods(managerNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + managerName})
	g.Expect(err).NotTo(HaveOccurred())
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out
}

// offloadNamespace creates home namespace ns, offloads it with the pod
// offloading strategy and makes its ServiceAccount testapp, which may get
// and list its pods.
func (w *offloadWorld) offloadNamespace(t *testing.T, g *WithT, ns, strategy string) {
	t.Helper()
	_, err := w.homeCS.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	w.run(t, "offload", "namespace", ns, "--kubeconfig", w.home.Kubeconfig, "--pod-offloading-strategy", strategy, "--wait")
	createLister(t.Context(), g, w.homeCS, ns, "testapp")
}

func (w *offloadWorld) deploymentOffloaded(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	w.offloadNamespace(t, g, appNamespace, "Remote")
	_, err := w.homeCS.CoreV1().ConfigMaps(appNamespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"color": "blue"},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = w.homeCS.CoreV1().Secrets(appNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "credentials"}, StringData: map[string]string{"password": "s3cret"},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = w.homeCS.AppsV1().Deployments(appNamespace).Create(ctx, testappDeployment(appNamespace, w.testapp.Ref, 2), metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	g.Eventually(func(g Gomega) {
		pods := w.homePods(g, appNamespace, "app=testapp")
		g.Expect(pods).To(HaveLen(2))
		for _, p := range pods {
			g.Expect(p.Spec.NodeName).To(Equal(peeringv1alpha1.VirtualNodeName(providerName)), "pod %s", p.Name)
			g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod %s: %+v", p.Name, p.Status)
			g.Expect(p.Status.ContainerStatuses).To(HaveLen(1))
			cst := p.Status.ContainerStatuses[0]
			g.Expect(cst.ContainerID).To(HavePrefix("containerd://"), "pod %s", p.Name)
			// Ready through the readiness probe that the provider's
			// kubelet runs.
			g.Expect(cst.Ready).To(BeTrue(), "pod %s: %+v", p.Name, cst)
		}
		remote := w.remotePods(g, appNamespace)
		g.Expect(remote).To(HaveLen(2))
		for _, p := range remote {
			g.Expect(p.Spec.NodeName).To(Equal(w.provider.Nodes[0].Name))
		}
	}).WithTimeout(3*time.Minute).WithPolling(time.Second).Should(Succeed(), "2 pods Running and Ready at home, 2 containers on the provider's node")
}

func (w *offloadWorld) logsAndExec(t *testing.T) {
	g := NewWithT(t)
	pod := w.homePods(g, appNamespace, "app=testapp")[0].Name
	out, code := w.kubectl(t, w.home, "-n", appNamespace, "logs", pod)
	g.Expect(code).To(BeZero(), out)
	g.Expect(out).To(ContainSubstring("testapp: started on"))

	for _, want := range []int{0, 3, 42} {
		out, code := w.kubectl(t, w.home, "-n", appNamespace, "exec", pod, "--", "/testapp", "exit", strconv.Itoa(want))
		g.Expect(code).To(Equal(want), "kubectl exec ... -- /testapp exit %d: %s", want, out)
	}
	// The ConfigMap and the Secret, reflected to the provider, as volumes
	// and as env.
	out, code = w.kubectl(t, w.home, "-n", appNamespace, "exec", pod, "--", "/testapp", "cat", "/etc/settings/color", "/etc/credentials/password")
	g.Expect(code).To(BeZero(), out)
	g.Expect(out).To(Equal("blues3cret"))
	out, code = w.kubectl(t, w.home, "-n", appNamespace, "exec", pod, "--", "/testapp", "env", "COLOR", "PASSWORD")
	g.Expect(code).To(BeZero(), out)
	g.Expect(out).To(Equal("COLOR=blue\nPASSWORD=s3cret\n"))

	// With a TTY, as 'kubectl exec -it' asks for it: the container sees
	// terminals, and the terminal turns \n into \r\n.
	stdout := w.execTTY(t, appNamespace, pod, "/testapp", "tty")
	g.Expect(stdout).To(Equal("stdin terminal: true, stdout terminal: true\r\n"))
}

// portForwardAndAttach runs kubectl port-forward to the test app's HTTP
// server in an offloaded pod, and kubectl attach to a pod whose main
// process logs its stdin (docs/design.md §4.24).
func (w *offloadWorld) portForwardAndAttach(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	pod := w.homePods(g, appNamespace, "app=testapp")[0]
	remote := w.remotePodOf(g, pod)

	forward := exec.CommandContext(ctx, mustBinary(t, "kubectl"), "--kubeconfig", w.home.Kubeconfig, "-n", appNamespace,
		"port-forward", "--address", "127.0.0.1", "pod/"+pod.Name, ":8080")
	var forwarded testenv.SyncBuffer
	forward.Stdout, forward.Stderr = &forwarded, &forwarded
	g.Expect(forward.Start()).To(Succeed())
	defer func() {
		_ = forward.Process.Kill()
		_ = forward.Wait()
	}()
	var local string
	g.Eventually(func(g Gomega) {
		m := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 8080`).FindStringSubmatch(forwarded.String())
		g.Expect(m).To(HaveLen(2), forwarded.String())
		local = m[1]
	}).WithTimeout(30 * time.Second).Should(Succeed())
	client := &http.Client{Timeout: 10 * time.Second}
	// Several connections, each its own stream to the remote pod, which
	// answers with its hostname: the remote pod's name.
	for range 3 {
		resp, err := client.Get("http://" + local + "/")
		g.Expect(err).NotTo(HaveOccurred(), forwarded.String())
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(body)).To(Equal("testapp on " + remote.Name + "\n"))
	}
	g.Eventually(func() string {
		out, _ := w.kubectl(t, w.home, "-n", appNamespace, "logs", pod.Name)
		return out
	}).WithTimeout(30*time.Second).Should(ContainSubstring("request GET / from 127.0.0.1:"), "the request reached the container through its loopback, as port-forward does")

	attached := testappPod(appNamespace, "attached", w.testapp.Ref)
	c := &attached.Spec.Containers[0]
	c.Stdin = true
	c.Env = append(c.Env, corev1.EnvVar{Name: "TESTAPP_STDIN", Value: "echo"})
	_, err := w.homeCS.CoreV1().Pods(appNamespace).Create(ctx, attached, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	defer func() {
		_ = w.homeCS.CoreV1().Pods(appNamespace).Delete(context.Background(), attached.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}()
	waitRunningReady(ctx, g, w.homeCS, appNamespace, attached.Name)
	attach := exec.CommandContext(ctx, mustBinary(t, "kubectl"), "--kubeconfig", w.home.Kubeconfig, "-n", appNamespace, "attach", "-i", attached.Name)
	stdin, err := attach.StdinPipe()
	g.Expect(err).NotTo(HaveOccurred())
	var out testenv.SyncBuffer
	attach.Stdout, attach.Stderr = &out, &out
	g.Expect(attach.Start()).To(Succeed())
	defer func() {
		_ = attach.Process.Kill()
		_ = attach.Wait()
	}()
	_, err = io.WriteString(stdin, "hello from home\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(out.String).WithTimeout(30*time.Second).Should(ContainSubstring("testapp: stdin: hello from home"),
		"the line went to the remote container's stdin, and its output came back")
	_, err = io.WriteString(stdin, "and another\n")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(out.String).WithTimeout(30 * time.Second).Should(ContainSubstring("testapp: stdin: and another"))
}

// execTTY runs a command in a home pod with a TTY, as kubectl exec -it does,
// and returns what the terminal printed.
func (w *offloadWorld) execTTY(t *testing.T, ns, pod string, command ...string) string {
	t.Helper()
	req := w.homeCS.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Command: command, Stdin: true, Stdout: true, TTY: true}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(w.home.Config, "POST", req.URL())
	if err != nil {
		t.Fatal(err)
	}
	var out testenv.SyncBuffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// A terminal's input stays open while the command runs: closed at
	// once, it would hang the command up before it prints.
	stdin, closeStdin := io.Pipe()
	defer closeStdin.Close()
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &out, Tty: true}); err != nil {
		t.Fatalf("exec -it %s: %v (output %q)", strings.Join(command, " "), err, out.String())
	}
	return out.String()
}

func (w *offloadWorld) homeToken(t *testing.T) {
	g := NewWithT(t)
	pods := w.homePods(g, appNamespace, "app=testapp")
	// The pod lists the pods of its home namespace: the home API server
	// answered (the provider has no namespace app), with the home
	// ServiceAccount's token.
	out, code := w.kubectl(t, w.home, "-n", appNamespace, "exec", pods[0].Name, "--", "/testapp", "api", "/api/v1/namespaces/"+appNamespace+"/pods")
	g.Expect(code).To(BeZero(), out)
	g.Expect(out).To(ContainSubstring("200 OK"))
	for _, p := range pods {
		g.Expect(out).To(ContainSubstring(`"name":"`+p.Name+`"`), "the home pods are listed")
	}
	g.Expect(out).To(ContainSubstring(`"nodeName":"` + peeringv1alpha1.VirtualNodeName(providerName) + `"`))
	// And nothing more than its ServiceAccount may.
	out, code = w.kubectl(t, w.home, "-n", appNamespace, "exec", pods[0].Name, "--", "/testapp", "api", "/api/v1/namespaces/kube-system/pods")
	g.Expect(code).To(Equal(1), out)
	g.Expect(out).To(ContainSubstring("403 Forbidden"))
	g.Expect(out).To(ContainSubstring("system:serviceaccount:" + appNamespace + ":testapp"))
}

func (w *offloadWorld) restartsAndExitCodes(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	crasher := testappPod(appNamespace, "crasher", w.testapp.Ref)
	crasher.Spec.ServiceAccountName = "testapp"
	crasher.Spec.Containers[0].Env = append(crasher.Spec.Containers[0].Env,
		corev1.EnvVar{Name: "TESTAPP_EXIT_CODE", Value: "3"}, corev1.EnvVar{Name: "TESTAPP_EXIT_AFTER", Value: "2s"})
	crasher.Spec.Containers[0].ReadinessProbe, crasher.Spec.Containers[0].LivenessProbe = nil, nil
	hog := testappPod(appNamespace, "hog", w.testapp.Ref)
	hog.Spec.RestartPolicy = corev1.RestartPolicyNever
	hog.Spec.Containers[0].ReadinessProbe, hog.Spec.Containers[0].LivenessProbe = nil, nil
	hog.Spec.Containers[0].Env = append(hog.Spec.Containers[0].Env, corev1.EnvVar{Name: "TESTAPP_ALLOC_MIB", Value: "256"})
	hog.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}
	for _, p := range []*corev1.Pod{crasher, hog} {
		_, err := w.homeCS.CoreV1().Pods(appNamespace).Create(ctx, p, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
	}

	g.Eventually(func(g Gomega) {
		p, err := w.homeCS.CoreV1().Pods(appNamespace).Get(ctx, "crasher", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Status.ContainerStatuses).To(HaveLen(1))
		cst := p.Status.ContainerStatuses[0]
		g.Expect(cst.RestartCount).To(BeNumerically(">=", 2), "%+v", cst)
		g.Expect(cst.LastTerminationState.Terminated).NotTo(BeNil(), "%+v", cst)
		g.Expect(cst.LastTerminationState.Terminated.ExitCode).To(BeEquivalentTo(3))
		g.Expect(cst.LastTerminationState.Terminated.Reason).To(Equal("Error"))
	}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(Succeed(), "the crasher restarts, exit code 3, seen at home")
	out, code := w.kubectl(t, w.home, "-n", appNamespace, "logs", "crasher", "--previous")
	g.Expect(code).To(BeZero(), out)
	g.Expect(out).To(ContainSubstring("testapp: exiting with code 3 as TESTAPP_EXIT_CODE asks"))

	g.Eventually(func(g Gomega) {
		p, err := w.homeCS.CoreV1().Pods(appNamespace).Get(ctx, "hog", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Status.Phase).To(Equal(corev1.PodFailed), "%+v", p.Status)
		g.Expect(p.Status.ContainerStatuses).To(HaveLen(1))
		term := p.Status.ContainerStatuses[0].State.Terminated
		g.Expect(term).NotTo(BeNil())
		g.Expect(term.Reason).To(Equal("OOMKilled"))
		g.Expect(term.ExitCode).To(BeEquivalentTo(137))
	}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(Succeed(), "the hog is OOMKilled, seen at home")
	for _, name := range []string{"crasher", "hog"} {
		g.Expect(w.homeCS.CoreV1().Pods(appNamespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})).To(Succeed())
	}
}

func (w *offloadWorld) gracefulDeletion(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	// A pod that stops within its grace period: SIGTERM, 3 s of work, exit 0.
	pod := w.homePods(g, appNamespace, "app=testapp")[0]
	logs, grace := w.deleteFollowing(t, g, pod)
	g.Expect(grace).To(BeEquivalentTo(30), "the remote pod is deleted with the home pod's grace period")
	g.Expect(logs).To(ContainSubstring("testapp: received SIGTERM, exiting 0 in 3s"))
	g.Expect(logs).To(ContainSubstring("testapp: exiting 0 after SIGTERM"))
	w.expectRolledOut(g, appNamespace, 2)

	// A pod that would work an hour after SIGTERM, with 2 s of grace: it is
	// killed when the grace period ends, long before it would exit.
	stubborn := testappPod(appNamespace, "stubborn", w.testapp.Ref)
	stubborn.Spec.TerminationGracePeriodSeconds = ptr.To[int64](2)
	stubborn.Spec.Containers[0].Env[0] = corev1.EnvVar{Name: "TESTAPP_TERM_GRACE", Value: "1h"}
	_, err := w.homeCS.CoreV1().Pods(appNamespace).Create(ctx, stubborn, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	waitRunningReady(ctx, g, w.homeCS, appNamespace, stubborn.Name)
	created, err := w.homeCS.CoreV1().Pods(appNamespace).Get(ctx, stubborn.Name, metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	logs, grace = w.deleteFollowing(t, g, *created)
	g.Expect(grace).To(BeEquivalentTo(2))
	g.Expect(logs).To(ContainSubstring("testapp: received SIGTERM, exiting 0 in 1h0m0s"))
	g.Expect(logs).NotTo(ContainSubstring("exiting 0 after SIGTERM"), "killed at the end of the grace period")
}

// deleteFollowing deletes a home pod while following its log with kubectl
// logs -f and watching its remote pod. It returns the log, once the stream
// ended and both pods are gone, and the remote pod's deletion grace period.
func (w *offloadWorld) deleteFollowing(t *testing.T, g *WithT, pod corev1.Pod) (string, int64) {
	t.Helper()
	ctx := t.Context()
	remote := w.remotePodOf(g, pod)
	watcher, err := w.providerCS.CoreV1().Pods(remote.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + remote.Name, ResourceVersion: remote.ResourceVersion,
	})
	g.Expect(err).NotTo(HaveOccurred())
	defer watcher.Stop()
	grace := make(chan int64, 1)
	go func() {
		var seen int64 = -1
		for ev := range watcher.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && p.DeletionGracePeriodSeconds != nil && seen < 0 {
				seen = *p.DeletionGracePeriodSeconds
			}
			if ev.Type == watch.Deleted {
				break
			}
		}
		grace <- seen
	}()

	follow := exec.CommandContext(ctx, mustBinary(t, "kubectl"), "--kubeconfig", w.home.Kubeconfig, "-n", pod.Namespace, "logs", "-f", pod.Name)
	var followed testenv.SyncBuffer
	follow.Stdout, follow.Stderr = &followed, &followed
	g.Expect(follow.Start()).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	g.Eventually(followed.String).WithTimeout(30 * time.Second).Should(ContainSubstring("testapp: started on"))

	start := time.Now()
	g.Expect(w.homeCS.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})).To(Succeed())
	select {
	case err := <-done:
		g.Expect(err).NotTo(HaveOccurred(), followed.String())
	case <-time.After(2 * time.Minute):
		_ = follow.Process.Kill()
		t.Fatalf("kubectl logs -f %s did not end within 2 minutes of the deletion:\n%s", pod.Name, followed.String())
	}
	var remoteGrace int64
	select {
	case remoteGrace = <-grace:
	case <-time.After(time.Minute):
		t.Fatalf("remote pod %s/%s of %s not deleted within a minute", remote.Namespace, remote.Name, pod.Name)
	}
	g.Eventually(func() error {
		_, err := w.homeCS.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		return err
	}).WithTimeout(time.Minute).Should(MatchError(ContainSubstring("not found")))
	t.Logf("pod %s (grace %ds) gone at home %s after its deletion", pod.Name, ptr.Deref(pod.Spec.TerminationGracePeriodSeconds, 30), time.Since(start).Round(time.Millisecond))
	return followed.String(), remoteGrace
}

// expectRolledOut waits until the Deployment testapp of ns has replicas
// Ready pods, each with exactly one remote pod, and no other remote pod.
func (w *offloadWorld) expectRolledOut(g Gomega, ns string, replicas int) {
	g.Eventually(func(g Gomega) {
		d, err := w.homeCS.AppsV1().Deployments(ns).Get(context.Background(), "testapp", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(d.Status.ReadyReplicas).To(BeEquivalentTo(replicas))
		g.Expect(d.Status.Replicas).To(BeEquivalentTo(replicas))
		var offloaded []string
		for _, p := range w.homePods(g, ns, "app=testapp") {
			if p.Spec.NodeName == peeringv1alpha1.VirtualNodeName(providerName) {
				offloaded = append(offloaded, string(p.UID))
			}
		}
		var origins []string
		for _, p := range w.remotePods(g, ns) {
			origins = append(origins, p.Annotations[wellknown.OriginPodUIDAnnotation])
		}
		g.Expect(origins).To(ConsistOf(offloaded), "one remote pod per offloaded home pod")
	}).WithTimeout(3*time.Minute).WithPolling(time.Second).Should(Succeed(), "%d pods of %s Ready, one remote pod each", replicas, ns)
}

func (w *offloadWorld) leaderFailover(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	before := w.remotePods(g, appNamespace)
	leader := w.leader(g)
	t.Logf("leader: %s", leader)
	start := time.Now()
	g.Expect(w.homeCS.CoreV1().Pods(managerNamespace).Delete(ctx, leader, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})).To(Succeed())
	var next string
	g.Eventually(func(g Gomega) {
		next = w.leader(g)
		g.Expect(next).NotTo(Equal(leader))
		p, err := w.homeCS.CoreV1().Pods(managerNamespace).Get(ctx, next, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		node, err := w.homeCS.CoreV1().Nodes().Get(ctx, peeringv1alpha1.VirtualNodeName(providerName), metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(node.Status.Addresses).To(ContainElement(corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: p.Status.PodIP}),
			"the virtual node's kubelet endpoint is the new leader's pod IP")
	}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(Succeed(), "another replica leads")
	t.Logf("%s leads %s after %s was deleted", next, time.Since(start).Round(time.Millisecond), leader)

	// The offloaded pods ran on, untouched.
	after := w.remotePods(g, appNamespace)
	g.Expect(after).To(HaveLen(len(before)))
	for i := range before {
		g.Expect(after[i].UID).To(Equal(before[i].UID))
		g.Expect(after[i].Status.ContainerStatuses[0].RestartCount).To(Equal(before[i].Status.ContainerStatuses[0].RestartCount))
	}
	// And kubectl logs goes through the new leader.
	g.Eventually(func() string {
		out, _ := w.kubectl(t, w.home, "-n", appNamespace, "logs", w.homePods(g, appNamespace, "app=testapp")[0].Name)
		return out
	}).WithTimeout(time.Minute).Should(ContainSubstring("testapp: started on"))
}

// leader returns the name of the home manager pod that holds the lease.
func (w *offloadWorld) leader(g Gomega) string {
	lease, err := w.homeCS.CoordinationV1().Leases(managerNamespace).Get(context.Background(), managerName, metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(lease.Spec.HolderIdentity).NotTo(BeNil())
	return leaseHolderPod(lease)
}

// leaseHolderPod is the pod of a controller-runtime holder identity,
// <pod name>_<uuid>.
func leaseHolderPod(lease *coordinationv1.Lease) string {
	name, _, _ := strings.Cut(ptr.Deref(lease.Spec.HolderIdentity, ""), "_")
	return name
}

// offloadSpread creates spreadNamespace and offloads it with LocalAndRemote,
// once.
func (w *offloadWorld) offloadSpread(t *testing.T, g *WithT) {
	t.Helper()
	if !w.spreadOffloaded {
		w.offloadNamespace(t, g, spreadNamespace, "LocalAndRemote")
		w.spreadOffloaded = true
	}
}

func (w *offloadWorld) partition(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	w.offloadSpread(t, g)
	// Two pods that prefer the virtual node, and leave a node that stops
	// answering after evictAfter seconds.
	d := testappDeployment(spreadNamespace, w.testapp.Ref, 2)
	spec := &d.Spec.Template.Spec
	spec.Volumes, spec.Containers[0].VolumeMounts, spec.Containers[0].Env = nil, nil, spec.Containers[0].Env[:2]
	spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
		Weight: 100,
		Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
			Key: wellknown.VirtualNodeTypeLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{wellknown.VirtualNodeTypeValue},
		}}},
	}}}}
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](evictAfter)})
	}
	_, err := w.homeCS.AppsV1().Deployments(spreadNamespace).Create(ctx, d, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	var offloaded []corev1.Pod
	g.Eventually(func(g Gomega) {
		w.expectRolledOut(g, spreadNamespace, 2)
		offloaded = nil
		for _, p := range w.homePods(g, spreadNamespace, "app=testapp") {
			if p.Spec.NodeName == peeringv1alpha1.VirtualNodeName(providerName) {
				offloaded = append(offloaded, p)
			}
		}
		g.Expect(offloaded).NotTo(BeEmpty(), "a pod of %s on the virtual node", spreadNamespace)
	}).WithTimeout(3 * time.Minute).Should(Succeed())
	remoteBefore := w.remotePods(g, spreadNamespace)
	appBefore := w.remotePods(g, appNamespace)
	dups := testenv.WatchDuplicates(t, w.provider.Config, w.homeID)

	start := time.Now()
	g.Expect(w.home.Host.Cut(w.provider.Host)).To(Succeed())
	cut := true
	defer func() {
		if cut {
			_ = w.home.Host.Heal(w.provider.Host)
		}
	}()
	t.Logf("cut %s (%s) from %s (%s)", w.home.Name, w.home.Host.Addr, w.provider.Name, w.provider.Host.Addr)

	// NotReady, naming the provider.
	g.Eventually(func(g Gomega) {
		node, err := w.homeCS.CoreV1().Nodes().Get(ctx, peeringv1alpha1.VirtualNodeName(providerName), metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		ready := nodeCondition(node, corev1.NodeReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(corev1.ConditionFalse))
		g.Expect(ready.Message).To(ContainSubstring(providerName))
	}).WithTimeout(3*time.Minute).WithPolling(time.Second).Should(Succeed(), "the virtual node goes NotReady")
	notReadyAfter := time.Since(start)
	// Taint-based eviction: the offloaded pods of spread are replaced at
	// home, on the real nodes.
	g.Eventually(func(g Gomega) {
		d, err := w.homeCS.AppsV1().Deployments(spreadNamespace).Get(ctx, "testapp", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(d.Status.ReadyReplicas).To(BeEquivalentTo(2))
		pods := w.homePods(g, spreadNamespace, "app=testapp")
		g.Expect(pods).To(HaveLen(2))
		for _, p := range pods {
			g.Expect(p.Spec.NodeName).NotTo(Equal(peeringv1alpha1.VirtualNodeName(providerName)), "pod %s", p.Name)
		}
	}).WithTimeout(3*time.Minute).WithPolling(time.Second).Should(Succeed(), "the evicted pods run at home")
	evictedAfter := time.Since(start)
	// The remote pods run on at the provider, which this machine still
	// reaches.
	for _, ns := range []string{spreadNamespace, appNamespace} {
		before := map[string][]corev1.Pod{spreadNamespace: remoteBefore, appNamespace: appBefore}[ns]
		now := w.remotePods(g, ns)
		g.Expect(uids(now)).To(Equal(uids(before)), "the remote pods of %s are untouched", ns)
		for _, p := range now {
			g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "remote pod %s/%s", p.Namespace, p.Name)
		}
	}
	t.Logf("partition: virtual node NotReady after %s, %d pods of %s evicted and Ready at home after %s; %d remote pods kept running",
		notReadyAfter.Round(time.Second), len(offloaded), spreadNamespace, evictedAfter.Round(time.Second), len(remoteBefore)+len(appBefore))

	g.Expect(w.home.Host.Heal(w.provider.Host)).To(Succeed())
	cut = false
	healed := time.Now()
	g.Eventually(func(g Gomega) {
		node, err := w.homeCS.CoreV1().Nodes().Get(ctx, peeringv1alpha1.VirtualNodeName(providerName), metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(nodeCondition(node, corev1.NodeReady).Status).To(Equal(corev1.ConditionTrue))
	}).WithTimeout(3*time.Minute).WithPolling(time.Second).Should(Succeed(), "the virtual node is Ready again")
	// Converged: the remote pods of the evicted home pods are gone, every
	// home pod has one remote pod at most, and nothing else changed.
	w.expectRolledOut(g, spreadNamespace, 2)
	w.expectRolledOut(g, appNamespace, 2)
	g.Expect(uids(w.remotePods(g, appNamespace))).To(Equal(uids(appBefore)), "the Remote pods of %s ran through it all", appNamespace)
	dups.ExpectNone(t, g)
	t.Logf("heal: converged %s after the heal; remote pods of %s: %d before, %d after (the evicted pods' removed), of %s: %d kept",
		time.Since(healed).Round(time.Second), spreadNamespace, len(remoteBefore), len(w.remotePods(g, spreadNamespace)), appNamespace, len(appBefore))
}

func nodeCondition(node *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == t {
			return &node.Status.Conditions[i]
		}
	}
	return nil
}

func uids(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, string(p.UID))
	}
	slices.Sort(out)
	return out
}

// homePods lists the pods of home namespace ns matching selector that are
// not being deleted, by name.
func (w *offloadWorld) homePods(g Gomega, ns, selector string) []corev1.Pod {
	pods, err := w.homeCS.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	g.Expect(err).NotTo(HaveOccurred())
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// remotePods lists the provider's pods offloaded from home namespace ns, by
// name.
func (w *offloadWorld) remotePods(g Gomega, ns string) []corev1.Pod {
	pods, err := w.providerCS.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{
		LabelSelector: labels.Set{wellknown.OriginNamespaceLabel: ns}.String(),
	})
	g.Expect(err).NotTo(HaveOccurred())
	slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods.Items
}

// remotePodOf returns the remote pod of a home pod.
func (w *offloadWorld) remotePodOf(g Gomega, home corev1.Pod) corev1.Pod {
	for _, p := range w.remotePods(g, home.Namespace) {
		if p.Annotations[wellknown.OriginPodUIDAnnotation] == string(home.UID) {
			return p
		}
	}
	g.Expect(fmt.Errorf("no remote pod of %s/%s", home.Namespace, home.Name)).NotTo(HaveOccurred())
	return corev1.Pod{}
}

// testappDeployment runs the test app with the ConfigMap settings and the
// Secret credentials as volumes and env, its ServiceAccount's token, a
// readiness probe, and 3 s of work after SIGTERM.
func testappDeployment(ns, image string, replicas int32) *appsv1.Deployment {
	pod := testappPod(ns, "testapp", image)
	c := &pod.Spec.Containers[0]
	c.Env = []corev1.EnvVar{
		{Name: "TESTAPP_TERM_GRACE", Value: "3s"},
		{Name: "TESTAPP_API_PATH", Value: "/api/v1/namespaces/" + ns + "/pods"},
		{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "color"}}},
		{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "credentials"}, Key: "password"}}},
	}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "settings", MountPath: "/etc/settings"}, {Name: "credentials", MountPath: "/etc/credentials"}}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
		{Name: "credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "credentials"}}},
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "testapp"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "testapp"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "testapp"}}, Spec: pod.Spec},
		},
	}
}

// createLister makes ServiceAccount ns/name, allowed to get and list pods in
// ns.
func createLister(ctx context.Context, g Gomega, cs kubernetes.Interface, ns, name string) {
	createReader(ctx, g, cs, ns, name)
	role, err := cs.RbacV1().Roles(ns).Get(ctx, name, metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	role.Rules = []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}}
	_, err = cs.RbacV1().Roles(ns).Update(ctx, role, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
}
