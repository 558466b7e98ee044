package peer

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
)

// UnpeerOptions say which peering to remove and how.
type UnpeerOptions struct {
	// Name is the provider's name: the RemoteCluster's.
	Name string
	// Provider is an admin client of the provider; nil leaves the provider
	// side in place and says how to remove it.
	Provider client.Client
	// Force deletes the twin namespace requests of offloaded namespaces, and
	// the RemoteCluster's finalizer when no home controller removes it.
	Force bool
	// Timeout bounds the wait for the home controller to release the RemoteCluster.
	Timeout time.Duration
}

// Unpeer removes a peering from the home cluster home: the RemoteCluster
// (once the home controller released it) and the kubeconfig Secret, then,
// with opts.Provider, the provider side (Revoke). It refuses, changing
// nothing, while namespaces are offloaded to the provider, unless opts.Force.
func Unpeer(ctx context.Context, home client.Client, opts UnpeerOptions, out io.Writer) error {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	self, err := identity.Load(ctx, home)
	if err != nil {
		return fmt.Errorf("home cluster: %w", err)
	}
	rc := &peeringv1alpha1.RemoteCluster{}
	if err := home.Get(ctx, client.ObjectKey{Name: opts.Name}, rc); err != nil {
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading RemoteCluster %s: %w", opts.Name, err)
		}
		rc = nil
	}
	secret := &corev1.Secret{}
	if err := home.Get(ctx, client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: peering.SecretName(opts.Name)}, secret); err != nil {
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading Secret %s/%s: %w", wellknown.SystemNamespace, peering.SecretName(opts.Name), err)
		}
		secret = nil
	}
	if rc == nil && secret == nil && opts.Provider == nil {
		return fmt.Errorf("this cluster does not peer with %q: no RemoteCluster %s ('stretchctl status' lists the peers)", opts.Name, opts.Name)
	}
	if opts.Provider != nil {
		if err := checkProvider(ctx, opts.Provider, opts.Name, rc); err != nil {
			return err
		}
	}

	// Who still uses the peering: home namespaces offloaded there, and
	// twin requests in the tenant namespace on the provider.
	remote, through := opts.Provider, "the provider's kubeconfig"
	var remoteErr error
	if remote == nil && secret != nil {
		through = fmt.Sprintf("the credentials in Secret %s/%s", secret.Namespace, secret.Name)
		remote, remoteErr = factory.IssuedClient(secret, peering.KubeconfigKey)
	}
	offloaded, err := offloadedTo(ctx, home, opts.Name)
	if err != nil {
		return err
	}
	var twins []peeringv1alpha1.RemoteNamespace
	if remote != nil {
		twins, remoteErr = twinRequests(ctx, remote, self.ID)
	}
	if remoteErr != nil {
		fmt.Fprintf(out, "! cannot list the twin namespace requests on %q through %s: %v\n", opts.Name, through, remoteErr)
	}
	if (len(offloaded) > 0 || len(twins) > 0) && !opts.Force {
		return inUseError(opts.Name, self.ID, offloaded, twins)
	}

	if opts.Force && (len(offloaded) > 0 || len(twins) > 0) {
		switch {
		case len(twins) > 0:
			// Unoffloading lands later: for now deleting the requests makes the
			// provider delete the twins with everything in them.
			if err := deleteRequests(ctx, remote, twins); err != nil {
				return err
			}
			fmt.Fprintf(out, "! --force: deleted the twin namespace requests %s in %s on %q through %s: the provider deletes those twins with everything in them\n",
				strings.Join(twinNames(twins), ", "), peeringv1alpha1.TenantNamespace(self.ID), opts.Name, through)
		case remote == nil || remoteErr != nil:
			fmt.Fprintf(out, "! --force: the twin namespace requests on %q could not be deleted; they go with 'stretchctl peer revoke --force' on the provider\n", opts.Name)
		}
		if len(offloaded) > 0 {
			fmt.Fprintf(out, "! --force: namespaces %s were offloaded to %q; their NamespaceOffloadings stop selecting it once the peering is gone\n", strings.Join(offloaded, ", "), opts.Name)
		}
	}

	if rc != nil {
		if err := deleteRemoteCluster(ctx, home, rc, opts, out); err != nil {
			return err
		}
	}
	if secret != nil {
		secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		if _, err := apply.Delete(ctx, home, secret); err != nil {
			return err
		}
		fmt.Fprintf(out, "✓ Secret %s/%s deleted\n", secret.Namespace, secret.Name)
	}

	if opts.Provider != nil {
		return Revoke(ctx, opts.Provider, self.ID, opts.Force, out)
	}
	left := tenantObjects(self.ID)
	descs := make([]string, len(left))
	for i, obj := range left {
		descs[i] = apply.Describe(obj)
	}
	fmt.Fprintf(out, "! the provider %q still holds what it issued to this cluster, and the token stays valid until they are deleted: %s.\n  Run on the provider: stretchctl peer revoke --kubeconfig PROVIDER --home-cluster-id %s\n",
		opts.Name, strings.Join(descs, ", "), self.ID)
	return nil
}

