// Command demo runs Stretch's story on three local kwokctl clusters (home,
// provider-eu, provider-us) and leaves them running: 'make demo' runs "up",
// 'make demo-down' runs "down". It prints each command a user would type and
// what it shows. It needs 'make tools build'.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

// cluster is one cluster of the demo.
type cluster struct {
	Role   string     `json:"role"`
	Labels string     `json:"labels"`
	Kwok   kwok.State `json:"kwok"`
}

// manager is a running stretch-controller-manager.
type manager struct {
	Role string `json:"role"`
	PID  int    `json:"pid"`
	Log  string `json:"log"`
}

// state is what 'down' and a second 'up' need, in <dir>/state.json.
type state struct {
	Started  time.Time `json:"started"`
	Clusters []cluster `json:"clusters"`
	Managers []manager `json:"managers"`
}

var roles = []cluster{
	{Role: "home", Labels: "region=home"},
	{Role: "provider-eu", Labels: "region=eu,provider=kwok"},
	{Role: "provider-us", Labels: "region=us,provider=kwok"},
}

const namespace = "demo"

func main() {
	dir := flag.String("dir", ".demo", "Folder of the demo's kubeconfigs, logs and state.")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: demo [-dir DIR] up|down\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctrllog.SetLogger(logr.Discard()) // the clients' logs would drown the story
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{dir: *dir, out: os.Stdout, start: time.Now()}
	var err error
	switch flag.Arg(0) {
	case "up":
		err = d.up(ctx)
	case "down":
		err = d.down()
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	dir   string
	out   io.Writer
	start time.Time
	bin   string
	st    state
}

func (d *demo) statePath() string { return filepath.Join(d.dir, "state.json") }

func (d *demo) kubeconfig(role string) string {
	return filepath.Join(d.dir, "kubeconfig-"+role)
}

// step prints a heading with the time since the start.
func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n[%5.1fs] ── %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// run runs a command from bin/ and prints it as a user types it, then its output.
func (d *demo) run(ctx context.Context, name string, args ...string) (string, error) {
	fmt.Fprintf(d.out, "$ %s %s\n", name, strings.Join(quote(args), " "))
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, name), args...)
	var buf bytes.Buffer
	lines := &indent{w: d.out}
	w := io.MultiWriter(&buf, lines)
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	lines.flush()
	if err != nil {
		return buf.String(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return buf.String(), nil
}

func quote(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " ()'\"{}[]*") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

// indent prefixes output lines so that commands stand out; it prints whole
// lines, since a command writes in chunks.
type indent struct {
	w       io.Writer
	mu      sync.Mutex
	partial []byte
}

func (i *indent) Write(p []byte) (int, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.partial = append(i.partial, p...)
	for {
		n := bytes.IndexByte(i.partial, '\n')
		if n < 0 {
			return len(p), nil
		}
		if _, err := fmt.Fprintf(i.w, "    %s\n", i.partial[:n]); err != nil {
			return 0, err
		}
		i.partial = i.partial[n+1:]
	}
}

// flush prints what is left without a newline.
func (i *indent) flush() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.partial) > 0 {
		fmt.Fprintf(i.w, "    %s\n", i.partial)
		i.partial = nil
	}
}

// running says whether any process of a recorded demo still runs.
func (d *demo) running(st state) bool {
	for _, m := range st.Managers {
		if alive(m.PID) {
			return true
		}
	}
	for _, c := range st.Clusters {
		if k, err := kwok.Reattach(c.Kwok); err == nil && len(k.Running()) > 0 {
			return true
		}
	}
	return false
}

func alive(pid int) bool { return machine.ProcessRunning(pid) }

func (d *demo) load() (state, bool, error) {
	data, err := os.ReadFile(d.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, err
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return state{}, false, fmt.Errorf("%s: %w (remove %s to start afresh)", d.statePath(), err, d.dir)
	}
	return st, true, nil
}

