package peer

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/identity"
)

// MigrateTenants brings the tenants that earlier releases of 'stretchctl
// peer' issued on the provider that c reaches to the current names: in each
// tenant namespace that still holds Stretch's Role or RoleBinding
// wellknown.LegacyTenantRoleName, those of wellknown.TenantRoleName are applied,
// then the old ones deleted. The home cluster keeps its token and never goes
// without a grant; nothing is re-peered. A Role or RoleBinding of the old
// name that is not Stretch's is left alone. It is idempotent: run again after
// a failure half-way, it finishes the job.
//
// 'stretchctl install' runs it on every install and upgrade. The tenant
// controller could not do it as well: it would need to create Roles with
// rights it does not hold (creating and deleting RemoteNamespaces), so the
// manager would need the escalate verb on Roles, and a tenant namespace with
// no RemoteNamespace yet would never be reconciled. install runs with the
// provider admin's rights and reaches every tenant namespace, requests or not.
func MigrateTenants(ctx context.Context, c client.Client, out io.Writer) error {
	namespaces := &corev1.NamespaceList{}
	if err := c.List(ctx, namespaces, client.HasLabels{wellknown.HomeClusterIDLabel}); err != nil {
		return fmt.Errorf("listing the tenant namespaces of home clusters (label %s): %w", wellknown.HomeClusterIDLabel, err)
	}
	for _, ns := range namespaces.Items {
		id := ns.Labels[wellknown.HomeClusterIDLabel]
		if identity.ValidateClusterID(id) != nil || ns.Name != peeringv1alpha1.TenantNamespace(id) || !ns.DeletionTimestamp.IsZero() {
			continue // not a tenant namespace, or being revoked
		}
		if _, err := migrateTenant(ctx, c, id, out); err != nil {
			return err
		}
	}
	return nil
}

// migrateTenant replaces, in the tenant namespace of homeClusterID, Stretch's
// Role and RoleBinding of the legacy name with those of requestsRBAC: the new
// ones are applied first, then the old binding and role deleted, each only
// if it is Stretch's and unchanged since read. It reports whether there was
// anything to replace.
func migrateTenant(ctx context.Context, c client.Client, homeClusterID string, out io.Writer) (bool, error) {
	ns := peeringv1alpha1.TenantNamespace(homeClusterID)
	key := client.ObjectKey{Namespace: ns, Name: wellknown.LegacyTenantRoleName}

	binding := &rbacv1.RoleBinding{}
	hasBinding, err := get(ctx, c, key, binding)
	if err != nil {
		return false, err
	}
	role := &rbacv1.Role{}
	hasRole, err := get(ctx, c, key, role)
	if err != nil {
		return false, err
	}
	ourBinding := hasBinding && isLegacyRequestsBinding(binding, homeClusterID)
	ourRole := hasRole && isLegacyRequestsRole(role, homeClusterID)
	if !ourBinding && !ourRole {
		return false, nil
	}

	requests, requestsBinding := requestsRBAC(homeClusterID)
	for _, obj := range []client.Object{requests, requestsBinding} {
		if err := apply.Object(ctx, c, obj); err != nil {
			return false, fmt.Errorf("%w: Role and RoleBinding %s/%s of the earlier release are kept, so the home cluster loses nothing; run the command again", err, ns, wellknown.LegacyTenantRoleName)
		}
	}
	if ourBinding {
		if err := deleteUnchanged(ctx, c, binding, rbacv1.SchemeGroupVersion.WithKind("RoleBinding")); err != nil {
			return false, err
		}
	}
	// A binding of the old name that is not Stretch's may bind the old
	// Role to someone: the Role stays with it.
	if ourRole && (!hasBinding || ourBinding) {
		if err := deleteUnchanged(ctx, c, role, rbacv1.SchemeGroupVersion.WithKind("Role")); err != nil {
			return false, err
		}
	}
	if hasBinding && !ourBinding {
		fmt.Fprintf(out, "! tenant namespace %s: RoleBinding %s is not the one Stretch made (it binds %s %s to %d subjects), so it is left in place with Role %s beside those named %s: delete them once nothing needs them\n",
			ns, binding.Name, binding.RoleRef.Kind, binding.RoleRef.Name, len(binding.Subjects), wellknown.LegacyTenantRoleName, wellknown.TenantRoleName)
		return true, nil
	}
	fmt.Fprintf(out, "✓ tenant namespace %s: Role and RoleBinding %s of an earlier release replaced by %s\n", ns, wellknown.LegacyTenantRoleName, wellknown.TenantRoleName)
	return true, nil
}

// isLegacyRequestsBinding reports whether rb is the RoleBinding an earlier
// release issued under the legacy name: the legacy Role bound to the home
// cluster's ServiceAccount and to nothing else.
func isLegacyRequestsBinding(rb *rbacv1.RoleBinding, homeClusterID string) bool {
	return rb.RoleRef == rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: wellknown.LegacyTenantRoleName} &&
		equality.Semantic.DeepEqual(rb.Subjects, []rbacv1.Subject{tenantSubject(homeClusterID)})
}

// isLegacyRequestsRole reports whether r is the Role an earlier release
// issued under the legacy name: it carries the labels of what was issued to
// that home cluster (its rules changed between releases, its labels never).
func isLegacyRequestsRole(r *rbacv1.Role, homeClusterID string) bool {
	for k, v := range tenantLabels(homeClusterID) {
		if r.Labels[k] != v {
			return false
		}
	}
	return true
}

// get reads key into obj and reports whether it exists.
func get(ctx context.Context, c client.Client, key client.ObjectKey, obj client.Object) (bool, error) {
	err := c.Get(ctx, key, obj)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading %T %s: %w", obj, key, err)
	}
	return true, nil
}

// deleteUnchanged deletes obj as it was read: an object changed or replaced
// since is someone's edit, and the delete fails rather than lose it.
func deleteUnchanged(ctx context.Context, c client.Client, obj client.Object, gvk schema.GroupVersionKind) error {
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	uid, version := obj.GetUID(), obj.GetResourceVersion()
	if _, err := apply.Delete(ctx, c, obj, client.Preconditions{UID: &uid, ResourceVersion: &version}); err != nil {
		return fmt.Errorf("%w: it is replaced by the %s of name %s; run the command again to finish", err, gvk.Kind, wellknown.TenantRoleName)
	}
	return nil
}
