// Package tenant is the provider side of namespace offloading: it turns each
// RemoteNamespace that a home cluster writes into its tenant namespace into a
// twin namespace, grants that home cluster rights inside the twin only, and
// reports the outcome in the RemoteNamespace's status. It applies the home
// cluster's TenantPolicy to its twins: the Pod Security labels each carries
// from its creation on, and the twin namings and names the policy allows. It
// never adopts, changes or deletes a namespace it did not create for that
// home cluster.
package tenant

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/controller/finalizer"
	"stretch.dev/stretch/internal/controller/ownwrites"
	"stretch.dev/stretch/internal/naming"
	"stretch.dev/stretch/internal/retry"
	"stretch.dev/stretch/internal/tenancy"
)

// twinNameField indexes RemoteNamespaces by the twin they ask for, so that a
// namespace appearing or going wakes every request for that name.
const twinNameField = "spec.remoteNamespaceName"

// Reconciler reconciles RemoteNamespaces on a provider.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder

	apiReader client.Reader // uncached, to see past a cache that is behind
	writes    ownwrites.Tracker
}

// +kubebuilder:rbac:groups=peering.stretch.dev,resources=remotenamespaces,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=peering.stretch.dev,resources=remotenamespaces/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=peering.stretch.dev,resources=remotenamespaces/finalizers,verbs=update
// +kubebuilder:rbac:groups=peering.stretch.dev,resources=tenantpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=stretch-remote-workloads

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.apiReader = mgr.GetAPIReader()
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &peeringv1alpha1.RemoteNamespace{}, twinNameField,
		func(o client.Object) []string {
			return []string{o.(*peeringv1alpha1.RemoteNamespace).Spec.RemoteNamespaceName}
		}); err != nil {
		return fmt.Errorf("indexing RemoteNamespaces by twin name: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("tenant").
		// Each reconcile waits on API round trips; namespaces are
		// independent. A bulk offload of 1,000 namespaces to 2 providers
		// (test/bench) took 211 s with 16 workers and the default retry
		// limiter, 134 s with 16 and retry.Limiter, 110 s with 64.
		WithOptions(controller.Options{MaxConcurrentReconciles: 64, RateLimiter: retry.Limiter[reconcile.Request]()}).
		For(&peeringv1alpha1.RemoteNamespace{}).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.requestsForTwin(client.Object.GetName))).
		// The grant inside a twin is repaired when someone edits or deletes
		// it; one of an earlier release's name that comes back (a restored
		// backup) is removed again.
		Watches(&rbacv1.RoleBinding{}, handler.EnqueueRequestsFromMapFunc(r.requestsForTwin(client.Object.GetNamespace)),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
				return o.GetName() == wellknown.TwinRoleBindingName || o.GetName() == wellknown.LegacyTwinRoleBindingName
			}))).
		// A policy's spec applies to every twin of its tenant: relabelled,
		// or allowed now. Its status (usage) changes often and does not.
		Watches(&peeringv1alpha1.TenantPolicy{}, handler.EnqueueRequestsFromMapFunc(r.requestsInTenant),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == wellknown.TenantPolicyName }),
				predicate.GenerationChangedPredicate{})).
		Complete(r)
}

// requestsInTenant maps a TenantPolicy to every request of its tenant
// namespace.
func (r *Reconciler) requestsInTenant(ctx context.Context, o client.Object) []reconcile.Request {
	return r.requests(ctx, client.InNamespace(o.GetNamespace()))
}

// requestsForTwin maps an object to the requests for the twin it names.
func (r *Reconciler) requestsForTwin(twinOf func(client.Object) string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.requestsFor(ctx, twinOf(o))
	}
}

func (r *Reconciler) requestsFor(ctx context.Context, twin string) []reconcile.Request {
	return r.requests(ctx, client.MatchingFields{twinNameField: twin})
}

// requests maps the RemoteNamespaces that opts list to their requests.
func (r *Reconciler) requests(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	list := &peeringv1alpha1.RemoteNamespaceList{}
	if err := r.Client.List(ctx, list, opts...); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing RemoteNamespaces", "options", opts)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, rn := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rn)})
	}
	return reqs
}

