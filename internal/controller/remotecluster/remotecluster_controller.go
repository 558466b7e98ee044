// Package remotecluster is the home side of a peering: for every
// RemoteCluster it probes the provider through the peer registry, reports the
// provider's health, identity, capacity and its TenantPolicy for this cluster
// in the status, and keeps the virtual node that stands for the provider
// (labels, taint, cordon, capacity within the policy's limits, Ready
// condition) and its heartbeat Lease.
package remotecluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1ac "k8s.io/client-go/applyconfigurations/coordination/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/controller/finalizer"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/remote"
)

const (
	// DefaultProbeInterval is how often each provider is probed.
	DefaultProbeInterval = 10 * time.Second

	// fieldOwner is the field manager of what this controller applies.
	fieldOwner = "stretch-remotecluster"
	// kubeconfigSecretField indexes RemoteClusters by "namespace/name" of
	// their kubeconfig Secret.
	kubeconfigSecretField = "spec.kubeconfigSecretRef"
	// clusterIDField indexes RemoteClusters by spec.clusterID.
	clusterIDField = "spec.clusterID"
)

// TwinWithdrawalTimeout bounds how long a RemoteCluster being deleted waits
// for its provider to delete the twins it holds for this cluster.
const TwinWithdrawalTimeout = 2 * time.Minute

// Reconciler reconciles RemoteClusters on a home cluster.
type Reconciler struct {
	Client   client.Client
	Registry *remote.Registry
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
	// ProbeInterval is how often each provider is probed; zero means
	// DefaultProbeInterval.
	ProbeInterval time.Duration
	// KubeletAddress and KubeletPort are where the API server reaches the
	// kubelet API of virtual nodes (logs, exec); a zero port: nowhere.
	KubeletAddress string
	KubeletPort    int32
	// APIReader reads this cluster's identity, uncached: its ID names this
	// cluster's tenant namespace on the providers, where their TenantPolicy
	// for it is. Nil: SetupWithManager uses the manager's API reader.
	APIReader client.Reader

	home identity.IDCache
}

