package v1alpha1

// Labels, annotations, taints and names that Stretch puts on objects. They are
// part of the API: users select on them and other tools may read them.
const (
	// VirtualNodeTypeLabel marks virtual nodes; its value is VirtualNodeTypeValue.
	VirtualNodeTypeLabel = "stretch.dev/type"
	// VirtualNodeTypeValue is the value of VirtualNodeTypeLabel on virtual nodes.
	VirtualNodeTypeValue = "virtual-node"
	// RemoteClusterIDLabel carries the provider's cluster ID on its virtual node.
	RemoteClusterIDLabel = "stretch.dev/remote-cluster-id"
	// RemoteClusterNameLabel carries the provider's cluster name on its virtual node.
	RemoteClusterNameLabel = "stretch.dev/remote-cluster-name"

	// VirtualNodeTaintKey is the taint of every virtual node; only pods that
	// the placement webhook let through tolerate it.
	VirtualNodeTaintKey = "virtual-node.stretch.dev/not-allowed"
	// VirtualNodeTaintValue is the value of the virtual-node taint.
	VirtualNodeTaintValue = "true"

	// VirtualNodePrefix prefixes the provider name in a virtual node's name.
	VirtualNodePrefix = "stretch-"

	// RemoteNamespaceOriginAnnotation is set on every twin namespace to the
	// cluster ID of the home cluster it was created for.
	RemoteNamespaceOriginAnnotation = "stretch.dev/remote-namespace-origin"
	// OriginClusterIDLabel labels twins and reflected objects with the home cluster ID.
	OriginClusterIDLabel = "stretch.dev/origin-cluster-id"
	// OriginNamespaceLabel labels twins and reflected objects with the home namespace.
	OriginNamespaceLabel = "stretch.dev/origin-namespace"

	// TenantNamespacePrefix prefixes the home cluster ID in the name of the
	// provider namespace that holds that home cluster's requests.
	TenantNamespacePrefix = "stretch-tenant-"

	// TenantServiceAccountName is the ServiceAccount, in a home cluster's
	// tenant namespace on a provider, whose token that home cluster holds.
	TenantServiceAccountName = "stretch-home"
	// RemoteWorkloadsClusterRole is what a home cluster may do inside each of
	// its twin namespaces (run pods, reflect what they need), granted by a
	// RoleBinding in the twin and nowhere else.
	RemoteWorkloadsClusterRole = "stretch-remote-workloads"
	// TwinRoleBindingName is the RoleBinding of RemoteWorkloadsClusterRole in a twin.
	TwinRoleBindingName = "stretch-home"

	// RemoteClusterFinalizer holds a RemoteCluster until its virtual node and
	// clients are gone.
	RemoteClusterFinalizer = "peering.stretch.dev/virtual-node"
	// RemoteNamespaceFinalizer holds a RemoteNamespace until its twin is gone.
	RemoteNamespaceFinalizer = "peering.stretch.dev/twin-namespace"

	// RuntimeClassName is the RuntimeClass that sends a pod to virtual nodes
	// whatever the namespace's pod offloading strategy.
	RuntimeClassName = "stretch"
)

// VirtualNodeName is the name of the virtual node that stands for a provider.
func VirtualNodeName(providerName string) string { return VirtualNodePrefix + providerName }

// TenantNamespace is the provider namespace that holds a home cluster's requests.
func TenantNamespace(homeClusterID string) string { return TenantNamespacePrefix + homeClusterID }
