package virtualkubelet

import (
	"context"
	"maps"
	"slices"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/naming"
)

// twin is one twin namespace of the peering, with caches of what the virtual
// kubelet keeps there. The home identity may list only inside its twins, so
// each twin has its own informers.
type twin struct {
	homeNamespace, name string

	pods corev1listers.PodLister
	// secrets reads the token Secrets (see tokens.go).
	secrets corev1listers.SecretLister
	objects objectCaches
	synced  []cache.InformerSynced

	cancel context.CancelFunc
}

// hasSynced reports whether every cache of the twin has its first list.
func (t *twin) hasSynced() bool {
	for _, s := range t.synced {
		if !s() {
			return false
		}
	}
	return true
}

// twinHandlers are told of changes in the twins.
type twinHandlers struct {
	pods, events cache.ResourceEventHandler
	objects      func(reflector) cache.ResourceEventHandler
}

// startTwin starts watching the twin name of homeNamespace on the provider.
func startTwin(ctx context.Context, provider kubernetes.Interface, homeNamespace, name string, h twinHandlers) *twin {
	ctx, cancel := context.WithCancel(ctx)
	f := informers.NewSharedInformerFactoryWithOptions(provider, 0, informers.WithNamespace(name), informers.WithTransform(crcache.TransformStripManagedFields()))
	core := f.Core().V1()
	t := &twin{homeNamespace: homeNamespace, name: name, cancel: cancel,
		pods: core.Pods().Lister(), secrets: core.Secrets().Lister(), objects: newObjectCaches(f)}
	type watched struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandler
	}
	all := []watched{{core.Pods().Informer(), h.pods}, {core.Events().Informer(), h.events}}
	for _, r := range reflectors {
		all = append(all, watched{r.informer(f), h.objects(r)})
	}
	for _, inf := range all {
		_, _ = inf.informer.AddEventHandler(inf.handler) // fails only once the informer stopped
		t.synced = append(t.synced, inf.informer.HasSynced)
	}
	t.synced = append(t.synced, core.Secrets().Informer().HasSynced) // tokens', whatever is reflected
	f.Start(ctx.Done())
	go func() { <-ctx.Done(); f.Shutdown() }()
	return t
}

// twinSet is the twins of a peering, by home namespace.
type twinSet struct {
	mu     sync.RWMutex
	byHome map[string]*twin
}

func newTwinSet() *twinSet { return &twinSet{byHome: map[string]*twin{}} }

// get returns the twin of homeNamespace, if the provider has a ready one.
func (s *twinSet) get(homeNamespace string) *twin {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byHome[homeNamespace]
}

// byName returns the twin named name.
func (s *twinSet) byName(name string) *twin {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, t := range s.byHome {
		if t.name == name {
			return t
		}
	}
	return nil
}

// all returns the twins, sorted by home namespace.
func (s *twinSet) all() []*twin {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*twin, 0, len(s.byHome))
	for _, k := range slices.Sorted(maps.Keys(s.byHome)) {
		out = append(out, s.byHome[k])
	}
	return out
}

func (s *twinSet) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byHome)
}

// setOne makes the twin of home the one named name ("": none), as update
// does for every home namespace. It returns the twin it started, if any.
func (s *twinSet) setOne(home, name string, start func(homeNamespace, name string) *twin) *twin {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byHome[home]
	if ok && t.name == name {
		return nil
	}
	if ok {
		t.cancel()
		delete(s.byHome, home)
	}
	if name == "" {
		return nil
	}
	t = start(home, name)
	s.byHome[home] = t
	return t
}

// update makes the set equal to want (home namespace → twin name): twins
// that left are stopped, new ones are started with start. It returns the
// started twins.
func (s *twinSet) update(want map[string]string, start func(homeNamespace, name string) *twin) []*twin {
	s.mu.Lock()
	defer s.mu.Unlock()
	for home, t := range s.byHome {
		if want[home] != t.name {
			t.cancel()
			delete(s.byHome, home)
		}
	}
	var started []*twin
	for home, name := range want {
		if _, ok := s.byHome[home]; !ok {
			t := start(home, name)
			s.byHome[home] = t
			started = append(started, t)
		}
	}
	return started
}

// stop stops every twin's informers.
func (s *twinSet) stop() {
	s.update(nil, nil)
}

// readyTwins returns, from the requests of the home cluster homeClusterID
// that it really made (requested), the twins the provider reports ready:
// home namespace → twin name.
func readyTwins(requests []peeringv1alpha1.RemoteNamespace, homeClusterID string, requested func(*peeringv1alpha1.RemoteNamespace) bool) map[string]string {
	want := map[string]string{}
	for i := range requests {
		if name, ok := readyTwin(&requests[i], homeClusterID, requested); ok {
			want[requests[i].Spec.HomeNamespace] = name
		}
	}
	return want
}

// readyTwin returns the twin's name when request rn is one readyTwins
// keeps.
func readyTwin(rn *peeringv1alpha1.RemoteNamespace, homeClusterID string, requested func(*peeringv1alpha1.RemoteNamespace) bool) (string, bool) {
	if rn.Spec.HomeClusterID == homeClusterID && rn.Status.Phase == peeringv1alpha1.RemoteNamespaceReady && rn.DeletionTimestamp == nil && requested(rn) {
		return rn.Spec.RemoteNamespaceName, true
	}
	return "", false
}

// twinNames maps home namespaces to twin names, safe for concurrent use.
type twinNames struct {
	mu    sync.RWMutex
	names map[string]string
}

func (n *twinNames) get(home string) (string, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	name, ok := n.names[home]
	return name, ok
}

func (n *twinNames) set(home, name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.names == nil {
		n.names = map[string]string{}
	}
	n.names[home] = name
}

func (n *twinNames) remove(home string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.names, home)
}

func (n *twinNames) replace(names map[string]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.names = names
}

// requested reports whether this home cluster asked the provider for the
// twin rn describes: its home namespace has a NamespaceOffloading that maps
// it to that twin and has not deselected this provider. The provider's
// admin can write any RemoteNamespace into the tenant namespace; trusting
// one would reflect the Secrets of any home namespace onto the provider.
func (k *Kubelet) requested(ctx context.Context) func(*peeringv1alpha1.RemoteNamespace) bool {
	return func(rn *peeringv1alpha1.RemoteNamespace) bool {
		if rn.Name != rn.Spec.HomeNamespace {
			return false
		}
		off := &offloadingv1alpha1.NamespaceOffloading{}
		key := types.NamespacedName{Namespace: rn.Spec.HomeNamespace, Name: wellknown.NamespaceOffloadingName}
		if err := k.Offloadings.Get(ctx, key, off); err != nil {
			if !apierrors.IsNotFound(err) {
				k.Log.Error(err, "reading the offloading of a twin", "namespace", rn.Spec.HomeNamespace)
			}
			return false
		}
		if naming.TwinName(off.Spec, off.Namespace, k.HomeClusterID) != rn.Spec.RemoteNamespaceName {
			return false
		}
		// Absent until the first status write: the request is newer.
		conds := off.Status.RemoteNamespacesConditions[k.ProviderName]
		required := meta.FindStatusCondition(conds, offloadingv1alpha1.OffloadingRequiredCondition)
		if ready := meta.FindStatusCondition(conds, offloadingv1alpha1.RemoteNamespaceReadyCondition); ready != nil && ready.Reason == offloadingv1alpha1.RemoteVolumesHeldReason {
			// An unoffload keeps the twin for its claims' copies: they go
			// with the user's deletes of the home claims (design §4.23).
			return true
		}
		return required == nil || required.Status != metav1.ConditionFalse
	}
}
