package offloading

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/controller/finalizer"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/naming"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/remote"
)

// pendingRecheck is how soon a NamespaceOffloading whose twins are not all
// settled is looked at again. Provider answers are not watched yet.
const pendingRecheck = 2 * time.Second

// Reconciler reconciles NamespaceOffloadings on a home cluster.
type Reconciler struct {
	Client client.Client
	// APIReader reads the cluster identity once, without caching ConfigMaps.
	APIReader client.Reader
	Registry  *remote.Registry
	Recorder  events.EventRecorder

	homeOnce sync.Mutex
	homeID   string
}

// +kubebuilder:rbac:groups=offloading.stretch.dev,resources=namespaceoffloadings,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=offloading.stretch.dev,resources=namespaceoffloadings/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=offloading.stretch.dev,resources=namespaceoffloadings/finalizers,verbs=update

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	all := handler.EnqueueRequestsFromMapFunc(r.all)
	return ctrl.NewControllerManagedBy(mgr).
		Named("offloading").
		For(&offloadingv1alpha1.NamespaceOffloading{}).
		// Peers and virtual-node labels decide the selection. Heartbeats
		// (status writes every probe) must not wake every namespace.
		Watches(&peeringv1alpha1.RemoteCluster{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Node{}, all, builder.WithPredicates(predicate.LabelChangedPredicate{}, predicate.NewPredicateFuncs(isVirtualNode))).
		Complete(r)
}

func isVirtualNode(o client.Object) bool {
	return o.GetLabels()[peeringv1alpha1.VirtualNodeTypeLabel] == peeringv1alpha1.VirtualNodeTypeValue
}

