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
	"stretch.dev/stretch/internal/controller/finalizer"
	"stretch.dev/stretch/internal/controller/ownwrites"
	"stretch.dev/stretch/internal/controller/retry"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/naming"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/remote"
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
		// The scheduling label is ours to keep right.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(offloadingOf), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// What providers answer: their RemoteNamespaces, named after the
		// home namespace, in this cluster's tenant namespace.
		WatchesRawSource(source.Func(r.watchProviders)).
		Complete(r)
}

func isNamedOffloading(o client.Object) bool {
	return o.GetName() == offloadingv1alpha1.NamespaceOffloadingName
}

func isVirtualNode(o client.Object) bool {
	return o.GetLabels()[peeringv1alpha1.VirtualNodeTypeLabel] == peeringv1alpha1.VirtualNodeTypeValue
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
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetName(), Name: offloadingv1alpha1.NamespaceOffloadingName}}}
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
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetName(), Name: offloadingv1alpha1.NamespaceOffloadingName}})
		}
	}
	r.Registry.Watch(&peeringv1alpha1.RemoteNamespace{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, o any) { enqueue(o) },
		DeleteFunc: enqueue,
	})
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
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Name, Name: offloadingv1alpha1.NamespaceOffloadingName}})
	}
	return reqs
}

// Reconcile brings the twins of one namespace in line with its offloading.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	homeID, err := r.home.ClusterID(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	off := &offloadingv1alpha1.NamespaceOffloading{}
	if err := r.Client.Get(ctx, req.NamespacedName, off); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		}
		if req.Name != offloadingv1alpha1.NamespaceOffloadingName {
			return ctrl.Result{}, nil
		}
		r.writes.Forget(req.NamespacedName)
		return ctrl.Result{}, r.deleteOrphans(ctx, req.Namespace, homeID)
	}
	if r.writes.Behind(off) {
		// The event of our own last write wakes us again; until then the
		// copy at hand would only make us write again (a 409 for the
		// finalizer, the same status).
		ctrl.LoggerFrom(ctx).V(5).Info("the cache is behind our last write of the NamespaceOffloading")
		return ctrl.Result{}, nil
	}
	log := ctrl.LoggerFrom(ctx).WithValues("namespaceOffloading", klog.KObj(off))
	ctx = ctrl.LoggerInto(ctx, log)
	if off.Name != offloadingv1alpha1.NamespaceOffloadingName {
		r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "IgnoredName", "Offload",
			"NamespaceOffloading %s/%s is ignored: only the one named %q is reconciled; create it with that name", off.Namespace, off.Name, offloadingv1alpha1.NamespaceOffloadingName)
		return ctrl.Result{}, nil
	}

	deleting := !off.DeletionTimestamp.IsZero()
	if !deleting {
		if err := r.writes.Write(off, func() error {
			return finalizer.Add(ctx, r.Client, off, offloadingv1alpha1.NamespaceOffloadingFinalizer)
		}); err != nil {
			return ctrl.Result{}, err
		}
	}
	// First, so that pods recreated during an unoffload stay home.
	if err := r.syncSchedulingLabel(ctx, off, deleting); err != nil {
		return ctrl.Result{}, err
	}
	if deleting {
		if err := r.deletePodsOnVirtualNodes(ctx, off.Namespace); err != nil {
			return ctrl.Result{}, err
		}
	}
	selector, selectorErr := placement.ParseClusterSelector(off.Spec.ClusterSelector)
	if err := r.syncSelectorError(ctx, off, selectorErr); err != nil {
		return ctrl.Result{}, err
	}

	peers := &peeringv1alpha1.RemoteClusterList{}
	if err := r.Client.List(ctx, peers); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing RemoteClusters: %w", err)
	}
	twin := naming.TwinName(off.Spec, off.Namespace, homeID)
	// By name, for the events and logs that list providers.
	slices.SortFunc(peers.Items, func(a, b peeringv1alpha1.RemoteCluster) int { return strings.Compare(a.Name, b.Name) })
	states := make([]providerState, len(peers.Items))
	for i := range peers.Items {
		rc := &peers.Items[i]
		states[i].name, states[i].clusterID = rc.Name, rc.Spec.ClusterID
		states[i].reachable = meta.IsStatusConditionTrue(rc.Status.Conditions, peeringv1alpha1.APIReachableCondition)
		// A peer being removed is selected by nobody: its twins go first.
		if !deleting && selectorErr == nil && rc.DeletionTimestamp.IsZero() {
			if states[i].selected, err = r.selects(ctx, selector, rc); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	// Providers are written to at once: one at a time, each added a round
	// trip to the time until Ready.
	var wg sync.WaitGroup
	for i := range peers.Items {
		wg.Go(func() {
			states[i].request, states[i].err = r.syncRequest(ctx, &peers.Items[i], off, homeID, twin, states[i].selected)
		})
	}
	wg.Wait()

	untilSeen := r.markUnseen(states, off.Status)
	var untilTimeout time.Duration // until the unoffload times out; <= 0 once it has
	if deleting {
		untilTimeout = time.Until(off.DeletionTimestamp.Add(r.UnoffloadTimeout))
	}
	overdue := deleting && untilTimeout <= 0
	before := off.DeepCopy()
	off.Status = computeStatus(off, deleting, overdue, selectorErr != nil, twin, r.UnoffloadTimeout, states)
	changed := !equality.Semantic.DeepEqual(before.Status, off.Status)
	if changed {
		if err := r.writes.Write(off, func() error { return r.Client.Status().Patch(ctx, off, client.MergeFrom(before)) }); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("patching the status of NamespaceOffloading %s: %w", req.NamespacedName, err))
		}
	}

	if !deleting {
		// Providers that are not usable wake us when they are again (the
		// registry's OnReady); the others' errors are retried.
		if err := retryable(stateErrors(states)...); err != nil {
			return ctrl.Result{}, err
		}
		// A timer: an unread provider's grace may end without any event.
		return ctrl.Result{RequeueAfter: untilSeen}, nil
	}
	_, force := off.Annotations[offloadingv1alpha1.ForceUnoffloadAnnotation]
	held, released := holding(states, force, overdue)
	if len(held) > 0 {
		log.V(4).Info("waiting for providers to delete their twins", "providers", names(held))
		if overdue && changed {
			r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "UnoffloadBlocked", "Unoffload", "%s", blockedNote(off.Namespace, r.UnoffloadTimeout, held, twin))
		}
		if err := retryable(stateErrors(held)...); err != nil {
			return ctrl.Result{}, err
		}
		if !overdue {
			// A timer: nothing else happens when the unoffload times out.
			return ctrl.Result{RequeueAfter: sooner(untilTimeout, untilSeen)}, nil
		}
		// Their answers, their health and the force annotation wake us; a
		// timer, for the grace of an unread provider.
		return ctrl.Result{RequeueAfter: untilSeen}, nil
	}
	if len(released) > 0 {
		r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "ForcedUnoffload", "Unoffload", "%s",
			note(fmt.Sprintf("unoffload of namespace %s finished without waiting for every provider: %s", off.Namespace, leftSummary(released, twin))))
	}
	return ctrl.Result{}, finalizer.Remove(ctx, r.Client, off, offloadingv1alpha1.NamespaceOffloadingFinalizer)
}

