package realnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"stretch.dev/stretch/internal/testenv/machine"
)

// runcPath is Debian's runc, which 'make tools' installs: crun refuses the
// hybrid cgroup layout of these machines.
const runcPath = "/usr/bin/runc"

// JoinConfig is what a node needs to join a cluster: the API server's URL, and
// the cluster CA, which the API server trusts for client certificates. The
// node authenticates with a client certificate for system:node:<name>
// signed by it, and serves the kubelet API with a certificate signed by it.
type JoinConfig struct {
	// Server is the URL of the API server.
	Server string
	// CA is the cluster CA.
	CA *CA

	// host is where the cluster's nodes run (see ControlPlane.JoinConfig).
	host *Host
}

// NodeOptions configure StartNode.
type NodeOptions struct {
	// Name is the node's name (lower-case letters, digits and '-').
	Name string
	// Pause is the pod sandbox image (BuildPauseImage); required.
	Pause *Image
	// Images are imported into the node's containerd before the kubelet
	// starts; pods use them with imagePullPolicy Never or IfNotPresent.
	Images []*Image
	// Labels are added to the Node.
	Labels map[string]string
	// LogDir, when set, receives the logs of containerd and the kubelet
	// when the node fails to start (see ExportLogs).
	LogDir string
	// Logf receives progress lines.
	Logf Logf
	// Timeout bounds the start, until the Node is Ready (default 3 minutes).
	Timeout time.Duration
}

// Node is a real node running on this machine: its own containerd (runc,
// overlayfs, CNI bridge) and its own kubelet, in a cgroup tree, directories,
// sockets, bridges and addresses of its own, so that many run side by side.
type Node struct {
	// Name is the Node's name.
	Name string
	// IP is the node's InternalIP: the kubelet listens there, on a bridge
	// with no ports inside the cluster's host.
	IP netip.Addr
	// PodCIDR is the range the node's pods get addresses from, on a CNI
	// bridge of their own.
	PodCIDR netip.Prefix
	// ContainerdSocket is the path of the containerd socket (for ctr).
	ContainerdSocket string
	// StartedIn is how long from starting containerd to a Ready Node.
	StartedIn time.Duration

	opts       NodeOptions
	cluster    JoinConfig
	lease      *lease
	dir        string
	cgroupRoot string
	// shimSocketDir holds the shims' sockets.
	shimSocketDir string
	ctr           string
	containerd    *component
	kubelet       *component
	stopOnce      sync.Once
	stopErr       error
}

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// StartNode starts containerd and the kubelet of one node and waits until
// the Node is Ready. On error nothing is left running.
func StartNode(ctx context.Context, cluster JoinConfig, opts NodeOptions) (*Node, error) {
	opts.Logf = opts.Logf.orDiscard()
	if opts.Timeout == 0 {
		opts.Timeout = defaultTimeout
	}
	if !nodeNameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("node name %q: want lower-case letters, digits and '-', at most 63", opts.Name)
	}
	if opts.Pause == nil {
		return nil, fmt.Errorf("node %s: NodeOptions.Pause is nil: build the sandbox image with BuildPauseImage and pass it", opts.Name)
	}
	if cluster.CA == nil || cluster.Server == "" || cluster.host == nil {
		return nil, fmt.Errorf("node %s: the JoinConfig needs the API server's URL, the cluster CA and a host: pass a ControlPlane's JoinConfig()", opts.Name)
	}
	if _, err := os.Stat(runcPath); err != nil {
		return nil, fmt.Errorf("node %s: %w: run 'make tools', which installs runc from Debian", opts.Name, err)
	}
	bins := map[string]string{}
	for _, tool := range []string{"kubelet", "kube-proxy", "containerd", "ctr", "containerd-shim-runc-v2", "cni/bridge", "cni/host-local", "cni/loopback", "cni/portmap"} {
		path, err := machine.Binary(tool)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", opts.Name, err)
		}
		bins[tool] = path
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	l, err := acquireLease(opts.Logf)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", opts.Name, err)
	}
	n := &Node{
		Name:       opts.Name,
		IP:         hostAddr(18, l.index, 129),
		PodCIDR:    netip.PrefixFrom(hostAddr(18, l.index, 0), 25),
		opts:       opts,
		cluster:    cluster,
		lease:      l,
		cgroupRoot: "/stretch-" + l.link(""),
		ctr:        bins["ctr"],
	}
	if err := n.start(ctx, bins); err != nil {
		err = fmt.Errorf("starting node %s: %w", n.Name, err)
		if opts.LogDir != "" && n.dir != "" {
			if exportErr := n.ExportLogs(opts.LogDir); exportErr == nil {
				err = fmt.Errorf("%w\nlogs of containerd and the kubelet: %s", err, filepath.Join(opts.LogDir, "node-"+n.Name))
			}
		}
		return nil, errors.Join(err, n.Stop())
	}
	opts.Logf("realnode: node %s (%s, pods %s) Ready in %s", n.Name, n.IP, n.PodCIDR, n.StartedIn.Round(time.Millisecond))
	return n, nil
}

