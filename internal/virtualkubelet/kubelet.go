// Package virtualkubelet runs, for each peering, the kubelet of the virtual
// node that stands for the provider: home pods bound to that node run in the
// provider's twin namespaces, their status comes back, and the ConfigMaps,
// Secrets, Services (with the EndpointSlices of what runs elsewhere),
// the Ingresses asked for and service account tokens they need are
// reflected into every twin of the peering. It is also the provisioner of
// the claims of class stretch that the scheduler places on its node: they
// are created on the provider and bound at home (reflect_claim.go).
//
// Its queues watch the pods bound to the node and the twins' pods, and keep
// each remote pod, and the status home, in line; the virtual-kubelet library
// serves logs, exec, attach, port-forward and stats (server.go). The node itself (labels, capacity, Ready, Lease) is
// kept by the remotecluster controller, which knows the provider's health.
package virtualkubelet

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	metricsv1beta1client "k8s.io/metrics/pkg/client/clientset/versioned/typed/metrics/v1beta1"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/remote"
	"stretch.dev/stretch/internal/retry"
)

// twinResync is how often the twins of a peering are listed again, besides
// every change of the provider's RemoteNamespaces.
const twinResync = 30 * time.Second

// metricsRefresh is how often the reflected objects are counted.
const metricsRefresh = 5 * time.Second

// HomeObjects are the informers of the home cluster's reflected kinds
// (ConfigMaps, Secrets, Services, EndpointSlices, Ingresses,
// PersistentVolumeClaims) and of the PersistentVolumes and StorageClasses
// of claims, shared by the virtual kubelets of every
// peering.
type HomeObjects struct {
	factory informers.SharedInformerFactory
}

// NewHomeObjects returns the informers; Start them before any kubelet runs.
func NewHomeObjects(home kubernetes.Interface) *HomeObjects {
	// Nothing reads who wrote which field; every namespace has a ConfigMap
	// (kube-root-ca.crt) whose field lists would be kept too.
	f := informers.NewSharedInformerFactoryWithOptions(home, 0, informers.WithTransform(crcache.TransformStripManagedFields()))
	for _, r := range reflectors {
		r.informer(f)
	}
	f.Core().V1().ConfigMaps().Informer() // the home CA of token Secrets
	// Claims' volumes and their classes' reclaim policies (reflect_claim.go).
	f.Core().V1().PersistentVolumes().Informer()
	f.Storage().V1().StorageClasses().Informer()
	return &HomeObjects{factory: f}
}

// Start starts the informers and waits for their first lists.
func (h *HomeObjects) Start(ctx context.Context) error {
	h.factory.Start(ctx.Done())
	for t, ok := range h.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("listing the home cluster's %v: %w", t, ctx.Err())
		}
	}
	return nil
}

// Shutdown stops the informers.
func (h *HomeObjects) Shutdown() { h.factory.Shutdown() }

// Config is one peering's virtual kubelet.
type Config struct {
	// HomeClusterID is this cluster's ID.
	HomeClusterID string
	// ProviderName is the RemoteCluster's name; NodeName its virtual node.
	ProviderName, NodeName string
	// Peer reaches the provider.
	Peer *remote.Peer
	// Home is a client of the home cluster.
	Home kubernetes.Interface
	// Offloadings reads the home cluster's NamespaceOffloadings (only the
	// twins they ask for are trusted) and RemoteClusters (their storage
	// class mappings).
	Offloadings client.Reader
	// Objects are the home informers of the reflected kinds.
	Objects *HomeObjects
	// Metrics are recorded per peering.
	Metrics *Metrics
	// Workers is the number of workers of each queue; zero means
	// DefaultWorkers.
	Workers int
	// TokenCheck is how often token Secrets are renewed when due; zero
	// means DefaultTokenCheck.
	TokenCheck time.Duration
	// APIServer is where offloaded pods reach the home API server; the zero
	// value leaves them the provider's, and warns on each pod that mounts a
	// token.
	APIServer HomeAPIServer
	// Log is the logger, with the peering's keys.
	Log logr.Logger
}