// Reconcile brings one twin namespace in line with its request.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)
	rn := &peeringv1alpha1.RemoteNamespace{}
	if err := r.Client.Get(ctx, req.NamespacedName, rn); err != nil {
		if apierrors.IsNotFound(err) {
			r.writes.Forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.writes.Behind(rn) {
		// The event of our own last write wakes us again.
		log.V(5).Info("the cache is behind our last write of the request")
		return ctrl.Result{}, nil
	}
	log = log.WithValues("twin", rn.Spec.RemoteNamespaceName, "homeClusterID", rn.Spec.HomeClusterID)
	ctx = ctrl.LoggerInto(ctx, log)

	before := rn.DeepCopy()
	defer func() {
		rn.Status.ObservedGeneration = rn.Generation
		if rn.Status == before.Status {
			return
		}
		if rn.Status.Phase == peeringv1alpha1.RemoteNamespaceCreationFailed && rn.Status.Reason != before.Status.Reason {
			r.Recorder.Eventf(rn, nil, corev1.EventTypeWarning, rn.Status.Reason, "CreateTwin", rn.Status.Message)
		}
		if err := r.writes.Write(rn, func() error { return r.Client.Status().Patch(ctx, rn, client.MergeFrom(before)) }); err != nil && retErr == nil {
			retErr = client.IgnoreNotFound(fmt.Errorf("patching status of RemoteNamespace %s: %w", req.NamespacedName, err))
		}
	}()

	if !rn.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, rn)
	}
	if err := r.writes.Write(rn, func() error { return finalizer.Add(ctx, r.Client, rn, wellknown.RemoteNamespaceFinalizer) }); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.reconcileNormal(ctx, rn)
}

