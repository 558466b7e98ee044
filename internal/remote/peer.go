package remote

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"reflect"
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
	// namespace is the one namespace of the provider whose objects the
	// credentials may watch (the tenant namespace); "" when unrestricted.
	namespace string
	// ready tells the registry's OnReady subscribers the peer became usable.
	ready func()

	mu        sync.Mutex
	health    error            // the outcome of the last probe, see SetHealth
	watchErrs map[string]error // the last error of each kind's watch, by type description
	informers map[string]cache.Informer

	ctx     context.Context // the peer's lifetime
	cancel  context.CancelFunc
	started chan struct{} // closed once the cache runs
	done    chan struct{} // closed once the cache stopped
}

func newPeer(clusterID string, hash [32]byte, cfg *rest.Config, namespace string, scheme *runtime.Scheme, timeout time.Duration, ready func(string)) (*Peer, error) {
	p := &Peer{ClusterID: clusterID, hash: hash, namespace: namespace, ready: func() { ready(clusterID) }, started: make(chan struct{}), done: make(chan struct{}),
		watchErrs: map[string]error{}, informers: map[string]cache.Informer{}}
	p.health = fmt.Errorf("provider %s not probed yet", clusterID)

	// No client-side rate limit (client-go's default is 5 requests per
	// second): the provider's priority and fairness is the one that counts,
	// and offloading a thousand namespaces must not take minutes.
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS = -1
	}
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
			// Nodes, and the kinds registered with Registry.Watch, are
			// cached; namespaced kinds in the credentials' namespace only,
			// the one they may list. (No ByObject: it would reach the
			// provider while the peer is built.)
			DefaultTransform:            slimNode,
			ReaderFailOnMissingInformer: true,
			DefaultWatchErrorHandler: func(ctx context.Context, r *toolscache.Reflector, err error) {
				p.mu.Lock()
				p.watchErrs[r.TypeDescription()] = err
				p.mu.Unlock()
				toolscache.DefaultWatchErrorHandler(ctx, r, err)
			},
		}
		if namespace != "" {
			o.Cache.DefaultNamespaces = map[string]cache.Config{namespace: {}}
		}
	})
	if err != nil {
		return nil, err
	}
	p.Client = p.cluster.GetClient()
	return p, nil
}

// start runs the peer's cache, and its watches, until ctx is done or stop is
// called.
func (p *Peer) start(ctx context.Context, watches []watchSpec) {
	ctx, p.cancel = context.WithCancel(ctx)
	p.ctx = ctx
	for _, w := range watches {
		p.startWatch(w)
	}
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

// Config returns the provider's REST config, without request timeout (for
// watches) nor client-side rate limit. Callers must not modify it.
func (p *Peer) Config() *rest.Config { return p.cluster.GetConfig() }

// Context is done once the peer is stopped; work done for the peer should
// derive from it.
func (p *Peer) Context() context.Context { return p.ctx }

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
		return false, p.watchErr(&corev1.Node{})
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

// watchErr returns the last error of the watch of obj's kind.
func (p *Peer) watchErr(obj client.Object) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.watchErrs[reflect.TypeOf(obj).String()]
}

// startWatch watches w's kind in the background.
func (p *Peer) startWatch(w watchSpec) {
	go p.watch(p.ctx, w)
}

// watch starts watching the kind of w.obj (in the peer's namespace when it is
// namespaced) and calls w.handler on every change, retrying until the
// provider answers or the peer stops: the kind's REST mapping needs the
// provider's discovery, which a provider that is down does not serve.
func (p *Peer) watch(ctx context.Context, w watchSpec) {
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Cap: 30 * time.Second, Steps: math.MaxInt32}
	_ = wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		inf, err := p.cluster.GetCache().GetInformer(ctx, w.obj, cache.BlockUntilSynced(false))
		if err != nil {
			p.mu.Lock()
			p.watchErrs[reflect.TypeOf(w.obj).String()] = err
			p.mu.Unlock()
			return false, nil
		}
		if _, err := inf.AddEventHandler(w.handler(p.ClusterID)); err != nil {
			return false, nil // the informer stopped: so does ctx
		}
		p.mu.Lock()
		p.informers[reflect.TypeOf(w.obj).String()] = inf
		p.mu.Unlock()
		return true, nil
	})
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		return p.synced(w.obj), nil
	}); err == nil {
		p.ready()
	}
}

// synced reports whether the first list of obj's kind is complete.
func (p *Peer) synced(obj client.Object) bool {
	p.mu.Lock()
	inf := p.informers[reflect.TypeOf(obj).String()]
	p.mu.Unlock()
	return inf != nil && inf.HasSynced()
}

// Reader returns a reader of the peer's cache for the kind of obj, which must
// be watched (see Registry.Watch), once its first list is complete. Until
// then it returns an error that says why, such as the provider not answering:
// a cache that has not synced would block its readers.
func (p *Peer) Reader(obj client.Object) (client.Reader, error) {
	kind := reflect.TypeOf(obj).String()
	p.mu.Lock()
	inf, err := p.informers[kind], p.watchErrs[kind]
	p.mu.Unlock()
	switch {
	case inf != nil && inf.HasSynced():
		return p.cluster.GetCache(), nil
	case err != nil:
		return nil, fmt.Errorf("provider %s: watching %s: %w", p.ClusterID, kindName(obj), err)
	default:
		return nil, fmt.Errorf("provider %s: the first list of %s is not complete yet", p.ClusterID, kindName(obj))
	}
}

// kindName names obj's kind for messages, such as "RemoteNamespaces".
func kindName(obj client.Object) string {
	return reflect.TypeOf(obj).Elem().Name() + "s"
}

// SetHealth records the outcome of the last probe of the provider: nil when
// it answered as expected. Controllers that write to the provider read it
// with Health.
func (p *Peer) SetHealth(err error) {
	p.mu.Lock()
	recovered := p.health != nil && err == nil
	p.health = err
	p.mu.Unlock()
	if recovered {
		p.ready()
	}
}

// Health returns the outcome of the last probe of the provider: nil when it
// answered as expected, else why it is not usable.
func (p *Peer) Health() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// slimNode keeps of a provider Node only what the capacity and platform of a
// virtual node are computed from (node info included: OS image, kernel and
// runtime versions), and its pod CIDRs (the PodCIDRsDistinct condition):
// images and volumes can be large. Other kinds lose their managed fields.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		// Nothing reads who wrote which field.
		return cache.TransformStripManagedFields()(obj)
	}
	slim := &corev1.Node{
		ObjectMeta: *n.ObjectMeta.DeepCopy(),
		Spec:       corev1.NodeSpec{Unschedulable: n.Spec.Unschedulable, PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
		Status:     corev1.NodeStatus{Capacity: n.Status.Capacity, Allocatable: n.Status.Allocatable, Conditions: n.Status.Conditions, NodeInfo: n.Status.NodeInfo},
	}
	slim.ManagedFields = nil
	slim.Annotations = nil
	return slim, nil
}