// Kubelet is one peering's virtual kubelet. Run it with Run.
type Kubelet struct {
	Config

	provider    kubernetes.Interface
	podFactory  informers.SharedInformerFactory
	podInformer corev1informers.PodInformer
	homePods    corev1listers.PodLister
	homeObjects objectCaches
	// homeConfigMaps reads the home CA (see tokens.go).
	homeConfigMaps corev1listers.ConfigMapLister
	twins          *twinSet
	recorder       record.EventRecorder
	started        time.Time

	// pods are home pod keys ("namespace/name") whose remote pod is synced;
	// statuses are home pod keys whose status is sent home; objects are
	// reflected objects.
	pods     workqueue.TypedRateLimitingInterface[string]
	statuses workqueue.TypedRateLimitingInterface[string]
	objects  workqueue.TypedRateLimitingInterface[objectKey]
	// twinsChanged asks for the twins to be listed again, all of them;
	// dirty are the home namespaces whose twin alone is to be looked at
	// again, and dirtied says there are some.
	twinsChanged chan struct{}
	dirty        nsSet
	dirtied      chan struct{}

	// ready are the twins the provider reports ready (home namespace →
	// twin), watched or not.
	ready twinNames
	// leftovers are the home namespaces whose twins held pods or objects of
	// ours when the kubelet started; swept tells the look was made.
	leftovers nsSet
	swept     bool
	// created remembers the remote pods created and not yet seen by the
	// twin's informer (home pod key → home pod UID and when), so that a
	// pod synced again meanwhile is not created twice.
	created sync.Map
	// said remembers the pods and objects a Warning event was recorded for,
	// so that a condition that lasts is reported once.
	said *onceSet
	// refused are the home pods whose remote pod the provider refused, tried
	// again slowly (see refusedBy).
	refused refusals
	// podMetrics reads the provider's metrics API; metricsFailing tells
	// that it could not, which is logged once (see stats.go).
	podMetrics     metricsv1beta1client.MetricsV1beta1Interface
	metricsFailing atomic.Bool
}

// Clientset returns a client of the built-in kinds that speaks protobuf, as
// the kubelet does: pods and their events stream through it by the
// thousand, and protobuf decodes several times faster than JSON.
func Clientset(cfg *rest.Config) (*kubernetes.Clientset, error) {
	c := rest.CopyConfig(cfg)
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	c.ContentType = runtime.ContentTypeProtobuf
	return kubernetes.NewForConfig(c)
}

// DefaultWorkers is how many workers each queue of a virtual kubelet has.
// Nearly every sync is one API round trip to home or to the provider, so
// the workers wait far more than they compute: with 4, a burst of 1,000
// pods was limited by round trips, not by the API servers (measured in
// test/bench).
const DefaultWorkers = 32

// New returns the virtual kubelet of a peering.
func New(cfg Config) (*Kubelet, error) {
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.TokenCheck == 0 {
		cfg.TokenCheck = DefaultTokenCheck
	}
	provider, err := Clientset(cfg.Peer.Config())
	if err != nil {
		return nil, fmt.Errorf("client of provider %s: %w", cfg.ProviderName, err)
	}
	podMetrics, err := metricsv1beta1client.NewForConfig(cfg.Peer.Config())
	if err != nil {
		return nil, fmt.Errorf("metrics client of provider %s: %w", cfg.ProviderName, err)
	}
	k := &Kubelet{
		Config:         cfg,
		provider:       provider,
		podMetrics:     podMetrics,
		homeObjects:    newObjectCaches(cfg.Objects.factory),
		homeConfigMaps: cfg.Objects.factory.Core().V1().ConfigMaps().Lister(),
		twins:          newTwinSet(),
		pods:           workqueue.NewTypedRateLimitingQueueWithConfig(retry.Limiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "pods-" + cfg.ProviderName}),
		statuses:       workqueue.NewTypedRateLimitingQueueWithConfig(retry.Limiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "statuses-" + cfg.ProviderName}),
		objects:        workqueue.NewTypedRateLimitingQueueWithConfig(retry.Limiter[objectKey](), workqueue.TypedRateLimitingQueueConfig[objectKey]{Name: "objects-" + cfg.ProviderName}),
		twinsChanged:   make(chan struct{}, 1),
		dirtied:        make(chan struct{}, 1),
		said:           newOnceSet(),
	}
	// The pods bound to the virtual node, and nothing else.
	k.podFactory = informers.NewSharedInformerFactoryWithOptions(cfg.Home, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}))
	k.podInformer = k.podFactory.Core().V1().Pods()
	k.homePods = k.podInformer.Lister()
	_, _ = k.podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		// Every change counts, the pod's status included: the sync looks at
		// the remote pod too, and is cheap when nothing is to be done.
		AddFunc:    func(o any) { k.enqueuePod(o) },
		UpdateFunc: func(_, o any) { k.enqueuePod(o) },
		DeleteFunc: func(o any) { k.enqueuePod(o) },
	})
	return k, nil
}

