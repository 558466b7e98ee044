package offloading

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/controller/finalizer"
	"stretch.dev/stretch/internal/controller/ownwrites"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/naming"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/remote"
	"stretch.dev/stretch/internal/retry"
)

// DefaultUnoffloadTimeout is how long an unoffload waits for a provider
// that does not delete its twin before the status says it is stuck on it.
const DefaultUnoffloadTimeout = 5 * time.Minute

// Reconciler reconciles NamespaceOffloadings on a home cluster.
type Reconciler struct {
	Client client.Client
	// APIReader reads what is not cached: the cluster identity, once, and
	// the pods of a namespace being unoffloaded.
	APIReader client.Reader
	Registry  *remote.Registry
	Recorder  events.EventRecorder
	// UnoffloadTimeout is how long an unoffload waits for a provider that
	// does not answer, or answers but does not delete its twin, before its
	// status says so and the force annotation may finish without it; zero
	// means DefaultUnoffloadTimeout.
	UnoffloadTimeout time.Duration

	home identity.IDCache
	// unread holds, by cluster ID, since when this manager has failed to
	// read a provider's requests: see unreadGrace.
	unread sync.Map
	// writes tells when the cache has not seen our last write yet.
	writes ownwrites.Tracker
}

// +kubebuilder:rbac:groups=offloading.stretch.dev,resources=namespaceoffloadings,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=offloading.stretch.dev,resources=namespaceoffloadings/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=offloading.stretch.dev,resources=namespaceoffloadings/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get;list;watch

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.UnoffloadTimeout == 0 {
		r.UnoffloadTimeout = DefaultUnoffloadTimeout
	}
	r.home.Reader = r.APIReader
	phases.SetReader(mgr.GetCache())
	all := handler.EnqueueRequestsFromMapFunc(r.all)
	return ctrl.NewControllerManagedBy(mgr).
		Named("offloading").
		// Each reconcile waits on API round trips; namespaces are
		// independent. A bulk offload of 1,000 namespaces to 2 providers
		// (test/bench) took 211 s with 16 workers and the default retry
		// limiter, 134 s with 16 and retry.Limiter, 110 s with 64.
		WithOptions(controller.Options{MaxConcurrentReconciles: 64, RateLimiter: retry.Limiter[reconcile.Request]()}).
		// An object with another name is only told, with an event, that it
		// is ignored: once when created or its spec changes, not on each
		// of its updates.
		For(&offloadingv1alpha1.NamespaceOffloading{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.NewPredicateFuncs(isNamedOffloading), predicate.GenerationChangedPredicate{}))).
		// Peers and virtual-node labels decide the selection, a peer's health
		// whether its twin can be written. Heartbeats (status writes every
		// probe) must not wake every namespace.
		Watches(&peeringv1alpha1.RemoteCluster{}, all, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, peerHealthChanged()))).
		Watches(&corev1.Node{}, all, builder.WithPredicates(predicate.LabelChangedPredicate{}, predicate.NewPredicateFuncs(isVirtualNode))).
		// Claims on providers hold an unoffload (design §4.23): their
		// volumes going lets it finish.
		Watches(&corev1.PersistentVolume{}, handler.EnqueueRequestsFromMapFunc(offloadingOfClaim), builder.WithPredicates(predicate.NewPredicateFuncs(isRemoteVolume))).
		// The scheduling label is ours to keep right.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(offloadingOf), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// What providers answer: their RemoteNamespaces, named after the
		// home namespace, in this cluster's tenant namespace.
		WatchesRawSource(source.Func(r.watchProviders)).
		Complete(r)
}

func isNamedOffloading(o client.Object) bool {
	return o.GetName() == wellknown.NamespaceOffloadingName
}

func isVirtualNode(o client.Object) bool {
	return o.GetLabels()[wellknown.VirtualNodeTypeLabel] == wellknown.VirtualNodeTypeValue
}

