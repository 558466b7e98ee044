// Package tenantpolicy reports, on a provider, how each home cluster stands
// against its TenantPolicy: what its pods request across its twins now
// (status.used), and whether the policy holds on every twin (condition
// Enforced). The tenant controller applies the policy; this one only reads
// and reports, and never creates a TenantPolicy: without one there is
// nothing to report on.
package tenantpolicy

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/homepods"
	"stretch.dev/stretch/internal/tenancy"
)

// Reconciler reconciles the status of TenantPolicies on a provider.
type Reconciler struct {
	Client client.Client
	// Pods are the home clusters' pods, shared with the twin pod admission
	// so that both count the same; nil: SetupWithManager creates them.
	Pods *homepods.Cache
}

// +kubebuilder:rbac:groups=peering.stretch.dev,resources=tenantpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=peering.stretch.dev,resources=tenantpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// SetupWithManager registers the controller, and the cache of home
// clusters' pods it reads unless Pods is set.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Pods == nil {
		pods, err := homepods.New(mgr)
		if err != nil {
			return err
		}
		r.Pods = pods
	}
	collector.SetReader(mgr.GetClient())

	return ctrl.NewControllerManagedBy(mgr).
		Named("tenantpolicy").
		For(&peeringv1alpha1.TenantPolicy{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == wellknown.TenantPolicyName
		}))).
		// Twins appearing, going, or their labels changing.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(policyOfTwin), builder.WithPredicates(twinChanged)).
		WatchesRawSource(source.Kind(r.Pods, &corev1.Pod{}, handler.TypedEnqueueRequestsFromMapFunc(r.policyOfPod), podUsageChanged)).
		Complete(r)
}

// policyKey is the TenantPolicy of a home cluster.
func policyKey(homeClusterID string) types.NamespacedName {
	return types.NamespacedName{Namespace: peeringv1alpha1.TenantNamespace(homeClusterID), Name: wellknown.TenantPolicyName}
}

// twinChanged passes the events of namespaces that are, or were, twins.
var twinChanged = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return isTwin(e.Object) },
	DeleteFunc:  func(e event.DeleteEvent) bool { return isTwin(e.Object) },
	UpdateFunc:  func(e event.UpdateEvent) bool { return isTwin(e.ObjectOld) || isTwin(e.ObjectNew) },
	GenericFunc: func(e event.GenericEvent) bool { return isTwin(e.Object) },
}

func isTwin(o client.Object) bool { return tenancy.HomeOfTwin(o.GetLabels(), o.GetAnnotations()) != "" }

// policyOfTwin maps a twin namespace to its home cluster's TenantPolicy.
func policyOfTwin(_ context.Context, o client.Object) []reconcile.Request {
	if home := tenancy.HomeOfTwin(o.GetLabels(), o.GetAnnotations()); home != "" {
		return []reconcile.Request{{NamespacedName: policyKey(home)}}
	}
	return nil
}

// policyOfPod maps a pod to the TenantPolicy of the home cluster whose twin
// holds it: the namespace, not the pod's own label, says whose it is.
func (r *Reconciler) policyOfPod(ctx context.Context, pod *corev1.Pod) []reconcile.Request {
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: pod.Namespace}, ns); err != nil {
		return nil // a namespace that is gone has no twin left to report on
	}
	return policyOfTwin(ctx, ns)
}

// podUsageChanged passes pod events that change what the pod counts for: a
// pod's many status updates do not.
var podUsageChanged = predicate.TypedFuncs[*corev1.Pod]{
	UpdateFunc: func(e event.TypedUpdateEvent[*corev1.Pod]) bool {
		return tenancy.Counts(e.ObjectOld) != tenancy.Counts(e.ObjectNew) ||
			!equality.Semantic.DeepEqual(tenancy.PodRequests(e.ObjectOld), tenancy.PodRequests(e.ObjectNew))
	},
}

// Reconcile computes the status of one TenantPolicy and patches it when it
// changed.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	policy := &peeringv1alpha1.TenantPolicy{}
	if err := r.Client.Get(ctx, req.NamespacedName, policy); err != nil {
		// No policy, nothing to report: one is never created behind the
		// provider admin's back.
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := policy.DeepCopy()

	home := tenancy.HomeOfTenant(policy.Namespace)
	var twins []corev1.Namespace
	var pods []corev1.Pod
	if home != "" {
		var err error
		if twins, err = homepods.Twins(ctx, r.Client, home); err != nil {
			return ctrl.Result{}, err
		}
		if pods, err = homepods.In(ctx, r.Pods, twins); err != nil {
			return ctrl.Result{}, err
		}
	}
	policy.Status.Used = tenancy.Used(tenancy.Usage(pods), policy.Spec.Limits)
	setEnforced(policy, home, twins)
	policy.Status.ObservedGeneration = policy.Generation

	if equality.Semantic.DeepEqual(before.Status, policy.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Status().Patch(ctx, policy, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("patching status of TenantPolicy %s: %w", req.NamespacedName, err))
	}
	return ctrl.Result{}, nil
}
