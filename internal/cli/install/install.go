// Package install puts Stretch on a cluster and takes it off again: the
// chart (charts/stretch) as a Helm release with the manager's Deployment, or,
// for a manager outside the cluster, the chart's other objects applied
// without a release; and the cluster identity, which no release owns, so that
// the cluster ID outlives them all.
package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/charts"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/cli/peer"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/webhook"
)

// Options of Install.
type Options struct {
	// ClusterName is this cluster's name in the identity.
	ClusterName string
	// ClusterLabels are this cluster's labels in the identity.
	ClusterLabels map[string]string
	// Timeout bounds the wait for the CRDs to be established.
	Timeout time.Duration
}

// Install installs or updates Stretch on the cluster c talks to, for a
// manager that runs outside the cluster: the chart rendered with
// manager.enabled=false (CRDs, RBAC, RuntimeClass) is applied, with no Helm
// release, and the cluster identity made; what earlier releases issued to
// home clusters is renamed (migrateTenants). It is idempotent; the cluster ID
// of an existing identity is kept. Everything that could make it fail
// half-way (inputs, an identity under another name) is checked before the
// first write.
func Install(ctx context.Context, c client.Client, opts Options, out io.Writer) (identity.Identity, error) {
	if err := identity.Check(ctx, c, opts.ClusterName); err != nil {
		return identity.Identity{}, err
	}
	crds, objs, err := outOfClusterObjects()
	if err != nil {
		return identity.Identity{}, err
	}
	for _, crd := range crds {
		if err := apply.Object(ctx, c, crd); err != nil {
			return identity.Identity{}, err
		}
	}
	fmt.Fprintf(out, "✓ %d CustomResourceDefinitions applied\n", len(crds))
	if err := waitEstablished(ctx, c, crds, opts.Timeout, out); err != nil {
		return identity.Identity{}, err
	}
	if err := ensureNamespace(ctx, c); err != nil {
		return identity.Identity{}, err
	}
	for _, obj := range objs {
		if err := apply.Object(ctx, c, obj); err != nil {
			return identity.Identity{}, err
		}
	}
	fmt.Fprintf(out, "✓ namespace %s, RBAC for %s and for remote workloads (%s), RuntimeClass %s, StorageClass %s applied\n", wellknown.SystemNamespace, wellknown.ManagerName, wellknown.RemoteWorkloadsClusterRole, wellknown.RuntimeClassName, wellknown.StorageClassName)

	id, created, err := identity.Ensure(ctx, c, opts.ClusterName, opts.ClusterLabels)
	if err != nil {
		return identity.Identity{}, err
	}
	verb := "kept"
	if created {
		verb = "created"
	}
	fmt.Fprintf(out, "✓ cluster identity %s: name %s, ID %s (%s), labels [%s]\n", identity.Key, id.Name, id.ID, verb, identity.FormatLabels(id.Labels))
	if err := migrateTenants(ctx, c, out); err != nil {
		return id, err
	}
	return id, nil
}

// migrateTenants renames what earlier releases issued to the home clusters
// of this provider, once the new release's objects are in place. It is here
// rather than in the tenant controller because install runs on every
// upgrade with the admin's rights and reaches every tenant, while the
// controller would need the escalate verb on Roles to write them and never
// sees a tenant without RemoteNamespaces (peer.MigrateTenants says more).
func migrateTenants(ctx context.Context, c client.Client, out io.Writer) error {
	if err := peer.MigrateTenants(ctx, c, out); err != nil {
		return fmt.Errorf("renaming the RBAC of earlier peerings: %w", err)
	}
	return nil
}

// outOfClusterObjects are the chart's objects without the manager, the
// CustomResourceDefinitions apart: they must be established before the rest.
func outOfClusterObjects() (crds, rest []*unstructured.Unstructured, err error) {
	objs, err := charts.Render(map[string]any{"manager": map[string]any{"enabled": false}}, wellknown.SystemNamespace)
	if err != nil {
		return nil, nil, err
	}
	for _, obj := range objs {
		if obj.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, obj)
		} else {
			rest = append(rest, obj)
		}
	}
	return crds, rest, nil
}

// RemoteWorkloadsRole is what a home cluster may do in each of its twins on
// this cluster, once the tenant controller binds it there, as the chart
// grants it (templates/rbac.yaml).
func RemoteWorkloadsRole() (*rbacv1.ClusterRole, error) {
	_, objs, err := outOfClusterObjects()
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		if obj.GetKind() == "ClusterRole" && obj.GetName() == wellknown.RemoteWorkloadsClusterRole {
			role := &rbacv1.ClusterRole{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, role); err != nil {
				return nil, fmt.Errorf("decoding ClusterRole %s of the chart: %w", obj.GetName(), err)
			}
			return role, nil
		}
	}
	return nil, fmt.Errorf("the chart has no ClusterRole %s", wellknown.RemoteWorkloadsClusterRole)
}

