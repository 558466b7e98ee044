// Package remote is the peer registry of a home cluster: for every provider it
// peers with, keyed by the provider's cluster ID, the clients that reach it.
// Controllers reach providers only through it.
//
// Each peer is a controller-runtime cluster.Cluster built from the kubeconfig
// the provider issued: a direct client (every request bounded by a short
// timeout, so that a dead provider never holds a worker for long) and a cache
// that watches the provider's Nodes (the only kind the issued credentials may
// list and watch cluster-wide), so that probing a provider's capacity costs no
// request. Controllers may also watch a namespaced kind in the namespace the
// credentials are for (Registry.Watch), on every peer. A peer's cache runs until the peer is replaced (its kubeconfig
// changed), removed, or the registry stops with the manager.
package remote

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/transport"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// DefaultTimeout bounds every request of a peer's direct client.
const DefaultTimeout = 10 * time.Second

// ErrInvalidKubeconfig is wrapped by Ensure's error when the kubeconfig
// cannot be turned into a client.
var ErrInvalidKubeconfig = errors.New("invalid kubeconfig")

// Registry holds the peers of this home cluster. It is a manager.Runnable:
// add it to the manager, and stopping the manager stops every peer. It is safe
// for concurrent use.
type Registry struct {
	scheme  *runtime.Scheme
	timeout time.Duration
	wrap    transport.WrapperFunc

	started chan struct{} // closed by Start
	ctx     context.Context

	mu      sync.Mutex
	peers   map[string]*Peer
	watches []watchSpec
	onReady []func(clusterID string)
	stopped bool
}

// watchSpec is a kind every peer watches, and who is told of its changes.
type watchSpec struct {
	obj     client.Object
	handler HandlerFor
}

// HandlerFor returns the handler of the changes a peer sees, given the
// peer's provider cluster ID: a handler then knows which provider an object
// comes from, and can tell only those who care about that provider.
type HandlerFor func(clusterID string) toolscache.ResourceEventHandler

// Everywhere is the HandlerFor that gives every peer handler h.
func Everywhere(h toolscache.ResourceEventHandler) HandlerFor {
	return func(string) toolscache.ResourceEventHandler { return h }
}

// Options configure a Registry.
type Options struct {
	// Timeout bounds every request of a peer's direct client; zero means
	// DefaultTimeout.
	Timeout time.Duration
	// WrapTransport, when set, wraps the transport of every peer's clients,
	// e.g. to inject faults in tests.
	WrapTransport transport.WrapperFunc
}

var _ manager.Runnable = &Registry{}
var _ manager.LeaderElectionRunnable = &Registry{}

// NewRegistry returns an empty registry whose clients use scheme.
func NewRegistry(scheme *runtime.Scheme, opts Options) *Registry {
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Registry{scheme: scheme, timeout: opts.Timeout, wrap: opts.WrapTransport, started: make(chan struct{}), peers: map[string]*Peer{}}
}

// Start runs the registry until ctx is done, then stops every peer and waits
// for them. Peers can be added only while it runs.
func (r *Registry) Start(ctx context.Context) error {
	r.ctx = ctx
	close(r.started)
	<-ctx.Done()

	r.mu.Lock()
	r.stopped = true
	peers := r.peers
	r.peers = map[string]*Peer{}
	r.mu.Unlock()
	for _, p := range peers {
		p.stop()
	}
	return nil
}

// NeedLeaderElection is false: the registry holds no state of its own, and
// starting it before leader election means it runs before any controller.
func (r *Registry) NeedLeaderElection() bool { return false }

// Ensure returns the peer of the provider clusterID built from kubeconfig:
// the registered one when its kubeconfig is the same, else a new one that
// replaces (and stops) the registered one. An unparsable kubeconfig gives an
// error wrapping ErrInvalidKubeconfig and leaves the registry unchanged.
// Ensure does not reach the provider.
func (r *Registry) Ensure(ctx context.Context, clusterID string, kubeconfig []byte) (*Peer, error) {
	select {
	case <-r.started:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the peer registry to start: %w", ctx.Err())
	}
	hash := sha256.Sum256(kubeconfig)

	r.mu.Lock()
	if p, ok := r.peers[clusterID]; ok && p.hash == hash {
		r.mu.Unlock()
		return p, nil
	}
	r.mu.Unlock()

	loader, err := clientcmd.NewClientConfigFromBytes(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKubeconfig, err)
	}
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKubeconfig, err)
	}
	// Issued credentials name the tenant namespace in their context.
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKubeconfig, err)
	}
	cfg.Wrap(r.wrap)
	namespace := ""
	if c := raw.Contexts[raw.CurrentContext]; c != nil {
		namespace = c.Namespace
	}
	p, err := newPeer(clusterID, hash, cfg, namespace, r.scheme, r.timeout, r.notifyReady)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKubeconfig, err)
	}

	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil, errors.New("the peer registry is stopped")
	}
	if cur, ok := r.peers[clusterID]; ok && cur.hash == hash {
		r.mu.Unlock() // another worker got there first; p never started
		return cur, nil
	}
	old := r.peers[clusterID]
	r.peers[clusterID] = p
	p.start(r.ctx, r.watches)
	r.mu.Unlock()

	if old != nil {
		old.stop()
	}
	if err := p.waitStarted(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Watch makes every peer, current and future, watch the kind of obj (in the
// namespace its credentials are for, when the kind is namespaced) and tell
// the handler that handler returns for its cluster ID of every change; the
// peer's Reader reads the objects once listed.
func (r *Registry) Watch(obj client.Object, handler HandlerFor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := watchSpec{obj: obj, handler: handler}
	r.watches = append(r.watches, w)
	for _, p := range r.peers {
		p.startWatch(w)
	}
}

// OnReady registers fn to be called each time a peer becomes usable: its
// probe succeeds after failing (or for the first time), or the first list of a
// watched kind completes. Controllers that skipped a provider while it was not
// usable retry then. fn must not block.
func (r *Registry) OnReady(fn func(clusterID string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onReady = append(r.onReady, fn)
}

func (r *Registry) notifyReady(clusterID string) {
	r.mu.Lock()
	fns := append([]func(string){}, r.onReady...)
	r.mu.Unlock()
	for _, fn := range fns {
		fn(clusterID)
	}
}

// Get returns the peer of the provider clusterID, if any.
func (r *Registry) Get(clusterID string) (*Peer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.peers[clusterID]
	return p, ok
}

// Remove stops the peer of the provider clusterID and forgets it; it does
// nothing when there is none.
func (r *Registry) Remove(clusterID string) {
	r.mu.Lock()
	p, ok := r.peers[clusterID]
	delete(r.peers, clusterID)
	r.mu.Unlock()
	if ok {
		p.stop()
	}
}

// ClusterIDs returns the cluster IDs of the registered peers, sorted.
func (r *Registry) ClusterIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.peers))
	for id := range r.peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