// +kubebuilder:rbac:groups=peering.stretch.dev,resources=remoteclusters,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=peering.stretch.dev,resources=remoteclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=peering.stretch.dev,resources=remoteclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.ProbeInterval == 0 {
		r.ProbeInterval = DefaultProbeInterval
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	r.home.Reader = r.APIReader
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &peeringv1alpha1.RemoteCluster{}, kubeconfigSecretField,
		func(o client.Object) []string {
			ref := o.(*peeringv1alpha1.RemoteCluster).Spec.KubeconfigSecretRef
			return []string{ref.Namespace + "/" + ref.Name}
		}); err != nil {
		return fmt.Errorf("indexing RemoteClusters by kubeconfig Secret: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &peeringv1alpha1.RemoteCluster{}, clusterIDField,
		func(o client.Object) []string { return []string{o.(*peeringv1alpha1.RemoteCluster).Spec.ClusterID} }); err != nil {
		return fmt.Errorf("indexing RemoteClusters by cluster ID: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("remotecluster").
		// Status writes (a heartbeat at every probe) must not trigger probes.
		For(&peeringv1alpha1.RemoteCluster{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Edits and deletions of the virtual node are repaired at once.
		Owns(&corev1.Node{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.requestsForSecret)).
		// A provider that does not answer holds a worker for up to the probe
		// timeout; the others keep going.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		// A RemoteCluster being deleted waits for its provider to drop the
		// twin requests; each one dropped wakes it.
		WatchesRawSource(source.Func(r.watchTwinRequests)).
		Complete(r)
}

// watchTwinRequests makes every peer tell when one of this cluster's twin
// requests (RemoteNamespaces) is gone, and enqueues then the RemoteClusters
// of that peer's provider being deleted.
func (r *Reconciler) watchTwinRequests(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	r.Registry.Watch(&peeringv1alpha1.RemoteNamespace{}, func(clusterID string) toolscache.ResourceEventHandler {
		return toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(any) {
			list := &peeringv1alpha1.RemoteClusterList{}
			if err := r.Client.List(ctx, list); err != nil {
				ctrl.LoggerFrom(ctx).Error(err, "listing RemoteClusters after a twin request went", "clusterID", clusterID)
				return
			}
			for i := range list.Items {
				if rc := &list.Items[i]; rc.Spec.ClusterID == clusterID && !rc.DeletionTimestamp.IsZero() {
					q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(rc)})
				}
			}
		}}
	})
	return nil
}

// requestsForSecret maps a Secret to the RemoteClusters whose kubeconfig it holds.
func (r *Reconciler) requestsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	list := &peeringv1alpha1.RemoteClusterList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{kubeconfigSecretField: o.GetNamespace() + "/" + o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing RemoteClusters for a Secret", "secret", klog.KObj(o))
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// scope is what one reconcile of a RemoteCluster observed and decided.
type scope struct {
	rc *peeringv1alpha1.RemoteCluster
	// probed is set once the provider was probed: only then is there a
	// status to compute.
	probed bool
	obs    observation
	ready  readiness
	// podCIDRs are the provider's pod CIDRs, and podCIDRsDistinct their
	// judgement, when the probe listed its nodes.
	podCIDRs         []netip.Prefix
	podCIDRsDistinct *metav1.Condition
}

// Reconcile probes one provider and brings its virtual node in line.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	rc := &peeringv1alpha1.RemoteCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, rc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("remoteCluster", klog.KObj(rc))
	ctx = ctrl.LoggerInto(ctx, log)

	if !rc.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, rc)
	}
	if err := finalizer.Add(ctx, r.Client, rc, wellknown.RemoteClusterFinalizer); err != nil {
		return ctrl.Result{}, err
	}

	s := &scope{rc: rc}
	before := rc.DeepCopy()
	defer func() {
		if !s.probed {
			return
		}
		r.computeStatus(s)
		r.recordTransitions(before, s)
		if equality.Semantic.DeepEqual(before.Status, rc.Status) {
			return
		}
		if err := r.Client.Status().Patch(ctx, rc, client.MergeFrom(before)); err != nil {
			retErr = errors.Join(retErr, client.IgnoreNotFound(fmt.Errorf("patching the status of RemoteCluster %s: %w", rc.Name, err)))
		}
	}()

	if err := r.reconcileNormal(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	// Level-based health check: probe again after the interval.
	return ctrl.Result{RequeueAfter: r.ProbeInterval}, nil
}

func (r *Reconciler) reconcileNormal(ctx context.Context, s *scope) error {
	rc := s.rc
	obs, err := r.probe(ctx, rc)
	if err != nil {
		return err
	}
	s.obs, s.probed = obs, true
	if obs.failure != nil {
		ctrl.LoggerFrom(ctx).V(4).Info("probe failed", "reason", obs.failure.reason, "message", obs.failure.message)
	}
	if obs.failure != nil && obs.failure.reason == ReasonDuplicateClusterID {
		// The owner's virtual node already stands for this provider.
		s.ready = readiness{metav1.ConditionFalse, ReasonDuplicateClusterID, obs.failure.message}
		return nil
	}
	if obs.failure == nil {
		// Judged on what the provider's nodes say now; kept as last judged
		// while it cannot be reached.
		home, others, err := r.cidrPeers(ctx, rc)
		if err != nil {
			return err
		}
		s.podCIDRs = podCIDRsOf(obs.nodes)
		c := podCIDRsCondition(rc, s.podCIDRs, home, others)
		s.podCIDRsDistinct = &c
	}
	wasReady := meta.IsStatusConditionTrue(rc.Status.Conditions, peeringv1alpha1.VirtualNodeReadyCondition)
	s.ready = nodeReadiness(rc, obs.failure, wasReady, rc.Status.LastHeartbeatTime, r.Clock.Now(), heartbeatGrace(r.ProbeInterval))

	node, err := r.reconcileNode(ctx, s)
	if err != nil || node == nil {
		return err
	}
	return r.renewLease(ctx, node)
}

