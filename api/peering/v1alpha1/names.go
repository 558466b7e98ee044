package v1alpha1

import "stretch.dev/stretch/api/wellknown"

// VirtualNodeName is the name of the virtual node that stands for a provider.
func VirtualNodeName(providerName string) string { return wellknown.VirtualNodePrefix + providerName }

// TenantNamespace is the provider namespace that holds a home cluster's requests.
func TenantNamespace(homeClusterID string) string {
	return wellknown.TenantNamespacePrefix + homeClusterID
}

// VirtualNodeMetricsPath is where a virtual node's kubelet API serves the
// resource metrics of that node alone; the node's annotation
// wellknown.ResourceMetricsPathAnnotation names it to metrics-server.
func VirtualNodeMetricsPath(nodeName string) string {
	return "/metrics/nodes/" + nodeName + "/metrics/resource"
}
