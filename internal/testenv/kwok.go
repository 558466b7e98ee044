package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"stretch.dev/stretch/internal/scheme"
)

const (
	// KwokNodeAnnotation marks the Nodes that the kwok controller of a
	// KwokCluster manages (with value KwokNodeAnnotationValue). kwok leaves
	// every other Node alone, Stretch's virtual nodes among them.
	KwokNodeAnnotation = "kwok.x-k8s.io/node"
	// KwokNodeAnnotationValue is the value of KwokNodeAnnotation.
	KwokNodeAnnotationValue = "fake"

	loopback = "127.0.0.1"

	// kwokctl picks ports by probing downwards from 32767 in every process, so
	// two concurrent 'kwokctl create' pick the same ones; we reserve them
	// ourselves below the kernel's ephemeral range (32768-60999 by default).
	kwokPortMin = 20000
	kwokPortMax = 32000

	kwokDefaultTimeout = 3 * time.Minute
	kwokStopTimeout    = time.Minute
	kwokPollInterval   = 200 * time.Millisecond
	kwokLogTailLines   = 15
)

// kwokComponents are the processes of a kwokctl cluster, named as kwokctl
// names their pid and log files.
var kwokComponents = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller"}

var kwokNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$`)

// KwokOptions configure StartKwokCluster.
type KwokOptions struct {
	// EnableCRDs are kwok CRDs to enable, e.g. "ClusterLogs", "ClusterExec".
	EnableCRDs []string
	// DisableQPSLimits lifts the client QPS limits of every component (and
	// of Config). Benchmarks must say which they use.
	DisableQPSLimits bool
	// FakeNodes is how many Nodes annotated KwokNodeAnnotation to create;
	// kwok makes them Ready and runs their pods. Named kwok-node-0, ...
	FakeNodes int
	// LogDir, when set, receives the component logs when the cluster stops or
	// fails to start (see ExportLogs).
	LogDir string
	// Logf, when set, receives progress lines (e.g. t.Logf).
	Logf func(format string, args ...any)
	// Timeout bounds the start, ready nodes included (default 3 minutes).
	Timeout time.Duration
}

// KwokCluster is a running kwokctl cluster (runtime binary): etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and a kwok
// controller, every one listening on 127.0.0.1 only, with its own working
// directory and ports so that many can run at once.
type KwokCluster struct {
	// Name is the unique kwokctl cluster name: the requested name and a
	// random suffix.
	Name string
	// Kubeconfig is the path of a self-contained (flattened) kubeconfig file
	// of a cluster admin.
	Kubeconfig string
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Client is a cluster-admin client with Stretch's scheme.
	Client client.Client
	// Scheme is the scheme of Client.
	Scheme *runtime.Scheme
	// FakeNodes are the names of the kwok Nodes created at start.
	FakeNodes []string

	opts       KwokOptions
	kwokctl    string
	root       string // everything of this cluster; removed by Stop
	clusterDir string // kwokctl's working directory of the cluster
	env        []string
	ports      kwokPorts
	portLocks  []*os.File
	procs      map[string]kwokProcess
	stopped    bool
}

// kwokPorts are the ports of one cluster, all on 127.0.0.1.
type kwokPorts struct {
	etcd, etcdPeer, apiserver, controllerManager, scheduler, kwok int
}

// kwokProcess identifies a component process; the start time tells a
// recycled pid apart.
type kwokProcess struct {
	pid   int
	start string
}

// StartKwokCluster creates a kwokctl cluster named name-<random> from the
// binaries in bin/ and waits until its API server answers, the default
// ServiceAccount exists and opts.FakeNodes kwok nodes are Ready. On error
// nothing is left running. Stop it with Stop.
func StartKwokCluster(ctx context.Context, name string, opts KwokOptions) (*KwokCluster, error) {
	if !kwokNameRE.MatchString(name) {
		return nil, fmt.Errorf("kwok cluster name %q: want at most 32 lower-case letters, digits and '-'", name)
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Timeout == 0 {
		opts.Timeout = kwokDefaultTimeout
	}
	bins := map[string]string{}
	for _, tool := range []string{"kwokctl", "kwok", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kubectl"} {
		path, err := Binary(tool)
		if err != nil {
			return nil, err
		}
		bins[tool] = path
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	c := &KwokCluster{
		Name:    name + "-" + hex.EncodeToString(suffix),
		Scheme:  scheme.New(),
		opts:    opts,
		kwokctl: bins["kwokctl"],
	}
	var err error
	if c.root, err = os.MkdirTemp("", "stretch-kwok-"+name+"-"); err != nil {
		return nil, fmt.Errorf("kwok cluster %s: %w", c.Name, err)
	}
	c.clusterDir = filepath.Join(c.root, "kwok", "clusters", c.Name)

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	start := time.Now()
	if err := c.start(ctx, bins); err != nil {
		err = fmt.Errorf("starting kwok cluster %s after %s: %w%s", c.Name, time.Since(start).Round(time.Millisecond), err, c.logTails())
		if opts.LogDir != "" {
			if exportErr := c.ExportLogs(opts.LogDir); exportErr == nil {
				err = fmt.Errorf("%w\ncomponent logs: %s", err, opts.LogDir)
			}
		}
		stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), kwokStopTimeout)
		defer stopCancel()
		c.opts.LogDir = "" // exported above
		return nil, errors.Join(err, c.Stop(stopCtx))
	}
	opts.Logf("kwok cluster %s: ready in %s (kubeconfig %s)", c.Name, time.Since(start).Round(time.Millisecond), c.Kubeconfig)
	return c, nil
}

// setEnv sets the environment kwokctl runs in. HOME and KWOK_WORKDIR keep
// ~/.kwok and ~/.kube untouched and clusters apart; kwokctl runs kubectl
// from $PATH before its own kubectlBinary option.
func (c *KwokCluster) setEnv() {
	c.env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "KWOK_")
	})
	c.env = append(c.env,
		"HOME="+c.root,
		"KWOK_WORKDIR="+filepath.Join(c.root, "kwok"),
		"PATH="+filepath.Join(c.root, "path")+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
}

// KwokState is what finds a running KwokCluster again from another process
// (ReattachKwokCluster), e.g. to stop clusters a demo left running.
type KwokState struct {
	Name string `json:"name"`
	Root string `json:"root"`
}

// State returns what ReattachKwokCluster needs.
func (c *KwokCluster) State() KwokState { return KwokState{Name: c.Name, Root: c.root} }

// ReattachKwokCluster returns the cluster s names, started by another
// process, with the components it finds running; Stop stops it. Its Config
// and Client are not set.
func ReattachKwokCluster(s KwokState) (*KwokCluster, error) {
	kwokctl, err := Binary("kwokctl")
	if err != nil {
		return nil, err
	}
	c := &KwokCluster{Name: s.Name, root: s.Root, kwokctl: kwokctl, opts: KwokOptions{Logf: func(string, ...any) {}}}
	c.clusterDir = filepath.Join(c.root, "kwok", "clusters", c.Name)
	c.Kubeconfig = filepath.Join(c.root, "kubeconfig")
	c.setEnv()
	c.procs = findProcesses(filepath.Join(c.clusterDir, "bin"))
	return c, nil
}

func (c *KwokCluster) start(ctx context.Context, bins map[string]string) error {
	// kwokctl runs kubectl from $PATH before its own kubectlBinary option.
	pathDir := filepath.Join(c.root, "path")
	if err := os.Mkdir(pathDir, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(bins["kubectl"], filepath.Join(pathDir, "kubectl")); err != nil {
		return err
	}
	c.setEnv()

	var err error
	if c.ports, c.portLocks, err = reserveKwokPorts(); err != nil {
		return err
	}
	configPath := filepath.Join(c.root, "kwokctl.yaml")
	config, err := yaml.Marshal(kwokctlConfiguration(c.ports, bins["kubectl"], filepath.Join(c.clusterDir, "pki"), c.opts))
	if err != nil {
		return err
	}
	if err := os.WriteFile(configPath, config, 0o644); err != nil {
		return err
	}

	c.opts.Logf("kwok cluster %s: creating (kwokctl, runtime binary, workdir %s)", c.Name, c.root)
	if err := c.runKwokctl(ctx, "create",
		"create", "cluster",
		"--name", c.Name,
		"--runtime", "binary",
		"--kubeconfig=", // not ~/.kube/config
		"--kube-apiserver-binary", bins["kube-apiserver"],
		"--kube-controller-manager-binary", bins["kube-controller-manager"],
		"--kube-scheduler-binary", bins["kube-scheduler"],
		"--etcd-binary", bins["etcd"],
		"--kwok-controller-binary", bins["kwok"],
		"-c", configPath,
	); err != nil {
		return err
	}
	if err := c.readPIDs(); err != nil {
		return err
	}
	if err := c.loadKubeconfig(); err != nil {
		return err
	}
	c.opts.Logf("kwok cluster %s: components started (API server https://%s:%d), waiting until ready", c.Name, loopback, c.ports.apiserver)
	return c.waitReady(ctx)
}

// kwokctlConfiguration is the KwokctlConfiguration given with -c. The
// options give every port and bindAddress; componentsPatches then bind every
// listener to 127.0.0.1 explicitly (so a kwokctl default cannot open one on
// all interfaces) and keep kwok off every Node without KwokNodeAnnotation.
func kwokctlConfiguration(p kwokPorts, kubectl, pki string, opts KwokOptions) map[string]any {
	override := func(key, value string) map[string]any {
		return map[string]any{"key": key, "value": value, "override": true}
	}
	url := func(port int) string { return "http://" + loopback + ":" + strconv.Itoa(port) }
	longLease := []map[string]any{
		{"key": "leader-elect-lease-duration", "value": "2h"},
		{"key": "leader-elect-renew-deadline", "value": "1h50m"},
	}
	options := map[string]any{
		"runtime":                   "binary",
		"bindAddress":               loopback,
		"kubectlBinary":             kubectl,
		"etcdPort":                  p.etcd,
		"etcdPeerPort":              p.etcdPeer,
		"kubeApiserverPort":         p.apiserver,
		"kubeControllerManagerPort": p.controllerManager,
		"kubeSchedulerPort":         p.scheduler,
		"kwokControllerPort":        p.kwok,
		"disableQPSLimits":          opts.DisableQPSLimits,
	}
	if len(opts.EnableCRDs) > 0 {
		options["enableCRDs"] = opts.EnableCRDs
	}
	return map[string]any{
		"apiVersion": "config.kwok.x-k8s.io/v1alpha1",
		"kind":       "KwokctlConfiguration",
		"options":    options,
		"componentsPatches": []map[string]any{
			{"name": "etcd", "extraArgs": []map[string]any{
				override("listen-client-urls", url(p.etcd)),
				override("advertise-client-urls", url(p.etcd)),
				override("listen-peer-urls", url(p.etcdPeer)),
				override("initial-advertise-peer-urls", url(p.etcdPeer)),
				override("initial-cluster", "node0="+url(p.etcdPeer)),
			}},
			{"name": "kube-apiserver", "extraArgs": []map[string]any{
				override("bind-address", loopback),
				// As in a real cluster, the API server authenticates to
				// kubelets (the kubelet API of virtual nodes requires it).
				{"key": "kubelet-client-certificate", "value": filepath.Join(pki, "admin.crt")},
				{"key": "kubelet-client-key", "value": filepath.Join(pki, "admin.key")},
			}},
			// One instance each: a lease renewal that misses its deadline
			// (a busy machine, an API server killed by a test) makes the
			// component exit for good, since nothing restarts it. Hence a
			// lease that outlives any test. (kwokctl sets no leader-elect
			// flag, and drops overrides of flags it does not set.)
			{"name": "kube-controller-manager", "extraArgs": append([]map[string]any{override("bind-address", loopback)}, longLease...)},
			{"name": "kube-scheduler", "extraArgs": append([]map[string]any{override("bind-address", loopback)}, longLease...)},
			{"name": "kwok-controller", "extraArgs": []map[string]any{
				override("server-address", loopback+":"+strconv.Itoa(p.kwok)),
				// the API server reaches kwok (logs, exec) at the node IP.
				override("node-ip", loopback),
				override("manage-all-nodes", "false"),
				{"key": "manage-nodes-with-annotation-selector", "value": KwokNodeAnnotation + "=" + KwokNodeAnnotationValue},
			}},
		},
	}
}

// runKwokctl runs kwokctl in the cluster's environment; its output goes to
// <root>/kwokctl-<step>.log and into the error.
func (c *KwokCluster) runKwokctl(ctx context.Context, step string, args ...string) error {
	logPath := filepath.Join(c.root, "kwokctl-"+step+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer out.Close()
	// A file, not a pipe: the components kwokctl forks must not hold our
	// output open.
	cmd := exec.CommandContext(ctx, c.kwokctl, args...)
	cmd.Env = c.env
	// On cancel, kill kwokctl with what it runs in the foreground (kubectl);
	// the components it forks have sessions of their own and are left to Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		data, _ := os.ReadFile(logPath)
		return fmt.Errorf("kwokctl %s: %w\n%s", strings.Join(args[:2], " "), err, tail(data, kwokLogTailLines))
	}
	return nil
}

func (c *KwokCluster) readPIDs() error {
	c.procs = map[string]kwokProcess{}
	var errs []error
	for _, name := range kwokComponents {
		data, err := os.ReadFile(filepath.Join(c.clusterDir, "pids", name+".pid"))
		if err != nil {
			errs = append(errs, fmt.Errorf("component %s not started: %w", name, err))
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			errs = append(errs, fmt.Errorf("pid file of %s: %w", name, err))
			continue
		}
		start, running := processStart(pid)
		if !running {
			errs = append(errs, fmt.Errorf("component %s (pid %d) exited", name, pid))
			continue
		}
		c.procs[name] = kwokProcess{pid: pid, start: start}
	}
	return errors.Join(errs...)
}

// loadKubeconfig flattens kwokctl's kubeconfig (certificates in files of the
// workdir) into one self-contained file.
func (c *KwokCluster) loadKubeconfig() error {
	cfg, err := clientcmd.LoadFromFile(filepath.Join(c.clusterDir, "kubeconfig.yaml"))
	if err != nil {
		return fmt.Errorf("kubeconfig of kwokctl: %w", err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return fmt.Errorf("flattening the kubeconfig of kwokctl: %w", err)
	}
	if cfg.CurrentContext == "" {
		for name := range cfg.Contexts {
			cfg.CurrentContext = name
		}
	}
	c.Kubeconfig = filepath.Join(c.root, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, c.Kubeconfig); err != nil {
		return err
	}
	if c.Config, err = clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig(); err != nil {
		return fmt.Errorf("kubeconfig of kwokctl: %w", err)
	}
	if c.opts.DisableQPSLimits {
		c.Config.QPS = -1
	}
	if c.Client, err = client.New(c.Config, client.Options{Scheme: c.Scheme}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

func (c *KwokCluster) waitReady(ctx context.Context) error {
	poll := func(what string, cond func(context.Context) (bool, error)) error {
		start := time.Now()
		var lastErr error
		err := wait.PollUntilContextCancel(ctx, kwokPollInterval, true, func(ctx context.Context) (bool, error) {
			ok, err := cond(ctx)
			if err != nil {
				lastErr = err
			}
			return ok, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, err, lastErr)
		}
		c.opts.Logf("kwok cluster %s: %s after %s", c.Name, what, time.Since(start).Round(time.Millisecond))
		return nil
	}
	probe := rest.CopyConfig(c.Config)
	probe.Timeout = 5 * time.Second
	disco, err := discovery.NewDiscoveryClientForConfig(probe)
	if err != nil {
		return err
	}
	if err := poll("API server ready", func(ctx context.Context) (bool, error) {
		body, err := disco.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", err
	}); err != nil {
		return err
	}
	// Pods are refused until the controller-manager made the default ServiceAccount.
	if err := poll("default ServiceAccount created", func(ctx context.Context) (bool, error) {
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{})
		return err == nil, client.IgnoreNotFound(err)
	}); err != nil {
		return err
	}
	for i := range c.opts.FakeNodes {
		node := NewKwokNode(fmt.Sprintf("kwok-node-%d", i))
		if err := c.Client.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating kwok node %s: %w", node.Name, err)
		}
		c.FakeNodes = append(c.FakeNodes, node.Name)
	}
	if len(c.FakeNodes) == 0 {
		return nil
	}
	return poll(fmt.Sprintf("%d kwok nodes Ready", len(c.FakeNodes)), func(ctx context.Context) (bool, error) {
		for _, name := range c.FakeNodes {
			node := &corev1.Node{}
			if err := c.Client.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
				return false, err
			}
			if !NodeReady(node) {
				return false, fmt.Errorf("node %s not Ready yet", name)
			}
		}
		return true, nil
	})
}

// StartKwokClusterForTest starts a kwok cluster for t; see
// StartKwokClustersForTest.
func StartKwokClusterForTest(t testing.TB, suite, name string, opts KwokOptions) *KwokCluster {
	t.Helper()
	return StartKwokClustersForTest(t, suite, opts, name)[0]
}

// StartKwokClustersForTest starts one kwok cluster per name, in parallel (see
// StartKwokCluster), and stops them in t.Cleanup, failing t if that fails.
// When t has failed, each cluster's logs are first exported to
// _artifacts/<suite>/<test>/<cluster>/ at the repository root and the path is
// logged. Progress goes to t.Logf unless opts.Logf is set.
func StartKwokClustersForTest(t testing.TB, suite string, opts KwokOptions, names ...string) []*KwokCluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	clusters := make([]*KwokCluster, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { clusters[i], errs[i] = StartKwokCluster(t.Context(), name, opts) })
	}
	wg.Wait()
	for _, c := range clusters {
		if c != nil {
			t.Cleanup(func() { stopForTest(t, suite, c) })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return clusters
}

func stopForTest(t testing.TB, suite string, c *KwokCluster) {
	if keepArtifacts(t) {
		if root, err := RepoRoot(); err != nil {
			t.Errorf("exporting the logs of kwok cluster %s: %v", c.Name, err)
		} else {
			dir := filepath.Join(root, "_artifacts", suite, filepath.FromSlash(t.Name()), c.Name)
			if err := c.ExportLogs(dir); err != nil {
				t.Error(err)
			} else {
				t.Logf("logs of kwok cluster %s: %s", c.Name, dir)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), kwokStopTimeout)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Error(err)
	}
}

// NewKwokNode returns a Node that the kwok controller of a KwokCluster
// manages: annotated KwokNodeAnnotation, labelled like a Linux node, 32 CPUs,
// 256Gi of memory and 110 pods, no taints.
func NewKwokNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{KwokNodeAnnotation: KwokNodeAnnotationValue},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// NodeReady reports whether node has the condition Ready=True.
func NodeReady(node *corev1.Node) bool {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PIDs returns the pid of every component process, by component name
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kwok-controller).
func (c *KwokCluster) PIDs() map[string]int {
	pids := make(map[string]int, len(c.procs))
	for name, p := range c.procs {
		pids[name] = p.pid
	}
	return pids
}

// Running returns the components whose process still runs.
func (c *KwokCluster) Running() []string {
	var names []string
	for name, p := range c.procs {
		if start, ok := processStart(p.pid); ok && start == p.start {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// ResidentMemory returns the resident memory (VmRSS) of all components, in bytes.
func (c *KwokCluster) ResidentMemory() (int64, error) {
	var total int64
	for name, p := range c.procs {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
		if err != nil {
			return 0, fmt.Errorf("memory of %s: %w", name, err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("memory of %s: %q: %w", name, line, err)
				}
				total += kb << 10
			}
		}
	}
	return total, nil
}

// ExportLogs copies the component logs, kwokctl's own output and the
// effective kwokctl configuration (kwok.yaml, with every component's
// arguments) into dir. It works until Stop.
func (c *KwokCluster) ExportLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var files []string
	logs, _ := filepath.Glob(filepath.Join(c.clusterDir, "logs", "*"))
	files = append(files, logs...)
	files = append(files, filepath.Join(c.clusterDir, "kwok.yaml"))
	steps, _ := filepath.Glob(filepath.Join(c.root, "kwokctl-*.log"))
	files = append(files, steps...)
	var errs []error
	for _, src := range files {
		if err := copyFile(src, filepath.Join(dir, filepath.Base(src))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("exporting logs of kwok cluster %s: %w", c.Name, err)
	}
	return nil
}

// Stop exports the logs to LogDir (when set), deletes the cluster with
// 'kwokctl delete cluster' (its output goes to LogDir too), checks that every component process is gone
// (killing what is left, as an error) and removes the working directory.
// It may be called again.
func (c *KwokCluster) Stop(ctx context.Context) error {
	if c.stopped {
		return nil
	}
	var errs []error
	if c.opts.LogDir != "" {
		errs = append(errs, c.ExportLogs(c.opts.LogDir))
	}
	start := time.Now()
	// Also what kwokctl started without writing a pid file (a failed
	// create): every process of a binary it linked into the workdir.
	if c.procs == nil {
		c.procs = map[string]kwokProcess{}
	}
	for name, p := range findProcesses(filepath.Join(c.clusterDir, "bin")) {
		if _, ok := c.procs[name]; !ok {
			c.procs[name] = p
		}
	}
	if _, err := os.Stat(c.clusterDir); err == nil {
		// Its --kubeconfig is $HOME/.kube/config, in our root: nothing to clean.
		if err := c.runKwokctl(ctx, "delete", "delete", "cluster", "--name", c.Name); err != nil {
			errs = append(errs, err)
		}
		if c.opts.LogDir != "" {
			errs = append(errs, copyFile(filepath.Join(c.root, "kwokctl-delete.log"), filepath.Join(c.opts.LogDir, "kwokctl-delete.log")))
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return len(c.Running()) == 0, nil
	})
	if err != nil {
		left := c.Running()
		for _, name := range left {
			_ = syscall.Kill(c.procs[name].pid, syscall.SIGKILL)
		}
		errs = append(errs, fmt.Errorf("components %v still running after 'kwokctl delete cluster': killed", left))
	}
	for _, f := range c.portLocks {
		_ = f.Close()
	}
	c.portLocks = nil
	errs = append(errs, os.RemoveAll(c.root))
	c.stopped = true
	c.opts.Logf("kwok cluster %s: stopped in %s", c.Name, time.Since(start).Round(time.Millisecond))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stopping kwok cluster %s: %w", c.Name, err)
	}
	return nil
}

// logTails returns the last lines of every component log, for errors.
func (c *KwokCluster) logTails() string {
	var b strings.Builder
	for _, name := range kwokComponents {
		data, err := os.ReadFile(filepath.Join(c.clusterDir, "logs", name+".log"))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "\n--- %s.log (last %d lines) ---\n%s", name, kwokLogTailLines, tail(data, kwokLogTailLines))
	}
	return b.String()
}

// reserveKwokPorts picks the six ports of a cluster. A port is ours while we
// hold an flock on <tmp>/stretch-kwok-ports/<port>: other test processes
// skip it, and the kernel releases it if we die.
func reserveKwokPorts() (kwokPorts, []*os.File, error) {
	dir := filepath.Join(os.TempDir(), "stretch-kwok-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return kwokPorts{}, nil, err
	}
	var ports []int
	var locks []*os.File
	release := func() {
		for _, f := range locks {
			_ = f.Close()
		}
	}
	span := kwokPortMax - kwokPortMin
	var n [2]byte
	_, _ = rand.Read(n[:])
	first := int(n[0])<<8 | int(n[1])
	for i := 0; i < span && len(ports) < 6; i++ {
		port := kwokPortMin + (first+i)%span
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			release()
			return kwokPorts{}, nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil || !portFree(port) {
			_ = f.Close()
			continue
		}
		ports = append(ports, port)
		locks = append(locks, f)
	}
	if len(ports) < 6 {
		release()
		return kwokPorts{}, nil, fmt.Errorf("no 6 free ports in %d-%d", kwokPortMin, kwokPortMax)
	}
	return kwokPorts{etcd: ports[0], etcdPeer: ports[1], apiserver: ports[2], controllerManager: ports[3], scheduler: ports[4], kwok: ports[5]}, locks, nil
}

func portFree(port int) bool {
	for _, host := range []string{loopback, ""} {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		_ = l.Close()
	}
	return true
}

// processStart returns the start time of a live (not zombie) process.
func processStart(pid int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	// Fields after the command, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return "", false
	}
	return fields[19], true
}

// findProcesses finds the processes whose executable lies in binDir.
func findProcesses(binDir string) map[string]kwokProcess {
	procs := map[string]kwokProcess{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		arg0, _, _ := bytes.Cut(data, []byte{0})
		if filepath.Dir(string(arg0)) != binDir {
			continue
		}
		if start, ok := processStart(pid); ok {
			procs[filepath.Base(string(arg0))] = kwokProcess{pid: pid, start: start}
		}
	}
	return procs
}

func tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// KillAPIServer kills the cluster's kube-apiserver as a crash would
// (SIGKILL) and returns what starts it again: the same command line,
// environment and directory, its output appended to its log, its pid file
// updated so that Stop and 'kwokctl delete' find it. Until then clients get
// "connection refused".
func (c *KwokCluster) KillAPIServer() (restart func() error, err error) {
	const name = "kube-apiserver"
	p, ok := c.procs[name]
	if !ok {
		return nil, fmt.Errorf("kwok cluster %s has no %s", c.Name, name)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
	if err != nil {
		return nil, fmt.Errorf("command line of %s: %w", name, err)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid))
	if err != nil {
		return nil, fmt.Errorf("environment of %s: %w", name, err)
	}
	dir, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.pid))
	if err != nil {
		return nil, fmt.Errorf("directory of %s: %w", name, err)
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("killing %s: %w", name, err)
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		start, running := processStart(p.pid)
		return !running || start != p.start, nil
	}); err != nil {
		return nil, fmt.Errorf("%s (pid %d) still runs after SIGKILL", name, p.pid)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	env := strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00")
	return func() error {
		log, err := os.OpenFile(filepath.Join(c.clusterDir, "logs", name+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer log.Close()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, dir, log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as kwokctl's, apart from the test's signals
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s again: %w", name, err)
		}
		go func() { _ = cmd.Wait() }()
		start, _ := processStart(cmd.Process.Pid)
		c.procs[name] = kwokProcess{pid: cmd.Process.Pid, start: start}
		return os.WriteFile(filepath.Join(c.clusterDir, "pids", name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	}, nil
}

// ProcessRunning reports whether pid is a live process (not a zombie).
func ProcessRunning(pid int) bool {
	_, running := processStart(pid)
	return pid > 0 && running
}
