// Package kwok runs kwokctl clusters (runtime binary) for tests, benchmarks
// and the demo: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and a kwok controller whose fake nodes run pods without containers, every
// one on 127.0.0.1 with ports of its own so that many clusters run at once.
// The binaries come from bin/ ('make tools'). It does not import testing:
// testenv.StartKwokClustersForTest wraps it for tests.
package kwok

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	"stretch.dev/stretch/internal/testenv/machine"
)

const (
	// NodeAnnotation marks the Nodes that the kwok controller of a
	// Cluster manages (with value NodeAnnotationValue). kwok leaves
	// every other Node alone, Stretch's virtual nodes among them.
	NodeAnnotation = "kwok.x-k8s.io/node"
	// NodeAnnotationValue is the value of NodeAnnotation.
	NodeAnnotationValue = "fake"

	// kwokGroup is the API group of kwok's CRDs.
	kwokGroup = "kwok.x-k8s.io"

	loopback = "127.0.0.1"

	// kwokctl picks ports by probing downwards from 32767 in every process, so
	// two concurrent 'kwokctl create' pick the same ones; we reserve them
	// ourselves (machine.ReservePorts).

	defaultTimeout = 3 * time.Minute
	pollInterval   = 200 * time.Millisecond
	logTailLines   = 15
)

// StopTimeout is how long a Stop may take when the caller has no deadline of
// its own.
const StopTimeout = time.Minute

// components are the processes of a kwokctl cluster, named as kwokctl
// names their pid and log files.
var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller"}

// controlPlane are the components of a cluster started with
// Options.ControlPlaneOnly.
var controlPlane = []string{"etcd", "kube-apiserver"}

// metricsServer is the component Options.MetricsServer adds.
const metricsServer = "metrics-server"

// components returns the component processes of c.
func (c *Cluster) components() []string {
	if c.opts.ControlPlaneOnly {
		return controlPlane
	}
	if c.opts.MetricsServer {
		return append(slices.Clone(components), metricsServer)
	}
	return components
}

// The annotations of a pod that say what each of its containers uses when
// Options.MetricsServer is set: kwok's emulated usage (kwokctl's default
// ClusterResourceUsage) reads them.
const (
	// UsageCPUAnnotation is the CPU each container of the pod uses, a
	// quantity such as "300m"; default 1m.
	UsageCPUAnnotation = "kwok.x-k8s.io/usage-cpu"
	// UsageMemoryAnnotation is the memory working set of each container
	// of the pod, a quantity such as "64Mi"; default 1Mi.
	UsageMemoryAnnotation = "kwok.x-k8s.io/usage-memory"
)

// MetricsServerUser is the user metrics-server authenticates as
// (Options.MetricsServer), with a static token of the API server.
const MetricsServerUser = "metrics-server"

