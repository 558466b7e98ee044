package testenv

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

// StartKwokClusterForTest starts a kwok cluster for t; see
// StartKwokClustersForTest.
func StartKwokClusterForTest(t testing.TB, suite, name string, opts kwok.Options) *kwok.Cluster {
	t.Helper()
	return StartKwokClustersForTest(t, suite, opts, name)[0]
}

// StartKwokClustersForTest starts one kwok cluster per name, in parallel (see
// kwok.Start), and stops them in t.Cleanup, failing t if that fails.
// When t has failed, each cluster's logs are first exported to
// _artifacts/<suite>/<test>/<cluster>/ at the repository root and the path is
// logged. Progress goes to t.Logf unless opts.Logf is set.
func StartKwokClustersForTest(t testing.TB, suite string, opts kwok.Options, names ...string) []*kwok.Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	clusters := make([]*kwok.Cluster, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { clusters[i], errs[i] = kwok.Start(t.Context(), name, opts) })
	}
	wg.Wait()
	for _, c := range clusters {
		if c != nil {
			t.Cleanup(func() { stopForTest(t, suite, c) })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return clusters
}

func stopForTest(t testing.TB, suite string, c *kwok.Cluster) {
	if keepArtifacts(t) {
		if root, err := machine.RepoRoot(); err != nil {
			t.Errorf("exporting the logs of kwok cluster %s: %v", c.Name, err)
		} else {
			dir := filepath.Join(root, "_artifacts", suite, filepath.FromSlash(t.Name()), c.Name)
			if err := c.ExportLogs(dir); err != nil {
				t.Error(err)
			} else {
				t.Logf("logs of kwok cluster %s: %s", c.Name, dir)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), kwok.StopTimeout)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Error(err)
	}
}
