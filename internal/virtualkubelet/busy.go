package virtualkubelet

import (
	"context"
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// A twin is watched only while it has something to do: a pod of its home
// namespace bound to this virtual node, a home object to reflect, or
// something of ours still in it. Every watched twin costs five watches on
// the provider (the home identity may only list inside its twins); a bulk
// offload of 1,000 empty namespaces to 2 providers opened 10,000 of them
// and took the home manager to 4 GiB (test/bench).

// busy returns the ready twins (home namespace → twin) worth watching.
func (k *Kubelet) busy(ready map[string]string) map[string]string {
	want := map[string]string{}
	for home, name := range ready {
		if k.worthWatching(home, name) {
			want[home] = name
		}
	}
	return want
}

// worthWatching reports whether the ready twin name of home namespace home
// is worth watching: it has work, or something of ours to clean up.
func (k *Kubelet) worthWatching(home, name string) bool {
	if k.hasHomeWork(home) {
		return true
	}
	t := k.twins.get(home)
	watched := t != nil && t.name == name
	if watched && t.hasSynced() && !t.holdsOurs(k.HomeClusterID) {
		return false // cleaned up: idle (its leftovers mark is dropped too)
	}
	return watched || k.leftovers.has(home) // until what is ours there is gone
}

// hasHomeWork reports whether home namespace ns has a pod bound to the
// virtual node or an object to reflect.
func (k *Kubelet) hasHomeWork(ns string) bool {
	if pods, err := k.homePods.Pods(ns).List(everything); err == nil && len(pods) > 0 {
		return true
	}
	for _, r := range reflectors {
		for _, o := range k.homeObjects.list(r.kind(), ns) {
			if k.reflectsHome(r, o) {
				return true
			}
		}
	}
	return false
}

// holdsOurs reports whether the twin's caches hold a pod or an object this
// home cluster put there.
func (t *twin) holdsOurs(homeClusterID string) bool {
	if pods, err := t.pods.Pods(t.name).List(everything); err == nil {
		for _, p := range pods {
			if reflected(p, homeClusterID) {
				return true
			}
		}
	}
	for _, r := range reflectors {
		for _, o := range t.objects.list(r.kind(), t.name) {
			if reflected(o, homeClusterID) {
				return true
			}
		}
	}
	return false
}

// sweep looks once, when the kubelet starts, into the ready twins it has no
// reason to watch, for pods and objects of ours left there while it was
// not running (their home counterparts gone meanwhile): those twins are
// watched until they are cleaned up.
func (k *Kubelet) sweep(ctx context.Context, ready map[string]string) {
	kinds := []client.Object{&corev1.Pod{}}
	for _, r := range reflectors {
		kinds = append(kinds, r.object())
	}
	for home, name := range ready {
		if k.hasHomeWork(home) {
			continue
		}
		for _, obj := range kinds {
			// An error (the twin going away, the provider not answering)
			// counts as something left: watching finds out.
			if found, err := k.providerHolds(ctx, obj, name, oursSelector(obj, k.HomeClusterID)); err != nil || found {
				k.leftovers.add(home)
				break
			}
		}
	}
}

// providerHolds reports whether the provider has, in namespace ns, an
// object of obj's kind that matches labels; only metadata is read.
func (k *Kubelet) providerHolds(ctx context.Context, obj client.Object, ns string, labels client.MatchingLabels) (bool, error) {
	gvk, err := apiutil.GVKForObject(obj, eventScheme)
	if err != nil {
		return false, err
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := k.Peer.Client.List(ctx, list, client.InNamespace(ns), labels, client.Limit(1)); err != nil {
		return false, err
	}
	return len(list.Items) > 0, nil
}

// nsSet is a set of namespaces safe for concurrent use.
type nsSet struct {
	mu  sync.Mutex
	set map[string]bool
}

func (s *nsSet) add(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = map[string]bool{}
	}
	s.set[ns] = true
}

func (s *nsSet) has(ns string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set[ns]
}

func (s *nsSet) remove(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.set, ns)
}

// take empties the set and returns what it held.
func (s *nsSet) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Keys(s.set))
	clear(s.set)
	return out
}

// keepOnly drops the namespaces not in keep.
func (s *nsSet) keepOnly(keep map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.DeleteFunc(s.set, func(ns string, _ bool) bool { _, ok := keep[ns]; return !ok })
}
