// Package manager builds and runs stretch-controller-manager: one
// controller-runtime manager per cluster, leader-elected, serving metrics and
// health probes, with every Stretch controller and webhook registered in one
// place, setupControllers.
package manager

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/controller/offloading"
	"stretch.dev/stretch/internal/controller/remotecluster"
	"stretch.dev/stretch/internal/controller/tenant"
	"stretch.dev/stretch/internal/controller/tenantpolicy"
	"stretch.dev/stretch/internal/homepods"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
	"stretch.dev/stretch/internal/remote"
	"stretch.dev/stretch/internal/scheme"
	"stretch.dev/stretch/internal/version"
	"stretch.dev/stretch/internal/virtualkubelet"
	"stretch.dev/stretch/internal/webhook"
	"stretch.dev/stretch/internal/webhook/certs"
)

// buildInfo lets dashboards and alerts tell which release each cluster runs.
var buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "stretch_build_info",
	Help: "Always 1; the version label is the Stretch release of stretch-controller-manager.",
}, []string{"version"})

func init() {
	metrics.Registry.MustRegister(buildInfo)
	buildInfo.WithLabelValues(version.Version).Set(1)
}

// Options configures Run. Start from DefaultOptions: the zero value binds
// the metrics server to every interface and turns leader election off.
type Options struct {
	// Kubeconfig is the path of the kubeconfig to use. Empty means the
	// in-cluster config, else $KUBECONFIG or ~/.kube/config.
	Kubeconfig string
	// Context is the kubeconfig context to use; empty means the current one.
	Context string

	// ClusterName, when set, makes the manager give its cluster the identity
	// of that name with ClusterLabels before it starts (as 'stretchctl
	// install' does): created with a new cluster ID when absent, its labels
	// updated otherwise. Empty: the identity is left to 'stretchctl install'.
	ClusterName string
	// ClusterLabels are the cluster labels of that identity; only with
	// ClusterName.
	ClusterLabels map[string]string

	// LeaderElect makes replicas elect one leader, so that only one runs the
	// controllers at a time.
	LeaderElect bool
	// LeaderElectionID is the name of the leader election Lease.
	LeaderElectionID string
	// LeaderElectionNamespace is the namespace of the leader election Lease.
	LeaderElectionNamespace string
	// LeaseDuration is how long standbys wait after the last renewal before
	// taking the lead; RenewDeadline is how long the leader keeps trying to
	// renew before it gives up, and exits; RetryPeriod is the time between
	// tries. Longer values ride out a slow API server; shorter ones fail
	// over sooner.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	// MetricsBindAddress is where /metrics is served; "0" disables it.
	MetricsBindAddress string
	// HealthProbeBindAddress is where /healthz and /readyz are served; "0"
	// disables them.
	HealthProbeBindAddress string
	// PprofBindAddress is where net/http/pprof is served; "0" (the default)
	// disables it.
	PprofBindAddress string

	// RemoteClusterProbeInterval is how often each provider is probed for
	// health and capacity, and its virtual node's Lease renewed.
	RemoteClusterProbeInterval time.Duration
	// UnoffloadTimeout is how long an unoffload waits for a provider that
	// does not answer, or answers but keeps its twin, before the status
	// says it is stuck on it.
	UnoffloadTimeout time.Duration

	// WebhookBindAddress is where the admission webhooks are served; "0"
	// disables them (pods of offloaded namespaces are then not placed).
	WebhookBindAddress string
	// WebhookURL is the URL the API server calls them at when the manager
	// runs outside the cluster; empty means https://<WebhookBindAddress>.
	WebhookURL string
	// WebhookService ("namespace/name") is the Service in front of an
	// in-cluster manager; when set, it is used instead of a URL.
	WebhookService string

	// KubeletBindAddress is where the kubelet API of virtual nodes (logs,
	// exec, attach, port-forward, stats) is served; "0" disables it (they
	// then fail on offloaded pods).
	KubeletBindAddress string
	// KubeletAddress is the IP virtual nodes advertise for it; empty means
	// the host of KubeletBindAddress.
	KubeletAddress string

	// APIServerURL is the URL, https://HOST[:PORT], at which pods offloaded
	// from this cluster, and other clusters, reach this cluster's API server:
	// the containers of offloaded pods get it as KUBERNETES_SERVICE_HOST and
	// KUBERNETES_SERVICE_PORT, so that in-cluster clients use the home token
	// they mount against the home API server. Empty: they reach the
	// provider's, which refuses that token.
	APIServerURL string

	// Zap configures logging; its defaults give JSON lines at info level.
	Zap zap.Options

	// RunsAgainInProcess lets one process run the manager more than once (in
	// tests): controller-runtime otherwise refuses a controller name it saw.
	RunsAgainInProcess bool
}