func waitEstablished(ctx context.Context, c client.Client, crds []*unstructured.Unstructured, timeout time.Duration, out io.Writer) error {
	if timeout <= 0 {
		timeout = time.Minute
	}
	pending := map[string]bool{}
	for _, crd := range crds {
		pending[crd.GetName()] = true
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for name := range pending {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					delete(pending, name)
				}
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("CustomResourceDefinitions %s not established after %s: %w: check the API server's logs", strings.Join(sortedKeys(pending), ", "), timeout, err)
	}
	fmt.Fprintf(out, "✓ CustomResourceDefinitions established\n")
	return nil
}

// Uninstall removes what Install or InstallChart created: the Helm release,
// when there is one (getter reaches the cluster for Helm), then the objects
// an out-of-cluster install applies, the webhook configurations the manager
// registered, the identity, the namespace and the CRDs. It refuses, changing
// nothing, while the cluster still offloads namespaces, peers with providers
// or hosts twins for home clusters: removing the CRDs then would orphan
// remote workloads.
func Uninstall(ctx context.Context, getter genericclioptions.RESTClientGetter, c client.Client, timeout time.Duration, out io.Writer) error {
	if err := checkUnused(ctx, c); err != nil {
		return err
	}
	if getter != nil {
		if err := uninstallRelease(getter, timeout, out); err != nil {
			return err
		}
	}
	crds, rest, err := outOfClusterObjects()
	if err != nil {
		return err
	}
	// Reverse order: the webhook configurations the manager applied go
	// first (a webhook without its manager fails every call), the namespace
	// (with the identity, the webhook certificates and Helm's records in it)
	// last but the CRDs.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wellknown.SystemNamespace}}
	objs := []client.Object{ns, identity.Identity{}.ConfigMap()}
	for _, obj := range rest {
		objs = append(objs, obj)
	}
	objs = append(objs, webhook.Configurations(webhook.Endpoint{}, nil).Objects()...)
	for i := len(objs) - 1; i >= 0; i-- {
		if _, err := apply.Delete(ctx, c, objs[i]); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "✓ webhook configurations, RuntimeClass %s, StorageClass %s, RBAC for %s, namespace %s and the cluster identity deleted\n", wellknown.RuntimeClassName, wellknown.StorageClassName, wellknown.ManagerName, wellknown.SystemNamespace)
	for _, crd := range crds {
		if _, err := apply.Delete(ctx, c, crd); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "✓ %d CustomResourceDefinitions deleted\n", len(crds))
	return nil
}

func checkUnused(ctx context.Context, c client.Client) error {
	var problems []string

	offloadings := &offloadingv1alpha1.NamespaceOffloadingList{}
	if err := apply.List(ctx, c, offloadings); err != nil {
		return err
	}
	if ns := namespacesOf(offloadings.Items, func(o offloadingv1alpha1.NamespaceOffloading) string { return o.Namespace }); len(ns) > 0 {
		problems = append(problems, fmt.Sprintf("namespaces %s are offloaded: run 'stretchctl unoffload namespace %s' first", strings.Join(ns, ", "), strings.Join(ns, " ")))
	}

	peers := &peeringv1alpha1.RemoteClusterList{}
	if err := apply.List(ctx, c, peers); err != nil {
		return err
	}
	if names := namespacesOf(peers.Items, func(p peeringv1alpha1.RemoteCluster) string { return p.Name }); len(names) > 0 {
		problems = append(problems, fmt.Sprintf("this cluster peers with %s: run 'stretchctl unpeer' for each first", strings.Join(names, ", ")))
	}

	twins := &peeringv1alpha1.RemoteNamespaceList{}
	if err := apply.List(ctx, c, twins); err != nil {
		return err
	}
	if ns := namespacesOf(twins.Items, func(r peeringv1alpha1.RemoteNamespace) string { return r.Spec.RemoteNamespaceName }); len(ns) > 0 {
		problems = append(problems, fmt.Sprintf("this cluster hosts twin namespaces %s for home clusters: those home clusters must unoffload them first", strings.Join(ns, ", ")))
	}

	if len(problems) > 0 {
		return errors.New("refusing to uninstall, nothing was changed: " + strings.Join(problems, "; "))
	}
	return nil
}

func namespacesOf[T any](items []T, name func(T) string) []string {
	set := map[string]bool{}
	for _, it := range items {
		set[name(it)] = true
	}
	return sortedKeys(set)
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