// StartNodes starts count nodes named prefix-0, prefix-1, ... in parallel.
// On error nothing is left running.
func StartNodes(ctx context.Context, cluster JoinConfig, prefix string, count int, opts NodeOptions) ([]*Node, error) {
	nodes := make([]*Node, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range count {
		o := opts
		o.Name = fmt.Sprintf("%s-%d", prefix, i)
		wg.Go(func() { nodes[i], errs[i] = StartNode(ctx, cluster, o) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(err, StopNodes(nodes))
	}
	return nodes, nil
}

// StopNodes stops every node (nil entries are skipped), in parallel.
func StopNodes(nodes []*Node) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if n != nil {
			wg.Go(func() { errs[i] = n.Stop() })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// paths of a node, all below its directory.
func (n *Node) path(elem ...string) string {
	return filepath.Join(append([]string{n.dir}, elem...)...)
}

func (n *Node) start(ctx context.Context, bins map[string]string) error {
	var err error
	// Short: the containerd socket path must fit in 108 bytes.
	if n.dir, err = os.MkdirTemp("", "srn-node-"); err != nil {
		return err
	}
	host := n.cluster.host
	nodeBridge, podBridge := n.lease.link("n"), n.lease.link("p")
	systemCgroup := n.cgroupRoot + "/system"
	// Shim sockets need a path of at most 42 bytes.
	n.shimSocketDir = filepath.Join(leaseDir, n.lease.link(""))
	if err := n.lease.record(func(r *resources) {
		r.Dirs = append(r.Dirs, n.dir, n.shimSocketDir)
		r.Links = append(r.Links, host.Name+"/"+nodeBridge, host.Name+"/"+podBridge)
		r.Cgroups = append(r.Cgroups, n.cgroupRoot)
		// Paths that libcni and the kubelet do not let us choose: the
		// CNI result cache and the links to the container logs.
		r.Mentions = append(r.Mentions, "/var/lib/cni/results", "/var/log/containers")
	}); err != nil {
		return err
	}
	if err := addBridge(host, nodeBridge, netip.PrefixFrom(n.IP, 25)); err != nil {
		return err
	}
	// The kubelet's cgroupRoot; kubelet, containerd and the shims run in
	// its "system" child, the pods in the kubelet's "kubepods" child.
	if err := createCgroup(systemCgroup); err != nil {
		return err
	}
	for _, d := range []string{"logs", "containerd", "cni/net.d", "cni/ipam", "kubelet/pki", "kubelet/root", "kubelet/pod-logs", "kubelet/volume-plugins"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(n.shimSocketDir, 0o700); err != nil {
		return err
	}
	if err := n.writeConfigs(bins); err != nil {
		return err
	}

	start := time.Now()
	n.ContainerdSocket = n.path("containerd", "containerd.sock")
	// containerd finds containerd-shim-runc-v2 on its PATH.
	env := append(os.Environ(), "PATH="+filepath.Dir(bins["containerd-shim-runc-v2"])+string(os.PathListSeparator)+os.Getenv("PATH"))
	if n.containerd, err = startComponent(n.lease, host, "containerd", n.path("logs", "containerd.log"), env, bins["containerd"],
		"--config", n.path("containerd", "config.toml")); err != nil {
		return err
	}
	if err := addToCgroup(systemCgroup, n.containerd.pid()); err != nil {
		return err
	}
	if err := n.waitContainerd(ctx); err != nil {
		return err
	}
	for _, img := range append([]*Image{n.opts.Pause}, n.opts.Images...) {
		if err := n.ImportImage(ctx, img); err != nil {
			return err
		}
	}
	if n.kubelet, err = startComponent(n.lease, host, "kubelet", n.path("logs", "kubelet.log"), os.Environ(), bins["kubelet"],
		"--config="+n.path("kubelet", "config.yaml"),
		"--kubeconfig="+n.path("kubelet", "kubeconfig"),
		"--root-dir="+n.path("kubelet", "root"),
		"--cert-dir="+n.path("kubelet", "pki"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.IP.String(),
		"--node-labels="+labelFlag(n.opts.Labels),
		"--v=2",
	); err != nil {
		return err
	}
	if err := addToCgroup(systemCgroup, n.kubelet.pid()); err != nil {
		return err
	}
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	n.StartedIn = time.Since(start)
	return host.ensureProxy(ctx, n.cluster, n.Name, bins["kube-proxy"])
}

// network is the name of the node's CNI network.
func (n *Node) network() string { return n.lease.link("") }

func labelFlag(labels map[string]string) string {
	all := map[string]string{"stretch.dev/real-node": "true"}
	for k, v := range labels {
		all[k] = v
	}
	var parts []string
	for k, v := range all {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// writeConfigs writes the configuration of containerd, of CNI and of the
// kubelet, and the kubelet's credentials.
func (n *Node) writeConfigs(bins map[string]string) error {
	containerdConfig, err := renderContainerdConfig(containerdConfig{
		Root:        n.path("containerd", "root"),
		State:       n.path("containerd", "state"),
		Socket:      n.path("containerd", "containerd.sock"),
		Opt:         n.path("containerd", "opt"),
		ShimSockets: n.shimSocketDir,
		RuncRoot:    n.path("containerd", "runc"),
		Runc:        runcPath,
		PauseImage:  n.opts.Pause.Ref,
		CNIBinDir:   filepath.Dir(bins["cni/bridge"]),
		CNIConfDir:  n.path("cni", "net.d"),
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(n.path("containerd", "config.toml"), containerdConfig, 0o644); err != nil {
		return err
	}
	cni, err := renderCNIConfig(n.network(), n.lease.link("p"), n.PodCIDR, n.path("cni", "ipam"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(n.path("cni", "net.d", "10-stretch.conflist"), cni, 0o644); err != nil {
		return err
	}

	pki := n.path("kubelet", "pki")
	if err := os.WriteFile(filepath.Join(pki, "ca.crt"), n.cluster.CA.CertPEM, 0o644); err != nil {
		return err
	}
	if err := n.cluster.CA.writeKeyPair(certRequest{
		commonName: "system:node:" + n.Name, organizations: []string{"system:nodes"},
		ips: []net.IP{net.IP(n.IP.AsSlice())}, dnsNames: []string{n.Name}, server: true,
	}, filepath.Join(pki, "kubelet.crt"), filepath.Join(pki, "kubelet.key")); err != nil {
		return err
	}
	if err := n.cluster.CA.writeClientKubeconfig(n.path("kubelet", "kubeconfig"), n.cluster.Server, "system:node:"+n.Name, "system:nodes"); err != nil {
		return err
	}
	// Pods get this resolv.conf (there is no cluster DNS): it names no
	// server off the machine.
	if err := os.WriteFile(n.path("kubelet", "resolv.conf"), []byte("nameserver 127.0.0.1\noptions ndots:1\n"), 0o644); err != nil {
		return err
	}
	kubeletConfig, err := renderKubeletConfig(kubeletConfig{
		CgroupRoot:       n.cgroupRoot,
		ContainerdSocket: n.path("containerd", "containerd.sock"),
		Address:          n.IP,
		ClientCAFile:     filepath.Join(pki, "ca.crt"),
		TLSCertFile:      filepath.Join(pki, "kubelet.crt"),
		TLSKeyFile:       filepath.Join(pki, "kubelet.key"),
		ResolvConf:       n.path("kubelet", "resolv.conf"),
		PodLogsDir:       n.path("kubelet", "pod-logs"),
		VolumePluginDir:  n.path("kubelet", "volume-plugins"),
	})
	if err != nil {
		return err
	}
	return os.WriteFile(n.path("kubelet", "config.yaml"), kubeletConfig, 0o644)
}

// containerdConfig are the per-node values of containerd's configuration.
type containerdConfig struct {
	Root, State, Socket, Opt, ShimSockets, RuncRoot, Runc, PauseImage, CNIBinDir, CNIConfDir string
}

// containerdTemplate is containerd's configuration (version 3). Every path is
// the node's own; the CRI runtime is runc with cgroupfs, and
// restrict_oom_score_adj because the VM lacks CAP_SYS_RESOURCE: without it a
// negative oom_score_adj fails and runc reports "can't get final child's PID
// from pipe: EOF".
var containerdTemplate = template.Must(template.New("containerd").Parse(`version = 3
root = '{{.Root}}'
state = '{{.State}}'

[grpc]
  address = '{{.Socket}}'

[ttrpc]
  address = '{{.Socket}}.ttrpc'

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = '{{.Opt}}'

  [plugins.'io.containerd.nri.v1.nri']
    disable = true

  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '{{.ShimSockets}}'

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'

    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{{.PauseImage}}'

  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'

        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '{{.Runc}}'
          SystemdCgroup = false
          Root = '{{.RuncRoot}}'

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{{.CNIBinDir}}']
      conf_dir = '{{.CNIConfDir}}'

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
`))

func renderContainerdConfig(c containerdConfig) ([]byte, error) {
	var b bytes.Buffer
	if err := containerdTemplate.Execute(&b, c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// renderCNIConfig is the node's CNI network: a bridge with the first address
// of the pod range as the pods' gateway, a route to 198.18.0.0/15 only (the
// hosts, and the Services of 198.19.0.0/16), masquerade to the host's
// address when leaving the pod range (other hosts have no route to it),
// and portmap for hostPorts.
func renderCNIConfig(network, bridge string, pods netip.Prefix, ipamDir string) ([]byte, error) {
	gateway := pods.Addr().Next()
	cfg := map[string]any{
		"cniVersion": "1.0.0",
		"name":       network,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": pods.String(), "gateway": gateway.String()}}},
					// No default route: nothing but this
					// package's addresses is reachable.
					"routes":  []map[string]string{{"dst": "198.18.0.0/15"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// kubeletConfig are the per-node values of the kubelet's configuration.
type kubeletConfig struct {
	CgroupRoot, ContainerdSocket            string
	Address                                 netip.Addr
	ClientCAFile, TLSCertFile, TLSKeyFile   string
	ResolvConf, PodLogsDir, VolumePluginDir string
}

// renderKubeletConfig is the KubeletConfiguration of a node. failCgroupV1:
// false, or kubelet ≥ 1.35 refuses the v1 hierarchies of these machines;
// cgroupfs, as there is no systemd. The kubelet API and healthz listen on
// the node's own address, so that nodes do not collide on ports.
func renderKubeletConfig(c kubeletConfig) ([]byte, error) {
	cfg := map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"failCgroupV1":             false,
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               c.CgroupRoot,
		"cgroupsPerQOS":            true,
		"failSwapOn":               false,
		"containerRuntimeEndpoint": "unix://" + c.ContainerdSocket,
		"address":                  c.Address.String(),
		"port":                     10250,
		"readOnlyPort":             0,
		"healthzBindAddress":       c.Address.String(),
		"healthzPort":              10248,
		"tlsCertFile":              c.TLSCertFile,
		"tlsPrivateKeyFile":        c.TLSKeyFile,
		"rotateCertificates":       false,
		"serverTLSBootstrap":       false,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": c.ClientCAFile},
		},
		"authorization":   map[string]any{"mode": "Webhook"},
		"resolvConf":      c.ResolvConf,
		"clusterDomain":   "cluster.local",
		"podLogsDir":      c.PodLogsDir,
		"volumePluginDir": c.VolumePluginDir,
		// The machine's disk is shared by every node and other tests:
		// evict only when it is really full.
		"evictionHard": map[string]string{
			"memory.available":  "100Mi",
			"nodefs.available":  "2%",
			"nodefs.inodesFree": "2%",
			"imagefs.available": "2%",
		},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"shutdownGracePeriod":         "0s",
		"maxPods":                     110,
	}
	return yaml.Marshal(cfg)
}

func (n *Node) failed() error {
	for _, c := range []*component{n.containerd, n.kubelet} {
		if c != nil {
			if err := c.failure(); err != nil {
				return err
			}
		}
	}
	return nil
}

// runCtr runs ctr against the node's containerd.
func (n *Node) runCtr(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, n.ctr, append([]string{"--address", n.ContainerdSocket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func (n *Node) waitContainerd(ctx context.Context) error {
	var last error
	for {
		if err := n.failed(); err != nil {
			return err
		}
		if _, err := os.Stat(n.ContainerdSocket); err == nil {
			if _, last = n.runCtr(ctx, "version"); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd did not answer on %s: %w (last: %v)\n%s", n.ContainerdSocket, ctx.Err(), last, n.containerd.logTail())
		case <-time.After(pollInterval):
		}
	}
}

// ImportImage imports an image archive into the node's containerd, in the
// k8s.io namespace the kubelet uses, under img.Ref.
func (n *Node) ImportImage(ctx context.Context, img *Image) error {
	if _, err := n.runCtr(ctx, "images", "import", "--base-name", img.repository(), img.Archive); err != nil {
		return fmt.Errorf("importing image %s into node %s: %w", img.Ref, n.Name, err)
	}
	if _, err := n.runCtr(ctx, "images", "check", "name=="+img.Ref); err != nil {
		return fmt.Errorf("image %s is not in node %s after the import: %w", img.Ref, n.Name, err)
	}
	return nil
}

func (n *Node) waitReady(ctx context.Context) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", n.path("kubelet", "kubeconfig"))
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var last string
	for {
		if err := n.failed(); err != nil {
			return err
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					if c.Status == corev1.ConditionTrue {
						return nil
					}
					last = fmt.Sprintf("Ready=%s: %s: %s", c.Status, c.Reason, c.Message)
				}
			}
		case apierrors.IsNotFound(err):
			last = "the Node is not registered yet"
		case ctx.Err() == nil:
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s is not Ready: %w (%s)\n%s\n%s", n.Name, ctx.Err(), last, n.kubelet.logTail(), n.containerd.logTail())
		case <-time.After(pollInterval):
		}
	}
}

// ResidentMemory returns the resident memory (VmRSS) of the node's own
// processes by name: "kubelet", "containerd" and "shims" (every
// containerd-shim-runc-v2 together). The containers are not counted.
func (n *Node) ResidentMemory() (map[string]int64, error) {
	pids, err := cgroupPIDs(n.cgroupRoot + "/system")
	if err != nil {
		return nil, err
	}
	mem := map[string]int64{}
	for _, pid := range pids {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue // exited
		}
		name := strings.TrimSpace(string(comm))
		if strings.HasPrefix(name, "containerd-shim") {
			name = "shims"
		}
		rss, err := residentMemory(pid)
		if err != nil {
			continue
		}
		mem[name] += rss
	}
	return mem, nil
}

// ExportLogs copies the logs of containerd and the kubelet into
// dir/node-<name>/, e.g. before Stop when a test failed.
func (n *Node) ExportLogs(dir string) error {
	logs, _ := filepath.Glob(n.path("logs", "*.log"))
	return copyLogs(filepath.Join(dir, "node-"+n.Name), logs...)
}

// Leftovers describes what the node created that is still on the machine:
// nothing after Stop.
func (n *Node) Leftovers() []string {
	return n.lease.leftovers()
}

// Stop stops the kubelet, every container and containerd, and removes what
// the node created: mounts, cgroups, bridges, the pods' network namespaces,
// files. kube-proxy runs on until the control plane stops, as it serves the
// host. It is safe to call twice.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		var errs []error
		if err := n.kubelet.stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
		// The containers first, so that the shims see them exit.
		if err := killCgroup(n.cgroupRoot+"/kubepods", 30*time.Second); err != nil {
			errs = append(errs, err)
		}
		if err := n.containerd.stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
		if err := n.lease.release(); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			n.stopErr = fmt.Errorf("stopping node %s: %w", n.Name, err)
		}
	})
	return n.stopErr
}
