package remotecluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
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
	// policyRead is set when the provider's TenantPolicy for this cluster
	// was read; policy is then what it says, nil when there is none.
	// Unset, the last one read still holds.
	policyRead bool
	policy     *peeringv1alpha1.ProviderPolicy
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
		return obs, nil
	}
	peer.SetHealth(nil)
	// The policy only lowers what the virtual node advertises: failing to
	// read it must not make the provider look down. The last one read
	// stays, and the log says why it is not refreshed.
	key, policy, err := r.readPolicy(ctx, rc, peer)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "cannot read the provider's TenantPolicy for this cluster; keeping the last one read",
			"provider", rc.Name, "tenantPolicy", key.String(), "reason", apierrors.ReasonForError(err))
		return obs, nil
	}
	obs.policyRead, obs.policy = true, policy
	return obs, nil
}

// readPolicy reads the TenantPolicy the provider holds for this cluster, in
// this cluster's tenant namespace there. A provider without one, or whose
// Stretch predates TenantPolicies (no such kind), limits nothing: nil.
func (r *Reconciler) readPolicy(ctx context.Context, rc *peeringv1alpha1.RemoteCluster, peer *remote.Peer) (client.ObjectKey, *peeringv1alpha1.ProviderPolicy, error) {
	key := client.ObjectKey{Name: wellknown.TenantPolicyName}
	homeID, err := r.home.ClusterID(ctx)
	if err != nil {
		return key, nil, fmt.Errorf("reading this cluster's ID, which names its tenant namespace on the provider: %w", err)
	}
	key.Namespace = peeringv1alpha1.TenantNamespace(homeID)
	tp := &peeringv1alpha1.TenantPolicy{}
	switch err := peer.Client.Get(ctx, key, tp); {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		return key, nil, nil
	case err != nil:
		return key, nil, fmt.Errorf("reading TenantPolicy %s on provider %s: %w", key, rc.Name, err)
	}
	return key, providerPolicy(tp), nil
}

// providerPolicy is what the home cluster records of a provider's
// TenantPolicy.
func providerPolicy(tp *peeringv1alpha1.TenantPolicy) *peeringv1alpha1.ProviderPolicy {
	p := &peeringv1alpha1.ProviderPolicy{
		// The provider's API server defaults it; an older object may lack it.
		PodSecurity:     string(cmp.Or(tp.Spec.PodSecurity, peeringv1alpha1.PodSecurityBaseline)),
		PriorityClasses: slices.Clone(tp.Spec.PriorityClasses),
	}
	// Empty lists are left nil, as they come back from the API server, so
	// that an unchanged policy does not rewrite the status.
	if len(tp.Spec.Limits) > 0 {
		p.Limits = tp.Spec.Limits.DeepCopy()
	}
	if len(tp.Status.Used) > 0 {
		p.Used = tp.Status.Used.DeepCopy()
	}
	if len(p.PriorityClasses) == 0 {
		p.PriorityClasses = nil
	}
	return p
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

// capacityResources are the resources a virtual node always advertises;
// extended resources come on top when the provider's nodes have them.
var capacityResources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage}

// isExtendedResource says whether name is an extended resource as Kubernetes
// defines it (device plugins' nvidia.com/gpu, say): a domain-prefixed name
// outside the kubernetes.io/ namespace, not a quota name (requests.*), that
// is still a qualified name once prefixed with "requests.", since quotas
// name it so.
func isExtendedResource(name corev1.ResourceName) bool {
	s := string(name)
	if !strings.Contains(s, "/") || strings.Contains(s, corev1.ResourceDefaultNamespacePrefix) ||
		strings.HasPrefix(s, corev1.DefaultResourceRequestsPrefix) {
		return false
	}
	return len(validation.IsQualifiedName(corev1.DefaultResourceRequestsPrefix+s)) == 0
}

// capacityOf sums the allocatable resources of the provider's nodes that can
// take pods: Ready, schedulable, and not virtual nodes themselves (a provider
// that is also a home cluster must not lend what it borrows). Besides cpu,
// memory, pods and ephemeral storage, always present, it sums the extended
// resources those nodes have.
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
		for name, q := range nodes[i].Status.Allocatable {
			if !slices.Contains(capacityResources, name) && !isExtendedResource(name) {
				continue
			}
			s, ok := sum[name]
			if !ok {
				s = *resource.NewQuantity(0, q.Format)
			}
			s.Add(q)
			sum[name] = s
		}
	}
	return sum
}

// advertised is what the virtual node offers the home scheduler, per
// resource: the provider's capacity, lowered to the limit of the provider's
// policy for this cluster, then to the RemoteCluster's own cap. A resource
// the policy limits but the provider's nodes lack stays absent: a limit is
// no capacity. This cluster's usage is not subtracted: the scheduler already
// subtracts the requests of the pods bound to the virtual node, which are
// the pods the provider counts in the policy's status.used, so offering
// min(capacity, limit) leaves it exactly limit - used; subtracting used here
// too would count those pods twice.
func advertised(capacity, limits, caps corev1.ResourceList) corev1.ResourceList {
	return capped(capped(capacity, limits), caps)
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
	if n.Spec.Unschedulable || n.Labels[wellknown.VirtualNodeTypeLabel] == wellknown.VirtualNodeTypeValue {
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