// checkProvider makes sure the provider kubeconfig points at the peer being
// removed, so that another cluster's tenant is never revoked by mistake.
func checkProvider(ctx context.Context, provider client.Client, name string, rc *peeringv1alpha1.RemoteCluster) error {
	remote, err := identity.Load(ctx, provider)
	if err != nil {
		return fmt.Errorf("cannot check that --remote-kubeconfig points at %q: %w", name, err)
	}
	if rc != nil && remote.ID != rc.Spec.ClusterID {
		return fmt.Errorf("--remote-kubeconfig points at cluster %q (ID %s), but RemoteCluster %s is cluster ID %s: pass the kubeconfig of %s; nothing was changed",
			remote.Name, remote.ID, name, rc.Spec.ClusterID, name)
	}
	if rc == nil && remote.Name != name {
		return fmt.Errorf("--remote-kubeconfig points at cluster %q, not %q: pass the kubeconfig of %s; nothing was changed", remote.Name, name, name)
	}
	return nil
}

// offloadedTo lists the home namespaces whose NamespaceOffloading reports on
// provider name.
func offloadedTo(ctx context.Context, home client.Reader, name string) ([]string, error) {
	offloadings := &offloadingv1alpha1.NamespaceOffloadingList{}
	if err := apply.List(ctx, home, offloadings); err != nil {
		return nil, err
	}
	var namespaces []string
	for _, o := range offloadings.Items {
		if _, ok := o.Status.RemoteNamespacesConditions[name]; ok {
			namespaces = append(namespaces, o.Namespace)
		}
	}
	slices.Sort(namespaces)
	return namespaces, nil
}

// twinRequests lists the RemoteNamespaces of home cluster homeClusterID.
func twinRequests(ctx context.Context, provider client.Reader, homeClusterID string) ([]peeringv1alpha1.RemoteNamespace, error) {
	list := &peeringv1alpha1.RemoteNamespaceList{}
	if err := apply.List(ctx, provider, list, client.InNamespace(peeringv1alpha1.TenantNamespace(homeClusterID))); err != nil {
		return nil, err
	}
	return list.Items, nil
}

func deleteRequests(ctx context.Context, provider client.Client, twins []peeringv1alpha1.RemoteNamespace) error {
	for i := range twins {
		rn := &twins[i]
		rn.SetGroupVersionKind(peeringv1alpha1.GroupVersion.WithKind("RemoteNamespace"))
		if _, err := apply.Delete(ctx, provider, rn); err != nil {
			return err
		}
	}
	return nil
}

func twinNames(twins []peeringv1alpha1.RemoteNamespace) []string {
	names := make([]string, len(twins))
	for i, rn := range twins {
		names[i] = rn.Spec.RemoteNamespaceName
	}
	slices.Sort(names)
	return names
}

