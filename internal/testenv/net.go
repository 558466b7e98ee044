package testenv

import (
	"testing"

	"stretch.dev/stretch/internal/testenv/machine"
)

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago, for
// servers that take an address rather than report the port they got.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := machine.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