// reconcileNode creates or updates the virtual node and its status. It
// returns nil when the node's name is taken by a Node that is not ours.
func (r *Reconciler) reconcileNode(ctx context.Context, s *scope) (*corev1.Node, error) {
	rc := s.rc
	name := peeringv1alpha1.VirtualNodeName(rc.Name)
	node := &corev1.Node{}
	err := r.Client.Get(ctx, client.ObjectKey{Name: name}, node)
	exists := err == nil
	switch {
	case apierrors.IsNotFound(err):
		node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	case err != nil:
		return nil, fmt.Errorf("reading virtual node %s: %w", name, err)
	case !isVirtualNodeOf(node, rc):
		s.ready = readiness{metav1.ConditionFalse, ReasonNodeNameInUse, fmt.Sprintf(
			"Node %s exists and is not the virtual node of RemoteCluster %s: delete that Node, or peer the provider under another name", name, rc.Name)}
		return nil, nil
	}

	p := platformFromNode(node)
	// The provider's own figures, as last known when it cannot be asked.
	capacity := rc.Status.Capacity
	if s.obs.failure == nil {
		p = platformOf(s.obs.nodes, p)
		capacity = capacityOf(s.obs.nodes)
	} else if capacity == nil {
		capacity = capacityOf(nil)
	}
	labels, invalid := desiredLabels(rc, s.providerLabels(), p)
	if len(invalid) > 0 {
		r.Recorder.Eventf(rc, nil, corev1.EventTypeWarning, "InvalidLabels", "LabelVirtualNode",
			"labels left off virtual node %s because they are not valid Kubernetes labels: %s; fix spec.labels or the provider's --cluster-labels", name, strings.Join(invalid, ", "))
	}

	orig := node.DeepCopy()
	applyLabels(node, labels)
	applyTaint(node)
	applyMetricsPath(node, r.KubeletPort != 0)
	node.Spec.Unschedulable = rc.Spec.Cordoned
	if err := r.adopt(node, rc); err != nil {
		return nil, err
	}
	now := r.Clock.Now()
	offered := advertised(capacity, s.policyLimits(), rc.Spec.Resources)
	if !exists {
		applyNodeStatus(node, offered, p, kubeletEndpoint{r.KubeletAddress, r.KubeletPort}, s.ready, now)
		if err := r.Client.Create(ctx, node); err != nil {
			return nil, fmt.Errorf("creating virtual node %s: %w", name, err)
		}
		ctrl.LoggerFrom(ctx).Info("created virtual node", "node", klog.KObj(node))
	} else if !equality.Semantic.DeepEqual(orig.ObjectMeta, node.ObjectMeta) || !equality.Semantic.DeepEqual(orig.Spec, node.Spec) {
		// Taints are a list replaced as a whole: lock, so that a taint added
		// meanwhile is not lost.
		if err := r.Client.Patch(ctx, node, client.StrategicMergeFrom(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return nil, fmt.Errorf("updating virtual node %s: %w", name, err)
		}
	}

	orig = node.DeepCopy()
	applyNodeStatus(node, offered, p, kubeletEndpoint{r.KubeletAddress, r.KubeletPort}, s.ready, now)
	if !equality.Semantic.DeepEqual(orig.Status, node.Status) {
		if err := r.Client.Status().Patch(ctx, node, client.StrategicMergeFrom(orig)); err != nil {
			return nil, fmt.Errorf("updating the status of virtual node %s: %w", name, err)
		}
	}
	return node, nil
}

// providerLabels are the provider's cluster labels: just read, or the last
// known ones when the provider could not be asked.
func (s *scope) providerLabels() map[string]string {
	if s.obs.identity != nil {
		return s.obs.identity.Labels
	}
	return s.rc.Status.Labels
}

// policyLimits are the limits of the provider's policy for this cluster:
// just read, or the last ones read when the policy could not be read.
func (s *scope) policyLimits() corev1.ResourceList {
	policy := s.rc.Status.Policy
	if s.obs.policyRead {
		policy = s.obs.policy
	}
	if policy == nil {
		return nil
	}
	return policy.Limits
}

// isVirtualNodeOf says whether node is (or was, for a RemoteCluster deleted
// and created again under the same name) the virtual node of rc.
func isVirtualNodeOf(node *corev1.Node, rc *peeringv1alpha1.RemoteCluster) bool {
	if ref := metav1.GetControllerOf(node); ref != nil {
		return isRemoteClusterRef(*ref, rc.Name)
	}
	return node.Labels[wellknown.VirtualNodeTypeLabel] == wellknown.VirtualNodeTypeValue &&
		node.Labels[wellknown.RemoteClusterIDLabel] == rc.Spec.ClusterID
}

func isRemoteClusterRef(ref metav1.OwnerReference, name string) bool {
	return ref.APIVersion == peeringv1alpha1.GroupVersion.String() && ref.Kind == "RemoteCluster" && ref.Name == name
}

// adopt makes rc the controller of node, dropping a reference to an earlier
// RemoteCluster of the same name.
func (r *Reconciler) adopt(node *corev1.Node, rc *peeringv1alpha1.RemoteCluster) error {
	refs := node.OwnerReferences[:0]
	for _, ref := range node.OwnerReferences {
		if !isRemoteClusterRef(ref, rc.Name) || ref.UID == rc.UID {
			refs = append(refs, ref)
		}
	}
	node.OwnerReferences = refs
	if err := controllerutil.SetControllerReference(rc, node, r.Client.Scheme()); err != nil {
		return fmt.Errorf("owning virtual node %s: %w", node.Name, err)
	}
	return nil
}

// renewLease applies the virtual node's heartbeat Lease. It is renewed while
// this controller probes, whatever the provider's health: the Lease says
// that the node's "kubelet" is alive, the Ready condition whether the
// provider is. So kube-controller-manager's node lifecycle controller keeps
// our Ready=False and its reason instead of replacing them with Unknown,
// and applies its usual not-ready taints and evictions.
func (r *Reconciler) renewLease(ctx context.Context, node *corev1.Node) error {
	lease := coordinationv1ac.Lease(node.Name, corev1.NamespaceNodeLease).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion("v1").WithKind("Node").WithName(node.Name).WithUID(node.UID)).
		WithSpec(coordinationv1ac.LeaseSpec().
			WithHolderIdentity(node.Name).
			WithLeaseDurationSeconds(LeaseDurationSeconds).
			WithRenewTime(metav1.NewMicroTime(r.Clock.Now())))
	if err := r.Client.Apply(ctx, lease, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("renewing the Lease of virtual node %s: %w", node.Name, err)
	}
	return nil
}

