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
	// error); it is idempotent and runs when the test ends.
	Stop func()
}

// RunManager runs bin/stretch-controller-manager against c until the test
// ends or Stop is called, on free 127.0.0.1 ports (webhooks, kubelet API,
// and metrics when withMetrics), probing providers every second. When t
// fails, its log is kept under _artifacts/<suite>/<test>/ and the path is
// logged.
func RunManager(t *testing.T, suite string, c *KwokCluster, withMetrics bool) *ManagerProcess {
	t.Helper()
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
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
	cmd := exec.Command(filepath.Join(dir, "stretch-controller-manager"),
		"--kubeconfig", c.Kubeconfig,
		"--metrics-bind-address", metrics, "--health-probe-bind-address", "0",
		"--pprof-bind-address", pprof,
		"--remote-cluster-probe-interval", "1s",
		"--webhook-bind-address", FreeAddr(t),
		"--kubelet-bind-address", FreeAddr(t))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting stretch-controller-manager: %v (run 'make build')", err)
	}
	m.PID = cmd.Process.Pid
	stopped := false
	m.Stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("stretch-controller-manager did not stop within 30s of SIGINT")
		}
		logFile.Close()
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			KeepArtifact(t, suite, logPath)
		}
	})
	return m
}

// KeepArtifact copies a file to _artifacts/<suite>/<test>/ at the
// repository root and logs where.
func KeepArtifact(t testing.TB, suite, path string) {
	root, err := RepoRoot()
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