// forceHint says how to finish an unoffload without the providers that do
// not answer.
func forceHint(namespace string) string {
	return fmt.Sprintf("run 'stretchctl unoffload namespace %s --force' (or: kubectl annotate namespaceoffloading %s -n %s %s=true)",
		namespace, offloadingv1alpha1.NamespaceOffloadingName, namespace, offloadingv1alpha1.ForceUnoffloadAnnotation)
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
	current, has := off.Annotations[offloadingv1alpha1.ClusterSelectorErrorAnnotation]
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
		off.Annotations[offloadingv1alpha1.ClusterSelectorErrorAnnotation] = want
		r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "InvalidClusterSelector", "SelectClusters",
			"spec.clusterSelector cannot be parsed, so no provider is selected: %s; correct spec.clusterSelector of NamespaceOffloading %s/%s", want, off.Namespace, off.Name)
	} else {
		delete(off.Annotations, offloadingv1alpha1.ClusterSelectorErrorAnnotation)
	}
	if err := r.Client.Patch(ctx, off, patch); err != nil {
		return fmt.Errorf("annotating NamespaceOffloading %s/%s: %w", off.Namespace, off.Name, err)
	}
	return nil
}

// computeStatus derives the whole status from what was observed. overdue
// is whether the unoffload has waited longer than timeout.
func computeStatus(off *offloadingv1alpha1.NamespaceOffloading, deleting, overdue, selectorInvalid bool, twin string, timeout time.Duration, states []providerState) offloadingv1alpha1.NamespaceOffloadingStatus {
	st := offloadingv1alpha1.NamespaceOffloadingStatus{
		OffloadingPhase:     computePhase(deleting, selectorInvalid, states),
		RemoteNamespaceName: twin,
		ObservedGeneration:  off.Generation,
	}
	for _, s := range states {
		if !s.selected && s.request == nil && s.err == nil {
			continue
		}
		if st.RemoteNamespacesConditions == nil {
			st.RemoteNamespacesConditions = map[string]offloadingv1alpha1.RemoteNamespaceConditions{}
		}
		conds := off.Status.RemoteNamespacesConditions[s.name]
		if s.unseen {
			if conds != nil {
				st.RemoteNamespacesConditions[s.name] = conds
				continue
			}
			s.err = nil // nothing known of it, and nothing wrong
		}
		stuck := ""
		if overdue {
			stuck = blocked(s, off.Namespace, twin, timeout)
		}
		setConditions(&conds, s, off.Generation, stuck)
		st.RemoteNamespacesConditions[s.name] = conds
	}
	return st
}