// all enqueues every NamespaceOffloading.
func (r *Reconciler) all(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &offloadingv1alpha1.NamespaceOffloadingList{}
	if err := r.Client.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing NamespaceOffloadings")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

func (r *Reconciler) homeClusterID(ctx context.Context) (string, error) {
	r.homeOnce.Lock()
	defer r.homeOnce.Unlock()
	if r.homeID == "" {
		id, err := identity.Load(ctx, r.APIReader)
		if err != nil {
			return "", err
		}
		r.homeID = id.ID // never changes
	}
	return r.homeID, nil
}

// Reconcile brings the twins of one namespace in line with its offloading.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	off := &offloadingv1alpha1.NamespaceOffloading{}
	if err := r.Client.Get(ctx, req.NamespacedName, off); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("namespaceOffloading", klog.KObj(off))
	ctx = ctrl.LoggerInto(ctx, log)
	if off.Name != offloadingv1alpha1.NamespaceOffloadingName {
		r.Recorder.Eventf(off, nil, corev1.EventTypeWarning, "IgnoredName", "Offload",
			"NamespaceOffloading %s/%s is ignored: only the one named %q is reconciled; create it with that name", off.Namespace, off.Name, offloadingv1alpha1.NamespaceOffloadingName)
		return ctrl.Result{}, nil
	}
	homeID, err := r.homeClusterID(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}

	deleting := !off.DeletionTimestamp.IsZero()
	if !deleting {
		if err := finalizer.Add(ctx, r.Client, off, offloadingv1alpha1.NamespaceOffloadingFinalizer); err != nil {
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
	states := make([]providerState, 0, len(peers.Items))
	var errs []error
	for i := range peers.Items {
		rc := &peers.Items[i]
		s := providerState{name: rc.Name}
		if !deleting && selectorErr == nil {
			if s.selected, err = r.selects(ctx, selector, rc); err != nil {
				return ctrl.Result{}, err
			}
		}
		s.request, s.err = r.syncRequest(ctx, rc, off, homeID, twin, s.selected)
		if s.err != nil {
			errs = append(errs, s.err)
		}
		states = append(states, s)
	}

	before := off.DeepCopy()
	off.Status = computeStatus(off, deleting, selectorErr != nil, twin, states)
	if !equality.Semantic.DeepEqual(before.Status, off.Status) {
		if err := r.Client.Status().Patch(ctx, off, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("patching the status of NamespaceOffloading %s: %w", req.NamespacedName, err))
		}
	}

	if deleting {
		if left := holding(states); len(left) > 0 || len(errs) > 0 {
			log.V(4).Info("waiting for providers to delete their twins", "providers", left)
			return ctrl.Result{RequeueAfter: pendingRecheck}, nil
		}
		return ctrl.Result{}, finalizer.Remove(ctx, r.Client, off, offloadingv1alpha1.NamespaceOffloadingFinalizer)
	}
	if off.Status.OffloadingPhase != offloadingv1alpha1.ReadyPhase && off.Status.OffloadingPhase != offloadingv1alpha1.NoClusterSelectedPhase {
		return ctrl.Result{RequeueAfter: pendingRecheck}, nil
	}
	return ctrl.Result{}, nil
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

// syncRequest writes or deletes the RemoteNamespace on the provider and
// returns what the provider reports.
func (r *Reconciler) syncRequest(ctx context.Context, rc *peeringv1alpha1.RemoteCluster, off *offloadingv1alpha1.NamespaceOffloading, homeID, twin string, wanted bool) (*peeringv1alpha1.RemoteNamespace, error) {
	peer, ok := r.Registry.Get(rc.Spec.ClusterID)
	if !ok {
		// Unknown is not gone: an unoffload waits until the provider answers.
		if wanted || !off.DeletionTimestamp.IsZero() {
			return nil, fmt.Errorf("provider %s is not connected (see the conditions of RemoteCluster %s)", rc.Name, rc.Name)
		}
		return nil, nil
	}
	key := client.ObjectKey{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: off.Namespace}
	rn := &peeringv1alpha1.RemoteNamespace{}
	err := peer.Client.Get(ctx, key, rn)
	switch {
	case apierrors.IsNotFound(err):
		if !wanted {
			return nil, nil
		}
		rn = &peeringv1alpha1.RemoteNamespace{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: off.Namespace, HomeClusterID: homeID, RemoteNamespaceName: twin},
		}
		if err := peer.Client.Create(ctx, rn); err != nil {
			return nil, fmt.Errorf("asking provider %s for twin %s: %w", rc.Name, twin, err)
		}
		return rn, nil
	case err != nil:
		return nil, fmt.Errorf("reading the twin request on provider %s: %w", rc.Name, err)
	case !wanted && rn.DeletionTimestamp.IsZero():
		if err := peer.Client.Delete(ctx, rn); client.IgnoreNotFound(err) != nil {
			return rn, fmt.Errorf("withdrawing the twin request on provider %s: %w", rc.Name, err)
		}
	}
	return rn, nil
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
			"spec.clusterSelector cannot be parsed, so no provider is selected: %s", want)
	} else {
		delete(off.Annotations, offloadingv1alpha1.ClusterSelectorErrorAnnotation)
	}
	if err := r.Client.Patch(ctx, off, patch); err != nil {
		return fmt.Errorf("annotating NamespaceOffloading %s/%s: %w", off.Namespace, off.Name, err)
	}
	return nil
}

// computeStatus derives the whole status from what was observed.
func computeStatus(off *offloadingv1alpha1.NamespaceOffloading, deleting, selectorInvalid bool, twin string, states []providerState) offloadingv1alpha1.NamespaceOffloadingStatus {
	st := offloadingv1alpha1.NamespaceOffloadingStatus{
		OffloadingPhase:     computePhase(deleting, selectorInvalid, states),
		RemoteNamespaceName: twin,
		ObservedGeneration:  off.Generation,
	}
	sort.Slice(states, func(i, j int) bool { return states[i].name < states[j].name })
	for _, s := range states {
		if !s.selected && s.request == nil && s.err == nil {
			continue
		}
		if st.RemoteNamespacesConditions == nil {
			st.RemoteNamespacesConditions = map[string]offloadingv1alpha1.RemoteNamespaceConditions{}
		}
		conds := off.Status.RemoteNamespacesConditions[s.name]
		setConditions(&conds, s, off.Generation)
		st.RemoteNamespacesConditions[s.name] = conds
	}
	return st
}

// holding names the providers that still hold a twin request.
func holding(states []providerState) []string {
	var names []string
	for _, s := range states {
		if s.request != nil || s.err != nil {
			names = append(names, s.name)
		}
	}
	return names
}
