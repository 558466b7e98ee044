// Package e2e runs Stretch's real binaries against kwokctl clusters (real
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
// nodes). It needs 'make tools' and 'make build'. On a
// failure, each cluster's logs go to _artifacts/e2e/<test>/<cluster>/.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

// suite names the artifacts folder: _artifacts/e2e/.
const suite = "e2e"

// testImage is the manager image the scenarios install with the chart: the
// chart's pods run on kwok nodes, which pull nothing; the managers that work
// are processes (startManager) with the chart's ServiceAccount.
const testImage = "registry.example/stretch-controller-manager:e2e"

// commandTimeout bounds one run of stretchctl or kubectl.
const commandTimeout = 2 * time.Minute

// binaries are the tools the scenarios run, found once by TestMain.
var binaries struct {
	stretchctl, kubectl string
}

func TestMain(m *testing.M) {
	if err := findBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func findBinaries() error {
	for _, tool := range []string{"kwokctl", "kwok", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"} {
		if _, err := machine.Binary(tool); err != nil {
			return err
		}
	}
	var err error
	if binaries.kubectl, err = machine.Binary("kubectl"); err != nil {
		return err
	}
	dir, err := machine.BinDir()
	if err != nil {
		return err
	}
	binaries.stretchctl = filepath.Join(dir, "stretchctl")
	if _, err := os.Stat(binaries.stretchctl); err != nil {
		return fmt.Errorf("%s not found (%v): run 'make build' first (the e2e tests run the built binaries)", binaries.stretchctl, err)
	}
	return nil
}

// run runs a binary to completion, logs its command line and output, and
// returns the output (stdout and stderr) and its error.
func run(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	// kubectl finds the kubectl-stretch plugin on PATH.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binaries.stretchctl)+string(os.PathListSeparator)+os.Getenv("PATH"))
	err := cmd.Run()
	t.Logf("$ %s %s\n%s", filepath.Base(bin), strings.Join(args, " "), out.String())
	if err != nil {
		err = fmt.Errorf("%s %s: %w", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return out.String(), err
}

// stretchctl runs bin/stretchctl.
func stretchctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(t, binaries.stretchctl, args...)
}

// kubectl runs bin/kubectl against a cluster, with a discovery cache of the test's own.
func kubectl(t *testing.T, c *kwok.Cluster, args ...string) (string, error) {
	t.Helper()
	return run(t, binaries.kubectl, append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", t.TempDir()}, args...)...)
}
