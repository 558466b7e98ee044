package remotecluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
	"stretch.dev/stretch/internal/remote"
)

// probeTimeout bounds one probe of a provider, waiting for its first node
// list included.
const probeTimeout = remote.DefaultTimeout

// observation is what one probe of a provider found.
type observation struct {
	// failure is why the probe failed; nil when the provider answered as
	// expected.
	failure *failure
	// identity is the provider's identity, once read and matching.
	identity *identity.Identity
	// nodes are the provider's nodes, once listed.
	nodes []corev1.Node
}

// probe reads the kubeconfig Secret and asks the provider who it is and what
// nodes it has. Whatever goes wrong on the provider's side is an observation;
// the error is for the home cluster's own failures.
func (r *Reconciler) probe(ctx context.Context, rc *peeringv1alpha1.RemoteCluster) (observation, error) {
	// The registry is keyed by cluster ID: a second RemoteCluster for the same
	// provider would replace or remove the first one's peer.
	owner, err := r.clusterIDOwner(ctx, rc.Spec.ClusterID)
	if err != nil {
		return observation{}, err
	}
	if owner != rc.Name {
		return observation{failure: newFailure(ReasonDuplicateClusterID, rc, owner)}, nil
	}
	kubeconfig, f, err := r.readKubeconfig(ctx, rc)
	if err != nil {
		return observation{}, err
	}
	if f != nil {
		// No credentials: nothing may use the old ones any more.
		r.Registry.Remove(rc.Spec.ClusterID)
		return observation{failure: f}, nil
	}
	peer, err := r.Registry.Ensure(ctx, rc.Spec.ClusterID, kubeconfig)
	if errors.Is(err, remote.ErrInvalidKubeconfig) {
		return observation{failure: newFailure(ReasonKubeconfigInvalid, rc, fmt.Sprintf("key %q is not a usable kubeconfig: %v", secretKey(rc), err))}, nil
	}
	if err != nil {
		return observation{}, fmt.Errorf("connecting to provider %s: %w", rc.Name, err)
	}

	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	obs := probePeer(ctx, rc, peer)
	if obs.failure != nil {
		peer.SetHealth(obs.failure)
	} else {
		peer.SetHealth(nil)
	}
	return obs, nil
}

// probePeer checks that the provider answers, accepts the credentials, is
// the cluster spec.clusterID names, and lists its nodes.
func probePeer(ctx context.Context, rc *peeringv1alpha1.RemoteCluster, peer *remote.Peer) observation {
	cm := &corev1.ConfigMap{}
	if err := peer.Client.Get(ctx, identity.Key, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return observation{failure: newFailure(ReasonProviderNotInstalled, rc, "")}
		}
		return observation{failure: classify(rc, fmt.Errorf("reading ConfigMap %s: %w", identity.Key, err))}
	}
	id, err := identity.FromConfigMap(cm)
	if err != nil {
		return observation{failure: newFailure(ReasonProviderIdentityInvalid, rc, err.Error())}
	}
	if id.ID != rc.Spec.ClusterID {
		return observation{failure: newFailure(ReasonClusterIDMismatch, rc, fmt.Sprintf("cluster %q with ID %s", id.Name, id.ID))}
	}
	nodes, err := peer.ListNodes(ctx)
	if err != nil {
		return observation{failure: classify(rc, err), identity: &id}
	}
	return observation{identity: &id, nodes: nodes}
}

// classify turns an error of a request to the provider into a failure.
func classify(rc *peeringv1alpha1.RemoteCluster, err error) *failure {
	switch {
	case apierrors.IsUnauthorized(err):
		return newFailure(ReasonUnauthorized, rc, err.Error())
	case apierrors.IsForbidden(err):
		return newFailure(ReasonForbidden, rc, err.Error())
	default:
		// Refused, timed out, reset, DNS, TLS, 5xx: the provider's API server
		// is not there for us, whatever the cause.
		return newFailure(ReasonUnreachable, rc, err.Error())
	}
}