// peerHealthChanged passes RemoteCluster updates whose reachability or
// authentication changed: a provider that answers again gets what it missed.
func peerHealthChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*peeringv1alpha1.RemoteCluster)
		n, ok2 := e.ObjectNew.(*peeringv1alpha1.RemoteCluster)
		if !ok1 || !ok2 {
			return false
		}
		for _, t := range []string{peeringv1alpha1.APIReachableCondition, peeringv1alpha1.AuthenticatedCondition} {
			if meta.IsStatusConditionTrue(o.Status.Conditions, t) != meta.IsStatusConditionTrue(n.Status.Conditions, t) {
				return true
			}
		}
		return false
	}}
}

// offloadingOf maps a namespace to its NamespaceOffloading.
func offloadingOf(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetName(), Name: wellknown.NamespaceOffloadingName}}}
}

// watchProviders makes every peer watch this cluster's RemoteNamespaces and
// enqueue the NamespaceOffloading each one is for (a RemoteNamespace is
// named after its home namespace). When a peer becomes usable, as after a
// restart or an outage, every NamespaceOffloading is enqueued, and so is the
// home namespace of every request the peer holds: a request whose
// NamespaceOffloading is gone is an orphan to withdraw.
func (r *Reconciler) watchProviders(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	r.Registry.OnReady(func(clusterID string) {
		for _, req := range r.all(ctx, nil) {
			q.Add(req)
		}
		for _, req := range r.requestsOn(ctx, clusterID) {
			q.Add(req)
		}
	})
	enqueue := func(obj any) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if o, ok := obj.(client.Object); ok {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetName(), Name: wellknown.NamespaceOffloadingName}})
		}
	}
	r.Registry.Watch(&peeringv1alpha1.RemoteNamespace{}, remote.Everywhere(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, o any) { enqueue(o) },
		DeleteFunc: enqueue,
	}))
	return nil
}

// all enqueues every NamespaceOffloading named offloading: the others have
// nothing to do with peers.
func (r *Reconciler) all(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &offloadingv1alpha1.NamespaceOffloadingList{}
	if err := r.Client.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing NamespaceOffloadings")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		if isNamedOffloading(&list.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// requestsOn enqueues the home namespace of every request the peer holds.
func (r *Reconciler) requestsOn(ctx context.Context, clusterID string) []reconcile.Request {
	peer, ok := r.Registry.Get(clusterID)
	if !ok {
		return nil
	}
	reader, err := peer.Reader(&peeringv1alpha1.RemoteNamespace{})
	if err != nil {
		return nil // the first list completing calls again
	}
	list := &peeringv1alpha1.RemoteNamespaceList{}
	if err := reader.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing the twin requests of a provider", "clusterID", clusterID)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Name, Name: wellknown.NamespaceOffloadingName}})
	}
	return reqs
}

// scope is what one reconcile of a NamespaceOffloading observed and decided.
type scope struct {
	off    *offloadingv1alpha1.NamespaceOffloading
	homeID string
	// twin is the name of the twin namespace on every provider.
	twin string
	// selector is the parsed cluster selector; selectorErr says why it
	// cannot be parsed, and then no provider is selected.
	selector    *placement.ClusterSelector
	selectorErr error
	// peers are the providers, by name for the events and logs that list
	// them; states[i] is what was observed of peers[i].
	peers  []peeringv1alpha1.RemoteCluster
	states []providerState
	// observed is set once every provider was written to and read: only
	// then is there a status to compute.
	observed bool
	// untilSeen is how long until the grace of the first unread provider
	// ends (zero when there is none).
	untilSeen time.Duration
	// untilTimeout is how long until an unoffload times out; <= 0 once it
	// has, and then it is overdue.
	untilTimeout time.Duration
	overdue      bool
	// held are the providers an unoffload still waits for.
	held []providerState
	// gone is set once the finalizer went and the object with it.
	gone bool
}

