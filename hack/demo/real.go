package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"stretch.dev/stretch/internal/testenv/machine"
)

const (
	// keeperReadyTimeout bounds the images' build and the clusters' start.
	keeperReadyTimeout = 20 * time.Minute
	// keeperStopTimeout bounds the keeper's stop of the clusters, after
	// which down kills it.
	keeperStopTimeout = 2 * time.Minute
	// keeperPoll is how often the keeper's log and status are read.
	keeperPoll = 250 * time.Millisecond
	// managerNamespace is the chart's.
	managerNamespace = "stretch-system"
)

// upReal starts the keeper, waits until its clusters are ready, shows them,
// and installs Stretch on each from the chart.
func (d *demo) upReal(ctx context.Context) error {
	d.step("Starting three clusters of real nodes: each a control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and nodes with containerd, runc, a kubelet and kube-proxy, on a host (network namespace) of its own; a keeper process holds them")
	exited, err := d.startKeeper()
	if err != nil {
		return err
	}
	if err := d.waitKeeper(ctx, exited); err != nil {
		return err
	}
	d.mark("clusters ready")

	d.step("Every cluster is a host with one address on a LAN bridge of this machine (198.18.255.0/24), its own Service range, and a pod range per node")
	d.printClusters()
	for _, c := range d.rs.Clusters {
		if _, err := d.run(ctx, "kubectl", "--kubeconfig", d.kubeconfig(c.Role), "get", "nodes", "-o", "wide"); err != nil {
			return err
		}
	}

	d.step("Installing Stretch on each cluster from the chart, with its cluster labels: the manager runs as pods (image %s, imported into every node, never pulled)", d.rs.Images.Manager)
	// At once: each waits half a minute for its manager's pods.
	d.progress("the three installs run at once; their output follows")
	var installs [][]string
	for _, c := range d.rs.Clusters {
		installs = append(installs, []string{"stretchctl", "install", "--kubeconfig", d.kubeconfig(c.Role), "--image", d.rs.Images.Manager,
			"--cluster-name", c.Role, "--cluster-labels", c.Labels, "--api-server-url", c.Server,
			"--set", "image.pullPolicy=Never", "--wait", "--timeout", "3m"})
	}
	if err := d.runAll(ctx, installs...); err != nil {
		return err
	}
	_, err = d.run(ctx, "kubectl", "--kubeconfig", d.kubeconfig("home"), "get", "pods", "-n", managerNamespace, "-o", "wide")
	return err
}

// startKeeper starts the keeper in a session of its own, so that it outlives
// this command, its terminal and a Ctrl-C here. The channel receives its
// exit while this command runs.
func (d *demo) startKeeper() (<-chan error, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(d.dir, "logs", "keeper.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	if err := os.Remove(d.keeperStatusPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	cmd := exec.Command(exe, "-dir", d.absDir, keepCommand)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the keeper (%s %s): %w", exe, keepCommand, err)
	}
	fmt.Fprintf(d.out, "$ demo -dir %s %s > %s &   # the keeper, pid %d\n", d.absDir, keepCommand, logPath, cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	start, _ := machine.ProcessStart(cmd.Process.Pid)
	d.st.Keeper = &keeperProcess{PID: cmd.Process.Pid, Start: start, Log: logPath}
	return exited, d.save()
}

// waitKeeper shows the keeper's progress until its clusters are ready.
func (d *demo) waitKeeper(ctx context.Context, exited <-chan error) error {
	k := d.st.Keeper
	log := &follower{path: k.Log}
	show := func() {
		for _, line := range log.lines() {
			d.progress("%s", line)
		}
	}
	tick := time.NewTicker(keeperPoll)
	defer tick.Stop()
	deadline := time.After(keeperReadyTimeout)
	for {
		show()
		if rs, err := d.readKeeper(); err == nil && rs.Ready {
			d.rs = rs
			return nil
		}
		select {
		case err := <-exited:
			show()
			if err == nil {
				err = errors.New("exit status 0")
			}
			return fmt.Errorf("the keeper (pid %d) exited before its clusters were ready: %w\n%s", k.PID, err, logTail(k.Log))
		case <-ctx.Done():
			return fmt.Errorf("interrupted while the keeper (pid %d) starts the clusters; it goes on (log %s)", k.PID, k.Log)
		case <-deadline:
			return fmt.Errorf("the keeper (pid %d) had no clusters ready after %s\n%s", k.PID, keeperReadyTimeout, logTail(k.Log))
		case <-tick.C:
		}
	}
}

