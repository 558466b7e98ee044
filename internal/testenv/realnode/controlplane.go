package realnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"stretch.dev/stretch/internal/testenv/machine"
)

// apiServerPort is the API server's port; its address is its lease's own.
const apiServerPort = 6443

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// Name names the control plane in messages, e.g. "home".
	Name string
	// LogDir, when set, receives the component logs when the control plane
	// fails to start (see ExportLogs).
	LogDir string
	// Logf receives progress lines.
	Logf Logf
	// Timeout bounds the start (default 3 minutes).
	Timeout time.Duration
}

// ControlPlane is etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler from bin/, set up for real nodes, on a Host of its own (its
// nodes join that host): the API server listens on the host's LAN address
// (this machine and other hosts reach it there; nothing off the machine
// does), reaches kubelets by their InternalIP without verifying their
// serving certificates (kubeadm's and kind's default), authorizes nodes with the Node authorizer, and signs
// projected ServiceAccount tokens. etcd, the controller-manager and the
// scheduler listen on the host's 127.0.0.1.
type ControlPlane struct {
	// Name is the name given in the options.
	Name string
	// Server is the API server's URL on the host's LAN address,
	// https://198.18.255.N:6443.
	Server string
	// Host is the network namespace the control plane and its nodes run in.
	Host *Host
	// Kubeconfig is the path of a cluster-admin kubeconfig.
	Kubeconfig string
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// CA is the cluster CA: it signs the nodes' certificates (see JoinConfig).
	CA *CA
	// ServiceCIDR is the range of Service ClusterIPs.
	ServiceCIDR netip.Prefix
	// StartedIn is how long the start took.
	StartedIn time.Duration

	opts       ControlPlaneOptions
	lease      *lease
	dir        string
	components []*component // in start order
	stopOnce   sync.Once
	stopErr    error
}

// JoinConfig returns what a node needs to join this control plane.
func (c *ControlPlane) JoinConfig() JoinConfig {
	return JoinConfig{Server: c.Server, CA: c.CA, host: c.Host}
}

// StartControlPlane starts a control plane and waits until the API server is
// ready and the controller-manager has made the default ServiceAccount and
// the kube-root-ca.crt ConfigMap, which every pod with a projected token
// needs. On error nothing is left running.
func StartControlPlane(ctx context.Context, opts ControlPlaneOptions) (*ControlPlane, error) {
	opts.Logf = opts.Logf.orDiscard()
	if opts.Timeout == 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.Name == "" {
		opts.Name = "realnode"
	}
	bins := map[string]string{}
	for _, tool := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		path, err := machine.Binary(tool)
		if err != nil {
			return nil, err
		}
		bins[tool] = path
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	start := time.Now()
	l, err := acquireLease(opts.Logf)
	if err != nil {
		return nil, fmt.Errorf("control plane %s: %w", opts.Name, err)
	}
	c := &ControlPlane{Name: opts.Name, opts: opts, lease: l, ServiceCIDR: subnet24(19, l.index)}
	if c.Host, err = newHost(l); err != nil {
		err = fmt.Errorf("control plane %s: creating its host: %w", opts.Name, err)
		return nil, errors.Join(err, l.release())
	}
	if err := c.start(ctx, bins); err != nil {
		err = fmt.Errorf("starting control plane %s after %s: %w", c.Name, time.Since(start).Round(time.Millisecond), err)
		if opts.LogDir != "" && c.dir != "" {
			if exportErr := c.ExportLogs(opts.LogDir); exportErr == nil {
				err = fmt.Errorf("%w\ncomponent logs: %s", err, filepath.Join(opts.LogDir, "control-plane-"+c.Name))
			}
		}
		return nil, errors.Join(err, c.Stop())
	}
	c.StartedIn = time.Since(start)
	opts.Logf("realnode: control plane %s ready at %s in %s (kubeconfig %s)", c.Name, c.Server, c.StartedIn.Round(time.Millisecond), c.Kubeconfig)
	return c, nil
}

