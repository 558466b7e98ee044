// Command demo runs Stretch's story on three local clusters (home,
// provider-eu, provider-us) and leaves them running. 'make demo' runs "up":
// kwokctl clusters whose kwok nodes fake the pods, with the managers as host
// processes (kwok.go). 'make demo-real' runs "up -real": clusters of real
// nodes (containerd, runc, kubelet, kube-proxy) from internal/testenv/realnode,
// each on a host (network namespace) of its own, held by a keeper process,
// with the managers as pods from the chart (real.go, keeper.go). 'make
// demo-down' runs "down" for either. It prints each command a user would type
// and what it shows. It needs 'make tools build'.
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

	"stretch.dev/stretch/internal/testenv/machine"
)

// The modes of a demo, as state.json records them.
const (
	modeKwok = "kwok"
	modeReal = "real"
)

// state is what 'down' and a second 'up' need, in <dir>/state.json.
type state struct {
	Started time.Time `json:"started"`
	// Mode is modeKwok or modeReal; a state without one is kwok's.
	Mode     string    `json:"mode,omitempty"`
	Clusters []cluster `json:"clusters"`
	Managers []manager `json:"managers"`
	// Keeper holds the real clusters (modeReal).
	Keeper *keeperProcess `json:"keeper,omitempty"`
}

// role is one cluster of the story.
type role struct {
	Role string
	// Labels are the cluster labels; RealLabels those in 'up -real'.
	Labels, RealLabels string
	// RealNodes is how many real nodes the cluster has in 'up -real'.
	RealNodes int
	// PodCIDR and ServiceCIDR are the cluster's own address ranges in 'up'
	// (kwok), so that pods of different clusters never show the same IP
	// (the real clusters get theirs from internal/testenv/realnode). Clear
	// of the machine's network (192.0.2.0/24) and resolver (10.255.255.53).
	PodCIDR, ServiceCIDR string
}

var roles = []role{
	{Role: "home", Labels: "region=home", RealLabels: "region=home", RealNodes: 2, PodCIDR: "10.10.0.0/16", ServiceCIDR: "10.110.0.0/16"},
	{Role: "provider-eu", Labels: "region=eu,provider=kwok", RealLabels: "region=eu,provider=realnode", RealNodes: 1, PodCIDR: "10.20.0.0/16", ServiceCIDR: "10.120.0.0/16"},
	{Role: "provider-us", Labels: "region=us,provider=kwok", RealLabels: "region=us,provider=realnode", RealNodes: 1, PodCIDR: "10.30.0.0/16", ServiceCIDR: "10.130.0.0/16"},
}

const namespace = "demo"

