// Package install puts Stretch on a cluster and takes it off again: CRDs, the
// stretch-system namespace, the cluster identity, the controller-manager's
// RBAC and the stretch RuntimeClass.
package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/config"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/objects"
	"stretch.dev/stretch/internal/webhook"
)

const (
	// ManagerName names the controller-manager's ServiceAccount, ClusterRole and binding.
	ManagerName = "stretch-controller-manager"
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

// Install installs or updates Stretch on the cluster c talks to. It is
// idempotent; the cluster ID of an existing identity is kept. Everything that
// could make it fail half-way (inputs, an identity under another name) is
// checked before the first write.
func Install(ctx context.Context, c client.Client, opts Options, out io.Writer) (identity.Identity, error) {
	existing := &corev1.ConfigMap{}
	if err := c.Get(ctx, identity.Key, existing); err != nil {
		if !apierrors.IsNotFound(err) {
			return identity.Identity{}, fmt.Errorf("reading the cluster identity %s: %w", identity.Key, err)
		}
		existing = nil
	}
	id, err := identity.Resolve(existing, opts.ClusterName, opts.ClusterLabels)
	if err != nil {
		return identity.Identity{}, err
	}
	objs, err := manifests(id)
	if err != nil {
		return identity.Identity{}, err
	}

	crds, err := config.CRDs()
	if err != nil {
		return identity.Identity{}, err
	}
	for _, crd := range crds {
		if err := objects.Apply(ctx, c, crd); err != nil {
			return identity.Identity{}, err
		}
	}
	fmt.Fprintf(out, "✓ %d CustomResourceDefinitions applied\n", len(crds))
	if err := waitEstablished(ctx, c, crds, opts.Timeout, out); err != nil {
		return identity.Identity{}, err
	}

	for _, obj := range objs {
		if err := objects.Apply(ctx, c, obj); err != nil {
			return identity.Identity{}, err
		}
	}
	fmt.Fprintf(out, "✓ namespace %s, RBAC for %s and for remote workloads (%s), RuntimeClass %s applied\n", identity.SystemNamespace, ManagerName, peeringv1alpha1.RemoteWorkloadsClusterRole, peeringv1alpha1.RuntimeClassName)

	if err := saveIdentity(ctx, c, existing, id); err != nil {
		return identity.Identity{}, err
	}
	verb := "created"
	if existing != nil {
		verb = "kept"
	}
	fmt.Fprintf(out, "✓ cluster identity %s: name %s, ID %s (%s), labels [%s]\n", identity.Key, id.Name, id.ID, verb, identity.FormatLabels(id.Labels))
	return id, nil
}

// manifests are the objects of an install besides the CRDs and the identity.
func manifests(id identity.Identity) ([]client.Object, error) {
	data, err := config.File("rbac/role.yaml")
	if err != nil {
		return nil, err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		return nil, fmt.Errorf("decoding the embedded ClusterRole: %w", err)
	}
	role.TypeMeta = metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"}
	role.Name = ManagerName
	labels := objects.Labels()
	role.Labels = labels

	ns := &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: identity.SystemNamespace, Labels: labels},
	}
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Namespace: identity.SystemNamespace, Name: ManagerName, Labels: labels},
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: ManagerName, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: ManagerName},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: identity.SystemNamespace, Name: ManagerName}},
	}
	runtimeClass := &nodev1.RuntimeClass{
		TypeMeta:   metav1.TypeMeta{APIVersion: "node.k8s.io/v1", Kind: "RuntimeClass"},
		ObjectMeta: metav1.ObjectMeta{Name: peeringv1alpha1.RuntimeClassName, Labels: labels},
		// No node runs this handler: the pod webhook sends pods of this class to
		// virtual nodes, where the provider's own runtime class applies.
		Handler: peeringv1alpha1.RuntimeClassName,
	}
	return []client.Object{ns, role, sa, binding, RemoteWorkloadsRole(labels), runtimeClass}, nil
}

