// Package peering is the contract of a peering between a home cluster and a
// provider: the credentials file the provider issues (format, validation, the
// kubeconfig it turns into) and the names of what a peering creates on either
// side. It is pure: it reaches no cluster.
package peering

import (
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

const (
	// KubeconfigKey is the key of the kubeconfig in the home-side Secret.
	KubeconfigKey = "kubeconfig"
)

// SecretName is the home-side Secret with the kubeconfig a provider issued.
func SecretName(providerName string) string { return wellknown.PeerSecretPrefix + providerName }

// TenantBindingName names, on a provider, the per-home-cluster objects outside
// the tenant namespace: the ClusterRoleBinding to wellknown.NodeReaderClusterRole and
// the Role and RoleBinding that read the identity in stretch-system.
func TenantBindingName(homeClusterID string) string {
	return peeringv1alpha1.TenantNamespace(homeClusterID)
}

// KubeconfigKeyOf is the key of the kubeconfig in the Secret a RemoteCluster
// names: its own, or KubeconfigKey when it names none.
func KubeconfigKeyOf(ref peeringv1alpha1.SecretKeyReference) string {
	if ref.Key != "" {
		return ref.Key
	}
	return KubeconfigKey
}
