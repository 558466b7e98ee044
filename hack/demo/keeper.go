package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"stretch.dev/stretch/internal/testenv/machine"
	"stretch.dev/stretch/internal/testenv/realnode"
)

// The keeper is what 'up -real' leaves running: realnode holds a cluster's
// leases (its /24s) through locks of the process that started it, and its
// components are that process's children, so a cluster lives only as long as
// that process. 'up -real' re-runs this binary as 'demo -dir DIR keep-real'
// in a session of its own; it builds the images, starts the clusters, writes
// their kubeconfigs and keeper.json, and on SIGTERM ('make demo-down') or
// SIGINT stops every cluster and exits.
const keepCommand = "keep-real"

// The packages built into images, relative to the repository root.
const (
	testappPackage = "./test/realnode/testapp"
	managerPackage = "./cmd/stretch-controller-manager"
)

// keeperProcess is the keeper as state.json records it.
type keeperProcess struct {
	PID int `json:"pid"`
	// Start is the process's start time (see machine.ProcessStart): a pid
	// recycled since is not the keeper.
	Start string `json:"start"`
	Log   string `json:"log"`
}

// alive says whether the recorded keeper still runs.
func (k *keeperProcess) alive() bool {
	if k == nil {
		return false
	}
	start, ok := machine.ProcessStart(k.PID)
	return ok && start == k.Start
}

// realStatus is what the keeper reports in <dir>/keeper.json; only the
// keeper writes it.
type realStatus struct {
	PID int `json:"pid"`
	// Ready is set once every cluster runs and the kubeconfigs are written.
	Ready bool `json:"ready"`
	// Error is why the start failed.
	Error      string        `json:"error,omitempty"`
	Images     realImages    `json:"images"`
	ImagesIn   time.Duration `json:"imagesIn"`
	ClustersIn time.Duration `json:"clustersIn"`
	Clusters   []realCluster `json:"clusters"`
	// Memory is measured on SIGUSR1, at MemoryAt.
	Memory      []clusterMemory `json:"memory,omitempty"`
	MemoryAt    time.Time       `json:"memoryAt"`
	MemoryError string          `json:"memoryError,omitempty"`
	// Stopped is set once the clusters are stopped, with StopError if
	// something stayed.
	Stopped   bool   `json:"stopped"`
	StopError string `json:"stopError,omitempty"`
}

// realImages are the images' references in containerd.
type realImages struct {
	Pause   string `json:"pause"`
	Testapp string `json:"testapp"`
	Manager string `json:"manager"`
}

// realCluster describes a running real cluster.
type realCluster struct {
	Role   string `json:"role"`
	Labels string `json:"labels"`
	Server string `json:"server"`
	// Host is the network namespace; HostAddr its address on the LAN.
	Host        string        `json:"host"`
	HostAddr    string        `json:"hostAddr"`
	ServiceCIDR string        `json:"serviceCIDR"`
	Nodes       []realNode    `json:"nodes"`
	StartedIn   time.Duration `json:"startedIn"`
}

// realNode describes a node of a real cluster.
type realNode struct {
	Name    string `json:"name"`
	IP      string `json:"ip"`
	PodCIDR string `json:"podCIDR"`
}

// clusterMemory is the resident memory of a cluster's processes by
// component (realnode Cluster.ResidentMemory).
type clusterMemory struct {
	Role       string           `json:"role"`
	Components map[string]int64 `json:"components"`
}

func (d *demo) keeperStatusPath() string { return filepath.Join(d.dir, "keeper.json") }

// keeper runs the 'keep-real' command.
type keeper struct {
	d        *demo
	status   realStatus
	clusters []*realnode.Cluster // by roles; nil when not started
	mu       sync.Mutex          // serializes log lines
}

// keep is the 'keep-real' command: it writes its log to stdout.
func (d *demo) keep(ctx context.Context) error {
	// SIGUSR1 asks for a measure of memory; unhandled, it would end the
	// process, and the clusters with it.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	signal.Ignore(syscall.SIGHUP)
	k := &keeper{d: d, status: realStatus{PID: os.Getpid()}, clusters: make([]*realnode.Cluster, len(roles))}
	k.logf("keeper: pid %d; it holds the real clusters of %s until SIGTERM ('make demo-down')", os.Getpid(), d.dir)
	if err := k.start(ctx); err != nil {
		if ctx.Err() != nil {
			// 'make demo-down' during the start: not a failure.
			// Its error is mostly the cancellation's, with log tails:
			// its first line is enough.
			first, _, _ := strings.Cut(err.Error(), "\n")
			k.logf("keeper: %v during the start (%s): stopping what started", context.Cause(ctx), first)
			return k.stopAll()
		}
		k.status.Error = err.Error()
		k.logf("keeper: the start failed; stopping what started")
		return errors.Join(err, k.stop(), k.write())
	}
	k.status.Ready = true
	if err := k.write(); err != nil {
		return errors.Join(err, k.stop())
	}
	k.logf("keeper: the clusters are ready (kubeconfigs %s); waiting for SIGTERM", filepath.Join(d.dir, "kubeconfig-*"))
	for {
		select {
		case <-usr1:
			k.measure()
			if err := k.write(); err != nil {
				k.logf("keeper: %v", err)
			}
		case <-ctx.Done():
			k.logf("keeper: %v: stopping the clusters", context.Cause(ctx))
			return k.stopAll()
		}
	}
}