// reconcileDelete removes the virtual node, its Lease and, once the
// provider deleted the twins it held for this cluster, the peer, then the
// finalizer. It does not need the kubeconfig Secret.
func (r *Reconciler) reconcileDelete(ctx context.Context, rc *peeringv1alpha1.RemoteCluster) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(rc, wellknown.RemoteClusterFinalizer) {
		return ctrl.Result{}, nil
	}
	name := peeringv1alpha1.VirtualNodeName(rc.Name)
	node := &corev1.Node{}
	err := r.Client.Get(ctx, client.ObjectKey{Name: name}, node)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading virtual node %s: %w", name, err)
	case !isVirtualNodeOf(node, rc):
		// Someone else's Node, and so someone else's Lease.
		name = ""
	default:
		if err := r.Client.Delete(ctx, node, client.Preconditions{UID: &node.UID}); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting virtual node %s: %w", name, err)
		}
	}
	if name != "" {
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: corev1.NamespaceNodeLease, Name: name}}
		if err := r.Client.Delete(ctx, lease); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting the Lease of virtual node %s: %w", name, err)
		}
	}
	// A duplicate going away must not take the owner's peer with it.
	owner, err := r.clusterIDOwner(ctx, rc.Spec.ClusterID)
	if err != nil {
		return ctrl.Result{}, err
	}
	if owner == "" {
		// Without its virtual node the provider is selected by no
		// NamespaceOffloading: the offloading controller withdraws the
		// twin requests, through this peer.
		if left := r.twinsLeft(ctx, rc); len(left) > 0 {
			if wait := TwinWithdrawalTimeout - r.Clock.Since(rc.DeletionTimestamp.Time); wait > 0 {
				ctrl.LoggerFrom(ctx).V(1).Info("waiting for the provider to delete its twins", "twins", left)
				// Each request the provider drops wakes us
				// (watchTwinRequests); a timer, for the deadline.
				return ctrl.Result{RequeueAfter: wait}, nil
			}
			r.Recorder.Eventf(rc, nil, corev1.EventTypeWarning, "TwinsLeft", "Unpeer",
				"provider %s did not delete twin namespaces %s within %s; they are left there: run 'stretchctl peer revoke' against the provider to delete them",
				rc.Name, strings.Join(left, ", "), TwinWithdrawalTimeout)
		}
		r.Registry.Remove(rc.Spec.ClusterID)
	}
	forgetMetrics(rc.Name)
	ctrl.LoggerFrom(ctx).Info("removed the virtual node and the peer", "node", peeringv1alpha1.VirtualNodeName(rc.Name))
	return ctrl.Result{}, finalizer.Remove(ctx, r.Client, rc, wellknown.RemoteClusterFinalizer)
}