// DefaultOptions returns the options of a stretch-controller-manager started
// without flags.
func DefaultOptions() Options {
	return Options{
		LeaderElect:             true,
		LeaderElectionID:        "stretch-controller-manager",
		LeaderElectionNamespace: wellknown.SystemNamespace,
		// The values of kube-controller-manager and controller-runtime.
		LeaseDuration:          15 * time.Second,
		RenewDeadline:          10 * time.Second,
		RetryPeriod:            2 * time.Second,
		MetricsBindAddress:     "127.0.0.1:8080",
		HealthProbeBindAddress: "127.0.0.1:8081",
		PprofBindAddress:       "0",

		RemoteClusterProbeInterval: remotecluster.DefaultProbeInterval,
		UnoffloadTimeout:           offloading.DefaultUnoffloadTimeout,
		WebhookBindAddress:         "127.0.0.1:9443",
		KubeletBindAddress:         "127.0.0.1:10250",
	}
}

// BindFlags binds every option to a flag of fs, with DefaultOptions as the
// defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	d := DefaultOptions()
	fs.StringVar(&o.Kubeconfig, "kubeconfig", d.Kubeconfig,
		"Path of the kubeconfig to use. Empty means the in-cluster config, else $KUBECONFIG or ~/.kube/config.")
	fs.StringVar(&o.Context, "context", d.Context, "Kubeconfig context to use. Empty means the current context.")
	fs.StringVar(&o.ClusterName, "cluster-name", d.ClusterName,
		"Name of this cluster: when set, the cluster identity (stretch-system/stretch-cluster-identity) is created with a new cluster ID if absent, or its labels updated, before the controllers start; its ID never changes. Empty: the identity comes from 'stretchctl install'.")
	fs.Func("cluster-labels",
		"Labels of this cluster, k=v,k2=v2, shown on its virtual node in every home cluster; only with --cluster-name.",
		func(s string) error {
			labels, err := identity.ParseLabels(s)
			o.ClusterLabels = labels
			return err
		})
	fs.BoolVar(&o.LeaderElect, "leader-elect", d.LeaderElect,
		"Elect a leader among the replicas, so that one at a time runs the controllers.")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", d.LeaderElectionID, "Name of the leader election Lease.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", d.LeaderElectionNamespace,
		"Namespace of the leader election Lease.")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", d.LeaseDuration,
		"How long standby replicas wait after the leader's last renewal before taking the lead.")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", d.RenewDeadline,
		"How long the leader keeps trying to renew its Lease before it gives up the lead and exits; less than the lease duration.")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", d.RetryPeriod,
		"How long replicas wait between tries to take or renew the Lease.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", d.MetricsBindAddress,
		"Address the /metrics endpoint binds to; \"0\" disables it.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", d.HealthProbeBindAddress,
		"Address the /healthz and /readyz endpoints bind to; \"0\" disables them.")
	fs.StringVar(&o.PprofBindAddress, "pprof-bind-address", d.PprofBindAddress,
		"Address the Go profiler (/debug/pprof) binds to, for profiling; \"0\" disables it.")
	fs.DurationVar(&o.RemoteClusterProbeInterval, "remote-cluster-probe-interval", d.RemoteClusterProbeInterval,
		"How often each provider is probed for health and capacity, and its virtual node's Lease renewed.")
	fs.DurationVar(&o.UnoffloadTimeout, "unoffload-timeout", d.UnoffloadTimeout,
		"How long an unoffload waits for a provider that does not answer, or answers but does not delete its twin, before the NamespaceOffloading's status says so; 'stretchctl unoffload --force' then finishes without it.")
	fs.StringVar(&o.WebhookBindAddress, "webhook-bind-address", d.WebhookBindAddress,
		"Address the admission webhooks are served on; \"0\" disables them (pods of offloaded namespaces are then not placed).")
	fs.StringVar(&o.WebhookURL, "webhook-url", d.WebhookURL,
		"Base URL the API server calls the webhooks at, for a manager outside the cluster; empty means https://<webhook-bind-address>.")
	fs.StringVar(&o.KubeletBindAddress, "kubelet-bind-address", d.KubeletBindAddress,
		"Address the kubelet API of virtual nodes (kubectl logs, exec, attach, port-forward, top) is served on; \"0\" disables it.")
	fs.StringVar(&o.KubeletAddress, "kubelet-address", d.KubeletAddress,
		"IP the API server reaches that kubelet API at (e.g. the pod IP of an in-cluster manager); empty means the host of --kubelet-bind-address.")
	fs.StringVar(&o.WebhookService, "webhook-service", d.WebhookService,
		"namespace/name of the Service in front of an in-cluster manager; when set, the webhooks are called through it.")
	fs.StringVar(&o.APIServerURL, "api-server-url", d.APIServerURL,
		apiServerURLUsage)
	o.Zap = d.Zap
	o.Zap.BindFlags(fs)
}