// MetricResolution is how often the metrics-server of Options.MetricsServer
// scrapes the nodes: its --metric-resolution, the shortest it accepts.
const MetricResolution = 10 * time.Second

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$`)

// Options configure Start.
type Options struct {
	// EnableCRDs are kwok CRDs to enable, e.g. "ClusterLogs", "ClusterExec".
	EnableCRDs []string
	// DisableQPSLimits lifts the client QPS limits of every component (and
	// of Config). Benchmarks must say which they use.
	DisableQPSLimits bool
	// FakeNodes is how many Nodes annotated NodeAnnotation to create;
	// kwok makes them Ready and runs their pods. Named kwok-node-0, ...
	FakeNodes int
	// LogDir, when set, receives the component logs when the cluster stops or
	// fails to start (see ExportLogs).
	LogDir string
	// Logf, when set, receives progress lines (e.g. t.Logf).
	Logf func(format string, args ...any)
	// Timeout bounds the start, ready nodes included (default 3 minutes).
	Timeout time.Duration
	// PodCIDR is the range kwok gives pod IPs from (its --cidr), e.g.
	// "10.20.0.0/16"; empty: kwok's default, 10.0.0.0/24. Clusters that
	// stand for different clusters of a story want ranges of their own, or
	// their pods show the same IPs.
	PodCIDR string
	// ControlPlaneOnly runs etcd and the API server only: no
	// kube-controller-manager, scheduler or kwok, so no pod runs, no
	// ServiceAccount is made and a deleted namespace is never finalized.
	// Benchmarks of many providers that only hold namespaces use it to
	// fit on one machine; they must say so.
	ControlPlaneOnly bool
	// AuditWrites makes the API server log every write request (who sent
	// it, and the answer's code) for AuditedWrites; it costs the API server
	// a line per write, so benchmarks that compare timings leave it off.
	AuditWrites bool
	// ServiceCIDR is the range of Service cluster IPs (the API server's
	// --service-cluster-ip-range), e.g. "10.120.0.0/16"; empty: the API
	// server's default, 10.0.0.0/24, which overlaps kwok's default PodCIDR.
	ServiceCIDR string
	// MetricsServer runs metrics-server (bin/metrics-server, 'make tools')
	// as a component of the cluster, registered as the metrics.k8s.io API,
	// so that 'kubectl top' and HPAs work. It scrapes every node at its
	// InternalIP and status port (--kubelet-use-node-status-port, with
	// --kubelet-insecure-tls), every MetricResolution. As in a real
	// cluster, it reaches the API server and the kubelets with a bearer
	// token (of user MetricsServerUser, with the rights of metrics-server's
	// own manifest) and not the admin's certificate. kwok then emulates the
	// resource usage of the pods on its nodes: every container uses what its
	// pod's UsageCPUAnnotation and UsageMemoryAnnotation say. (kwokctl adds
	// that emulation to kwok's configuration, unless EnableCRDs names Metric
	// or ClusterResourceUsage.)
	MetricsServer bool
}

// validate checks the options that kwokctl would only refuse late, or
// that a component would refuse with a log line nobody reads.
func (o Options) validate() error {
	var errs []error
	if o.ControlPlaneOnly && (o.FakeNodes > 0 || o.MetricsServer) {
		errs = append(errs, fmt.Errorf("ControlPlaneOnly runs no kwok controller and no metrics-server: ask for no FakeNodes and no MetricsServer with it"))
	}
	for _, f := range []struct{ name, value string }{{"PodCIDR", o.PodCIDR}, {"ServiceCIDR", o.ServiceCIDR}} {
		if f.value == "" {
			continue
		}
		p, err := netip.ParsePrefix(f.value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w; give a range such as 10.20.0.0/16", f.name, f.value, err))
		} else if p != p.Masked() {
			errs = append(errs, fmt.Errorf("%s %q has host bits set: give the range's first address, %s", f.name, f.value, p.Masked()))
		}
	}
	return errors.Join(errs...)
}

// Cluster is a running kwokctl cluster (runtime binary): etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and a kwok
// controller, every one listening on 127.0.0.1 only, with its own working
// directory and ports so that many can run at once.
type Cluster struct {
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

	opts       Options
	kwokctl    string
	root       string // everything of this cluster; removed by Stop
	clusterDir string // kwokctl's working directory of the cluster
	env        []string
	ports      portSet
	portLocks  []*os.File
	procs      map[string]process
	stopped    bool
}

// Start creates a kwokctl cluster named name-<random> from the
// binaries in bin/ and waits until its API server answers, the default
// ServiceAccount exists and opts.FakeNodes kwok nodes are Ready. On error
// nothing is left running. Stop it with Stop.
func Start(ctx context.Context, name string, opts Options) (*Cluster, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("kwok cluster name %q: want at most 32 lower-case letters, digits and '-'", name)
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("kwok cluster %s: %w", name, err)
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Timeout == 0 {
		opts.Timeout = defaultTimeout
	}
	bins := map[string]string{}
	tools := []string{"kwokctl", "kwok", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kubectl"}
	if opts.MetricsServer {
		tools = append(tools, metricsServer)
	}
	for _, tool := range tools {
		path, err := machine.Binary(tool)
		if err != nil {
			return nil, err
		}
		bins[tool] = path
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	c := &Cluster{
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
		stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), StopTimeout)
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
func (c *Cluster) setEnv() {
	c.env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "KWOK_")
	})
	c.env = append(c.env,
		"HOME="+c.root,
		"KWOK_WORKDIR="+filepath.Join(c.root, "kwok"),
		"PATH="+filepath.Join(c.root, "path")+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
}

// State is what finds a running Cluster again from another process
// (Reattach), e.g. to stop clusters a demo left running.
type State struct {
	Name string `json:"name"`
	Root string `json:"root"`
}

// State returns what Reattach needs.
func (c *Cluster) State() State { return State{Name: c.Name, Root: c.root} }

// Reattach returns the cluster s names, started by another
// process, with the components it finds running; Stop stops it. Its Config
// and Client are not set.
func Reattach(s State) (*Cluster, error) {
	kwokctl, err := machine.Binary("kwokctl")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: s.Name, root: s.Root, kwokctl: kwokctl, opts: Options{Logf: func(string, ...any) {}}}
	c.clusterDir = filepath.Join(c.root, "kwok", "clusters", c.Name)
	c.Kubeconfig = filepath.Join(c.root, "kubeconfig")
	c.setEnv()
	c.procs = findProcesses(filepath.Join(c.clusterDir, "bin"))
	return c, nil
}

func (c *Cluster) start(ctx context.Context, bins map[string]string) error {
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
	if c.ports, c.portLocks, err = reservePorts(c.opts.MetricsServer); err != nil {
		return err
	}
	var ms *metricsServerFiles
	if c.opts.MetricsServer {
		if ms, err = writeMetricsServerFiles(filepath.Join(c.root, metricsServer), filepath.Join(c.clusterDir, "pki", "ca.crt"), c.ports.apiserver); err != nil {
			return err
		}
	}
	configPath := filepath.Join(c.root, "kwokctl.yaml")
	conf := kwokctlConfiguration(c.ports, bins, filepath.Join(c.clusterDir, "pki"), ms, c.opts)
	if c.opts.AuditWrites {
		policy, err := c.writeAuditPolicy()
		if err != nil {
			return err
		}
		conf["options"].(map[string]any)["kubeAuditPolicy"] = policy
	}
	config, err := yaml.Marshal(conf)
	if err != nil {
		return err
	}
	if err := os.WriteFile(configPath, config, 0o644); err != nil {
		return err
	}

	c.opts.Logf("kwok cluster %s: creating (kwokctl, runtime binary, workdir %s)", c.Name, c.root)
	args := []string{"create", "cluster",
		"--name", c.Name,
		"--runtime", "binary",
		"--kubeconfig=", // not ~/.kube/config
		"--kube-apiserver-binary", bins["kube-apiserver"],
		"--kube-controller-manager-binary", bins["kube-controller-manager"],
		"--kube-scheduler-binary", bins["kube-scheduler"],
		"--etcd-binary", bins["etcd"],
		"--kwok-controller-binary", bins["kwok"],
		"-c", configPath,
	}
	if c.opts.ControlPlaneOnly {
		args = append(args, "--disable", "kube-controller-manager,kube-scheduler,kwok-controller")
	}
	if err := c.runKwokctl(ctx, "create", args...); err != nil {
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
// all interfaces) and keep kwok off every Node without NodeAnnotation.
// ms, for Options.MetricsServer, are the files of writeMetricsServerFiles.
func kwokctlConfiguration(p portSet, bins map[string]string, pki string, ms *metricsServerFiles, opts Options) map[string]any {
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
		"kubectlBinary":             bins["kubectl"],
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
	// kwokctl v0.8.0 has no option for either range, and sets neither flag
	// (so these are additions, not overrides).
	apiserverArgs := []map[string]any{
		override("bind-address", loopback),
		// As in a real cluster, the API server authenticates to
		// kubelets (the kubelet API of virtual nodes requires it).
		{"key": "kubelet-client-certificate", "value": filepath.Join(pki, "admin.crt")},
		{"key": "kubelet-client-key", "value": filepath.Join(pki, "admin.key")},
	}
	if opts.ServiceCIDR != "" {
		apiserverArgs = append(apiserverArgs, map[string]any{"key": "service-cluster-ip-range", "value": opts.ServiceCIDR})
	}
	if ms != nil {
		apiserverArgs = append(apiserverArgs, map[string]any{"key": "token-auth-file", "value": ms.tokens})
	}
	kwokArgs := []map[string]any{
		override("server-address", loopback+":"+strconv.Itoa(p.kwok)),
		// the API server reaches kwok (logs, exec) at the node IP.
		override("node-ip", loopback),
		override("manage-all-nodes", "false"),
		{"key": "manage-nodes-with-annotation-selector", "value": NodeAnnotation + "=" + NodeAnnotationValue},
	}
	if opts.PodCIDR != "" {
		kwokArgs = append(kwokArgs, map[string]any{"key": "cidr", "value": opts.PodCIDR})
	}
	patches := []map[string]any{
		{"name": "etcd", "extraArgs": []map[string]any{
			override("listen-client-urls", url(p.etcd)),
			override("advertise-client-urls", url(p.etcd)),
			override("listen-peer-urls", url(p.etcdPeer)),
			override("initial-advertise-peer-urls", url(p.etcdPeer)),
			override("initial-cluster", "node0="+url(p.etcdPeer)),
		}},
		{"name": "kube-apiserver", "extraArgs": apiserverArgs},
		// One instance each: a lease renewal that misses its deadline
		// (a busy machine, an API server killed by a test) makes the
		// component exit for good, since nothing restarts it. Hence a
		// lease that outlives any test. (kwokctl sets no leader-elect
		// flag, and drops overrides of flags it does not set.)
		{"name": "kube-controller-manager", "extraArgs": append([]map[string]any{override("bind-address", loopback)}, longLease...)},
		{"name": "kube-scheduler", "extraArgs": append([]map[string]any{override("bind-address", loopback)}, longLease...)},
		{"name": "kwok-controller", "extraArgs": kwokArgs},
	}
	if ms != nil {
		options["enable"] = []string{metricsServer}
		options["metricsServerBinary"] = bins[metricsServer]
		options["metricsServerPort"] = p.metricsServer
		// kwokctl would download the release's manifest: this one is
		// local (a folder, which kwokctl builds with kubectl kustomize).
		options["metricsServerManifests"] = []string{ms.manifest}
		patches = append(patches, map[string]any{"name": metricsServer, "extraArgs": []map[string]any{
			override("bind-address", loopback),
			// Its own identity for the API server and the kubelets; it
			// still authenticates and authorizes its own clients (the
			// aggregator) as the admin, since kwokctl's manifest drops
			// RBAC objects.
			override("kubeconfig", ms.kubeconfig),
			override("metric-resolution", MetricResolution.String()),
			// Its default, 10 s, is refused: it must be below the resolution.
			{"key": "kubelet-request-timeout", "value": (MetricResolution / 2).String()},
		}})
	}
	return map[string]any{
		"apiVersion":        "config.kwok.x-k8s.io/v1alpha1",
		"kind":              "KwokctlConfiguration",
		"options":           options,
		"componentsPatches": patches,
	}
}

// metricsServerFiles are what Options.MetricsServer needs before the
// cluster starts.
type metricsServerFiles struct {
	// manifest is a kustomize folder of the objects that make the API
	// server serve metrics.k8s.io from metrics-server.
	manifest string
	// tokens is the API server's --token-auth-file, with the token of
	// MetricsServerUser.
	tokens string
	// kubeconfig is metrics-server's, with that token.
	kubeconfig string
}

// writeMetricsServerFiles writes the files of metricsServerFiles into dir;
// ca is the cluster CA's certificate (kwokctl writes it later) and
// apiserver the API server's port. In the manifest, kwokctl turns the
// Service into an ExternalName one at 127.0.0.1 and points the APIService
// at metrics-server's port; metrics-server serves with the admin's
// certificate (kwokctl's), hence insecureSkipTLSVerify.
func writeMetricsServerFiles(dir, ca string, apiserver int) (*metricsServerFiles, error) {
	const objects = `apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
