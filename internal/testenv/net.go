package testenv

import (
	"net"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago, for
// servers that take an address rather than report the port they got.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := FreeLocalAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreeLocalAddr is FreeAddr for programs.
func FreeLocalAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
