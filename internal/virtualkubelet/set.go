package virtualkubelet

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/remote"
)

// peerRecheck is how often a running kubelet checks that its peer is still
// the registered one (a new kubeconfig replaces the peer).
const peerRecheck = 10 * time.Second

// Set runs one virtual kubelet per RemoteCluster that has a peer, and stops
// it when the RemoteCluster goes or its peer is replaced. It is a controller
// of RemoteClusters; add it with SetupWithManager.
type Set struct {
	Client   client.Client
	Home     kubernetes.Interface
	Registry *remote.Registry
	Metrics  *Metrics
	// Workers is each kubelet's number of workers per queue.
	Workers int
	// TokenCheck is how often token Secrets are renewed when due; zero
	// means DefaultTokenCheck.
	TokenCheck time.Duration
	// API is where the kubelet API of virtual nodes (logs, exec, attach,
	// port-forward, stats) is served;
	// an empty BindAddress: nowhere.
	API KubeletEndpoint
	// APIServerURL is the URL, https://HOST[:PORT], at which offloaded pods
	// reach this cluster's API server (--api-server-url); empty: unknown.
	APIServerURL string

	apiServer HomeAPIServer

	home    identity.IDCache
	log     logr.Logger
	objects *HomeObjects
	ctx     context.Context
	started chan struct{}

	mu       sync.Mutex
	kubelets map[string]*running // by RemoteCluster name

	// usage are the CPU counters the kubelet API serves (see stats.go).
	usage usageCounters
}