func (r *Reconciler) reconcileNormal(ctx context.Context, rn *peeringv1alpha1.RemoteNamespace) error {
	twin := rn.Spec.RemoteNamespaceName
	// A home cluster's credentials only reach its own tenant namespace, so the
	// tenant namespace, not the spec, says who is asking.
	if rn.Namespace != peeringv1alpha1.TenantNamespace(rn.Spec.HomeClusterID) {
		setFailed(rn, peeringv1alpha1.ForbiddenReason, fmt.Sprintf("RemoteNamespace %s/%s names home cluster %s but is not in its tenant namespace %s: requests are only honoured in the requesting home cluster's own tenant namespace",
			rn.Namespace, rn.Name, rn.Spec.HomeClusterID, peeringv1alpha1.TenantNamespace(rn.Spec.HomeClusterID)))
		return nil
	}
	// A provider sees only the name it is asked for: a name of the DefaultName
	// shape gets that strategy's advice, any other the SelectedName one.
	strategy := offloadingv1alpha1.SelectedNameMapping
	if twin == naming.TwinName(offloadingv1alpha1.NamespaceOffloadingSpec{}, rn.Spec.HomeNamespace, rn.Spec.HomeClusterID) {
		strategy = offloadingv1alpha1.DefaultNameMapping
	}
	if p := naming.CheckTwinName(twin, rn.Spec.HomeNamespace, strategy); p != nil {
		setFailed(rn, p.Reason, p.Message)
		return nil
	}

	policy, err := r.policy(ctx, rn.Namespace)
	if err != nil {
		return err
	}
	level := tenancy.PodSecurityLevel(policy)

	ns := &corev1.Namespace{}
	err = r.Client.Get(ctx, types.NamespacedName{Name: twin}, ns)
	if apierrors.IsNotFound(err) {
		// The policy decides what is created; a twin it no longer allows is
		// kept (below), since deleting it would delete the home cluster's
		// workloads.
		if p := tenancy.CheckTwin(policy, twin, rn.Spec.HomeNamespace, rn.Spec.HomeClusterID); p != nil {
			setFailed(rn, p.Reason, p.Message)
			return nil
		}
		ns = twinNamespace(rn, level)
		switch err = r.Client.Create(ctx, ns); {
		case err == nil:
			ctrl.LoggerFrom(ctx).Info("created twin namespace")
		case apierrors.IsAlreadyExists(err):
			// The cache is behind, most often on our own create of a moment
			// ago: judge what is there now rather than fail and wait for a
			// retry.
			ns = &corev1.Namespace{}
			err = r.apiReader.Get(ctx, types.NamespacedName{Name: twin}, ns)
		default:
			return fmt.Errorf("creating twin namespace %s: %w", twin, err)
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("reading namespace %s: %w", twin, err)
	case !ownedBy(ns, rn):
		setFailed(rn, peeringv1alpha1.AlreadyExistsReason, conflictMessage(ns, rn))
		return nil
	case !ns.DeletionTimestamp.IsZero():
		setPhase(rn, peeringv1alpha1.RemoteNamespaceCreating, "Terminating",
			fmt.Sprintf("the previous twin namespace %s is still terminating; it is created again once gone", twin))
		return nil
	}

	if err := r.ensurePodSecurity(ctx, ns, level); err != nil {
		return err
	}
	if err := r.ensureRoleBinding(ctx, rn); err != nil {
		setPhase(rn, peeringv1alpha1.RemoteNamespaceCreating, "GrantingAccess", err.Error())
		return err
	}
	msg := fmt.Sprintf("twin namespace %s exists and home cluster %s may run workloads in it", twin, rn.Spec.HomeClusterID)
	if policy != nil {
		if why := tenancy.Violation(policy.Spec, twin, rn.Spec.HomeNamespace, rn.Spec.HomeClusterID); why != "" {
			msg += fmt.Sprintf("; the provider's TenantPolicy %s/%s no longer allows it (%s): it is kept with its workloads, but would not be created again",
				policy.Namespace, policy.Name, why)
		}
	}
	setPhase(rn, peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated", msg)
	// Only once the grant of the current name exists, so that the home
	// cluster is never without one.
	return r.removeLegacyRoleBinding(ctx, rn)
}

// policy is the TenantPolicy of a tenant namespace, nil when it has none.
func (r *Reconciler) policy(ctx context.Context, tenant string) (*peeringv1alpha1.TenantPolicy, error) {
	p := &peeringv1alpha1.TenantPolicy{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: tenant, Name: wellknown.TenantPolicyName}, p)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading TenantPolicy %s/%s: %w", tenant, wellknown.TenantPolicyName, err)
	}
	return p, nil
}

// ensurePodSecurity gives a twin the Pod Security labels of level again
// when someone removed or changed them, or the policy changed, or the twin
// predates them. Only those labels are patched.
func (r *Reconciler) ensurePodSecurity(ctx context.Context, ns *corev1.Namespace, level peeringv1alpha1.PodSecurityLevel) error {
	drift := tenancy.PodSecurityDrift(ns.Labels, level)
	if len(drift) == 0 {
		return nil
	}
	before := ns.DeepCopy()
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	maps.Copy(ns.Labels, tenancy.PodSecurityLabels(level))
	if err := r.Client.Patch(ctx, ns, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("setting Pod Security level %s on twin namespace %s: %w", level, ns.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("set the Pod Security labels of the twin", "level", level, "labels", drift)
	return nil
}

func (r *Reconciler) reconcileDelete(ctx context.Context, rn *peeringv1alpha1.RemoteNamespace) error {
	if !controllerutil.ContainsFinalizer(rn, wellknown.RemoteNamespaceFinalizer) {
		return nil
	}
	twin := rn.Spec.RemoteNamespaceName
	ns := &corev1.Namespace{}
	err := r.Client.Get(ctx, types.NamespacedName{Name: twin}, ns)
	switch {
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("reading namespace %s: %w", twin, err)
	case err == nil && ownedBy(ns, rn):
		if ns.DeletionTimestamp.IsZero() {
			if err := r.Client.Delete(ctx, ns, client.Preconditions{UID: &ns.UID}); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting twin namespace %s: %w", twin, err)
			}
			ctrl.LoggerFrom(ctx).Info("deleting twin namespace")
		}
		// The namespace watch brings us back once it is gone.
		setPhase(rn, peeringv1alpha1.RemoteNamespaceTerminating, "Terminating",
			fmt.Sprintf("twin namespace %s is being deleted with everything in it", twin))
		return nil
	}
	// Gone, or never ours: nothing of ours is left.
	return finalizer.Remove(ctx, r.Client, rn, wellknown.RemoteNamespaceFinalizer)
}

// twinNamespace is the namespace created for a request: the annotation and
// labels tell Stretch, and the user, whose twin it is; the Pod Security
// labels of level hold from the first moment, before any pod can exist.
func twinNamespace(rn *peeringv1alpha1.RemoteNamespace, level peeringv1alpha1.PodSecurityLevel) *corev1.Namespace {
	labels := tenancy.PodSecurityLabels(level)
	labels[wellknown.OriginClusterIDLabel] = rn.Spec.HomeClusterID
	labels[wellknown.OriginNamespaceLabel] = rn.Spec.HomeNamespace
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        rn.Spec.RemoteNamespaceName,
		Annotations: map[string]string{wellknown.RemoteNamespaceOriginAnnotation: rn.Spec.HomeClusterID},
		Labels:      labels,
	}}
}