// apiServerURLUsage is the help of --api-server-url, worded as that of
// 'stretchctl peer --api-server-url', which names the same address seen
// from the home side.
const apiServerURLUsage = "https://HOST[:PORT] of this cluster's API server as pods offloaded from this cluster, and other clusters, reach it (its certificate must be valid for that host): the containers of offloaded pods get it as KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, so that in-cluster clients reach this cluster with the token they mount. Empty: they reach the provider's API server, which refuses that token."

// Validate checks the options that the flags cannot check one by one; a
// failure is a usage error.
func (o Options) Validate() error {
	if o.APIServerURL != "" {
		if _, err := peering.ParseAPIServerURL(o.APIServerURL); err != nil {
			return fmt.Errorf("--api-server-url: %w; pass the URL at which pods offloaded from this cluster reach its API server (with the Helm chart, the value apiServerURL), or leave it out", err)
		}
	}
	if o.ClusterName == "" {
		if len(o.ClusterLabels) > 0 {
			return fmt.Errorf("--cluster-labels %s is given without --cluster-name: the labels belong to the cluster identity, which the manager writes only with --cluster-name NAME (or leave both out and run 'stretchctl install')", identity.FormatLabels(o.ClusterLabels))
		}
		return nil
	}
	if err := identity.ValidateClusterName(o.ClusterName); err != nil {
		return fmt.Errorf("--cluster-name: %w", err)
	}
	return nil
}

// checkLease checks the leader election timings up front, naming the flags:
// client-go only finds them wrong once the manager is running.
func (o Options) checkLease() error {
	if !o.LeaderElect {
		return nil
	}
	switch {
	case o.RetryPeriod <= 0:
		return fmt.Errorf("--leader-elect-retry-period=%s: must be more than 0", o.RetryPeriod)
	case float64(o.RenewDeadline) <= leaderelection.JitterFactor*float64(o.RetryPeriod):
		return fmt.Errorf("--leader-elect-renew-deadline=%s must be more than %.1f × --leader-elect-retry-period=%s: the leader would give up before its second try",
			o.RenewDeadline, leaderelection.JitterFactor, o.RetryPeriod)
	case o.LeaseDuration <= o.RenewDeadline:
		return fmt.Errorf("--leader-elect-lease-duration=%s must be more than --leader-elect-renew-deadline=%s: a standby could take the lead while the leader still renews",
			o.LeaseDuration, o.RenewDeadline)
	}
	return nil
}