// stopAll stops the clusters and reports it in keeper.json, which 'down'
// reads.
func (k *keeper) stopAll() error {
	err := k.stop()
	k.status.Stopped = true
	if err != nil {
		k.status.StopError = err.Error()
	}
	return errors.Join(err, k.write())
}

func (k *keeper) logf(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fmt.Fprintf(k.d.out, format+"\n", args...)
}

func (k *keeper) write() error { return writeJSON(k.d.keeperStatusPath(), k.status) }

// start builds the images and starts the clusters, in parallel.
func (k *keeper) start(ctx context.Context) error {
	dir := filepath.Join(k.d.dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	start := time.Now()
	k.logf("building image %s (the pod sandbox), and the image builder", realnode.PausePackage)
	pause, err := realnode.BuildPauseImage(ctx, dir)
	if err != nil {
		return err
	}
	// The first build made the builder: the others may run together.
	k.logf("building images %s and %s", testappPackage, managerPackage)
	var testapp, manager *realnode.Image
	var testappErr, managerErr error
	var wg sync.WaitGroup
	wg.Go(func() { testapp, testappErr = realnode.BuildImage(ctx, dir, testappPackage) })
	wg.Go(func() { manager, managerErr = realnode.BuildImage(ctx, dir, managerPackage) })
	wg.Wait()
	if err := errors.Join(testappErr, managerErr); err != nil {
		return err
	}
	k.status.Images = realImages{Pause: pause.Ref, Testapp: testapp.Ref, Manager: manager.Ref}
	k.status.ImagesIn = time.Since(start)
	k.logf("images %s, %s and %s built in %s", pause.Ref, testapp.Ref, manager.Ref, k.status.ImagesIn.Round(time.Second))

	start = time.Now()
	errs := make([]error, len(roles))
	for i, r := range roles {
		wg.Go(func() {
			k.clusters[i], errs[i] = realnode.StartCluster(ctx, realnode.ClusterOptions{
				Name:   r.Role,
				Nodes:  r.RealNodes,
				Pause:  pause,
				Images: []*realnode.Image{testapp, manager},
				LogDir: filepath.Join(k.d.dir, "logs", "clusters"),
				Logf:   k.logf,
				// Three clusters start at once on a machine that
				// may be busy.
				Timeout: 5 * time.Minute,
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	k.status.ClustersIn = time.Since(start)
	for i, c := range k.clusters {
		if err := copyFile(c.Kubeconfig, k.d.kubeconfig(roles[i].Role)); err != nil {
			return err
		}
		rc := realCluster{Role: roles[i].Role, Labels: roles[i].RealLabels, Server: c.Server, Host: c.Host.Name, HostAddr: c.Host.Addr.String(),
			ServiceCIDR: c.ServiceCIDR.String(), StartedIn: c.StartedIn}
		for _, n := range c.Nodes {
			rc.Nodes = append(rc.Nodes, realNode{Name: n.Name, IP: n.IP.String(), PodCIDR: n.PodCIDR.String()})
		}
		k.status.Clusters = append(k.status.Clusters, rc)
	}
	return nil
}

// measure records the clusters' resident memory.
func (k *keeper) measure() {
	k.status.Memory, k.status.MemoryError = nil, ""
	for i, c := range k.clusters {
		mem, err := c.ResidentMemory()
		if err != nil {
			k.status.MemoryError = fmt.Sprintf("cluster %s: %v", roles[i].Role, err)
			k.logf("keeper: measuring memory: %s", k.status.MemoryError)
			break
		}
		k.status.Memory = append(k.status.Memory, clusterMemory{Role: roles[i].Role, Components: mem})
	}
	k.status.MemoryAt = time.Now()
}

// stop stops the clusters that started, in parallel, and checks that they
// left nothing.
func (k *keeper) stop() error {
	errs := make([]error, len(k.clusters))
	var wg sync.WaitGroup
	for i, c := range k.clusters {
		if c == nil {
			continue
		}
		wg.Go(func() {
			start := time.Now()
			k.logf("stopping cluster %s (host %s, %d nodes)", c.Name, c.Host.Name, len(c.Nodes))
			if err := c.Stop(); err != nil {
				errs[i] = err
				return
			}
			if left := c.Leftovers(); len(left) > 0 {
				errs[i] = fmt.Errorf("cluster %s left after its Stop: %v", c.Name, left)
				return
			}
			k.logf("cluster %s stopped in %s; nothing left", c.Name, time.Since(start).Round(time.Millisecond))
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
