package machine

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		data string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
	} {
		if got := Tail([]byte(tc.data), tc.n); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.data, tc.n, got, tc.want)
		}
	}
}

func TestProcessRunning(t *testing.T) {
	if !ProcessRunning(os.Getpid()) {
		t.Errorf("ProcessRunning(own pid %d) = false", os.Getpid())
	}
	if ProcessRunning(0) {
		t.Error("ProcessRunning(0) = true")
	}
}

func TestFreeAddr(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
		t.Errorf("FreeAddr() = %q (%v), want 127.0.0.1:<port>", addr, err)
	}
}

func TestBinaryMissing(t *testing.T) {
	t.Setenv(BinDirEnv, t.TempDir())
	_, err := Binary("kube-apiserver")
	if err == nil || !strings.Contains(err.Error(), "run 'make tools'") {
		t.Errorf("Binary of a missing tool: %v, want an error that says to run 'make tools'", err)
	}
}

// TestPin pins a child process to CPU 0, then back to every CPU.
func TestPin(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	if err := Pin(pid, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := Affinity(pid); err != nil || !slices.Equal(got, []int{0}) {
		t.Fatalf("after Pin(%d, 0): CPUs %v, %v; want [0]", pid, got, err)
	}
	if err := Pin(pid); err != nil {
		t.Fatal(err)
	}
	all := make([]int, runtime.NumCPU())
	for i := range all {
		all[i] = i
	}
	if got, err := Affinity(pid); err != nil || !slices.Equal(got, all) {
		t.Fatalf("after Pin(%d): CPUs %v, %v; want %v", pid, got, err, all)
	}
	if err := Pin(pid, runtime.NumCPU()); err == nil || !strings.Contains(err.Error(), "this machine has CPUs 0 to") {
		t.Fatalf("Pin to a CPU the machine lacks: %v", err)
	}
}