func (c *ControlPlane) start(ctx context.Context, bins map[string]string) error {
	var err error
	if c.dir, err = os.MkdirTemp("", "srn-cp-"); err != nil {
		return err
	}
	if err := c.lease.record(func(r *resources) { r.Dirs = append(r.Dirs, c.dir) }); err != nil {
		return err
	}
	addr := c.Host.Addr
	// The host's own processes (the API server calling a webhook, say)
	// need a route to the Service range before kube-proxy's DNAT turns
	// the ClusterIP into a pod's address; pods need none, as their
	// packets are translated before they are routed.
	if err := ipCommand("-n", c.Host.Name, "route", "add", c.ServiceCIDR.String(), "dev", hostInterface); err != nil {
		return err
	}
	c.Server = "https://" + net.JoinHostPort(addr.String(), strconv.Itoa(apiServerPort))
	// The first address of the service range is the kubernetes Service.
	kubernetesService := hostAddr(19, c.lease.index, 1)

	pki := filepath.Join(c.dir, "pki")
	logs := filepath.Join(c.dir, "logs")
	for _, d := range []string{pki, logs, filepath.Join(c.dir, "etcd")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if c.CA, err = NewCA("stretch-realnode-" + c.Name); err != nil {
		return err
	}
	caFile := filepath.Join(pki, "ca.crt")
	if err := os.WriteFile(caFile, c.CA.CertPEM, 0o644); err != nil {
		return err
	}
	if err := c.CA.writeKeyPair(certRequest{
		commonName: "kube-apiserver",
		ips:        []net.IP{net.IP(addr.AsSlice()), net.IP(kubernetesService.AsSlice()), net.ParseIP("127.0.0.1")},
		dnsNames:   []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		server:     true,
	}, filepath.Join(pki, "apiserver.crt"), filepath.Join(pki, "apiserver.key")); err != nil {
		return err
	}
	// The API server's identity towards kubelets, which authorize it with
	// a SubjectAccessReview.
	if err := c.CA.writeKeyPair(certRequest{commonName: "kube-apiserver-kubelet-client", organizations: []string{"system:masters"}, client: true},
		filepath.Join(pki, "apiserver-kubelet-client.crt"), filepath.Join(pki, "apiserver-kubelet-client.key")); err != nil {
		return err
	}
	// The ServiceAccount signing key: any key pair will do, so take one
	// from the CA.
	if _, saKey, err := c.CA.issue(certRequest{commonName: "service-accounts", client: true}); err != nil {
		return err
	} else if err := os.WriteFile(filepath.Join(pki, "sa.key"), saKey, 0o600); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := c.CA.writeClientKubeconfig(c.Kubeconfig, c.Server, "stretch-admin", "system:masters"); err != nil {
		return err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return err
	}

	// The host's own loopback: no other test uses these ports.
	const etcdClient, etcdPeer = "127.0.0.1:2379", "127.0.0.1:2380"
	env := os.Environ()
	etcd, err := startComponent(c.lease, c.Host, "etcd", filepath.Join(logs, "etcd.log"), env, bins["etcd"],
		"--name=default",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=http://"+etcdClient,
		"--advertise-client-urls=http://"+etcdClient,
		"--listen-peer-urls=http://"+etcdPeer,
		"--initial-advertise-peer-urls=http://"+etcdPeer,
		"--initial-cluster=default=http://"+etcdPeer,
		"--unsafe-no-fsync=true",
	)
	if err != nil {
		return err
	}
	c.components = append(c.components, etcd)

	apiserver, err := startComponent(c.lease, c.Host, "kube-apiserver", filepath.Join(logs, "kube-apiserver.log"), env, bins["kube-apiserver"],
		"--etcd-servers=http://"+etcdClient,
		"--bind-address="+addr.String(),
		"--advertise-address="+addr.String(),
		"--secure-port="+strconv.Itoa(apiServerPort),
		"--cert-dir="+pki,
		"--tls-cert-file="+filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file="+filepath.Join(pki, "apiserver.key"),
		"--client-ca-file="+caFile,
		"--service-cluster-ip-range="+c.ServiceCIDR.String(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(pki, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--kubelet-client-certificate="+filepath.Join(pki, "apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+filepath.Join(pki, "apiserver-kubelet-client.key"),
		// No --kubelet-certificate-authority, as kubeadm and kind: a
		// virtual node's kubelet API serves a certificate of its own
		// making, which no cluster CA signed.
		// Otherwise it resolves node names through the VM's resolver:
		// traffic off the machine.
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
		// An open watch would hold a stopping API server for a minute.
		"--shutdown-watch-termination-grace-period=1s",
	)
	if err != nil {
		return err
	}
	c.components = append(c.components, apiserver)
	if err := c.waitAPIServer(ctx); err != nil {
		return err
	}

	cmKubeconfig := filepath.Join(c.dir, "controller-manager.kubeconfig")
	if err := c.CA.writeClientKubeconfig(cmKubeconfig, c.Server, "system:kube-controller-manager"); err != nil {
		return err
	}
	cm, err := startComponent(c.lease, c.Host, "kube-controller-manager", filepath.Join(logs, "kube-controller-manager.log"), env, bins["kube-controller-manager"],
		"--kubeconfig="+cmKubeconfig,
		"--authentication-kubeconfig="+cmKubeconfig,
		"--authorization-kubeconfig="+cmKubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+filepath.Join(pki, "sa.key"),
		// Published as the kube-root-ca.crt ConfigMap of every namespace:
		// the ca.crt of projected ServiceAccount volumes.
		"--root-ca-file="+caFile,
		"--service-cluster-ip-range="+c.ServiceCIDR.String(),
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	c.components = append(c.components, cm)

	schedKubeconfig := filepath.Join(c.dir, "scheduler.kubeconfig")
	if err := c.CA.writeClientKubeconfig(schedKubeconfig, c.Server, "system:kube-scheduler"); err != nil {
		return err
	}
	sched, err := startComponent(c.lease, c.Host, "kube-scheduler", filepath.Join(logs, "kube-scheduler.log"), env, bins["kube-scheduler"],
		"--kubeconfig="+schedKubeconfig,
		"--authentication-kubeconfig="+schedKubeconfig,
		"--authorization-kubeconfig="+schedKubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--leader-elect=false",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	c.components = append(c.components, sched)
	return c.waitControllers(ctx)
}

// failed returns the first component that exited, with its log.
func (c *ControlPlane) failed() error {
	for _, comp := range c.components {
		if err := comp.failure(); err != nil {
			return err
		}
	}
	return nil
}

func (c *ControlPlane) waitAPIServer(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	var last error
	for {
		if err := c.failed(); err != nil {
			return err
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil {
			return nil
		}
		last = fmt.Errorf("%w: %s", err, body)
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver at %s is not ready: %w (last answer: %v)\n%s", c.Server, ctx.Err(), last, c.components[len(c.components)-1].logTail())
		case <-time.After(pollInterval):
		}
	}
}

// waitControllers waits for what the controller-manager makes in every
// namespace and a pod's ServiceAccount volume needs.
func (c *ControlPlane) waitControllers(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	for {
		if err := c.failed(); err != nil {
			return err
		}
		_, saErr := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		_, cmErr := cs.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if saErr == nil && cmErr == nil {
			return nil
		}
		for _, err := range []error{saErr, cmErr} {
			if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the default ServiceAccount or the kube-root-ca.crt ConfigMap did not appear: %w (ServiceAccount: %v, ConfigMap: %v)\n%s",
				ctx.Err(), saErr, cmErr, c.components[len(c.components)-2].logTail())
		case <-time.After(pollInterval):
		}
	}
}

// ExportLogs copies the component logs, and kube-proxy's, into
// dir/control-plane-<name>/,
// e.g. before Stop when a test failed.
func (c *ControlPlane) ExportLogs(dir string) error {
	logs, _ := filepath.Glob(filepath.Join(c.dir, "logs", "*.log"))
	if proxy := c.Host.kubeProxy(); proxy != nil {
		logs = append(logs, proxy.logPath)
	}
	return copyLogs(filepath.Join(dir, "control-plane-"+c.Name), logs...)
}

// Leftovers describes what the control plane created that is still on the
// machine: nothing after Stop.
func (c *ControlPlane) Leftovers() []string {
	return c.lease.leftovers()
}

// ResidentMemory returns the resident memory (VmRSS) of every component by
// name: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.
func (c *ControlPlane) ResidentMemory() (map[string]int64, error) {
	mem := map[string]int64{}
	for _, comp := range c.components {
		rss, err := residentMemory(comp.pid())
		if err != nil {
			return nil, fmt.Errorf("memory of %s: %w", comp.name, err)
		}
		mem[comp.name] = rss
	}
	return mem, nil
}

// Stop stops every component and kube-proxy, and removes the host and the
// working directory. It is safe to call twice.
func (c *ControlPlane) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		for i := len(c.components) - 1; i >= 0; i-- {
			if err := c.components[i].stop(stopGrace); err != nil {
				errs = append(errs, err)
			}
		}
		if err := c.Host.release(); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			c.stopErr = fmt.Errorf("stopping control plane %s: %w", c.Name, err)
		}
	})
	return c.stopErr
}

// copyLogs copies log files into dst.
func copyLogs(dst string, logs ...string) error {
	if len(logs) == 0 {
		return nil
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, f := range logs {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Describe says, for a failing test, whether the component named name
// (kube-apiserver, kube-controller-manager…) runs, and gives the last n
// lines of its log that contain one of words.
func (c *ControlPlane) Describe(name string, n int, words ...string) string {
	for _, comp := range c.components {
		if comp.name == name {
			return comp.describe(n, words...)
		}
	}
	return fmt.Sprintf("control plane %s has no component %s", c.Name, name)
}