// twinsLeft names the twins that the provider still holds for this cluster,
// as far as a usable peer tells; nothing when the provider cannot be read,
// since waiting for it could last forever.
func (r *Reconciler) twinsLeft(ctx context.Context, rc *peeringv1alpha1.RemoteCluster) []string {
	peer, ok := r.Registry.Get(rc.Spec.ClusterID)
	if !ok || peer.Health() != nil {
		return nil
	}
	reader, err := peer.Reader(&peeringv1alpha1.RemoteNamespace{})
	if err != nil {
		return nil
	}
	list := &peeringv1alpha1.RemoteNamespaceList{}
	if err := reader.List(ctx, list); err != nil {
		return nil
	}
	names := make([]string, 0, len(list.Items))
	for _, rn := range list.Items {
		names = append(names, rn.Spec.RemoteNamespaceName)
	}
	return names
}

// computeStatus writes what the probe found into the status.
func (r *Reconciler) computeStatus(s *scope) {
	rc, obs := s.rc, s.obs
	setAPIReachable(rc, obs.failure)
	setAuthenticated(rc, obs.failure)
	setVirtualNodeReady(rc, s.ready)
	if obs.identity != nil {
		rc.Status.ClusterName = obs.identity.Name
		rc.Status.Labels = obs.identity.Labels
	}
	if obs.policyRead {
		rc.Status.Policy = obs.policy
	}
	if s.podCIDRsDistinct != nil {
		rc.Status.PodCIDRs = prefixStrings(s.podCIDRs)
		setCondition(rc, *s.podCIDRsDistinct)
	}
	if obs.failure == nil {
		rc.Status.Capacity = capacityOf(obs.nodes)
		now := metav1.NewTime(r.Clock.Now())
		rc.Status.LastHeartbeatTime = &now
	}
	rc.Status.ObservedGeneration = rc.Generation
}

// recordTransitions emits events when the provider becomes unreachable or
// rejects the credentials, and when the virtual node becomes Ready, and
// updates the metrics.
func (r *Reconciler) recordTransitions(before *peeringv1alpha1.RemoteCluster, s *scope) {
	rc := s.rc
	for _, t := range []string{peeringv1alpha1.APIReachableCondition, peeringv1alpha1.AuthenticatedCondition, peeringv1alpha1.PodCIDRsDistinctCondition} {
		c, old := meta.FindStatusCondition(rc.Status.Conditions, t), meta.FindStatusCondition(before.Status.Conditions, t)
		if c != nil && c.Status == metav1.ConditionFalse && (old == nil || old.Status != c.Status || old.Reason != c.Reason) {
			r.Recorder.Eventf(rc, nil, corev1.EventTypeWarning, c.Reason, "Probe", "%s", c.Message)
		}
	}
	if s.ready.status == metav1.ConditionTrue && !meta.IsStatusConditionTrue(before.Status.Conditions, peeringv1alpha1.VirtualNodeReadyCondition) {
		r.Recorder.Eventf(rc, nil, corev1.EventTypeNormal, "VirtualNodeReady", "Probe", "provider %s answers: virtual node %s is Ready", rc.Name, peeringv1alpha1.VirtualNodeName(rc.Name))
	}
	observeProbe(rc.Name, s.ready, s.obs.failure)
}