func (d *demo) save() error {
	data, err := json.MarshalIndent(d.st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(d.statePath(), data, 0o644)
}

func (d *demo) up(ctx context.Context) (err error) {
	if st, ok, err := d.load(); err != nil {
		return err
	} else if ok && d.running(st) {
		return fmt.Errorf("a demo is already running (started %s): use it with KUBECONFIG=%s, or stop it with 'make demo-down'",
			st.Started.Local().Format(time.Kitchen), d.kubeconfig("home"))
	} else if ok {
		fmt.Fprintln(d.out, "A previous demo stopped without 'make demo-down': cleaning it up first.")
		if err := d.down(); err != nil {
			return err
		}
	}
	if d.bin, err = machine.BinDir(); err != nil {
		return err
	}
	for _, tool := range []string{"stretchctl", "stretch-controller-manager", "kubectl"} {
		if _, err := os.Stat(filepath.Join(d.bin, tool)); err != nil {
			return fmt.Errorf("%s not found: run 'make tools build' (make demo does)", filepath.Join(d.bin, tool))
		}
	}
	if err := os.MkdirAll(filepath.Join(d.dir, "logs"), 0o755); err != nil {
		return err
	}
	d.st = state{Started: d.start}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nthe clusters are left as they are for a look (logs in %s); 'make demo-down' stops them", err, filepath.Join(d.dir, "logs"))
		}
	}()

	d.step("Starting three local clusters with kwokctl (real etcd, kube-apiserver, kube-controller-manager, kube-scheduler; kwok nodes run the pods)")
	if err := d.startClusters(ctx); err != nil {
		return err
	}
	d.step("Installing Stretch on each cluster, with its cluster labels")
	for _, c := range d.st.Clusters {
		if _, err := d.run(ctx, "stretchctl", "install", "--out-of-cluster", "--kubeconfig", d.kubeconfig(c.Role), "--cluster-name", c.Role, "--cluster-labels", c.Labels); err != nil {
			return err
		}
	}
	d.step("Running a stretch-controller-manager for each cluster (out of cluster; webhooks and kubelet API on 127.0.0.1)")
	for _, c := range d.st.Clusters {
		if err := d.startManager(c.Role); err != nil {
			return err
		}
	}
	d.step("Peering home with both providers: each issues least-privilege credentials; a virtual node appears at home")
	for _, p := range d.st.Clusters[1:] {
		if _, err := d.run(ctx, "stretchctl", "peer", "--kubeconfig", d.kubeconfig("home"), "--remote-kubeconfig", d.kubeconfig(p.Role), "--wait", "--timeout", "2m"); err != nil {
			return err
		}
	}
	home := []string{"--kubeconfig", d.kubeconfig("home")}
	d.step("The providers are nodes of the home cluster, with their cluster labels")
	if _, err := d.run(ctx, "kubectl", append(home, "get", "nodes", "-L", "stretch.dev/type,region,provider")...); err != nil {
		return err
	}
	d.step("Offloading namespace %s to the providers in region eu or us; its pods run only there (strategy Remote)", namespace)
	if _, err := d.run(ctx, "kubectl", append(home, "create", "namespace", namespace)...); err != nil {
		return err
	}
	if _, err := d.run(ctx, "stretchctl", "offload", "namespace", namespace, "--kubeconfig", d.kubeconfig("home"),
		"--pod-offloading-strategy", "Remote", "--selector", "region in (eu,us)", "--wait"); err != nil {
		return err
	}
	if _, err := d.run(ctx, "kubectl", append(home, "get", "namespaceoffloadings", "offloading", "-n", namespace, "-o=jsonpath={['status.offloadingPhase']}")...); err != nil {
		return err
	}
	twin, err := d.run(ctx, "kubectl", append(home, "get", "namespaceoffloadings", "offloading", "-n", namespace, "-o", "yaml")...)
	if err != nil {
		return err
	}
	twin = remoteNamespace(twin)

	d.step("Deploying a small app at home: a ConfigMap, a Service and a Deployment of 4 replicas")
	manifest := filepath.Join(d.dir, "app.yaml")
	if err := os.WriteFile(manifest, []byte(app), 0o644); err != nil {
		return err
	}
	if _, err := d.run(ctx, "kubectl", append(home, "apply", "-f", manifest)...); err != nil {
		return err
	}
	if _, err := d.run(ctx, "kubectl", append(home, "rollout", "status", "deployment/hello", "-n", namespace, "--timeout", "2m")...); err != nil {
		return err
	}
	d.step("At home the pods run on the virtual nodes")
	if _, err := d.run(ctx, "kubectl", append(home, "get", "pods", "-n", namespace, "-o", "wide")...); err != nil {
		return err
	}
	d.step("On the providers they run in the twin namespace %s, with the ConfigMap and the Service reflected", twin)
	for _, p := range d.st.Clusters[1:] {
		if _, err := d.run(ctx, "kubectl", "--kubeconfig", d.kubeconfig(p.Role), "get", "pods,configmaps,services", "-n", twin); err != nil {
			return err
		}
	}
	d.step("Stretch's own view")
	if _, err := d.run(ctx, "stretchctl", "status", "--kubeconfig", d.kubeconfig("home")); err != nil {
		return err
	}
	d.summary(twin)
	return nil
}

// remoteNamespace returns status.remoteNamespaceName from a NamespaceOffloading in YAML.
func remoteNamespace(yaml string) string {
	for _, line := range strings.Split(yaml, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "remoteNamespaceName: "); ok {
			return v
		}
	}
	return namespace
}

