package machine

import (
	"net"
	"os"
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