spec:
  ports:
  - port: 443
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
spec:
  group: metrics.k8s.io
  version: v1beta1
  service:
    name: metrics-server
    namespace: kube-system
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
`
	const kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- metrics-server.yaml\n"
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	token := hex.EncodeToString(secret)
	kubeconfig := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"kwok": {Server: fmt.Sprintf("https://%s:%d", loopback, apiserver), CertificateAuthority: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{MetricsServerUser: {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{"kwok": {Cluster: "kwok", AuthInfo: MetricsServerUser}},
		CurrentContext: "kwok",
	}
	f := &metricsServerFiles{manifest: dir, tokens: filepath.Join(dir, "tokens.csv"), kubeconfig: filepath.Join(dir, "kubeconfig")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for name, data := range map[string]string{
		"metrics-server.yaml": objects,
		"kustomization.yaml":  kustomization,
		"tokens.csv":          fmt.Sprintf("%s,%s,%s\n", token, MetricsServerUser, MetricsServerUser),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			return nil, err
		}
	}
	return f, clientcmd.WriteToFile(kubeconfig, f.kubeconfig)
}

// metricsServerRBAC are the rights of MetricsServerUser, those of
// metrics-server's own manifest: it reads pods and nodes, and the kubelets'
// resource metrics (nodes/metrics, which a kubelet checks).
func metricsServerRBAC() []client.Object {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "system:metrics-server"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "system:metrics-server"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: MetricsServerUser}},
	}
	return []client.Object{role, binding}
}

// runKwokctl runs kwokctl in the cluster's environment; its output goes to
// <root>/kwokctl-<step>.log and into the error.
func (c *Cluster) runKwokctl(ctx context.Context, step string, args ...string) error {
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
		return fmt.Errorf("kwokctl %s: %w\n%s", strings.Join(args[:2], " "), err, machine.Tail(data, logTailLines))
	}
	return nil
}

func (c *Cluster) readPIDs() error {
	c.procs = map[string]process{}
	var errs []error
	for _, name := range c.components() {
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
		start, running := machine.ProcessStart(pid)
		if !running {
			errs = append(errs, fmt.Errorf("component %s (pid %d) exited", name, pid))
			continue
		}
		c.procs[name] = process{pid: pid, start: start}
	}
	return errors.Join(errs...)
}

// loadKubeconfig flattens kwokctl's kubeconfig (certificates in files of the
// workdir) into one self-contained file.
func (c *Cluster) loadKubeconfig() error {
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

func (c *Cluster) waitReady(ctx context.Context) error {
	poll := func(what string, cond func(context.Context) (bool, error)) error {
		start := time.Now()
		var lastErr error
		err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
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
	// Pods are refused until the controller-manager made the default
	// ServiceAccount (a control plane alone makes none, and runs no pod).
	if !c.opts.ControlPlaneOnly {
		if err := poll("default ServiceAccount created", func(ctx context.Context) (bool, error) {
			err := c.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{})
			return err == nil, client.IgnoreNotFound(err)
		}); err != nil {
			return err
		}
	}
	// ClusterLogs, ClusterExec ... objects are refused until their CRDs are.
	if len(c.opts.EnableCRDs) > 0 {
		if err := poll("kwok CRDs established", c.crdsEstablished); err != nil {
			return err
		}
	}
	// metrics-server retries until it may read pods and nodes.
	if c.opts.MetricsServer {
		for _, o := range metricsServerRBAC() {
			if err := c.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating the RBAC of metrics-server: %w", err)
			}
		}
	}
	for i := range c.opts.FakeNodes {
		node := NewNode(fmt.Sprintf("kwok-node-%d", i))
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

// crdsEstablished says whether the CRD of every kind in EnableCRDs is
// Established.
func (c *Cluster) crdsEstablished(ctx context.Context) (bool, error) {
	list := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := c.Client.List(ctx, list); err != nil {
		return false, err
	}
	var waiting []string
	for _, kind := range c.opts.EnableCRDs {
		i := slices.IndexFunc(list.Items, func(crd apiextensionsv1.CustomResourceDefinition) bool {
			return crd.Spec.Group == kwokGroup && crd.Spec.Names.Kind == kind
		})
		if i < 0 || !slices.ContainsFunc(list.Items[i].Status.Conditions, func(c apiextensionsv1.CustomResourceDefinitionCondition) bool {
			return c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
		}) {
			waiting = append(waiting, kind)
		}
	}
	if len(waiting) > 0 {
		return false, fmt.Errorf("CRDs of %s not established yet", strings.Join(waiting, ", "))
	}
	return true, nil
}

// ExportLogs copies the component logs, kwokctl's own output and the
// effective kwokctl configuration (kwok.yaml, with every component's
// arguments) into dir. It works until Stop.
func (c *Cluster) ExportLogs(dir string) error {
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
func (c *Cluster) Stop(ctx context.Context) error {
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
		c.procs = map[string]process{}
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
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, name := range c.components() {
		data, err := os.ReadFile(filepath.Join(c.clusterDir, "logs", name+".log"))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "\n--- %s.log (last %d lines) ---\n%s", name, logTailLines, machine.Tail(data, logTailLines))
	}
	return b.String()
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
