package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"stretch.dev/stretch/config"
	"stretch.dev/stretch/internal/scheme"
	"stretch.dev/stretch/internal/testenv/machine"
)

// APIServer is one running envtest control plane (etcd + kube-apiserver) with
// Stretch's CRDs installed. It stands for one cluster: home or provider.
type APIServer struct {
	// Name is the cluster's name in the test, e.g. "home" or "provider-eu".
	Name string
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Client is a cluster-admin client with Stretch's scheme.
	Client client.Client
	// Kubeconfig is the path of a kubeconfig file for Config.
	Kubeconfig string
	// Scheme is the scheme of Client.
	Scheme *runtime.Scheme

	env *envtest.Environment
}

// Stop stops the API server and etcd.
func (s *APIServer) Stop() error {
	if err := s.env.Stop(); err != nil {
		return fmt.Errorf("stopping API server %s: %w", s.Name, err)
	}
	return nil
}

// StopAPIServerOnly stops kube-apiserver and leaves etcd running: clients of
// the cluster get "connection refused" until RestartAPIServer.
func (s *APIServer) StopAPIServerOnly() error {
	if err := s.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("stopping kube-apiserver of %s: %w", s.Name, err)
	}
	return nil
}

// RestartAPIServer starts kube-apiserver again after StopAPIServerOnly, on the
// same address, with the same serving certificate and client CA and on the
// same etcd: Config, Kubeconfig and every object are as before.
func (s *APIServer) RestartAPIServer() error {
	if err := s.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("restarting kube-apiserver of %s: %w", s.Name, err)
	}
	return nil
}

// StartAPIServers starts one API server per name, in parallel, each with
// Stretch's CRDs installed. kubeconfigs are written under dir. On error,
// whatever started is stopped again.
func StartAPIServers(dir string, names ...string) ([]*APIServer, error) {
	apiserver, err := machine.Binary("kube-apiserver")
	if err != nil {
		return nil, err
	}
	etcd, err := machine.Binary("etcd")
	if err != nil {
		return nil, err
	}
	binDir, err := machine.BinDir()
	if err != nil {
		return nil, err
	}

	servers := make([]*APIServer, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			servers[i], errs[i] = startAPIServer(dir, name, binDir, apiserver, etcd)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = StopAPIServers(servers)
		return nil, err
	}
	return servers, nil
}

func startAPIServer(dir, name, binDir, apiserver, etcd string) (*APIServer, error) {
	crds, err := config.CRDs()
	if err != nil {
		return nil, err
	}
	// envtest keeps the port of a restarted kube-apiserver but, in a
	// directory of its own, regenerates the serving certificate: in ours it
	// keeps it, so that clients still trust the restarted server.
	certDir := filepath.Join(dir, "certs-"+name)
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	apiServer := &envtest.APIServer{Path: apiserver, CertDir: certDir}
	// Without it, an open watch holds a stopping kube-apiserver for a minute.
	apiServer.Configure().Set("shutdown-watch-termination-grace-period", "1s")
	env := &envtest.Environment{
		CRDs:                  crds,
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: binDir,
		ControlPlane: envtest.ControlPlane{
			APIServer: apiServer,
			Etcd:      &envtest.Etcd{Path: etcd},
		},
	}
	cfg, err := env.Start()
	if err != nil {
		// envtest leaves etcd and the API server running when, say, a CRD
		// is rejected after they started.
		return nil, errors.Join(fmt.Errorf("starting API server %s: %w", name, err), env.Stop())
	}
	s := &APIServer{Name: name, Config: cfg, Scheme: scheme.New(), env: env}
	if s.Client, err = client.New(cfg, client.Options{Scheme: s.Scheme}); err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("client for API server %s: %w", name, err)
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig-"+name)
	if err := os.WriteFile(s.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("writing kubeconfig of API server %s: %w", name, err)
	}
	return s, nil
}

// StopAPIServers stops every started server (nil entries are skipped).
func StopAPIServers(servers []*APIServer) error {
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		if s == nil {
			continue
		}
		wg.Go(func() { errs[i] = s.Stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// LogEnv names the environment variable that, set to a non-empty value, makes
// the controllers that tests run log to stderr; they are silent otherwise.
const LogEnv = "STRETCH_TEST_LOG"

// SetLogger sets controller-runtime's logger: none, or the standard error
// with STRETCH_TEST_LOG set. It also keeps controller-runtime from printing
// a stack trace when the first controller logs without a logger set.
func SetLogger() {
	if os.Getenv(LogEnv) == "" {
		ctrl.SetLogger(logr.Discard())
		return
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
}

// Main is a TestMain body for a package whose tests share API servers: it
// starts one per name, hands them to set, runs the tests, stops the servers and
// exits. A failure to start or stop fails the run.
func Main(m *testing.M, set func([]*APIServer), names ...string) {
	os.Exit(run(m, set, names))
}

func run(m *testing.M, set func([]*APIServer), names []string) int {
	SetLogger()
	dir, err := os.MkdirTemp("", "stretch-testenv-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	servers, err := StartAPIServers(dir, names...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	set(servers)
	code := m.Run()
	if err := StopAPIServers(servers); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