func main() {
	dir := flag.String("dir", ".demo", "Folder of the demo's kubeconfigs, logs and state.")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: demo [-dir DIR] up [-real] | down\n")
		flag.PrintDefaults()
		fmt.Fprintf(flag.CommandLine.Output(), "  -real (after up)\n    \tReal nodes (containerd, runc, kubelet) in network namespaces instead of kwok; needs root.\n")
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	upFlags := flag.NewFlagSet("up", flag.ExitOnError)
	upFlags.Usage = flag.Usage
	real := upFlags.Bool("real", false, "")
	if flag.Arg(0) == "up" {
		_ = upFlags.Parse(flag.Args()[1:])
	}
	if (flag.Arg(0) == "up" && upFlags.NArg() > 0) || (flag.Arg(0) != "up" && flag.NArg() > 1) {
		flag.Usage()
		os.Exit(2)
	}
	ctrllog.SetLogger(logr.Discard()) // the clients' logs would drown the story
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
	d := &demo{dir: *dir, absDir: abs, out: os.Stdout, start: time.Now(), real: *real}
	switch flag.Arg(0) {
	case "up":
		err = d.up(ctx)
	case "down":
		err = d.down()
	case keepCommand: // what 'up -real' starts; not for users
		err = d.keep(ctx)
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
	dir string
	// absDir is dir made absolute, for the keeper.
	absDir string
	out    io.Writer
	start  time.Time
	bin    string
	st     state
	// real is 'up -real'.
	real bool
	// rs is what the keeper reported once its clusters were ready.
	rs *realStatus
	// marks are the times of the phases of 'up', for the summary.
	marks []mark
	mu    sync.Mutex // serializes progress lines
}

// mark is the end of a phase of 'up'.
type mark struct {
	name string
	at   time.Duration
}

func (d *demo) mark(name string) { d.marks = append(d.marks, mark{name, time.Since(d.start)}) }

func (d *demo) statePath() string { return filepath.Join(d.dir, "state.json") }

func (d *demo) kubeconfig(role string) string {
	return filepath.Join(d.dir, "kubeconfig-"+role)
}

// target is the make target of this mode, for messages.
func (d *demo) target() string {
	if d.real {
		return "make demo-real"
	}
	return "make demo"
}

// step prints a heading with the time since the start.
func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n[%5.1fs] ── %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// progress prints a progress line of a long step; goroutines may call it.
func (d *demo) progress(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "[%5.1fs]    %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// run runs a command from bin/ and prints it as a user types it, then its output.
func (d *demo) run(ctx context.Context, name string, args ...string) (string, error) {
	return d.runTo(ctx, d.out, name, args...)
}

// runAll runs commands from bin/ at once, then prints each as run does, in
// order.
func (d *demo) runAll(ctx context.Context, cmds ...[]string) error {
	outs := make([]bytes.Buffer, len(cmds))
	errs := make([]error, len(cmds))
	var wg sync.WaitGroup
	for i, c := range cmds {
		wg.Go(func() { _, errs[i] = d.runTo(ctx, &outs[i], c[0], c[1:]...) })
	}
	wg.Wait()
	for i := range outs {
		if _, err := outs[i].WriteTo(d.out); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// runTo is run, printing to w.
func (d *demo) runTo(ctx context.Context, w io.Writer, name string, args ...string) (string, error) {
	fmt.Fprintf(w, "$ %s %s\n", name, strings.Join(quote(args), " "))
	// Longer than the longest --timeout the story passes.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, name), args...)
	var buf bytes.Buffer
	lines := &indent{w: w}
	cmd.Stdout = io.MultiWriter(&buf, lines)
	cmd.Stderr = cmd.Stdout
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
	if st.Mode == modeReal {
		return st.Keeper.alive()
	}
	return kwokRunning(st)
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

func (d *demo) save() error { return writeJSON(d.statePath(), d.st) }

// writeJSON writes v to path through a rename, so that a reader in another
// process never sees half of it.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
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
	if d.real && os.Geteuid() != 0 {
		return errors.New("make demo-real needs root: it creates network namespaces, bridges, cgroups and mounts, and runs containerd and kubelets; run it as root (sudo make demo-real), or run 'make demo' (kwok, no root)")
	}
	if d.bin, err = machine.BinDir(); err != nil {
		return err
	}
	tools := []string{"stretchctl", "kubectl"}
	if !d.real {
		tools = append(tools, "stretch-controller-manager")
	}
	for _, tool := range tools {
		if _, err := os.Stat(filepath.Join(d.bin, tool)); err != nil {
			return fmt.Errorf("%s not found: run 'make tools build' (%s does)", filepath.Join(d.bin, tool), d.target())
		}
	}
	if err := os.MkdirAll(filepath.Join(d.dir, "logs"), 0o755); err != nil {
		return err
	}
	d.st = state{Started: d.start, Mode: modeKwok}
	if d.real {
		d.st.Mode = modeReal
	}
	defer func() {
		switch {
		case err == nil:
		case d.real && !d.st.Keeper.alive():
			err = fmt.Errorf("%w\nthe keeper is gone, and its clusters with it; 'make demo-down' removes %s", err, d.dir)
		default:
			err = fmt.Errorf("%w\nthe clusters are left as they are for a look (logs in %s); 'make demo-down' stops them", err, filepath.Join(d.dir, "logs"))
		}
	}()

	// The clusters, each with Stretch installed and a manager running.
	if d.real {
		err = d.upReal(ctx)
	} else {
		err = d.upKwok(ctx)
	}
	if err != nil {
		return err
	}
	d.mark("Stretch installed")
	twin, err := d.story(ctx)
	if err != nil {
		return err
	}
	if d.real {
		err = d.logsAndExecReal(ctx)
	} else {
		err = d.logsAndExecKwok(ctx)
	}
	if err != nil {
		return err
	}
	d.mark("story told")
	d.summary(twin)
	return nil
}

// story is what both modes show once every cluster runs a manager: peering,
// offloading, an app whose pods run on the providers.
func (d *demo) story(ctx context.Context) (twin string, err error) {
	// Real clusters take longer: their nodes pull nothing but start real
	// containers, on a machine shared by the three clusters.
	patience := "2m"
	var wide []string
	if d.real {
		patience, wide = "3m", []string{"-o", "wide"}
	}
	d.step("Peering home with both providers: each issues least-privilege credentials; a virtual node appears at home")
	for _, p := range roles[1:] {
		if _, err := d.run(ctx, "stretchctl", "peer", "--kubeconfig", d.kubeconfig("home"), "--remote-kubeconfig", d.kubeconfig(p.Role), "--wait", "--timeout", patience); err != nil {
			return "", err
		}
	}
	home := []string{"--kubeconfig", d.kubeconfig("home")}
	d.step("The providers are nodes of the home cluster, with their cluster labels; each shows Stretch's version as its kubelet's, and the OS image, kernel and container runtime of most of the provider's nodes")
	if _, err := d.run(ctx, "kubectl", append(home, "get", "nodes", "-L", "stretch.dev/type,region,provider", "-o", "wide")...); err != nil {
		return "", err
	}
	d.step("Offloading namespace %s to the providers in region eu or us; its pods run only there (strategy Remote)", namespace)
	if _, err := d.run(ctx, "kubectl", append(home, "create", "namespace", namespace)...); err != nil {
		return "", err
	}
	if _, err := d.run(ctx, "stretchctl", "offload", "namespace", namespace, "--kubeconfig", d.kubeconfig("home"),
		"--pod-offloading-strategy", "Remote", "--selector", "region in (eu,us)", "--wait"); err != nil {
		return "", err
	}
	if _, err := d.run(ctx, "kubectl", append(home, "get", "namespaceoffloadings", "offloading", "-n", namespace, "-o=jsonpath={['status.offloadingPhase']}")...); err != nil {
		return "", err
	}
	twin, err = d.run(ctx, "kubectl", append(home, "get", "namespaceoffloadings", "offloading", "-n", namespace, "-o", "yaml")...)
	if err != nil {
		return "", err
	}
	twin = remoteNamespace(twin)

	manifest := filepath.Join(d.dir, "app.yaml")
	if d.real {
		d.step("Deploying the test app at home: a ConfigMap, a Service and a Deployment of 4 replicas (image %s, imported into every node; a readiness probe on /readyz)", d.rs.Images.Testapp)
		err = os.WriteFile(manifest, []byte(realApp(d.rs.Images.Testapp)), 0o644)
	} else {
		d.step("Deploying a small app at home: a ConfigMap, a Service and a Deployment of 4 replicas")
		err = os.WriteFile(manifest, []byte(app), 0o644)
	}
	if err != nil {
		return "", err
	}
	if _, err := d.run(ctx, "kubectl", append(home, "apply", "-f", manifest)...); err != nil {
		return "", err
	}
	if _, err := d.run(ctx, "kubectl", append(home, "rollout", "status", "deployment/hello", "-n", namespace, "--timeout", patience)...); err != nil {
		return "", err
	}
	d.step("At home the pods run on the virtual nodes, with the IPs the providers gave them")
	if _, err := d.run(ctx, "kubectl", append(home, "get", "pods,services", "-n", namespace, "-o", "wide")...); err != nil {
		return "", err
	}
	d.step("On the providers they run in the twin namespace %s, with the ConfigMap and the Service reflected", twin)
	for _, p := range roles[1:] {
		if _, err := d.run(ctx, "kubectl", append([]string{"--kubeconfig", d.kubeconfig(p.Role), "get", "pods,configmaps,services", "-n", twin}, wide...)...); err != nil {
			return "", err
		}
	}
	d.step("Stretch's own view")
	if _, err := d.run(ctx, "stretchctl", "status", "--kubeconfig", d.kubeconfig("home")); err != nil {
		return "", err
	}
	return twin, nil
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
`, time.Since(d.start).Seconds(), d.kubeconfig("home"), namespace, namespace, namespace,
		d.kubeconfig("provider-eu"), twin, d.kubeconfig("provider-us"))
	if d.real {
		d.realSummary()
		return
	}
	fmt.Fprintf(d.out, `    kubectl logs -n %s deployment/hello; kubectl exec -n %s deployment/hello -- sh -c 'echo "hello from $PROVIDER"'

  Manager logs are in %s.
  'make demo-down' stops the clusters and the managers and frees their ports.
`, namespace, namespace, filepath.Join(d.dir, "logs"))
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
	if st.Mode == modeReal {
		err = d.downReal(st)
	} else {
		err = d.downKwok(st)
	}
	if err != nil {
		return fmt.Errorf("%w\n%s is kept: run 'make demo-down' again", err, d.dir)
	}
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

// appHeader is the ConfigMap and the Service of the app, the same in both
// modes.
const appHeader = `apiVersion: v1
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
`

// app is what kwok runs: its nodes fake the pods, so the image is a name.
const app = appHeader + `        image: registry.example/hello:1.0
        ports: [{containerPort: 8080}]
        env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: hello, key: greeting}}
`

// realApp runs the test app: imported into the nodes, never pulled; Ready
// by its probe; the ConfigMap as env and as a file.
func realApp(image string) string {
	return appHeader + `        image: ` + image + `
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: hello, key: greeting}}
        readinessProbe: {httpGet: {path: /readyz, port: 8080}, periodSeconds: 2}
        volumeMounts: [{name: hello, mountPath: /etc/hello}]
      volumes: [{name: hello, configMap: {name: hello}}]
`
}