// TwinsChanged tells the kubelet the provider's RemoteNamespaces may all
// have changed, as when the provider is usable again. It does not block.
func (k *Kubelet) TwinsChanged() {
	select {
	case k.twinsChanged <- struct{}{}:
	default:
	}
}

// TwinChanged tells the kubelet that the twin of home namespace ns may have
// changed: its request, or the work it has. Only that twin is looked at
// again: looking at all of them at each change made a bulk offload cost the
// home manager O(namespaces²) (docs/design.md §4.16). It does not block.
func (k *Kubelet) TwinChanged(ns string) {
	k.dirty.add(ns)
	select {
	case k.dirtied <- struct{}{}:
	default:
	}
}

// Run runs the virtual kubelet until ctx is done.
func (k *Kubelet) Run(ctx context.Context) error {
	k.started = time.Now()
	log := k.Log
	ctx = logr.NewContext(ctx, log)
	defer k.pods.ShutDown()
	defer k.statuses.ShutDown()
	defer k.objects.ShutDown()
	defer k.twins.stop()

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k.Home.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	k.recorder = broadcaster.NewRecorder(eventScheme, corev1.EventSource{Component: wellknown.VirtualKubeletComponent, Host: k.NodeName})

	objectHandlers := k.homeObjectHandlers()
	defer objectHandlers.remove()
	volumes := k.Objects.factory.Core().V1().PersistentVolumes().Informer()
	if reg, err := volumes.AddEventHandler(k.homeVolumeHandler()); err == nil {
		defer func() { _ = volumes.RemoveEventHandler(reg) }()
	}

	k.podFactory.Start(ctx.Done())
	defer k.podFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), k.podInformer.Informer().HasSynced) {
		return nil
	}
	// Waited for before the informers stop (defers run last first).
	var queues sync.WaitGroup
	defer queues.Wait()
	queues.Go(func() { runQueue(ctx, k.pods, k.Workers, k.syncPod, log) })
	queues.Go(func() { runQueue(ctx, k.statuses, k.Workers, k.syncStatus, log) })
	queues.Go(func() { runQueue(ctx, k.objects, k.Workers, k.syncObject, log) })
	go k.refreshTokens(ctx)
	log.Info("virtual kubelet started", "node", k.NodeName)

	k.syncTwins(ctx)
	tick := time.NewTicker(twinResync)
	defer tick.Stop()
	// Reflected objects are counted from the caches, not at each change.
	count := time.NewTicker(metricsRefresh)
	defer count.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-k.twinsChanged:
			k.syncTwins(ctx)
		case <-k.dirtied:
			k.syncDirtyTwins(ctx)
		case <-tick.C:
			k.syncTwins(ctx)
		case <-count.C:
			k.Metrics.setReflected(k.ProviderName, k.reflectedCounts())
		}
	}
}

// syncTwins makes the watched twins those the provider reports ready, and
// resyncs what a new twin holds.
func (k *Kubelet) syncTwins(ctx context.Context) {
	reader, err := k.Peer.Reader(&peeringv1alpha1.RemoteNamespace{})
	if err != nil {
		k.Log.V(1).Info("twins not listed", "reason", err.Error())
		return
	}
	list := &peeringv1alpha1.RemoteNamespaceList{}
	if err := reader.List(ctx, list); err != nil {
		k.Log.Error(err, "listing the twin namespaces")
		return
	}
	ready := readyTwins(list.Items, k.HomeClusterID, k.requested(ctx))
	if !k.swept {
		k.sweep(ctx, ready)
		k.swept = true
	}
	k.ready.replace(ready)
	want := k.busy(ready)
	// A twin not worth watching has nothing of ours left in it.
	k.leftovers.keepOnly(want)
	started := k.twins.update(want, k.watchTwin(ctx))
	for _, t := range started {
		go k.resyncTwin(ctx, t)
	}
	k.Metrics.twins.WithLabelValues(k.ProviderName).Set(float64(k.twins.len()))
}

