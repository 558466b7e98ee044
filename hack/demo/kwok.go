package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

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
				FakeNodes: 2,
				LogDir:    filepath.Join(logs, r.Role),
				Logf:      d.progress,
			})
		})
	}
	wg.Wait()
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
