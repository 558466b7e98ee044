// Package apply is how Stretch writes the objects it manages outside
// reconcilers (stretchctl's verbs, the webhook configurations), the same
// way everywhere: server-side apply under a named field manager; with it,
// the delete that tolerates absence and the list that tolerates a cluster
// without Stretch's CRDs, which the same callers need.
package apply

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// FieldManager owns what stretchctl applies.
	FieldManager = "stretchctl"
	// PartOfLabel marks every object stretchctl creates; its value is PartOf.
	PartOfLabel = "app.kubernetes.io/part-of"
	// PartOf is the value of PartOfLabel.
	PartOf = "stretch"
)

// Object server-side applies the desired fields of obj (not its status). obj
// must carry its apiVersion and kind. Fields that are empty in obj (and
// omitted when encoded) are left to their other managers.
func Object(ctx context.Context, c client.Client, obj client.Object) error {
	return As(ctx, c, FieldManager, obj)
}

// As is Object under another field manager, for what a controller
// rather than stretchctl owns.
func As(ctx context.Context, c client.Client, fieldManager string, obj client.Object) error {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", Describe(obj), err)
	}
	delete(u, "status")
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u})
	if err := c.Apply(ctx, ac, client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s: %w", Describe(obj), err)
	}
	return nil
}

// Delete deletes obj, which must carry its kind; it reports whether obj
// existed. An absent object (or kind) is not an error.
func Delete(ctx context.Context, c client.Client, obj client.Object, opts ...client.DeleteOption) (bool, error) {
	err := c.Delete(ctx, obj, opts...)
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("deleting %s: %w", Describe(obj), err)
	}
	return true, nil
}

// List lists objects of a Stretch kind; a cluster without the CRD has none.
func List(ctx context.Context, c client.Reader, l client.ObjectList, opts ...client.ListOption) error {
	err := c.List(ctx, l, opts...)
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %T: %w", l, err)
	}
	return nil
}

// Labels returns PartOfLabel plus the given key/value pairs.
func Labels(kv ...string) map[string]string {
	labels := map[string]string{PartOfLabel: PartOf}
	for i := 0; i+1 < len(kv); i += 2 {
		labels[kv[i]] = kv[i+1]
	}
	return labels
}

// Describe names an object for a message: "Kind namespace/name", or
// "Kind name" when cluster-scoped. obj must carry its kind.
func Describe(obj client.Object) string {
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if obj.GetNamespace() == "" {
		return kind + " " + obj.GetName()
	}
	return kind + " " + obj.GetNamespace() + "/" + obj.GetName()
}
