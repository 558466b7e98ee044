package webhook_test

import (
	"testing"

	"stretch.dev/stretch/internal/testenv"
)

// home is the API server the webhooks of this package's tests serve; the
// helpers they share are in package webhooktest.
var home *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { home = s[0] }, "home")
}