type running struct {
	peer    *remote.Peer
	kubelet *Kubelet
	cancel  context.CancelFunc
	done    chan struct{}
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups="",resources=pods/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps;secrets;services;persistentvolumeclaims,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch;update
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=offloading.stretch.dev,resources=namespaceoffloadings,verbs=get;list;watch

// SetupWithManager registers the set: the home informers (a runnable that
// starts with leadership) and the RemoteCluster controller.
func (s *Set) SetupWithManager(mgr ctrl.Manager) error {
	var err error
	if s.apiServer, err = ParseHomeAPIServer(s.APIServerURL); err != nil {
		return err
	}
	s.home.Reader = mgr.GetAPIReader()
	s.log = mgr.GetLogger().WithName("virtualkubelet")
	s.objects = NewHomeObjects(s.Home)
	s.started = make(chan struct{})
	s.kubelets = map[string]*running{}
	if err := mgr.Add(manager.RunnableFunc(s.run)); err != nil {
		return err
	}
	// A request is named after its home namespace: only that twin is
	// looked at again, by the kubelet of the provider it comes from.
	s.Registry.Watch(&peeringv1alpha1.RemoteNamespace{}, func(clusterID string) toolscache.ResourceEventHandler {
		changed := func(o any) { s.requestChanged(clusterID, o) }
		return toolscache.ResourceEventHandlerFuncs{
			AddFunc:    changed,
			UpdateFunc: func(_, o any) { changed(o) },
			DeleteFunc: changed,
		}
	})
	s.Registry.OnReady(s.twinsChanged)
	// Kinds reflected on a namespace's request follow its NamespaceOffloading.
	offloadings, err := mgr.GetCache().GetInformer(context.Background(), &offloadingv1alpha1.NamespaceOffloading{})
	if err != nil {
		return fmt.Errorf("watching NamespaceOffloadings for the virtual kubelets: %w", err)
	}
	// Whether a twin was requested is read from its NamespaceOffloading
	// (Kubelet.requested): its changes make that twin be looked at again.
	if _, err := offloadings.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { s.offloadingChanged(nil, o) },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*offloadingv1alpha1.NamespaceOffloading)
			c, ok2 := cur.(*offloadingv1alpha1.NamespaceOffloading)
			if ok1 && ok2 && o.Spec.ReflectIngresses != c.Spec.ReflectIngresses {
				s.optInChanged(c.Namespace)
			}
			s.offloadingChanged(old, cur)
		},
		DeleteFunc: func(o any) { s.offloadingChanged(nil, o) },
	}); err != nil {
		return fmt.Errorf("watching NamespaceOffloadings for the virtual kubelets: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("virtualkubelet").
		// Status writes too: the first one follows the peer's creation.
		For(&peeringv1alpha1.RemoteCluster{}).
		Complete(s)
}

// run starts the home informers and the kubelet API and, when the manager
// stops, stops every kubelet.
func (s *Set) run(ctx context.Context) error {
	if err := s.objects.Start(ctx); err != nil {
		return err
	}
	s.ctx = ctx
	close(s.started)
	served := make(chan error, 1)
	if s.API.BindAddress != "" {
		go func() { served <- s.serve(ctx, s.API, s.log) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	s.mu.Lock()
	all := s.kubelets
	s.kubelets = map[string]*running{}
	s.mu.Unlock()
	for _, r := range all {
		r.stop()
	}
	s.objects.Shutdown()
	return err
}

// Reconcile runs the kubelet of a RemoteCluster while it has a peer.
func (s *Set) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	select {
	case <-s.started:
	case <-ctx.Done():
		return ctrl.Result{}, ctx.Err()
	}
	rc := &peeringv1alpha1.RemoteCluster{}
	err := s.Client.Get(ctx, req.NamespacedName, rc)
	if apierrors.IsNotFound(err) || (err == nil && rc.DeletionTimestamp != nil) {
		s.stop(req.Name)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	peer, ok := s.Registry.Get(rc.Spec.ClusterID)
	s.mu.Lock()
	cur := s.kubelets[rc.Name]
	s.mu.Unlock()
	if cur != nil && (!ok || cur.peer != peer || cur.finished()) {
		s.stop(rc.Name)
		cur = nil
	}
	if !ok || cur != nil {
		// The remotecluster controller builds the peer; look again soon.
		return ctrl.Result{RequeueAfter: peerRecheck}, nil
	}
	homeID, err := s.home.ClusterID(ctx)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("loading this cluster's identity: %w", err)
	}
	// The kubelet outlives this reconcile: its logs carry the peering only.
	log := s.log.WithValues("remoteCluster", rc.Name, "clusterID", rc.Spec.ClusterID)
	k, err := New(Config{
		HomeClusterID: homeID, ProviderName: rc.Name, NodeName: peeringv1alpha1.VirtualNodeName(rc.Name),
		Peer: peer, Home: s.Home, Offloadings: s.Client, Objects: s.objects, Metrics: s.Metrics, Workers: s.Workers, TokenCheck: s.TokenCheck, APIServer: s.apiServer, Log: log,
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	// The kubelet lives as long as the manager and the peer.
	kctx, cancel := context.WithCancel(s.ctx)
	r := &running{peer: peer, kubelet: k, cancel: cancel, done: make(chan struct{})}
	go func() {
		select {
		case <-peer.Done():
			cancel()
		case <-kctx.Done():
		}
	}()
	go func() {
		defer close(r.done)
		if err := k.Run(kctx); err != nil {
			log.Error(err, "virtual kubelet stopped")
		}
	}()
	s.mu.Lock()
	s.kubelets[rc.Name] = r
	s.mu.Unlock()
	return ctrl.Result{RequeueAfter: peerRecheck}, nil
}

func (s *Set) stop(name string) {
	s.mu.Lock()
	r := s.kubelets[name]
	delete(s.kubelets, name)
	s.mu.Unlock()
	if r != nil {
		r.stop()
		s.Metrics.forget(name)
	}
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

func (r *running) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// twinsChanged tells the kubelet of clusterID ("": every kubelet) that its
// provider's RemoteNamespaces may have changed.
func (s *Set) twinsChanged(clusterID string) {
	s.tell(func(r *running) bool { return clusterID == "" || r.peer.ClusterID == clusterID }, (*Kubelet).TwinsChanged)
}

// tell calls do with the running kubelets that concern selects.
func (s *Set) tell(concern func(*running) bool, do func(*Kubelet)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.kubelets {
		if concern(r) {
			do(r.kubelet)
		}
	}
}

// everyKubelet is the concern of a change for every kubelet.
func everyKubelet(*running) bool { return true }

// requestChanged tells the kubelet of provider clusterID that one of its
// twin requests (a RemoteNamespace, named after its home namespace)
// changed.
func (s *Set) requestChanged(clusterID string, obj any) {
	if _, name, ok := keyOf(obj); ok {
		s.twinChanged(name, func(r *running) bool { return r.peer.ClusterID == clusterID })
	}
}

// offloadingChanged tells the kubelets concerned that the NamespaceOffloading
// of a home namespace changed from old (nil: created, or deleted) to cur.
// Once created, most of its changes are writes of its status, each one
// about some providers: only their kubelets look at the twin again, rather
// than every kubelet at every write (20 providers made a bulk offload
// O(providers) per write). A change of its spec, its creation and its
// deletion concern every kubelet.
func (s *Set) offloadingChanged(old, cur any) {
	ns, _, ok := keyOf(cur)
	if !ok {
		return
	}
	o, ok1 := old.(*offloadingv1alpha1.NamespaceOffloading)
	c, ok2 := cur.(*offloadingv1alpha1.NamespaceOffloading)
	if !ok1 || !ok2 || o.Generation != c.Generation || o.DeletionTimestamp.IsZero() != c.DeletionTimestamp.IsZero() {
		s.twinChanged(ns, everyKubelet)
		return
	}
	s.twinChanged(ns, func(r *running) bool {
		name := r.kubelet.ProviderName
		_, before := o.Status.RemoteNamespacesConditions[name]
		_, after := c.Status.RemoteNamespacesConditions[name]
		return before || after
	})
}

// twinChanged tells the kubelets that concern selects that what decides
// the twin of home namespace home changed.
func (s *Set) twinChanged(home string, concern func(*running) bool) {
	s.tell(concern, func(k *Kubelet) { k.TwinChanged(home) })
}

// keyOf returns the namespace and name of an informer's object, deleted
// or not.
func keyOf(obj any) (namespace, name string, ok bool) {
	key, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return "", "", false
	}
	namespace, name, err = toolscache.SplitMetaNamespaceKey(key)
	return namespace, name, err == nil
}

// optInChanged tells every kubelet that home namespace ns asks for other
// kinds to be reflected.
func (s *Set) optInChanged(ns string) {
	s.tell(everyKubelet, func(k *Kubelet) { k.optInChanged(ns) })
}

// Kubelet returns the running kubelet of the virtual node nodeName.
func (s *Set) Kubelet(nodeName string) (*Kubelet, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.kubelets {
		if r.kubelet.NodeName == nodeName {
			return r.kubelet, true
		}
	}
	return nil, false
}
