package virtualkubelet

import (
	"testing"
	"time"
)

// SetRefusalRetry sets, for test t, how a refused pod is tried again (see
// refusalRetry). Call it before the kubelets start: it is restored once
// they stopped.
func SetRefusalRetry(t testing.TB, first, max, gap time.Duration) {
	old := refusalRetries
	refusalRetries = refusalRetry{first: first, max: max, gap: gap}
	t.Cleanup(func() { refusalRetries = old })
}