func inUseError(name, homeClusterID string, offloaded []string, twins []peeringv1alpha1.RemoteNamespace) error {
	var problems []string
	if len(offloaded) > 0 {
		problems = append(problems, fmt.Sprintf("namespaces %s are offloaded to %q: run 'stretchctl unoffload namespace %s' first",
			strings.Join(offloaded, ", "), name, strings.Join(offloaded, " ")))
	}
	if len(twins) > 0 {
		problems = append(problems, fmt.Sprintf("%q hosts twin namespaces %s for this cluster (RemoteNamespaces in %s)",
			name, strings.Join(twinNames(twins), ", "), peeringv1alpha1.TenantNamespace(homeClusterID)))
	}
	return fmt.Errorf("refusing to unpeer %q, nothing was changed: %s; or pass --force to delete the twin namespace requests now (the provider deletes the twins with everything in them)",
		name, strings.Join(problems, "; "))
}

// deleteRemoteCluster deletes the RemoteCluster and waits for the home
// controller to release it; with opts.Force, a finalizer nobody removes
// within the timeout is removed, with the virtual node it guarded.
func deleteRemoteCluster(ctx context.Context, home client.Client, rc *peeringv1alpha1.RemoteCluster, opts UnpeerOptions, out io.Writer) error {
	rc.SetGroupVersionKind(peeringv1alpha1.GroupVersion.WithKind("RemoteCluster"))
	if rc.DeletionTimestamp.IsZero() {
		if _, err := apply.Delete(ctx, home, rc); err != nil {
			return err
		}
	}
	node := peeringv1alpha1.VirtualNodeName(rc.Name)
	fmt.Fprintf(out, "… RemoteCluster %s deleted; waiting up to %s for the home controller to remove virtual node %s\n", rc.Name, opts.Timeout, node)
	finalizers, err := waitGone(ctx, home, rc, opts.Timeout)
	if err != nil {
		return err
	}
	if len(finalizers) == 0 {
		fmt.Fprintf(out, "✓ RemoteCluster %s removed\n", rc.Name)
		return nil
	}
	if !opts.Force || !slices.Contains(finalizers, wellknown.RemoteClusterFinalizer) {
		return fmt.Errorf("RemoteCluster %s is still there after %s, held by finalizers %s: the home controller (stretch-controller-manager) removes virtual node %s, then its finalizer: check that it runs, or run 'stretchctl unpeer %s --force' to remove the finalizer",
			rc.Name, opts.Timeout, strings.Join(finalizers, ", "), node, rc.Name)
	}

	// No controller released it: do its part, the virtual node included.
	current := &peeringv1alpha1.RemoteCluster{}
	if err := home.Get(ctx, client.ObjectKeyFromObject(rc), current); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("reading RemoteCluster %s: %w", rc.Name, err)
	}
	patch := client.MergeFromWithOptions(current.DeepCopy(), client.MergeFromWithOptimisticLock{})
	current.Finalizers = slices.DeleteFunc(current.Finalizers, func(f string) bool { return f == wellknown.RemoteClusterFinalizer })
	if err := home.Patch(ctx, current, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("removing finalizer %s of RemoteCluster %s: %w", wellknown.RemoteClusterFinalizer, rc.Name, err)
	}
	nodeGone, err := deleteVirtualNode(ctx, home, rc.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "! --force: RemoteCluster %s was still held by finalizer %s after %s (is the home controller running?): removed it%s\n",
		rc.Name, wellknown.RemoteClusterFinalizer, opts.Timeout, nodeGone)
	if finalizers, err = waitGone(ctx, home, rc, opts.Timeout); err != nil {
		return err
	}
	if len(finalizers) > 0 {
		return fmt.Errorf("RemoteCluster %s is still held by finalizers %s, which are not Stretch's: remove them with kubectl once their owner is done", rc.Name, strings.Join(finalizers, ", "))
	}
	return nil
}