// RemoteWorkloadsRole is what a home cluster may do in each of its twins on
// this cluster, once the tenant controller binds it there: run pods and the
// objects they need, read their logs and events, exec into them.
func RemoteWorkloadsRole(labels map[string]string) *rbacv1.ClusterRole {
	all := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: peeringv1alpha1.RemoteWorkloadsClusterRole, Labels: labels},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "configmaps", "secrets", "services", "serviceaccounts"}, Verbs: all},
			{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/attach", "pods/portforward", "serviceaccounts/token"}, Verbs: []string{"create", "get"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
}

// saveIdentity creates the identity, or updates its labels, with optimistic
// concurrency so that two installs racing never replace a cluster ID.
func saveIdentity(ctx context.Context, c client.Client, existing *corev1.ConfigMap, id identity.Identity) error {
	want := id.ConfigMap()
	if existing == nil {
		if err := c.Create(ctx, want); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("the cluster identity %s was created by someone else meanwhile: run install again", identity.Key)
			}
			return fmt.Errorf("creating the cluster identity %s: %w", identity.Key, err)
		}
		return nil
	}
	if maps.Equal(existing.Data, want.Data) {
		return nil
	}
	existing.Data = want.Data
	if err := c.Update(ctx, existing); err != nil {
		return fmt.Errorf("updating the cluster identity %s: %w", identity.Key, err)
	}
	return nil
}

func waitEstablished(ctx context.Context, c client.Client, crds []*apiextensionsv1.CustomResourceDefinition, timeout time.Duration, out io.Writer) error {
	if timeout <= 0 {
		timeout = time.Minute
	}
	pending := map[string]bool{}
	for _, crd := range crds {
		pending[crd.Name] = true
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

// Uninstall removes what Install created. It refuses, changing nothing, while
// the cluster still offloads namespaces, peers with providers or hosts twins
// for home clusters: removing the CRDs then would orphan remote workloads.
func Uninstall(ctx context.Context, c client.Client, out io.Writer) error {
	if err := checkUnused(ctx, c); err != nil {
		return err
	}
	objs, err := manifests(identity.Identity{})
	if err != nil {
		return err
	}
	idCM := identity.Identity{}.ConfigMap()
	// Reverse order: the webhook configurations the manager applied go
	// first (a webhook without its manager fails every call), the namespace
	// (with the identity and the webhook certificates in it) last but the CRDs.
	mutating, validating := webhook.Configurations(webhook.Endpoint{}, nil)
	objs = append([]client.Object{idCM}, objs...)
	objs = append(objs, mutating, validating)
	for i := len(objs) - 1; i >= 0; i-- {
		if _, err := objects.Delete(ctx, c, objs[i]); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "✓ webhook configurations, RuntimeClass %s, RBAC for %s, namespace %s and the cluster identity deleted\n", peeringv1alpha1.RuntimeClassName, ManagerName, identity.SystemNamespace)
	crds, err := config.CRDs()
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if _, err := objects.Delete(ctx, c, crd); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "✓ %d CustomResourceDefinitions deleted\n", len(crds))
	return nil
}

func checkUnused(ctx context.Context, c client.Client) error {
	var problems []string

	offloadings := &offloadingv1alpha1.NamespaceOffloadingList{}
	if err := objects.List(ctx, c, offloadings); err != nil {
		return err
	}
	if ns := namespacesOf(offloadings.Items, func(o offloadingv1alpha1.NamespaceOffloading) string { return o.Namespace }); len(ns) > 0 {
		problems = append(problems, fmt.Sprintf("namespaces %s are offloaded: run 'stretchctl unoffload namespace %s' first", strings.Join(ns, ", "), strings.Join(ns, " ")))
	}

	peers := &peeringv1alpha1.RemoteClusterList{}
	if err := objects.List(ctx, c, peers); err != nil {
		return err
	}
	if names := namespacesOf(peers.Items, func(p peeringv1alpha1.RemoteCluster) string { return p.Name }); len(names) > 0 {
		problems = append(problems, fmt.Sprintf("this cluster peers with %s: run 'stretchctl unpeer' for each first", strings.Join(names, ", ")))
	}

	twins := &peeringv1alpha1.RemoteNamespaceList{}
	if err := objects.List(ctx, c, twins); err != nil {
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