// deleting is whether the namespace is being unoffloaded.
func (s *scope) deleting() bool { return !s.off.DeletionTimestamp.IsZero() }

// step is one step of a reconcile; an error ends the reconcile.
type step func(context.Context, *scope) error

// run runs steps in order until one fails.
func run(ctx context.Context, s *scope, steps ...step) error {
	for _, do := range steps {
		if err := do(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// Reconcile brings the twins of one namespace in line with its offloading.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	s, err := r.load(ctx, req)
	if s == nil {
		return ctrl.Result{}, err
	}
	off := s.off
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("namespaceOffloading", klog.KObj(off)))
	if off.Name != wellknown.NamespaceOffloadingName {
		r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "IgnoredName", "Offload",
			"NamespaceOffloading %s/%s is ignored: only the one named %q is reconciled; create it with that name", off.Namespace, off.Name, wellknown.NamespaceOffloadingName)
		return ctrl.Result{}, nil
	}

	defer func() {
		// A failed status patch is retried from the start, whatever the
		// steps decided; one answered NotFound means the object is gone.
		if err := r.patchStatus(ctx, s); err != nil {
			res, retErr = ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}()
	if s.deleting() {
		return r.reconcileDelete(ctx, s)
	}
	return r.reconcileNormal(ctx, s)
}

// load reads the NamespaceOffloading of req into a new scope. With no scope,
// there is nothing more to do than return the error: the object is gone
// (its orphan twin requests are withdrawn), or the cache has not seen our
// last write of it yet.
func (r *Reconciler) load(ctx context.Context, req ctrl.Request) (*scope, error) {
	homeID, err := r.home.ClusterID(ctx)
	if err != nil {
		return nil, err
	}
	off := &offloadingv1alpha1.NamespaceOffloading{}
	if err := r.Client.Get(ctx, req.NamespacedName, off); err != nil {
		if client.IgnoreNotFound(err) != nil || req.Name != wellknown.NamespaceOffloadingName {
			return nil, client.IgnoreNotFound(err)
		}
		r.writes.Forget(req.NamespacedName)
		return nil, r.deleteOrphans(ctx, req.Namespace, homeID)
	}
	if r.writes.Behind(off) {
		// The event of our own last write wakes us again; until then the
		// copy at hand would only make us write again (a 409 for the
		// finalizer, the same status).
		ctrl.LoggerFrom(ctx).V(5).Info("the cache is behind our last write of the NamespaceOffloading")
		return nil, nil
	}
	return &scope{off: off, homeID: homeID, twin: naming.TwinName(off.Spec, off.Namespace, homeID)}, nil
}

// reconcileNormal offloads the namespace: a twin request on every selected
// provider, withdrawn from the others.
func (r *Reconciler) reconcileNormal(ctx context.Context, s *scope) (ctrl.Result, error) {
	if err := run(ctx, s, r.addFinalizer, r.syncSchedulingLabel, r.syncSelector, r.selectProviders, r.syncRequests); err != nil {
		return ctrl.Result{}, err
	}
	// Providers that are not usable wake us when they are again (the
	// registry's OnReady); the others' errors are retried.
	if err := retryable(stateErrors(s.states)...); err != nil {
		return ctrl.Result{}, err
	}
	// A timer: an unread provider's grace may end without any event.
	return ctrl.Result{RequeueAfter: s.untilSeen}, nil
}

// reconcileDelete unoffloads the namespace: its pods on virtual nodes are
// deleted, every twin request withdrawn, and the finalizer goes once no
// provider is waited for.
func (r *Reconciler) reconcileDelete(ctx context.Context, s *scope) (ctrl.Result, error) {
	// The scheduling label first, so that pods recreated during an
	// unoffload stay home.
	if err := run(ctx, s, r.syncSchedulingLabel, r.deletePodsOnVirtualNodes, r.syncSelector, r.selectProviders, r.findRemoteVolumes, r.syncRequests, r.warnForcedVolumes); err != nil {
		return ctrl.Result{}, err
	}
	s.untilTimeout = time.Until(s.off.DeletionTimestamp.Add(r.UnoffloadTimeout))
	s.overdue = s.untilTimeout <= 0
	_, force := s.off.Annotations[wellknown.ForceUnoffloadAnnotation]
	held, released := holding(s.states, force, s.overdue)
	if len(held) > 0 {
		s.held = held
		return r.waitForProviders(ctx, s)
	}
	return ctrl.Result{}, r.release(ctx, s, released)
}

// addFinalizer adds the finalizer that keeps the object until its
// unoffload is done.
func (r *Reconciler) addFinalizer(ctx context.Context, s *scope) error {
	return r.writes.Write(s.off, func() error {
		return finalizer.Add(ctx, r.Client, s.off, wellknown.NamespaceOffloadingFinalizer)
	})
}

// syncSelector parses the cluster selector and keeps the annotation that
// says why it cannot be parsed.
func (r *Reconciler) syncSelector(ctx context.Context, s *scope) error {
	s.selector, s.selectorErr = placement.ParseClusterSelector(s.off.Spec.ClusterSelector)
	return r.syncSelectorError(ctx, s.off, s.selectorErr)
}

// selectProviders lists the providers and marks those the selector picks.
func (r *Reconciler) selectProviders(ctx context.Context, s *scope) error {
	peers := &peeringv1alpha1.RemoteClusterList{}
	if err := r.Client.List(ctx, peers); err != nil {
		return fmt.Errorf("listing RemoteClusters: %w", err)
	}
	// By name, for the events and logs that list providers.
	slices.SortFunc(peers.Items, func(a, b peeringv1alpha1.RemoteCluster) int { return strings.Compare(a.Name, b.Name) })
	s.peers, s.states = peers.Items, make([]providerState, len(peers.Items))
	for i := range s.peers {
		rc, st := &s.peers[i], &s.states[i]
		st.name, st.clusterID = rc.Name, rc.Spec.ClusterID
		st.reachable = meta.IsStatusConditionTrue(rc.Status.Conditions, peeringv1alpha1.APIReachableCondition)
		// A peer being removed is selected by nobody: its twins go first.
		if !s.deleting() && s.selectorErr == nil && rc.DeletionTimestamp.IsZero() {
			var err error
			if st.selected, err = r.selects(ctx, s.selector, rc); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncRequests writes or withdraws the twin request on every provider and
// reads what each answers. A provider's error is kept in its state, for the
// status and the result: it does not end the reconcile.
func (r *Reconciler) syncRequests(ctx context.Context, s *scope) error {
	// Providers are written to at once: one at a time, each added a round
	// trip to the time until Ready.
	var wg sync.WaitGroup
	for i := range s.peers {
		wg.Go(func() {
			s.states[i].request, s.states[i].err = r.syncRequest(ctx, &s.peers[i], s.off, s.homeID, s.twin, s.states[i].selected, s.states[i].keepTwin)
		})
	}
	wg.Wait()
	s.untilSeen = r.markUnseen(s.states, s.off.Status)
	s.observed = true
	return nil
}

// waitForProviders is the result of an unoffload that still waits for the
// held providers.
func (r *Reconciler) waitForProviders(ctx context.Context, s *scope) (ctrl.Result, error) {
	ctrl.LoggerFrom(ctx).V(4).Info("waiting for providers to delete their twins", "providers", names(s.held))
	if err := retryable(stateErrors(s.held)...); err != nil {
		return ctrl.Result{}, err
	}
	if !s.overdue {
		// A timer: nothing else happens when the unoffload times out.
		return ctrl.Result{RequeueAfter: sooner(s.untilTimeout, s.untilSeen)}, nil
	}
	// Their answers, their health and the force annotation wake us; a
	// timer, for the grace of an unread provider.
	return ctrl.Result{RequeueAfter: s.untilSeen}, nil
}

// release finishes an unoffload: an event names what a forced one leaves on
// the providers it did not wait for, and the finalizer goes.
func (r *Reconciler) release(ctx context.Context, s *scope, released []providerState) error {
	off := s.off
	if len(released) > 0 {
		r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "ForcedUnoffload", "Unoffload", "%s",
			note(fmt.Sprintf("unoffload of namespace %s finished without waiting for every provider: %s", off.Namespace, leftSummary(released, s.twin))))
	}
	if err := finalizer.Remove(ctx, r.Client, off, wellknown.NamespaceOffloadingFinalizer); err != nil {
		return err
	}
	// The API server deletes an object being deleted once it has no
	// finalizer left: there is no status to write any more.
	s.gone = len(off.Finalizers) == 0
	return nil
}

// patchStatus computes the status from what the reconcile observed and, if
// it changed, patches it: one write. An unoffload that this write shows
// blocked gets a Warning event, once.
func (r *Reconciler) patchStatus(ctx context.Context, s *scope) error {
	if !s.observed || s.gone {
		return nil
	}
	off := s.off
	before := off.DeepCopy()
	off.Status = computeStatus(off, s.deleting(), s.overdue, s.selectorErr != nil, s.twin, r.UnoffloadTimeout, s.states)
	if equality.Semantic.DeepEqual(before.Status, off.Status) {
		return nil
	}
	if err := r.writes.Write(off, func() error { return r.Client.Status().Patch(ctx, off, client.MergeFrom(before)) }); err != nil {
		return fmt.Errorf("patching the status of NamespaceOffloading %s: %w", client.ObjectKeyFromObject(off), err)
	}
	for _, h := range s.held {
		if h.keepTwin {
			r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "UnoffloadBlocked", "Unoffload", "%s", note(volumesHeld(h, off.Namespace, s.twin)))
		}
	}
	if s.overdue && len(s.held) > 0 {
		r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "UnoffloadBlocked", "Unoffload", "%s", blockedNote(off.Namespace, r.UnoffloadTimeout, s.held, s.twin))
	}
	return nil
}

// selects reports whether the selector picks the provider's virtual node.
func (r *Reconciler) selects(ctx context.Context, s *placement.ClusterSelector, rc *peeringv1alpha1.RemoteCluster) (bool, error) {
	node := &corev1.Node{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: peeringv1alpha1.VirtualNodeName(rc.Name)}, node); err != nil {
		// No virtual node yet: nothing to select on.
		return false, client.IgnoreNotFound(err)
	}
	return s.Matches(placement.Node{Name: node.Name, Labels: node.Labels}), nil
}

