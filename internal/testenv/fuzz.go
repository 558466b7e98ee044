package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/scheme"
)

// sharedServersEnv hands the API servers of a fuzzing coordinator to its
// workers: "name=kubeconfig,name=kubeconfig".
const sharedServersEnv = "STRETCH_TESTENV_SHARED_SERVERS"

// FuzzMain is Main for a package with fuzz targets that need API servers.
// 'go test -fuzz' runs the package in a coordinator process and in worker
// processes, each through TestMain: the workers use the coordinator's API
// servers rather than start their own, so that an input that crashes a
// worker leaks no kube-apiserver or etcd, and two cores are not shared by
// three control planes. Workers inherit the coordinator's environment.
func FuzzMain(m *testing.M, set func([]*APIServer), names ...string) {
	if shared := os.Getenv(sharedServersEnv); shared != "" {
		SetLogger()
		servers, err := connect(shared)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
			os.Exit(1)
		}
		set(servers)
		os.Exit(m.Run())
	}
	Main(m, func(servers []*APIServer) {
		pairs := make([]string, 0, len(servers))
		for _, s := range servers {
			pairs = append(pairs, s.Name+"="+s.Kubeconfig)
		}
		if err := os.Setenv(sharedServersEnv, strings.Join(pairs, ",")); err != nil {
			panic(err)
		}
		set(servers)
	}, names...)
}

// connect builds clients of the API servers another process started. They
// cannot be stopped from here.
func connect(shared string) ([]*APIServer, error) {
	var servers []*APIServer
	for pair := range strings.SplitSeq(shared, ",") {
		name, kubeconfig, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("%s=%q: want name=kubeconfig pairs", sharedServersEnv, shared)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("API server %s shared by the fuzzing coordinator: %w", name, err)
		}
		// As envtest's own configs: no client-side throttling of tests.
		cfg.QPS, cfg.Burst = 1000, 2000
		s := &APIServer{Name: name, Config: cfg, Kubeconfig: kubeconfig, Scheme: scheme.New()}
		if s.Client, err = client.New(cfg, client.Options{Scheme: s.Scheme}); err != nil {
			return nil, fmt.Errorf("client for API server %s: %w", name, err)
		}
		servers = append(servers, s)
	}
	return servers, nil
}

// StartCache starts an informer cache of s, as a manager's client reads
// from, and waits until it has synced the kinds of objs. It stops when tb
// ends.
func (s *APIServer) StartCache(tb testing.TB, objs ...client.Object) cache.Cache {
	tb.Helper()
	c, err := cache.New(s.Config, cache.Options{Scheme: s.Scheme})
	if err != nil {
		tb.Fatalf("cache of API server %s: %v", s.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	go func() { _ = c.Start(ctx) }()
	for _, obj := range objs {
		// Getting an informer starts it; the wait below covers it.
		if _, err := c.GetInformer(ctx, obj); err != nil {
			tb.Fatalf("informer of %T on API server %s: %v", obj, s.Name, err)
		}
	}
	if !c.WaitForCacheSync(ctx) {
		tb.Fatalf("the cache of API server %s did not sync", s.Name)
	}
	return c
}
