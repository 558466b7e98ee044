// Package fleet runs Stretch in tests: the controllers of a home cluster and
// its providers on testenv API servers, peered the way 'stretchctl peer'
// peers them. It is apart from testenv because it uses what testenv's users
// test.
package fleet

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/cli/install"
	"stretch.dev/stretch/internal/cli/peer"
	"stretch.dev/stretch/internal/controller/offloading"
	"stretch.dev/stretch/internal/controller/remotecluster"
	"stretch.dev/stretch/internal/controller/tenant"
	"stretch.dev/stretch/internal/controller/tenantpolicy"
	"stretch.dev/stretch/internal/homepods"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/remote"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/virtualkubelet"
	"stretch.dev/stretch/internal/webhook"
	"stretch.dev/stretch/internal/webhook/certs"
)

// Provider is an API server that plays a provider, with the cluster labels
// it is installed with.
type Provider struct {
	Server *testenv.APIServer
	Labels map[string]string
}

// Stretch runs what the managers of a home cluster and its providers run
// (the remotecluster and offloading controllers and the virtual kubelets at
// home; on each provider, the tenant and tenantpolicy controllers and the
// webhooks), peered as 'stretchctl peer' peers them. Its
// parts can be stopped and started again, as restarted managers.
type Stretch struct {
	t        testing.TB
	home     *testenv.APIServer
	opts     Options
	stopHome func()
	tenants  map[*testenv.APIServer]func()

	// Metrics is the registry of the running home side's virtual kubelet
	// metrics.
	Metrics *prometheus.Registry
}

// Options adjust what RunWith runs.
type Options struct {
	// Offloading adjusts the offloading controller.
	Offloading []func(*offloading.Reconciler)
	// HomeTransport, PeerTransport and TenantTransport wrap the transports
	// of the home side's clients of home, of its clients of the providers
	// (the peers) and of the tenant controllers' clients of their providers,
	// e.g. to inject faults; nil leaves them as they are.
	HomeTransport, PeerTransport, TenantTransport transport.WrapperFunc
	// NoHome leaves the home side to the test, e.g. to run it as
	// stretch-controller-manager processes: StartHome starts it.
	NoHome bool
	// APIServerURL is the home side's --api-server-url.
	APIServerURL string
	// KubeletBindAddress is where the home side serves the kubelet API of
	// virtual nodes (--kubelet-bind-address); empty: nowhere.
	KubeletBindAddress string
}

// Run installs the identities (home's with homeID; a provider keeps
// the one it got first), starts every controller until the test ends and
// peers home with each provider. opts adjust the offloading controller.
func Run(t testing.TB, home *testenv.APIServer, homeID string, providers []Provider, opts ...func(*offloading.Reconciler)) *Stretch {
	t.Helper()
	return RunWith(t, home, homeID, providers, Options{Offloading: opts})
}

// RunWith is Run with options.
func RunWith(t testing.TB, home *testenv.APIServer, homeID string, providers []Provider, opts Options) *Stretch {
	t.Helper()
	ctx := context.Background()
	s := &Stretch{t: t, home: home, opts: opts, tenants: map[*testenv.APIServer]func(){}}
	if err := home.InstallIdentity(ctx, identity.Identity{ID: homeID, Name: home.Name}); err != nil {
		t.Fatal(err)
	}
	for _, p := range providers {
		if err := p.Server.InstallIdentity(ctx, identity.Identity{ID: uuid.NewString(), Name: p.Server.Name, Labels: p.Labels}); err != nil {
			t.Fatal(err)
		}
		// What 'stretchctl install' grants a home cluster in its twins.
		role, err := install.RemoteWorkloadsRole()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Server.Client.Create(ctx, role); client.IgnoreAlreadyExists(err) != nil {
			t.Fatal(err)
		}
		p.Server.FinalizeNamespaces(t)
		s.StartTenant(p.Server)
		s.Peer(p.Server)
	}
	if !opts.NoHome {
		s.StartHome()
	}
	return s
}

// Peer peers home with the provider, as 'stretchctl peer' does.
func (s *Stretch) Peer(provider *testenv.APIServer) {
	s.t.Helper()
	if _, err := peer.Peer(context.Background(), s.home.Client, provider.Client, provider.Config, io.Discard); err != nil {
		s.t.Fatalf("peering %s with %s: %v", s.home.Name, provider.Name, err)
	}
}

// StartTenant runs the provider side on provider: the tenant and
// tenantpolicy controllers, and the webhooks (the twin pod admission among
// them), as a provider's manager runs them.
func (s *Stretch) StartTenant(provider *testenv.APIServer) {
	s.t.Helper()
	s.tenants[provider] = serveProvider(s.t, wrapped(provider.Config, s.opts.TenantTransport), provider.Config)
}