// watchTwin returns what starts watching a twin, for twinSet.
func (k *Kubelet) watchTwin(ctx context.Context) func(home, name string) *twin {
	return func(home, name string) *twin {
		k.Log.Info("watching twin namespace", "namespace", home, "twin", name)
		return startTwin(ctx, k.provider, home, name, k.twinHandlers())
	}
}

// syncDirtyTwins looks again at the twins of the namespaces marked dirty,
// one by one, as syncTwins does for all of them.
func (k *Kubelet) syncDirtyTwins(ctx context.Context) {
	dirty := k.dirty.take()
	if !k.swept {
		// The first full look has not been made: make it.
		k.syncTwins(ctx)
		return
	}
	reader, err := k.Peer.Reader(&peeringv1alpha1.RemoteNamespace{})
	if err != nil {
		// The peer's OnReady asks for a full look once it can be made.
		k.Log.V(1).Info("twins not read", "reason", err.Error())
		return
	}
	requested := k.requested(ctx)
	for _, home := range dirty {
		rn := &peeringv1alpha1.RemoteNamespace{}
		err := reader.Get(ctx, types.NamespacedName{Namespace: peeringv1alpha1.TenantNamespace(k.HomeClusterID), Name: home}, rn)
		if client.IgnoreNotFound(err) != nil {
			k.Log.Error(err, "reading the twin request", "namespace", home)
			continue
		}
		name, ready := "", false
		if err == nil {
			name, ready = readyTwin(rn, k.HomeClusterID, requested)
		}
		if ready {
			k.ready.set(home, name)
		} else {
			k.ready.remove(home)
		}
		want := ""
		if ready && k.worthWatching(home, name) {
			want = name
		} else {
			k.leftovers.remove(home)
		}
		if t := k.twins.setOne(home, want, k.watchTwin(ctx)); t != nil {
			go k.resyncTwin(ctx, t)
		}
	}
	k.Metrics.twins.WithLabelValues(k.ProviderName).Set(float64(k.twins.len()))
}

// resyncTwin enqueues, once the twin's caches are filled, every pod and
// object of its home namespace.
func (k *Kubelet) resyncTwin(ctx context.Context, t *twin) {
	if !cache.WaitForCacheSync(ctx.Done(), t.hasSynced) {
		return
	}
	pods, _ := k.homePods.Pods(t.homeNamespace).List(everything)
	for _, p := range pods {
		k.pods.Add(p.Namespace + "/" + p.Name)
	}
	k.enqueueNamespaceObjects(t.homeNamespace)
}

func (k *Kubelet) enqueuePod(o any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(o); err == nil {
		k.pods.Add(key)
		if ns, _, _ := cache.SplitMetaNamespaceKey(key); k.twins.get(ns) == nil {
			k.TwinChanged(ns) // its twin may be idle, hence not watched yet
		}
	}
}

// twinReady reports whether the provider reports the twin of home
// namespace ns ready (it may not be watched yet).
func (k *Kubelet) twinReady(ns string) bool {
	_, ok := k.ready.get(ns)
	return ok
}

// runQueue processes q's items with sync, at most workers at once, until
// ctx is done, then waits for the syncs under way. sync returns a delay to
// look again (0: done) or an error (retried with backoff). A goroutine is
// started per item rather than kept per worker: an idle peering then costs
// two goroutines per queue instead of two per worker (issue 22 counted 192
// per provider), and the queue never hands out an item being synced.
func runQueue[T comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[T], workers int, sync func(context.Context, T) (time.Duration, error), log logr.Logger) {
	go func() { <-ctx.Done(); q.ShutDown() }()
	slots := make(chan struct{}, workers)
	for {
		slots <- struct{}{}
		item, shutdown := q.Get()
		if shutdown {
			<-slots
			break
		}
		go func() {
			defer func() { <-slots }()
			after, err := sync(ctx, item)
			switch {
			case err != nil:
				log.Error(err, "sync failed, retrying", "item", item)
				q.AddRateLimited(item)
			case after > 0:
				q.Forget(item)
				q.AddAfter(item, after)
			default:
				q.Forget(item)
			}
			q.Done(item)
		}()
	}
	for range workers {
		slots <- struct{}{}
	}
}
