// Package retry is how Stretch's work queues retry a failed item: after a
// delay that grows with that item's own failures only. The default limiter
// of controller-runtime and client-go also passes every retry through one
// bucket of 10 per second shared by all items, so that when many items fail
// once (a conflict, a cache behind its own write) each waits behind all the
// others: a bulk offload of 1,000 namespaces ran at that pace (test/bench).
package retry

import (
	"time"

	"k8s.io/client-go/util/workqueue"
)

// Limiter delays an item by its failures only: 5 ms, doubling, up to 5 min.
func Limiter[T comparable]() workqueue.TypedRateLimiter[T] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[T](5*time.Millisecond, 5*time.Minute)
}