// syncSelectorError sets or clears the selector-error annotation, with a
// Warning event when the selector turns invalid.
func (r *Reconciler) syncSelectorError(ctx context.Context, off *offloadingv1alpha1.NamespaceOffloading, selectorErr error) error {
	current, has := off.Annotations[wellknown.ClusterSelectorErrorAnnotation]
	want := ""
	if selectorErr != nil {
		want = selectorErr.Error()
	}
	if current == want && has == (selectorErr != nil) {
		return nil
	}
	patch := client.MergeFrom(off.DeepCopy())
	if selectorErr != nil {
		if off.Annotations == nil {
			off.Annotations = map[string]string{}
		}
		off.Annotations[wellknown.ClusterSelectorErrorAnnotation] = want
		r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "InvalidClusterSelector", "SelectClusters",
			"spec.clusterSelector cannot be parsed, so no provider is selected: %s; correct spec.clusterSelector of NamespaceOffloading %s/%s", want, off.Namespace, off.Name)
	} else {
		delete(off.Annotations, wellknown.ClusterSelectorErrorAnnotation)
	}
	if err := r.Client.Patch(ctx, off, patch); err != nil {
		return fmt.Errorf("annotating NamespaceOffloading %s/%s: %w", off.Namespace, off.Name, err)
	}
	return nil
}