// ServeProvider runs, against the API server of cfg, what a provider's
// manager runs: the tenant and tenantpolicy controllers, and the webhooks
// served outside the cluster at a free address of this machine. It returns
// once the API server can call the webhooks, and stop stops them all; the
// webhook configurations stay, as a stopped manager leaves them (the twin
// pod admission fails closed), until the test ends and removes them, so
// that the next test on the API server starts from a cluster without them.
func ServeProvider(t testing.TB, cfg *rest.Config) (stop func()) {
	t.Helper()
	return serveProvider(t, cfg, cfg)
}

// serveProvider is ServeProvider with the manager's config apart from the
// config that removes the webhook configurations at the end, which faults
// injected into the manager's must not fail.
func serveProvider(t testing.TB, cfg, admin *rest.Config) (stop func()) {
	t.Helper()
	t.Cleanup(func() {
		c, err := client.New(admin, client.Options{})
		if err != nil {
			t.Errorf("removing the webhook configurations: %v", err)
			return
		}
		for _, obj := range webhook.Configurations(webhook.Endpoint{}, nil).Objects() {
			if err := client.IgnoreNotFound(c.Delete(context.Background(), obj)); err != nil {
				t.Errorf("removing webhook configuration %s: %v", obj.GetName(), err)
			}
		}
	})
	addr := testenv.FreeAddr(t)
	hooks, err := webhook.NewServing(addr, webhook.Endpoint{URL: "https://" + addr}, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop = testenv.StartManager(t, cfg, func(o *ctrl.Options) { o.WebhookServer = hooks.Server }, func(mgr ctrl.Manager) error {
		if err := (&tenant.Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("tenant")}).SetupWithManager(mgr); err != nil {
			return err
		}
		pods, err := homepods.New(mgr)
		if err != nil {
			return err
		}
		if err := (&tenantpolicy.Reconciler{Client: mgr.GetClient(), Pods: pods}).SetupWithManager(mgr); err != nil {
			return err
		}
		hooks.HomePods = pods
		return hooks.Setup(mgr)
	})
	select {
	case <-hooks.Rotator.Ready():
	case <-time.After(time.Minute):
		stop()
		t.Fatal("the provider's webhook certificate was not ready within a minute")
	}
	return stop
}

// StopTenant stops the provider side on provider.
func (s *Stretch) StopTenant(provider *testenv.APIServer) { s.tenants[provider]() }

// StartHome runs the home side with a new peer registry, as a restarted
// manager would.
func (s *Stretch) StartHome() {
	reg := remote.NewRegistry(s.home.Scheme, remote.Options{Timeout: 5 * time.Second, WrapTransport: s.opts.PeerTransport})
	s.stopHome = testenv.StartControllers(s.t, wrapped(s.home.Config, s.opts.HomeTransport), func(mgr ctrl.Manager) error {
		if err := mgr.Add(reg); err != nil {
			return err
		}
		rc := &remotecluster.Reconciler{Client: mgr.GetClient(), Registry: reg, Recorder: mgr.GetEventRecorder("remotecluster"), ProbeInterval: time.Second}
		if s.opts.KubeletBindAddress != "" {
			// Virtual nodes advertise it, as the manager's do.
			addr, port, err := virtualkubelet.KubeletEndpoint{BindAddress: s.opts.KubeletBindAddress}.Advertised()
			if err != nil {
				return err
			}
			rc.KubeletAddress, rc.KubeletPort = addr, port
		}
		if err := rc.SetupWithManager(mgr); err != nil {
			return err
		}
		off := &offloading.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Registry: reg, Recorder: mgr.GetEventRecorder("offloading")}
		for _, o := range s.opts.Offloading {
			o(off)
		}
		if err := off.SetupWithManager(mgr); err != nil {
			return err
		}
		cs, err := virtualkubelet.Clientset(mgr.GetConfig())
		if err != nil {
			return err
		}
		s.Metrics = prometheus.NewRegistry()
		return (&virtualkubelet.Set{Client: mgr.GetClient(), Home: cs, Registry: reg, Metrics: virtualkubelet.NewMetrics(s.Metrics), TokenCheck: time.Second, APIServerURL: s.opts.APIServerURL,
			API: virtualkubelet.KubeletEndpoint{BindAddress: s.opts.KubeletBindAddress}}).SetupWithManager(mgr)
	})
}

// StopHome stops the home side.
func (s *Stretch) StopHome() { s.stopHome() }

// wrapped is cfg with its transport wrapped by wrap, if any.
func wrapped(cfg *rest.Config, wrap transport.WrapperFunc) *rest.Config {
	if wrap == nil {
		return cfg
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(wrap)
	return cfg
}