func (d *demo) startClusters(ctx context.Context) error {
	logs := filepath.Join(d.dir, "logs")
	started := make([]*kwok.Cluster, len(roles))
	errs := make([]error, len(roles))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, r := range roles {
		wg.Go(func() {
			started[i], errs[i] = kwok.Start(ctx, r.Role, kwok.Options{
				FakeNodes: 2,
				LogDir:    filepath.Join(logs, r.Role),
				Logf: func(format string, args ...any) {
					mu.Lock()
					defer mu.Unlock()
					fmt.Fprintf(d.out, "[%5.1fs]    %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
				},
			})
		})
	}
	wg.Wait()
	for i, c := range started {
		if c == nil {
			continue
		}
		d.st.Clusters = append(d.st.Clusters, cluster{Role: roles[i].Role, Labels: roles[i].Labels, Kwok: c.State()})
		data, err := os.ReadFile(c.Kubeconfig)
		if err == nil {
			err = os.WriteFile(d.kubeconfig(roles[i].Role), data, 0o600)
		}
		errs = append(errs, err)
	}
	errs = append(errs, d.save())
	return errors.Join(errs...)
}

func (d *demo) startManager(role string) error {
	webhook, err := machine.FreeAddr()
	if err != nil {
		return err
	}
	kubelet, err := machine.FreeAddr()
	if err != nil {
		return err
	}
	logPath := filepath.Join(d.dir, "logs", "stretch-controller-manager-"+role+".log")
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	args := []string{"--kubeconfig", d.kubeconfig(role), "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--webhook-bind-address", webhook, "--kubelet-bind-address", kubelet}
	fmt.Fprintf(d.out, "$ stretch-controller-manager %s > %s &\n", strings.Join(args, " "), logPath)
	cmd := exec.Command(filepath.Join(d.bin, "stretch-controller-manager"), args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: it outlives this command, and Ctrl-C here.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting stretch-controller-manager for %s: %w", role, err)
	}
	d.st.Managers = append(d.st.Managers, manager{Role: role, PID: cmd.Process.Pid, Log: logPath})
	return d.save()
}

func (d *demo) summary(twin string) {
	fmt.Fprintf(d.out, `
[%5.1fs] ── The demo is running. Try:

    export KUBECONFIG=%s          # the home cluster
    kubectl get nodes --show-labels
    kubectl get pods -n %s -o wide
    kubectl get namespaceoffloadings offloading -n %s -o yaml
    bin/stretchctl diagnose namespace %s
    bin/stretchctl status
    kubectl --kubeconfig %s get pods -n %s   # the same pods on provider-eu (%s for provider-us)

  Manager logs are in %s.
  'make demo-down' stops the clusters and the managers and frees their ports.
`, time.Since(d.start).Seconds(), d.kubeconfig("home"), namespace, namespace, namespace,
		d.kubeconfig("provider-eu"), twin, d.kubeconfig("provider-us"), filepath.Join(d.dir, "logs"))
}

// down stops what the recorded demo runs and removes its folder.
func (d *demo) down() error {
	st, ok, err := d.load()
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(d.out, "No demo is running (no %s).\n", d.statePath())
		return os.RemoveAll(d.dir)
	}
	var errs []error
	for _, m := range st.Managers {
		fmt.Fprintf(d.out, "Stopping the stretch-controller-manager of %s (pid %d)\n", m.Role, m.PID)
		errs = append(errs, stopProcess(m.PID))
	}
	for _, c := range st.Clusters {
		fmt.Fprintf(d.out, "Stopping cluster %s (%s)\n", c.Role, c.Kwok.Name)
		k, err := kwok.Reattach(c.Kwok)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			err = k.Stop(ctx)
			cancel()
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w\n%s is kept: run 'make demo-down' again", err, d.dir)
	}
	fmt.Fprintln(d.out, "Stopped; the ports are free.")
	return os.RemoveAll(d.dir)
}

// stopProcess stops pid as an operator would: SIGINT, then SIGKILL after 30 s.
func stopProcess(pid int) error {
	if !alive(pid) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGINT)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing pid %d: %w", pid, err)
	}
	return nil
}

const app = `apiVersion: v1
kind: ConfigMap
metadata: {name: hello, namespace: demo}
data: {greeting: "Hello from home"}
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: demo}
spec:
  selector: {app: hello}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, namespace: demo}
spec:
  replicas: 4
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
      - name: hello
        image: registry.example/hello:1.0
        ports: [{containerPort: 8080}]
        env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: hello, key: greeting}}
`
