package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

// cluster is one kwok cluster of the demo.
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

// upKwok starts the kwok clusters, installs Stretch for managers out of
// cluster, and runs one for each cluster.
func (d *demo) upKwok(ctx context.Context) error {
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
	return d.fakeContainers(ctx)
}

// containersDir holds, per provider, what kwok serves for its containers.
func (d *demo) containersDir(role string) string { return filepath.Join(d.dir, "containers", role) }

// fakeContainers tells the kwok of each provider what to answer for the
// containers of its pods, which have no process: a log file for 'kubectl
// logs', and a folder of this machine, with PROVIDER set, where 'kubectl
// exec' runs its command.
func (d *demo) fakeContainers(ctx context.Context) error {
	d.step("kwok's containers have no process: on each provider, a ClusterLogs gives them a log file and a ClusterExec runs what 'kubectl exec' asks on this machine, in %s, with PROVIDER set", d.containersDir("<provider>"))
	for _, r := range roles[1:] {
		dir := d.containersDir(r.Role)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		logs := filepath.Join(dir, "hello.log")
		if err := os.WriteFile(logs, []byte(kwok.CRILog(time.Now(),
			"hello 1.0: listening on :8080",
			fmt.Sprintf("hello 1.0: this log is served by kwok on %s, from %s", r.Role, logs),
		)), 0o644); err != nil {
			return err
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		manifest, err := kwok.Containers{
			Name:     "demo",
			LogsFile: filepath.Join(abs, "hello.log"),
			ExecDir:  abs,
			ExecEnv:  map[string]string{"PROVIDER": r.Role},
		}.Manifest()
		if err != nil {
			return err
		}
		path := filepath.Join(d.dir, "kwok-containers-"+r.Role+".yaml")
		if err := os.WriteFile(path, manifest, 0o644); err != nil {
			return err
		}
		if _, err := d.run(ctx, "kubectl", "--kubeconfig", d.kubeconfig(r.Role), "apply", "-f", path); err != nil {
			return err
		}
	}
	return nil
}

// logsAndExecKwok shows 'kubectl logs' and 'kubectl exec' on a home pod of
// each provider reaching its container there, as kwok fakes it.
func (d *demo) logsAndExecKwok(ctx context.Context) error {
	home := []string{"--kubeconfig", d.kubeconfig("home"), "-n", namespace}
	d.step("kubectl logs and exec on home pods reach their containers on the providers (the home API server asks the virtual kubelet in the home manager, which asks the provider's API server, which asks kwok); one pod per provider")
	// Which pod runs where: a lookup, not part of the story.
	out, err := d.runTo(ctx, io.Discard, "kubectl", append(home, "get", "pods", "-l", "app=hello",
		"-o", `jsonpath={range .items[*]}{.spec.nodeName} {.metadata.name}{"\n"}{end}`)...)
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	podOn := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if node, pod, ok := strings.Cut(line, " "); ok && podOn[node] == "" {
			podOn[node] = pod
		}
	}
	for _, r := range roles[1:] {
		pod := podOn[peeringv1alpha1.VirtualNodeName(r.Role)]
		if pod == "" {
			continue // the scheduler put none there
		}
		if _, err := d.run(ctx, "kubectl", append(home, "logs", pod)...); err != nil {
			return err
		}
		if _, err := d.run(ctx, "kubectl", append(home, "exec", pod, "--", "sh", "-c", `echo "hello from $PROVIDER"`)...); err != nil {
			return err
		}
	}
	return nil
}

// kwokRunning says whether a manager or a cluster of a kwok demo still runs.
func kwokRunning(st state) bool {
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

func (d *demo) startClusters(ctx context.Context) error {
	logs := filepath.Join(d.dir, "logs")
	started := make([]*kwok.Cluster, len(roles))
	errs := make([]error, len(roles))
	var wg sync.WaitGroup
	for i, r := range roles {
		wg.Go(func() {
			started[i], errs[i] = kwok.Start(ctx, r.Role, kwok.Options{
				FakeNodes:   2,
				EnableCRDs:  kwok.ContainersCRDs,
				PodCIDR:     r.PodCIDR,
				ServiceCIDR: r.ServiceCIDR,
				LogDir:      filepath.Join(logs, r.Role),
				Logf:        d.progress,
			})
		})
	}
	wg.Wait()
	if errors.Join(errs...) == nil {
		d.printKwokClusters(started)
	}
	for i, c := range started {
		if c == nil {
			continue
		}
		d.st.Clusters = append(d.st.Clusters, cluster{Role: roles[i].Role, Labels: roles[i].Labels, Kwok: c.State()})
		errs = append(errs, copyFile(c.Kubeconfig, d.kubeconfig(roles[i].Role)))
	}
	errs = append(errs, d.save())
	return errors.Join(errs...)
}

// printKwokClusters prints where each cluster's API server is and the
// address ranges of its pods and Services.
func (d *demo) printKwokClusters(started []*kwok.Cluster) {
	w := tabwriter.NewWriter(&indent{w: d.out}, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTER\tAPI SERVER\tPOD CIDR\tSERVICE CIDR")
	for i, c := range started {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", roles[i].Role, c.Config.Host, roles[i].PodCIDR, roles[i].ServiceCIDR)
	}
	_ = w.Flush()
}

// copyFile copies a kubeconfig; only its owner reads it.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
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

// downKwok stops the managers and the clusters of a kwok demo.
func (d *demo) downKwok(st state) error {
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
		return err
	}
	fmt.Fprintln(d.out, "Stopped; the ports are free.")
	return nil
}
