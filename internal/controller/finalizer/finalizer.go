// Package finalizer adds and removes a controller's finalizer with an
// optimistically locked patch, so that the finalizers of other controllers
// in the same list are never lost. Every Stretch controller uses it.
package finalizer

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// Add adds finalizer to obj on the API server, if it lacks it.
func Add(ctx context.Context, c client.Client, obj client.Object, finalizer string) error {
	return patch(ctx, c, obj, finalizer, controllerutil.AddFinalizer)
}

// Remove removes finalizer from obj on the API server, if it has it. An
// object already gone is not an error.
func Remove(ctx context.Context, c client.Client, obj client.Object, finalizer string) error {
	return patch(ctx, c, obj, finalizer, controllerutil.RemoveFinalizer)
}

func patch(ctx context.Context, c client.Client, obj client.Object, finalizer string, change func(client.Object, string) bool) error {
	before := obj.DeepCopyObject().(client.Object)
	if !change(obj, finalizer) {
		return nil
	}
	if err := c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		kind := fmt.Sprintf("%T", obj)
		if gvk, gvkErr := apiutil.GVKForObject(obj, c.Scheme()); gvkErr == nil {
			kind = gvk.Kind
		}
		return client.IgnoreNotFound(fmt.Errorf("patching the finalizers of %s %s: %w", kind, client.ObjectKeyFromObject(obj), err))
	}
	return nil
}