// Run runs the manager until ctx is cancelled, then stops the controllers,
// gives up the leader Lease and returns nil. It sets the process-wide
// controller-runtime and klog loggers.
func Run(ctx context.Context, opts Options) error {
	log := zap.New(zap.UseFlagOptions(&opts.Zap))
	// One logger for all: client-go, leader election included, logs to klog.
	ctrl.SetLogger(log)
	klog.SetLogger(log)
	ctx = logr.NewContext(ctx, log)

	if err := opts.Validate(); err != nil {
		return err
	}
	if err := opts.checkLease(); err != nil {
		return err
	}
	if peering.IsLoopback(opts.APIServerURL) {
		log.Info("--api-server-url names a loopback address, which a pod reaches only in its own network namespace: offloaded pods' in-cluster clients will not reach this cluster; pass an address of the API server that pods on the providers reach", "apiServerURL", opts.APIServerURL)
	}
	cfg, err := restConfig(opts.Kubeconfig, opts.Context)
	if err != nil {
		return err
	}
	if opts.ClusterName != "" {
		if err := ensureIdentity(ctx, cfg, opts.ClusterName, opts.ClusterLabels); err != nil {
			return err
		}
	}
	hooks, err := newWebhookServing(opts)
	if err != nil {
		return err
	}
	webhookServer := ctrlwebhook.NewServer(ctrlwebhook.Options{Port: -1}) // disabled
	if hooks != nil {
		webhookServer = hooks.Server
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		WebhookServer:           webhookServer,
		Scheme:                  scheme.New(),
		Logger:                  log,
		LeaderElection:          opts.LeaderElect,
		LeaderElectionID:        opts.LeaderElectionID,
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		LeaseDuration:           &opts.LeaseDuration,
		RenewDeadline:           &opts.RenewDeadline,
		RetryPeriod:             &opts.RetryPeriod,
		// Stepping down on shutdown lets another replica lead at once rather
		// than after the lease expires; safe because Run returns right after.
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsBindAddress},
		HealthProbeBindAddress:        opts.HealthProbeBindAddress,
		PprofBindAddress:              opts.PprofBindAddress,
		// Nothing reads who wrote which field; the field lists were the
		// largest part of each cached NamespaceOffloading (docs/design.md
		// §2).
		Cache:      cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(opts.RunsAgainInProcess)},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	log.Info("starting stretch-controller-manager", "version", version.Version, "host", cfg.Host)

	// The API reader is uncached: the probe sees the ConfigMap appear or go
	// without a cluster-wide ConfigMap informer.
	ready := &identityCheck{log: log, reader: mgr.GetAPIReader()}
	_ = ready.check(ctx) // logs the identity, or why this cluster has none
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding the healthz check: %w", err)
	}
	if err := mgr.AddReadyzCheck("cluster-identity", func(req *http.Request) error {
		return ready.check(req.Context())
	}); err != nil {
		return fmt.Errorf("adding the readyz check: %w", err)
	}
	if err := setupControllers(mgr, opts, hooks); err != nil {
		return err
	}

	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	log.Info("stopped stretch-controller-manager")
	return nil
}

// newWebhookServing checks the webhook options and builds the webhook
// server; nil when webhooks are disabled.
func newWebhookServing(opts Options) (*webhook.Serving, error) {
	if opts.WebhookBindAddress == "0" {
		return nil, nil
	}
	host, _, err := webhook.ParseBindAddress(opts.WebhookBindAddress)
	if err != nil {
		return nil, err
	}
	var endpoint webhook.Endpoint
	switch {
	case opts.WebhookService != "":
		ns, name, ok := strings.Cut(opts.WebhookService, "/")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("--webhook-service %q is not namespace/name, such as stretch-system/stretch-webhook", opts.WebhookService)
		}
		endpoint.Service = types.NamespacedName{Namespace: ns, Name: name}
	case opts.WebhookURL != "":
		endpoint.URL = strings.TrimSuffix(opts.WebhookURL, "/")
	case host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified():
		return nil, fmt.Errorf("--webhook-bind-address %q listens on every address: say how the API server reaches it with --webhook-url or --webhook-service", opts.WebhookBindAddress)
	default:
		endpoint.URL = "https://" + opts.WebhookBindAddress
	}
	return webhook.NewServing(opts.WebhookBindAddress, endpoint, certs.Options{})
}

