// Package homepods is a provider's view of the pods that home clusters run
// in their twins: a cache of the pods that carry a home cluster's origin
// label, and how to read one home cluster's. The tenantpolicy controller
// reports usage from it, and the twin pod admission checks limits against
// it, so both count the same pods.
package homepods

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/tenancy"
)

// Cache holds the pods with a home cluster's origin label. It runs on every
// replica of the manager, not only on the leader: every replica serves the
// admission webhook.
type Cache struct {
	cache.Cache
}

// NeedLeaderElection is false: see Cache.
func (Cache) NeedLeaderElection() bool { return false }

// New creates the cache and adds it to the manager. Only pods that carry a
// home cluster's origin label are cached: the API server filters, so a
// provider's own pods cost nothing here (the manager's own cache holds no
// pods, and should not for this).
func New(mgr ctrl.Manager) (*Cache, error) {
	origin, err := labels.NewRequirement(wellknown.OriginClusterIDLabel, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("selecting home clusters' pods: %w", err)
	}
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:                      mgr.GetScheme(),
		Mapper:                      mgr.GetRESTMapper(),
		ByObject:                    map[client.Object]cache.ByObject{&corev1.Pod{}: {Label: labels.NewSelector().Add(*origin)}},
		DefaultTransform:            cache.TransformStripManagedFields(),
		ReaderFailOnMissingInformer: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the cache of home clusters' pods: %w", err)
	}
	// The informer is created now, so that ReaderFailOnMissingInformer
	// never fails a read.
	if _, err := c.GetInformer(context.Background(), &corev1.Pod{}); err != nil {
		return nil, fmt.Errorf("creating the informer of home clusters' pods: %w", err)
	}
	hp := &Cache{Cache: c}
	if err := mgr.Add(hp); err != nil {
		return nil, fmt.Errorf("adding the cache of home clusters' pods: %w", err)
	}
	return hp, nil
}

// Twins are the namespaces Stretch created for home cluster home, read
// with namespaces.
func Twins(ctx context.Context, namespaces client.Reader, home string) ([]corev1.Namespace, error) {
	list := &corev1.NamespaceList{}
	if err := namespaces.List(ctx, list, client.MatchingLabels{wellknown.OriginClusterIDLabel: home}); err != nil {
		return nil, fmt.Errorf("listing the twins of home cluster %s: %w", home, err)
	}
	twins := list.Items[:0]
	for _, ns := range list.Items {
		if tenancy.HomeOfTwin(ns.Labels, ns.Annotations) == home {
			twins = append(twins, ns)
		}
	}
	return twins, nil
}

// In are the pods of pods (the Cache) in twins, those being deleted
// included: they still run. The namespace, not a pod's own label, says
// whose a pod is.
func In(ctx context.Context, pods client.Reader, twins []corev1.Namespace) ([]corev1.Pod, error) {
	var all []corev1.Pod
	for _, ns := range twins {
		list := &corev1.PodList{}
		if err := pods.List(ctx, list, client.InNamespace(ns.Name)); err != nil {
			return nil, fmt.Errorf("listing the pods of twin %s: %w", ns.Name, err)
		}
		all = append(all, list.Items...)
	}
	return all, nil
}

// OfHome are the pods of home cluster home in its twins.
func OfHome(ctx context.Context, namespaces, pods client.Reader, home string) ([]corev1.Pod, error) {
	twins, err := Twins(ctx, namespaces, home)
	if err != nil {
		return nil, err
	}
	return In(ctx, pods, twins)
}
