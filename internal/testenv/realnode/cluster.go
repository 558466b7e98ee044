package realnode

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Name names the cluster, its control plane and (as <name>-<i>) its
	// nodes.
	Name string
	// Nodes is how many nodes to start (default 1).
	Nodes int
	// Pause is the pod sandbox image; required.
	Pause *Image
	// Images are imported into every node.
	Images []*Image
	// LogDir, when set, receives the logs of a start that fails.
	LogDir string
	// Logf receives progress lines.
	Logf Logf
	// Timeout bounds the start of the control plane, and then that of the
	// nodes (default 3 minutes each).
	Timeout time.Duration
}

// Cluster is a control plane and its nodes, on a host of their own.
type Cluster struct {
	*ControlPlane
	Nodes []*Node
	// StartedIn is how long the whole start took.
	StartedIn time.Duration
}

// StartCluster starts a control plane and its nodes, which join it in
// parallel. On error nothing is left running.
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	start := time.Now()
	cp, err := StartControlPlane(ctx, ControlPlaneOptions{Name: opts.Name, LogDir: opts.LogDir, Logf: opts.Logf, Timeout: opts.Timeout})
	if err != nil {
		return nil, err
	}
	nodes, err := StartNodes(ctx, cp.JoinConfig(), opts.Name, opts.Nodes, NodeOptions{
		Pause: opts.Pause, Images: opts.Images, LogDir: opts.LogDir, Logf: opts.Logf, Timeout: opts.Timeout,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cluster %s: %w", opts.Name, err), cp.Stop())
	}
	c := &Cluster{ControlPlane: cp, Nodes: nodes, StartedIn: time.Since(start)}
	opts.Logf.orDiscard()("realnode: cluster %s (%d nodes, API server %s) started in %s", c.Name, len(nodes), c.Server, c.StartedIn.Round(time.Millisecond))
	return c, nil
}

// PodCIDRs returns the pod ranges of the cluster's nodes.
func (c *Cluster) PodCIDRs() []netip.Prefix {
	out := make([]netip.Prefix, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.PodCIDR
	}
	return out
}

// RoutePodsOf routes, in c's host, the pod ranges of peer's nodes to peer's
// host: c's pods reach peer's pods by their addresses. Called on both
// clusters, it stands in for the network between clusters that Stretch
// leaves to a mesh (docs/design.md §4.22).
func (c *Cluster) RoutePodsOf(peer *Cluster) error {
	return c.Host.Route(peer.Host, peer.PodCIDRs()...)
}

// ImportImage imports an image into every node.
func (c *Cluster) ImportImage(ctx context.Context, img *Image) error {
	for _, n := range c.Nodes {
		if err := n.ImportImage(ctx, img); err != nil {
			return err
		}
	}
	return nil
}

// ResidentMemory returns the resident memory of the control plane's
// components and of every node's own processes (kubelet, containerd,
// shims), summed by name, and kube-proxy's.
func (c *Cluster) ResidentMemory() (map[string]int64, error) {
	mem, err := c.ControlPlane.ResidentMemory()
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		nm, err := n.ResidentMemory()
		if err != nil {
			return nil, err
		}
		for k, v := range nm {
			mem[k] += v
		}
	}
	if proxy := c.Host.kubeProxy(); proxy != nil {
		rss, err := residentMemory(proxy.pid())
		if err != nil {
			return nil, err
		}
		mem["kube-proxy"] = rss
	}
	return mem, nil
}

// ExportLogs copies the logs of the control plane and of every node into
// dir.
func (c *Cluster) ExportLogs(dir string) error {
	errs := []error{c.ControlPlane.ExportLogs(dir)}
	for _, n := range c.Nodes {
		errs = append(errs, n.ExportLogs(dir))
	}
	return errors.Join(errs...)
}

// Leftovers describes what the cluster created that is still on the
// machine: nothing after Stop.
func (c *Cluster) Leftovers() []string {
	left := c.ControlPlane.Leftovers()
	for _, n := range c.Nodes {
		left = append(left, n.Leftovers()...)
	}
	return left
}

// Stop stops the nodes, then the control plane. It is safe to call twice.
func (c *Cluster) Stop() error {
	return errors.Join(StopNodes(c.Nodes), c.ControlPlane.Stop())
}
