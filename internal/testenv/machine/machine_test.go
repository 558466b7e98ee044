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

func TestParseCPUTimes(t *testing.T) {
	tests := []struct {
		name, stat string
		want       []CPUTime
		err        bool
	}{{
		name: "two CPUs; idle and iowait are not busy",
		stat: "cpu  30 0 10 100 5 0 0 0 0 0\ncpu0 10 0 5 60 5 0 0 0 0 0\ncpu1 20 0 5 40 0 1 1 2 0 0\nintr 1 2\n",
		want: []CPUTime{{Busy: 15, Total: 80}, {Busy: 29, Total: 69}},
	}, {
		name: "no CPU line",
		stat: "intr 1 2\n",
		err:  true,
	}, {
		name: "a value that is not a number",
		stat: "cpu0 10 x 5 60 5 0 0 0\n",
		err:  true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUTimes(tt.stat)
			if tt.err {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	busy := CPUTime{Busy: 60, Total: 200}.BusySince(CPUTime{Busy: 10, Total: 100})
	if busy != 0.5 {
		t.Fatalf("BusySince: got %v, want 0.5", busy)
	}
}
