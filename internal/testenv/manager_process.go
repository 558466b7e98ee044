package testenv

import (
	"bytes"
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

// ManagerProcess is a bin/stretch-controller-manager run by a test.
type ManagerProcess struct {
	// PID is its process ID.
	PID int
	// MetricsURL is its /metrics endpoint, when started WithMetrics.
	MetricsURL string
	// PprofURL is its Go profiler, started along with the metrics (a
	// benchmark's home manager is profiled with 'go tool pprof <url>profile').
	PprofURL string
	// Stop stops it as an operator would (SIGINT; SIGKILL after 30 s and an
	// error); it is idempotent and runs when the test ends. When the process
	// had exited on its own before, the test log says so with the end of its
	// log.
	Stop func()
	// Kill SIGKILLs it, as a node crash would, and reaps it.
	Kill func()
}

// TestLeaseArgs are the leader election timings of the managers tests start
// unless they pass others: 2 cores running several control planes at once
// stalled an API server past the default 10 s renew deadline, and the
// manager then exits, as it should, with no Deployment to start it again.
// test/faults passes the defaults to measure a failover.
var TestLeaseArgs = []string{"--leader-elect-lease-duration=60s", "--leader-elect-renew-deadline=50s", "--leader-elect-retry-period=2s"}

// RunManager runs bin/stretch-controller-manager against c until the test
// ends or Stop is called, on free 127.0.0.1 ports (webhooks, kubelet API,
// and metrics when withMetrics), probing providers every second, with
// TestLeaseArgs and then args. When t fails (or with
// STRETCH_KEEP_ARTIFACTS=1), its log is kept under
// _artifacts/<suite>/<test>/ and the path is logged.
func RunManager(t *testing.T, suite string, c *kwok.Cluster, withMetrics bool, args ...string) *ManagerProcess {
	t.Helper()
	return RunManagerBinary(t, suite, c, "stretch-controller-manager", withMetrics, args...)
}

// RunManagerBinary is RunManager with another build of the manager: binary
// is a path, or a name in bin/ (an upgrade test runs an older release).
func RunManagerBinary(t *testing.T, suite string, c *kwok.Cluster, binary string, withMetrics bool, args ...string) *ManagerProcess {
	t.Helper()
	if !filepath.IsAbs(binary) {
		dir, err := machine.BinDir()
		if err != nil {
			t.Fatal(err)
		}
		binary = filepath.Join(dir, binary)
	}
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("stretch-controller-manager-%s-%d.log", c.Name, time.Now().UnixNano()))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	m := &ManagerProcess{}
	metrics, pprof := "0", "0"
	if withMetrics {
		metrics, pprof = FreeAddr(t), FreeAddr(t)
		m.MetricsURL = "http://" + metrics + "/metrics"
		m.PprofURL = "http://" + pprof + "/debug/pprof/"
	}
	cmdArgs := append([]string{
		"--kubeconfig", c.Kubeconfig,
		"--metrics-bind-address", metrics, "--health-probe-bind-address", "0",
		"--pprof-bind-address", pprof,
		"--remote-cluster-probe-interval", "1s",
		"--webhook-bind-address", FreeAddr(t),
		"--kubelet-bind-address", FreeAddr(t)}, TestLeaseArgs...)
	cmd := exec.Command(binary, append(cmdArgs, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting stretch-controller-manager: %v (run 'make build')", err)
	}
	m.PID = cmd.Process.Pid
	exited := make(chan struct{})
	var exitErr error
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	stopped := false
	m.Stop = func() {
		if stopped {
			return
		}
		stopped = true
		select {
		case <-exited:
			data, _ := os.ReadFile(logPath)
			t.Logf("stretch-controller-manager on %s (pid %d) had exited on its own (%v); its log ends with:\n%s", c.Name, m.PID, exitErr, machine.Tail(data, 15))
		default:
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Errorf("stretch-controller-manager did not stop within 30s of SIGINT")
			}
		}
		logFile.Close()
	}
	m.Kill = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			<-exited
			logFile.Close()
		}
	}
	t.Cleanup(func() {
		m.Stop()
		if keepArtifacts(t) {
			KeepArtifact(t, suite, logPath)
		}
	})
	return m
}

// keepArtifacts reports whether a test's logs are kept: when it failed, or
// always with STRETCH_KEEP_ARTIFACTS=1 (to compare with a failed run).
func keepArtifacts(t testing.TB) bool {
	return t.Failed() || os.Getenv("STRETCH_KEEP_ARTIFACTS") == "1"
}

// KeepArtifact copies a file to _artifacts/<suite>/<test>/ at the
// repository root and logs where.
func KeepArtifact(t testing.TB, suite, path string) {
	root, err := machine.RepoRoot()
	if err != nil {
		t.Error(err)
		return
	}
	dst := filepath.Join(root, "_artifacts", suite, filepath.FromSlash(t.Name()), filepath.Base(path))
	data, err := os.ReadFile(path)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(dst), 0o755)
	}
	if err == nil {
		err = os.WriteFile(dst, data, 0o644)
	}
	if err != nil {
		t.Errorf("keeping %s: %v", path, err)
		return
	}
	t.Logf("kept %s", dst)
}

// ProcessUsage is the CPU time a process used so far and its peak resident
// memory, from /proc.
type ProcessUsage struct {
	CPU     time.Duration
	PeakRSS int64 // bytes
}

// UsageOf reads the usage of pid.
func UsageOf(pid int) (ProcessUsage, error) {
	var u ProcessUsage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// utime and stime are fields 14 and 15, after the command in parentheses.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var utime, stime int64
	fmt.Sscan(fields[11], &utime)
	fmt.Sscan(fields[12], &stime)
	u.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			u.PeakRSS = kb * 1024
		}
	}
	return u, nil
}

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100
