package podplacement_test

import (
	"testing"

	"stretch.dev/stretch/internal/testenv"
)

// home is the API server that the tests and the fuzz target of this
// package share; the helpers of the tests are in package webhooktest.
var home *testenv.APIServer

// TestMain is FuzzMain's: FuzzHandle's fuzzing workers use this process's
// API server; under plain 'go test' it is Main.
func TestMain(m *testing.M) {
	testenv.FuzzMain(m, func(s []*testenv.APIServer) { home = s[0] }, "home")
}
