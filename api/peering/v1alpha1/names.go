package v1alpha1

import "stretch.dev/stretch/api/wellknown"

// VirtualNodeName is the name of the virtual node that stands for a provider.
func VirtualNodeName(providerName string) string { return wellknown.VirtualNodePrefix + providerName }

// TenantNamespace is the provider namespace that holds a home cluster's requests.
func TenantNamespace(homeClusterID string) string {
	return wellknown.TenantNamespacePrefix + homeClusterID
}