// ownedBy reports whether ns is the twin Stretch created for this request:
// same home cluster and same home namespace, asked for from that home
// cluster's tenant namespace (a request elsewhere that names another home
// cluster must not delete that cluster's twin when it is withdrawn).
func ownedBy(ns *corev1.Namespace, rn *peeringv1alpha1.RemoteNamespace) bool {
	return rn.Namespace == peeringv1alpha1.TenantNamespace(rn.Spec.HomeClusterID) &&
		ns.Annotations[wellknown.RemoteNamespaceOriginAnnotation] == rn.Spec.HomeClusterID &&
		ns.Labels[wellknown.OriginClusterIDLabel] == rn.Spec.HomeClusterID &&
		ns.Labels[wellknown.OriginNamespaceLabel] == rn.Spec.HomeNamespace
}

func conflictMessage(ns *corev1.Namespace, rn *peeringv1alpha1.RemoteNamespace) string {
	origin := "it has no " + wellknown.RemoteNamespaceOriginAnnotation + " annotation, so Stretch did not create it"
	if o, ok := ns.Annotations[wellknown.RemoteNamespaceOriginAnnotation]; ok {
		origin = fmt.Sprintf("its %s annotation says home cluster %s", wellknown.RemoteNamespaceOriginAnnotation, o)
		if o == rn.Spec.HomeClusterID {
			origin += fmt.Sprintf(", but for home namespace %q", ns.Labels[wellknown.OriginNamespaceLabel])
		}
	}
	return fmt.Sprintf("namespace %s already exists on this provider and is not the twin of %s from home cluster %s (%s); it is left untouched: delete or rename it on the provider, or use namespaceMappingStrategy SelectedName with another name",
		ns.Name, rn.Spec.HomeNamespace, rn.Spec.HomeClusterID, origin)
}

