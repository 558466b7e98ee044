package testenv

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"stretch.dev/stretch/internal/testenv/machine"
)

// RunControllerManager runs bin/kube-controller-manager against the API
// server with only the named controllers (e.g. "endpointslice"), which
// envtest does not run, until the test ends. It serves nothing (no secure
// port) and elects no leader. Its log is shown when the test fails.
func (s *APIServer) RunControllerManager(t testing.TB, controllers ...string) {
	t.Helper()
	bin, err := machine.Binary("kube-controller-manager")
	if err != nil {
		t.Fatal(err)
	}
	var log SyncBuffer
	cmd := exec.Command(bin,
		"--kubeconfig="+s.Kubeconfig,
		"--controllers="+strings.Join(controllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
		"--bind-address=127.0.0.1",
		"--profiling=false",
	)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting kube-controller-manager on %s: %v", s.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("kube-controller-manager (%s) of %s:\n%s", strings.Join(controllers, ","), s.Name, machine.Tail([]byte(log.String()), 40))
		}
	})
}
