// Package ownwrites tells a reconciler that the object it read from its
// cache predates its own last write to that object.
//
// A reconcile is often woken by something else (a provider's answer, a
// namespace event) before the cache has received the watch event of the
// previous reconcile's write. Reconciling that stale copy repeats the write:
// a status patch the API server answers with no change, or a finalizer patch
// that fails with a conflict and is retried. Waiting is free instead, since
// the watch event of our own write enqueues the object again. Under a bulk
// offload of 1,000 namespaces these repeats were 0.45 conflicts per
// namespace at home and 0.68 extra status patches per twin on providers.
//
// Resource versions are compared for equality only, as the API asks: a
// cached copy is behind when its resourceVersion is one that a write of this
// process replaced.
package ownwrites

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Tracker remembers, per object, the resource versions its writes replaced,
// until the cache shows a later one. Safe for concurrent use; the zero value
// is ready.
type Tracker struct {
	mu       sync.Mutex
	replaced map[types.NamespacedName][]string
}

// Write runs write, which must write obj and update it from the API
// server's answer (as client.Client's Patch and Update do), and remembers the
// resource version it replaced when obj's changed.
func (t *Tracker) Write(obj client.Object, write func() error) error {
	read := obj.GetResourceVersion()
	err := write()
	if rv := obj.GetResourceVersion(); rv != read && read != "" {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.replaced == nil {
			t.replaced = map[types.NamespacedName][]string{}
		}
		key := client.ObjectKeyFromObject(obj)
		t.replaced[key] = append(t.replaced[key], read)
	}
	return err
}

// Behind reports whether obj, as read from the cache, is a version that one
// of this process's writes replaced. Once it is not, the object is forgotten.
func (t *Tracker) Behind(obj client.Object) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := client.ObjectKeyFromObject(obj)
	replaced, ok := t.replaced[key]
	if !ok {
		return false
	}
	if slices.Contains(replaced, obj.GetResourceVersion()) {
		return true
	}
	delete(t.replaced, key)
	return false
}

// Forget drops what is remembered of the object key, e.g. once it is gone.
func (t *Tracker) Forget(key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.replaced, key)
}