// newFailure builds the failure of reason with a message that says what
// happened and what to do; detail completes it.
func newFailure(reason string, rc *peeringv1alpha1.RemoteCluster, detail string) *failure {
	secret := secretName(rc)
	repeer := fmt.Sprintf("re-run 'stretchctl peer' for provider %s", rc.Name)
	f := &failure{reason: reason, progress: authenticated}
	switch reason {
	case ReasonKubeconfigSecretNotFound:
		f.progress = notReached
		f.message = fmt.Sprintf("Secret %s, which holds the kubeconfig provider %s issued, does not exist: %s to issue new credentials", secret, rc.Name, repeer)
	case ReasonKubeconfigInvalid:
		f.progress = notReached
		f.message = fmt.Sprintf("Secret %s: %s; %s to issue new credentials", secret, detail, repeer)
	case ReasonUnreachable:
		f.progress = notReached
		f.message = fmt.Sprintf("cannot reach the API server of provider %s: %s; check that it runs and that this cluster can reach the server in the kubeconfig of Secret %s (retrying)", rc.Name, detail, secret)
	case ReasonClusterIDMismatch:
		f.progress = notReached
		f.message = fmt.Sprintf("the kubeconfig in Secret %s leads to %s, not to the provider with the ID in spec.clusterID (%s): %s with the kubeconfig of that provider; if the provider was reinstalled, it has a new ID: delete this RemoteCluster and peer again", secret, detail, rc.Spec.ClusterID, repeer)
	case ReasonUnauthorized:
		f.progress = answered
		f.message = fmt.Sprintf("provider %s rejects the credentials in Secret %s: they were revoked or expired; %s to issue new ones (%s)", rc.Name, secret, repeer, detail)
	case ReasonForbidden:
		f.message = fmt.Sprintf("provider %s accepts the credentials in Secret %s but denies a request the peering needs: %s; %s to restore the peering's RBAC on the provider", rc.Name, secret, detail, repeer)
	case ReasonProviderNotInstalled:
		f.message = fmt.Sprintf("provider %s answers but has no cluster identity (ConfigMap %s): run 'stretchctl install' on it, then peer again", rc.Name, identity.Key)
	case ReasonDuplicateClusterID:
		f.progress = notReached
		f.message = fmt.Sprintf("RemoteCluster %s already peers with the provider of cluster ID %s, and a provider has one RemoteCluster: delete RemoteCluster %s (stretchctl unpeer %s)", detail, rc.Spec.ClusterID, rc.Name, rc.Name)
	case ReasonProviderIdentityInvalid:
		f.message = fmt.Sprintf("provider %s: %s", rc.Name, detail)
	default:
		f.message = detail
	}
	return f
}

// clusterIDOwner returns the name of the RemoteCluster that holds the peer of
// clusterID: the oldest of those that name it, not being deleted; "" if none.
func (r *Reconciler) clusterIDOwner(ctx context.Context, clusterID string) (string, error) {
	list := &peeringv1alpha1.RemoteClusterList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{clusterIDField: clusterID}); err != nil {
		return "", fmt.Errorf("listing RemoteClusters of cluster ID %s: %w", clusterID, err)
	}
	var owner *peeringv1alpha1.RemoteCluster
	for i := range list.Items {
		rc := &list.Items[i]
		if !rc.DeletionTimestamp.IsZero() {
			continue
		}
		if owner == nil || rc.CreationTimestamp.Before(&owner.CreationTimestamp) ||
			(rc.CreationTimestamp.Equal(&owner.CreationTimestamp) && rc.Name < owner.Name) {
			owner = rc
		}
	}
	if owner == nil {
		return "", nil
	}
	return owner.Name, nil
}

// readKubeconfig returns the kubeconfig of the Secret spec.kubeconfigSecretRef
// names, or the failure that says why there is none.
func (r *Reconciler) readKubeconfig(ctx context.Context, rc *peeringv1alpha1.RemoteCluster) ([]byte, *failure, error) {
	ref := rc.Spec.KubeconfigSecretRef
	secret := &corev1.Secret{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, newFailure(ReasonKubeconfigSecretNotFound, rc, ""), nil
		}
		return nil, nil, fmt.Errorf("reading Secret %s: %w", secretName(rc), err)
	}
	data := secret.Data[secretKey(rc)]
	if len(data) == 0 {
		return nil, newFailure(ReasonKubeconfigInvalid, rc, fmt.Sprintf("key %q is missing or empty", secretKey(rc))), nil
	}
	return data, nil, nil
}

func secretName(rc *peeringv1alpha1.RemoteCluster) string {
	return rc.Spec.KubeconfigSecretRef.Namespace + "/" + rc.Spec.KubeconfigSecretRef.Name
}

func secretKey(rc *peeringv1alpha1.RemoteCluster) string {
	return peering.KubeconfigKeyOf(rc.Spec.KubeconfigSecretRef)
}

// capacityResources are the resources a virtual node advertises.
var capacityResources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage}

// capacityOf sums the allocatable resources of the provider's nodes that can
// take pods: Ready, schedulable, and not virtual nodes themselves (a provider
// that is also a home cluster must not lend what it borrows).
func capacityOf(nodes []corev1.Node) corev1.ResourceList {
	sum := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(0, resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(0, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(0, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(0, resource.BinarySI),
	}
	for i := range nodes {
		if !usable(&nodes[i]) {
			continue
		}
		for _, name := range capacityResources {
			if q, ok := nodes[i].Status.Allocatable[name]; ok {
				s := sum[name]
				s.Add(q)
				sum[name] = s
			}
		}
	}
	return sum
}

// capped returns capacity with each resource lowered to its cap, if any.
func capped(capacity, caps corev1.ResourceList) corev1.ResourceList {
	out := capacity.DeepCopy()
	for name, q := range out {
		if c, ok := caps[name]; ok && c.Cmp(q) < 0 {
			out[name] = c.DeepCopy()
		}
	}
	return out
}

// usable says whether a provider node can take pods.
func usable(n *corev1.Node) bool {
	if n.Spec.Unschedulable || n.Labels[peeringv1alpha1.VirtualNodeTypeLabel] == peeringv1alpha1.VirtualNodeTypeValue {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// heartbeatGrace is how long a transient failure keeps a Ready virtual node
// Ready: about three probes.
func heartbeatGrace(interval time.Duration) time.Duration { return 3 * interval }