func (r *Reconciler) ensureRoleBinding(ctx context.Context, rn *peeringv1alpha1.RemoteNamespace) error {
	want := twinRoleBinding(rn)
	key := client.ObjectKeyFromObject(want)
	rb := &rbacv1.RoleBinding{}
	err := r.Client.Get(ctx, key, rb)
	if apierrors.IsNotFound(err) {
		if err = r.Client.Create(ctx, want); err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("granting home cluster %s access to twin %s: %w", rn.Spec.HomeClusterID, rn.Spec.RemoteNamespaceName, err)
		}
		// The cache is behind, most often on our own create of a moment ago.
		err = r.apiReader.Get(ctx, key, rb)
	}
	if err != nil {
		return fmt.Errorf("reading RoleBinding %s: %w", key, err)
	}
	if rb.RoleRef != want.RoleRef {
		// roleRef cannot be changed in place.
		return fmt.Errorf("RoleBinding %s binds %s %s instead of %s %s: delete it so that Stretch recreates it",
			key, rb.RoleRef.Kind, rb.RoleRef.Name, want.RoleRef.Kind, want.RoleRef.Name)
	}
	if rb.Labels[wellknown.OriginClusterIDLabel] == rn.Spec.HomeClusterID && equality.Semantic.DeepEqual(rb.Subjects, want.Subjects) {
		return nil
	}
	if rb.Labels == nil {
		rb.Labels = map[string]string{}
	}
	rb.Labels[wellknown.OriginClusterIDLabel] = rn.Spec.HomeClusterID
	rb.Subjects = want.Subjects
	if err := r.Client.Update(ctx, rb); err != nil {
		return fmt.Errorf("granting home cluster %s access to twin %s: %w", rn.Spec.HomeClusterID, rn.Spec.RemoteNamespaceName, err)
	}
	return nil
}

// removeLegacyRoleBinding deletes, from the twin of rn, the grant that an
// earlier release made under LegacyTwinRoleBindingName, now that the one of
// TwinRoleBindingName exists. It is idempotent: a restart between the two
// finds the new grant in place and deletes the old one then. A RoleBinding of
// that name that is not exactly that grant (another role or other subjects)
// is someone else's and is left alone; the preconditions keep a version
// edited since the cache saw it.
func (r *Reconciler) removeLegacyRoleBinding(ctx context.Context, rn *peeringv1alpha1.RemoteNamespace) error {
	key := client.ObjectKey{Namespace: rn.Spec.RemoteNamespaceName, Name: wellknown.LegacyTwinRoleBindingName}
	rb := &rbacv1.RoleBinding{}
	if err := r.Client.Get(ctx, key, rb); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading RoleBinding %s: %w", key, err)
	}
	if !isLegacyGrant(rb, rn) {
		return nil
	}
	err := r.Client.Delete(ctx, rb, client.Preconditions{UID: &rb.UID, ResourceVersion: &rb.ResourceVersion})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting RoleBinding %s, the grant of an earlier release now replaced by %s: %w", key, wellknown.TwinRoleBindingName, err)
	}
	ctrl.LoggerFrom(ctx).Info("deleted the twin's grant of an earlier release", "roleBinding", klog.KObj(rb), "replacedBy", wellknown.TwinRoleBindingName)
	return nil
}

// isLegacyGrant reports whether rb is the grant an earlier release made in
// the twin of rn: the remote workloads role bound to that home cluster's
// ServiceAccount and to nothing else.
func isLegacyGrant(rb *rbacv1.RoleBinding, rn *peeringv1alpha1.RemoteNamespace) bool {
	want := twinRoleBinding(rn)
	return rb.Name == wellknown.LegacyTwinRoleBindingName && rb.RoleRef == want.RoleRef && equality.Semantic.DeepEqual(rb.Subjects, want.Subjects)
}

// twinRoleBinding grants the home cluster of rn the remote workloads role
// inside its twin, and nothing else.
func twinRoleBinding(rn *peeringv1alpha1.RemoteNamespace) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: rn.Spec.RemoteNamespaceName, Name: wellknown.TwinRoleBindingName,
			Labels: map[string]string{wellknown.OriginClusterIDLabel: rn.Spec.HomeClusterID}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: wellknown.RemoteWorkloadsClusterRole},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: rn.Namespace, Name: wellknown.TenantServiceAccountName}},
	}
}

// setPhase sets the phase, reason and message of the request.
func setPhase(rn *peeringv1alpha1.RemoteNamespace, phase peeringv1alpha1.RemoteNamespacePhase, reason, message string) {
	rn.Status.Phase, rn.Status.Reason, rn.Status.Message = phase, reason, message
}

func setFailed(rn *peeringv1alpha1.RemoteNamespace, reason, message string) {
	setPhase(rn, peeringv1alpha1.RemoteNamespaceCreationFailed, reason, message)
}