func (d *demo) readKeeper() (*realStatus, error) {
	data, err := os.ReadFile(d.keeperStatusPath())
	if err != nil {
		return nil, err
	}
	var rs realStatus
	if err := json.Unmarshal(data, &rs); err != nil {
		return nil, fmt.Errorf("%s: %w", d.keeperStatusPath(), err)
	}
	return &rs, nil
}

// printClusters prints the clusters' addresses and ranges, a line per node.
func (d *demo) printClusters() {
	w := tabwriter.NewWriter(&indent{w: d.out}, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTER\tHOST (NETNS)\tLAN ADDRESS\tAPI SERVER\tSERVICE CIDR\tNODE\tINTERNAL IP\tPOD CIDR")
	for _, c := range d.rs.Clusters {
		for i, n := range c.Nodes {
			if i == 0 {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t", c.Role, c.Host, c.HostAddr, c.Server, c.ServiceCIDR)
			} else {
				fmt.Fprint(w, "\t\t\t\t\t")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", n.Name, n.IP, n.PodCIDR)
		}
	}
	_ = w.Flush()
}

// logsAndExecReal shows the logs of a real container on a provider, and a
// command run in it, both from home.
func (d *demo) logsAndExecReal(ctx context.Context) error {
	home := []string{"--kubeconfig", d.kubeconfig("home"), "-n", namespace}
	d.step("The logs of an offloaded pod's real container, read from home (the home API server asks the virtual kubelet in the home manager, which asks the provider's API server, its kubelet and containerd)")
	pod, err := d.run(ctx, "kubectl", append(home, "get", "pods", "-l", "app=hello", "-o=jsonpath={.items[0].metadata.name}")...)
	if err != nil {
		return err
	}
	pod = strings.TrimSpace(pod)
	if _, err := d.run(ctx, "kubectl", append(home, "logs", pod)...); err != nil {
		return err
	}
	d.step("A command run in that container from home: the home ConfigMap reached it on the provider as an env var and as a file")
	if _, err := d.run(ctx, "kubectl", append(home, "exec", pod, "--", "/testapp", "env", "GREETING")...); err != nil {
		return err
	}
	_, err = d.run(ctx, "kubectl", append(home, "exec", pod, "--", "/testapp", "cat", "/etc/hello/greeting")...)
	return err
}

// realSummary ends the summary of 'up -real': where the keeper is, how
// long each phase took, and the memory of the clusters' processes.
func (d *demo) realSummary() {
	fmt.Fprintf(d.out, `    kubectl logs -n %s deployment/hello; kubectl exec -n %s deployment/hello -- /testapp env GREETING
    kubectl logs -n %s deployment/stretch-controller-manager   # a manager, as a pod

  The keeper (pid %d, log %s) holds the clusters; 'make demo-down' stops it,
  which stops every cluster and removes its network namespaces.
`, namespace, namespace, managerNamespace, d.st.Keeper.PID, d.st.Keeper.Log)
	var phases []string
	last := time.Duration(0)
	for _, m := range d.marks {
		phases = append(phases, fmt.Sprintf("%s +%.0fs", m.name, (m.at-last).Seconds()))
		last = m.at
	}
	fmt.Fprintf(d.out, "\n  Summary: up in %.0fs (images built in %.0fs, clusters started in %.0fs; %s); %s\n",
		time.Since(d.start).Seconds(), d.rs.ImagesIn.Seconds(), d.rs.ClustersIn.Seconds(), strings.Join(phases, ", "), d.memory())
}

// memory asks the keeper to measure the clusters' resident memory and
// describes it.
func (d *demo) memory() string {
	asked := time.Now()
	k := d.st.Keeper
	if err := syscall.Kill(k.PID, syscall.SIGUSR1); err != nil {
		return fmt.Sprintf("memory not measured: signalling the keeper (pid %d): %v", k.PID, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, err := d.readKeeper()
		if err == nil && rs.MemoryAt.After(asked) {
			if rs.MemoryError != "" {
				return "memory not measured: " + rs.MemoryError
			}
			return describeMemory(rs.Memory)
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("memory not measured: the keeper (pid %d) did not answer in 30s (last read: %v)", k.PID, err)
		}
		time.Sleep(keeperPoll)
	}
}

// describeMemory sums the memory by cluster and by component.
func describeMemory(mem []clusterMemory) string {
	var total int64
	var clusters []string
	byComponent := map[string]int64{}
	for _, c := range mem {
		var sum int64
		for name, rss := range c.Components {
			sum += rss
			byComponent[name] += rss
		}
		total += sum
		clusters = append(clusters, fmt.Sprintf("%s %s", c.Role, mib(sum)))
	}
	names := slices.SortedFunc(maps.Keys(byComponent), func(a, b string) int { return cmp.Compare(byComponent[b], byComponent[a]) })
	var components []string
	for _, n := range names {
		components = append(components, fmt.Sprintf("%s %s", n, mib(byComponent[n])))
	}
	return fmt.Sprintf("resident memory of the clusters' processes (not their containers) %s: %s; by component: %s",
		mib(total), strings.Join(clusters, ", "), strings.Join(components, ", "))
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

// downReal asks the keeper to stop its clusters, shows its progress, and
// kills it when it takes too long.
func (d *demo) downReal(st state) error {
	k := st.Keeper
	if !k.alive() {
		fmt.Fprintln(d.out, "The keeper of the real clusters is not running: nothing to stop (realnode cleans what a dead keeper left at its next start).")
		return nil
	}
	fmt.Fprintf(d.out, "Stopping the keeper of the real clusters (pid %d): it stops every cluster's nodes and control plane and removes their hosts\n", k.PID)
	log := &follower{path: k.Log}
	log.skip()
	if err := syscall.Kill(k.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling the keeper (pid %d): %w", k.PID, err)
	}
	start := time.Now()
	nextNote := 15 * time.Second
	for k.alive() {
		for _, line := range log.lines() {
			fmt.Fprintf(d.out, "    %s\n", line)
		}
		waited := time.Since(start)
		if waited > keeperStopTimeout {
			if err := syscall.Kill(k.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("killing the keeper (pid %d): %w", k.PID, err)
			}
			return fmt.Errorf("the keeper (pid %d) did not stop its clusters in %s: killed it. What they left (processes, network namespaces srn*, mounts in /tmp/srn-*) is cleaned by the next real-node start, which takes their leases in /run/stretch-realnode over\n%s",
				k.PID, keeperStopTimeout, logTail(k.Log))
		}
		if waited > nextNote {
			fmt.Fprintf(d.out, "    (still stopping after %.0fs; SIGKILL after %s)\n", waited.Seconds(), keeperStopTimeout)
			nextNote += 15 * time.Second
		}
		time.Sleep(keeperPoll)
	}
	for _, line := range log.lines() {
		fmt.Fprintf(d.out, "    %s\n", line)
	}
	if rs, err := d.readKeeper(); err != nil || !rs.Stopped {
		return fmt.Errorf("the keeper (pid %d) exited without saying it stopped its clusters (%v)\n%s", k.PID, err, logTail(k.Log))
	} else if rs.StopError != "" {
		return fmt.Errorf("the keeper (pid %d) stopped its clusters with errors: %s", k.PID, rs.StopError)
	}
	fmt.Fprintf(d.out, "Stopped in %.1fs; the network namespaces and leases are released.\n", time.Since(start).Seconds())
	return nil
}

// follower reads the lines a process appends to its log.
type follower struct {
	path    string
	off     int64
	partial string
}

// skip starts after what the log holds now.
func (f *follower) skip() {
	if fi, err := os.Stat(f.path); err == nil {
		f.off = fi.Size()
	}
}

// lines returns the whole lines appended since the last call.
func (f *follower) lines() []string {
	file, err := os.Open(f.path)
	if err != nil {
		return nil
	}
	defer file.Close()
	data, err := io.ReadAll(io.NewSectionReader(file, f.off, 1<<30))
	if err != nil || len(data) == 0 {
		return nil
	}
	f.off += int64(len(data))
	text := f.partial + string(data)
	lines := strings.Split(text, "\n")
	f.partial = lines[len(lines)-1]
	return lines[:len(lines)-1]
}

// logTail returns the last lines of a log, indented, for errors.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("  (no log %s: %v)", path, err)
	}
	return fmt.Sprintf("  last lines of %s:\n    %s", path, strings.ReplaceAll(machine.Tail(data, 30), "\n", "\n    "))
}