// setupControllers is the one list of every controller and webhook the
// manager runs. Each one registers here and nowhere else, e.g.
//
//	if err := (&tenant.Reconciler{...}).SetupWithManager(mgr); err != nil {
//		return fmt.Errorf("setting up the tenant controller: %w", err)
//	}
//
// hooks, when not nil, serves the webhooks.
func setupControllers(mgr ctrl.Manager, opts Options, hooks *webhook.Serving) error {
	// Home role: one peer (clients, cache) per provider, shared by every
	// controller that reaches providers.
	peers := remote.NewRegistry(mgr.GetScheme(), remote.Options{})
	if err := mgr.Add(peers); err != nil {
		return fmt.Errorf("adding the peer registry: %w", err)
	}
	kubelet := virtualkubelet.KubeletEndpoint{Address: opts.KubeletAddress}
	var kubeletAddress string
	var kubeletPort int32
	if opts.KubeletBindAddress != "0" {
		kubelet.BindAddress = opts.KubeletBindAddress
		var err error
		if kubeletAddress, kubeletPort, err = kubelet.Advertised(); err != nil {
			return err
		}
	}
	if err := (&remotecluster.Reconciler{
		Client:         mgr.GetClient(),
		Registry:       peers,
		Recorder:       mgr.GetEventRecorder("stretch-remotecluster"),
		ProbeInterval:  opts.RemoteClusterProbeInterval,
		KubeletAddress: kubeletAddress,
		KubeletPort:    kubeletPort,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the remotecluster controller: %w", err)
	}
	if err := (&offloading.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Registry:  peers,
		Recorder:  mgr.GetEventRecorder("stretch-offloading"),

		UnoffloadTimeout: opts.UnoffloadTimeout,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the offloading controller: %w", err)
	}
	home, err := virtualkubelet.Clientset(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("home cluster client: %w", err)
	}
	if err := (&virtualkubelet.Set{
		Client:   mgr.GetClient(),
		Home:     home,
		Registry: peers,
		Metrics:  virtualkubelet.NewMetrics(metrics.Registry),
		API:      kubelet,

		APIServerURL: opts.APIServerURL,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the virtual kubelets: %w", err)
	}
	// Provider role: twins for the home clusters that peer with this one.
	if err := (&tenant.Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("stretch-tenant")}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the tenant controller: %w", err)
	}
	// The usage it reports and the limits the twin pod admission checks are
	// counted from the same pods.
	homePods, err := homepods.New(mgr)
	if err != nil {
		return err
	}
	if err := (&tenantpolicy.Reconciler{Client: mgr.GetClient(), Pods: homePods}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the tenantpolicy controller: %w", err)
	}
	if hooks != nil {
		hooks.HomePods = homePods
		if err := hooks.Setup(mgr); err != nil {
			return err
		}
	}
	return nil
}

// restConfig builds the config that reaches the cluster: from kubeconfig when
// set, else the way controller-runtime finds one (in-cluster, $KUBECONFIG,
// ~/.kube/config).
func restConfig(kubeconfig, kubeContext string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := config.GetConfigWithContext(kubeContext)
		if err != nil {
			return nil, fmt.Errorf("finding a kubeconfig (not in a pod, and none from $KUBECONFIG or ~/.kube/config); pass --kubeconfig PATH: %w", err)
		}
		return cfg, nil
	}
	if _, err := os.Stat(kubeconfig); err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s; pass --kubeconfig with the path of a kubeconfig file: %w", kubeconfig, err)
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s (check --kubeconfig and --context): %w", kubeconfig, err)
	}
	// As controller-runtime's own loading does: no client-side rate limit,
	// the API server's priority and fairness is the one that counts.
	if cfg.QPS == 0 {
		cfg.QPS = -1
	}
	return cfg, nil
}

// Creating the identity cannot be limited to its name (a create is
// authorized before the object has one); updating it can.
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=create
// +kubebuilder:rbac:groups="",resources=configmaps,resourceNames=stretch-cluster-identity,verbs=update

// ensureIdentity gives the cluster the identity name with labels before any
// controller starts, so that an in-cluster manager needs no 'stretchctl
// install' and the cluster ID outlives every Helm release (Helm never owns
// the ConfigMap). Every replica does it; identity.Ensure makes racing
// replicas agree on one ID.
func ensureIdentity(ctx context.Context, cfg *rest.Config, name string, labels map[string]string) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return fmt.Errorf("creating a client for the cluster identity: %w", err)
	}
	id, created, err := identity.Ensure(ctx, c, name, labels)
	if mismatch := (*identity.NameMismatchError)(nil); errors.As(err, &mismatch) {
		return fmt.Errorf("--cluster-name %s: %w; with the Helm chart, set the value clusterName=%s (or pass --cluster-name %s)",
			name, err, mismatch.Existing.Name, mismatch.Existing.Name)
	}
	if err != nil {
		return err
	}
	logr.FromContextOrDiscard(ctx).Info("cluster identity ensured", "clusterID", id.ID, "clusterName", id.Name,
		"clusterLabels", identity.FormatLabels(id.Labels), "created", created)
	return nil
}

// identityCheck is the readiness check: the manager is ready only on a cluster
// where Stretch is installed, i.e. where the cluster identity loads. /readyz
// withholds the reason of a failing check, so it is logged instead, each time
// the outcome changes rather than at every probe.
type identityCheck struct {
	log    logr.Logger
	reader client.Reader

	mu      sync.Mutex
	checked bool   // whether check ran before
	lastErr string // the error of the previous check; "" when it passed
}

func (c *identityCheck) check(ctx context.Context) error {
	id, err := identity.Load(ctx, c.reader)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	c.mu.Lock()
	changed := !c.checked || msg != c.lastErr
	c.checked, c.lastErr = true, msg
	c.mu.Unlock()

	switch {
	case !changed:
	case err != nil:
		c.log.Error(err, "not ready: cannot load the cluster identity (if Stretch is not installed on this cluster, run 'stretchctl install')")
	default:
		c.log.Info("cluster identity loaded", "clusterID", id.ID, "clusterName", id.Name)
	}
	return err
}