// deleteVirtualNode deletes the virtual node of provider name, if it is one.
func deleteVirtualNode(ctx context.Context, home client.Client, name string) (string, error) {
	node := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}}
	if err := home.Get(ctx, client.ObjectKey{Name: peeringv1alpha1.VirtualNodeName(name)}, node); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("reading virtual node %s: %w", peeringv1alpha1.VirtualNodeName(name), err)
	}
	if node.Labels[wellknown.VirtualNodeTypeLabel] != wellknown.VirtualNodeTypeValue || node.Labels[wellknown.RemoteClusterNameLabel] != name {
		return "", nil
	}
	node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	if _, err := apply.Delete(ctx, home, node, client.Preconditions{UID: &node.UID}); err != nil {
		return "", err
	}
	return ", and virtual node " + node.Name, nil
}

// waitGone waits for obj to disappear; on timeout it returns the finalizers
// that hold it.
func waitGone(ctx context.Context, c client.Client, obj client.Object, timeout time.Duration) ([]string, error) {
	var finalizers []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		current := obj.DeepCopyObject().(client.Object)
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), current)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, nil // transient: retried until the timeout
		}
		finalizers = current.GetFinalizers()
		return false, nil
	})
	switch {
	case err == nil:
		return nil, nil
	case wait.Interrupted(err) && ctx.Err() == nil:
		if len(finalizers) == 0 {
			finalizers = []string{"<unknown: the API server did not answer>"}
		}
		return finalizers, nil
	default:
		return nil, fmt.Errorf("waiting for %s to be deleted: %w", apply.Describe(obj), err)
	}
}

// Revoke removes, from the provider that c reaches, everything issued to home
// cluster homeClusterID: its ClusterRoleBinding, its Role and RoleBinding in
// stretch-system, its ServiceAccount (the token stops working at once) and its
// tenant namespace. It refuses, changing nothing, while that home cluster has
// twin namespace requests here, unless force deletes them.
func Revoke(ctx context.Context, c client.Client, homeClusterID string, force bool, out io.Writer) error {
	if err := identity.ValidateClusterID(homeClusterID); err != nil {
		return fmt.Errorf("home cluster ID: %w", err)
	}
	ns := peeringv1alpha1.TenantNamespace(homeClusterID)
	twins, err := twinRequests(ctx, c, homeClusterID)
	if err != nil {
		return err
	}
	if len(twins) > 0 {
		if !force {
			return fmt.Errorf("refusing to revoke home cluster %s, nothing was changed: it has twin namespaces %s here (RemoteNamespaces in %s): unoffload them on the home cluster first, or pass --force to delete the requests (the twins go with everything in them)",
				homeClusterID, strings.Join(twinNames(twins), ", "), ns)
		}
		if err := deleteRequests(ctx, c, twins); err != nil {
			return err
		}
		fmt.Fprintf(out, "! --force: deleted the twin namespace requests %s in %s: their twins go with everything in them\n", strings.Join(twinNames(twins), ", "), ns)
	}

	tenant := tenantObjects(homeClusterID)
	var deleted []string
	for i := len(tenant) - 1; i >= 0; i-- {
		obj := tenant[i]
		current := obj.DeepCopyObject().(client.Object)
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), current); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("reading %s: %w", apply.Describe(obj), err)
		}
		if !current.GetDeletionTimestamp().IsZero() {
			continue // deleted before, e.g. a namespace still terminating
		}
		existed, err := apply.Delete(ctx, c, obj, client.Preconditions{UID: ptr.To(current.GetUID())})
		if err != nil {
			return err
		}
		if existed {
			deleted = append(deleted, apply.Describe(obj))
		}
	}
	if len(deleted) == 0 {
		fmt.Fprintf(out, "✓ nothing to revoke: this cluster holds nothing issued to home cluster %s\n", homeClusterID)
		return nil
	}
	// The API server may still honour the token for the few seconds it caches
	// successful authentications (10s by default).
	fmt.Fprintf(out, "✓ deleted %s: the token issued to home cluster %s is revoked (the API server stops accepting it within seconds)\n", strings.Join(deleted, ", "), homeClusterID)
	return nil
}
