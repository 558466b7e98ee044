package remote

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
)

// Peer is one provider as seen from the home cluster.
type Peer struct {
	// ClusterID is the provider's cluster ID.
	ClusterID string
	// Client reads and writes the provider directly, without a cache; each
	// request gives up after the registry's timeout.
	Client client.Client

	hash    [32]byte
	cluster cluster.Cluster

	mu           sync.Mutex
	health       error // the outcome of the last probe, see SetHealth
	nodeWatchErr error // the last error of the Node watch, until it syncs

	cancel  context.CancelFunc
	started chan struct{} // closed once the cache runs
	done    chan struct{} // closed once the cache stopped
}

func newPeer(clusterID string, hash [32]byte, cfg *rest.Config, scheme *runtime.Scheme, timeout time.Duration) (*Peer, error) {
	p := &Peer{ClusterID: clusterID, hash: hash, started: make(chan struct{}), done: make(chan struct{})}
	p.health = fmt.Errorf("provider %s not probed yet", clusterID)

	// Requests, discovery included, are bounded; the cache's watches are
	// long-running and must not be, so only they use cfg as is.
	timed := rest.CopyConfig(cfg)
	timed.Timeout = timeout
	timedHTTP, err := rest.HTTPClientFor(timed)
	if err != nil {
		return nil, err
	}
	p.cluster, err = cluster.New(cfg, func(o *cluster.Options) {
		o.Scheme = scheme
		o.MapperProvider = func(c *rest.Config, _ *http.Client) (meta.RESTMapper, error) {
			return apiutil.NewDynamicRESTMapper(c, timedHTTP)
		}
		o.NewClient = func(c *rest.Config, opts client.Options) (client.Client, error) {
			opts.HTTPClient = timedHTTP
			opts.Cache = nil // direct: the cache holds Nodes only
			return client.New(c, opts)
		}
		o.Cache = cache.Options{
			// Only Nodes are cached. (No ByObject: it would reach the
			// provider while the peer is built.)
			DefaultTransform:            slimNode,
			ReaderFailOnMissingInformer: true,
			DefaultWatchErrorHandler: func(ctx context.Context, r *toolscache.Reflector, err error) {
				p.mu.Lock()
				p.nodeWatchErr = err
				p.mu.Unlock()
				toolscache.DefaultWatchErrorHandler(ctx, r, err)
			},
		}
	})
	if err != nil {
		return nil, err
	}
	p.Client = p.cluster.GetClient()
	return p, nil
}

// start runs the peer's cache until ctx is done or stop is called.
func (p *Peer) start(ctx context.Context) {
	ctx, p.cancel = context.WithCancel(ctx)
	go func() {
		defer close(p.done)
		_ = p.cluster.Start(ctx) // returns when ctx is done
	}()
	go func() {
		if p.cluster.GetCache().WaitForCacheSync(ctx) {
			close(p.started)
		}
	}()
}

// waitStarted waits until the peer's cache runs, so that reads do not fail
// with "cache not started".
func (p *Peer) waitStarted(ctx context.Context) error {
	select {
	case <-p.started:
		return nil
	case <-p.done:
		return fmt.Errorf("the peer of provider %s stopped", p.ClusterID)
	case <-ctx.Done():
		return fmt.Errorf("starting the peer of provider %s: %w", p.ClusterID, ctx.Err())
	}
}

// stop stops the peer's cache and waits for it.
func (p *Peer) stop() {
	p.cancel()
	<-p.done
}

// Done is closed once the peer is stopped: replaced, removed, or the
// registry stopped.
func (p *Peer) Done() <-chan struct{} { return p.done }

// ListNodes returns the provider's Nodes from the peer's cache. The first
// call starts watching them and waits (at most until ctx is done) for the
// first list; when that list fails, its error is returned, so that an
// Unauthorized or Forbidden answer is told apart from a slow provider.
func (p *Peer) ListNodes(ctx context.Context) ([]corev1.Node, error) {
	c := p.cluster.GetCache()
	inf, err := c.GetInformer(ctx, &corev1.Node{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("watching the nodes of provider %s: %w", p.ClusterID, err)
	}
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		if inf.HasSynced() {
			return true, nil
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return false, p.nodeWatchErr
	})
	if err != nil {
		return nil, fmt.Errorf("listing the nodes of provider %s: %w", p.ClusterID, err)
	}
	list := &corev1.NodeList{}
	if err := c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing the nodes of provider %s: %w", p.ClusterID, err)
	}
	return list.Items, nil
}

// SetHealth records the outcome of the last probe of the provider: nil when
// it answered as expected. Controllers that write to the provider read it
// with Health.
func (p *Peer) SetHealth(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health = err
}

// Health returns the outcome of the last probe of the provider: nil when it
// answered as expected, else why it is not usable.
func (p *Peer) Health() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// slimNode keeps of a provider Node only what the capacity and platform of a
// virtual node are computed from: images and volumes can be large.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Node{
		ObjectMeta: *n.ObjectMeta.DeepCopy(),
		Spec:       corev1.NodeSpec{Unschedulable: n.Spec.Unschedulable},
		Status:     corev1.NodeStatus{Capacity: n.Status.Capacity, Allocatable: n.Status.Allocatable, Conditions: n.Status.Conditions},
	}
	slim.ManagedFields = nil
	slim.Annotations = nil
	return slim, nil
}
