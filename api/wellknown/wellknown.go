// Package wellknown holds, in one place, the names Stretch gives to what it
// creates: labels, annotations, finalizers, name prefixes and object names.
// The public ones are part of the API (users select on them, tools read
// them) and change only with a new API version; the internal ones are
// Stretch's own bookkeeping and may change between releases, with an
// upgrade path.
package wellknown

// Public names.
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
	// It keeps its name for good: renaming it would void every token issued.
	TenantServiceAccountName = "stretch-home"
	// RemoteWorkloadsClusterRole is what a home cluster may do inside each of
	// its twin namespaces (run pods, reflect what they need), granted by a
	// RoleBinding in the twin and nowhere else.
	RemoteWorkloadsClusterRole = "stretch-remote-workloads"
	// TwinRoleBindingName is the RoleBinding of RemoteWorkloadsClusterRole
	// to TenantServiceAccountName in a twin: what lets the home cluster run
	// its workloads there.
	TwinRoleBindingName = "stretch-home-workloads"
	// LegacyTwinRoleBindingName is the name earlier releases gave the twin's
	// RoleBinding, the ServiceAccount's own. The tenant controller
	// deletes a RoleBinding of that name in a twin once the new one exists,
	// and only when it is the one Stretch made (same role, same subject).
	LegacyTwinRoleBindingName = "stretch-home"
	// RemoteClusterFinalizer holds a RemoteCluster until its virtual node and
	// clients are gone.
	RemoteClusterFinalizer = "peering.stretch.dev/virtual-node"
	// RemoteNamespaceFinalizer holds a RemoteNamespace until its twin is gone.
	RemoteNamespaceFinalizer = "peering.stretch.dev/twin-namespace"
	// RuntimeClassName is the RuntimeClass that sends a pod to virtual nodes
	// whatever the namespace's pod offloading strategy.
	RuntimeClassName = "stretch"
	// TenantPolicyName is the name of the only TenantPolicy of a tenant
	// namespace that Stretch reads.
	TenantPolicyName = "policy"
	// NamespaceOffloadingName is the only name of a NamespaceOffloading that the
	// controllers reconcile: there is at most one per namespace.
	NamespaceOffloadingName = "offloading"
	// ClusterSelectorErrorAnnotation is set on a NamespaceOffloading whose
	// spec.clusterSelector cannot be parsed; its value is the parser's message.
	ClusterSelectorErrorAnnotation = "offloading.stretch.dev/cluster-selector-error"
	// SchedulingEnabledLabel marks a home namespace whose pods may be placed on
	// virtual nodes; the pod webhook only acts in namespaces that carry it.
	SchedulingEnabledLabel = "stretch.dev/scheduling-enabled"
	// ForceUnoffloadAnnotation, set (to any value) on a NamespaceOffloading being
	// deleted, lets the unoffload finish without the providers that do not
	// answer, and, once the unoffload timeout has passed, without those that
	// answer but have not deleted their twin: their twins are deleted when they
	// answer again (or Stretch runs there again), if they still peer with this
	// cluster. 'stretchctl unoffload --force' sets it.
	ForceUnoffloadAnnotation = "offloading.stretch.dev/force-unoffload"
	// NamespaceOffloadingFinalizer holds a NamespaceOffloading until every
	// provider has confirmed the deletion of its twin namespace.
	NamespaceOffloadingFinalizer = "offloading.stretch.dev/twins"
	// ResourceMetricsPathAnnotation, on a virtual node, is the path at its
	// kubelet's address of its own resource metrics, which metrics-server
	// reads instead of /metrics/resource: every virtual node of a manager
	// has the same address (docs/design.md §4.24).
	ResourceMetricsPathAnnotation = "metrics.k8s.io/resource-metrics-path"
	// SkipReflectionAnnotation, set to "true" on a home ConfigMap, Secret or
	// Service of an offloaded namespace, keeps that object at home: it is not
	// reflected into the twins, and a copy reflected before is deleted. An
	// offloaded pod that needs it cannot start on the provider (its home pod
	// gets a Warning event saying so). On a Service, it keeps its
	// EndpointSlices at home too.
	SkipReflectionAnnotation = "stretch.dev/skip-reflection"
	// ReflectAnnotation, set to "true" on a home Ingress of an offloaded
	// namespace, reflects it into the twins; Ingresses are reflected only
	// on request (this annotation, or spec.reflectIngresses of the
	// namespace's NamespaceOffloading). SkipReflectionAnnotation wins.
	ReflectAnnotation = "stretch.dev/reflect"
	// EndpointSliceManager is the value of the label
	// endpointslice.kubernetes.io/managed-by on the EndpointSlices Stretch
	// writes into twins: the provider's EndpointSlice controller leaves
	// them alone, and kube-proxy reads them with the provider's own.
	EndpointSliceManager = "virtual-kubelet.stretch.dev"
	// StorageClassName is the StorageClass (installed with Stretch) whose
	// claims are provisioned on the provider their first pod is scheduled to
	// (design §4.23).
	StorageClassName = "stretch"
	// VolumeProvisioner is the provisioner of StorageClassName, and of any
	// other home class whose claims live on providers; it is also the CSI
	// driver named by the home PersistentVolumes that stand for them.
	VolumeProvisioner = "volumes.stretch.dev"
	// RemoteClaimPhaseAnnotation, RemoteClaimCapacityAnnotation and
	// RemoteVolumeAnnotation, on a home PersistentVolume that stands for a
	// claim on a provider, say what the provider did with that claim: its
	// phase (Pending, Bound, Lost), its capacity and its volume.
	RemoteClaimPhaseAnnotation    = "volumes.stretch.dev/remote-phase"
	RemoteClaimCapacityAnnotation = "volumes.stretch.dev/remote-capacity"
	RemoteVolumeAnnotation        = "volumes.stretch.dev/remote-volume"
	// SystemNamespace holds Stretch's own objects on every cluster.
	SystemNamespace = "stretch-system"
	// IdentityConfigMapName is the ConfigMap in SystemNamespace that holds the identity.
	IdentityConfigMapName = "stretch-cluster-identity"
)

// Internal names.
const (
	// HomeClusterIDLabel labels what a provider creates for one home cluster.
	HomeClusterIDLabel = "stretch.dev/home-cluster-id"
	// NodeReaderClusterRole lets every home cluster read the provider's nodes,
	// for the capacity of its virtual node. It is shared by all tenants.
	NodeReaderClusterRole = "stretch-peer-node-reader"
	// TenantRoleName names the Role and RoleBinding in a tenant namespace that
	// let the home cluster manage its RemoteNamespaces (its twin requests)
	// there and read its TenantPolicy.
	TenantRoleName = "stretch-home-requests"
	// LegacyTenantRoleName is the name earlier releases gave that Role and
	// RoleBinding, the ServiceAccount's own. stretchctl install and peer
	// delete a Role and RoleBinding of that name in a tenant namespace once
	// those of TenantRoleName exist, and only when they are Stretch's.
	LegacyTenantRoleName = "stretch-home"
	// PeerSecretPrefix prefixes the provider name in the name of the home-side
	// Secret that holds the issued kubeconfig.
	PeerSecretPrefix = "stretch-peer-"
	// ReflectedLabel marks the objects of a twin namespace that the virtual
	// kubelet created and therefore may update and delete; an object without
	// it is never touched.
	ReflectedLabel = "stretch.dev/reflected"
	// OriginPodUIDAnnotation is the UID of the home pod a remote pod runs
	// for: a home pod recreated with the same name (a StatefulSet's) gets a
	// new remote pod, not the old one.
	OriginPodUIDAnnotation = "stretch.dev/origin-pod-uid"
	// OriginNameAnnotation is the name of the home object a reflected object
	// stands for, when the names differ (service account tokens).
	OriginNameAnnotation = "stretch.dev/origin-name"
	// RemotePodManagedLabelsAnnotation and ManagedAnnotationsAnnotation list,
	// comma-separated and sorted, the label and annotation keys that Stretch
	// set on a remote pod or a reflected object: a key that leaves the home
	// object is removed from its copy, and keys the provider adds are kept.
	RemotePodManagedLabelsAnnotation      = "stretch.dev/managed-labels"
	RemotePodManagedAnnotationsAnnotation = "stretch.dev/managed-annotations"
	// TokenSecretPrefix prefixes the Secrets that carry a home service
	// account token into a twin namespace.
	TokenSecretPrefix = "stretch-token-"
	// TokenRefreshAnnotation is when a token Secret is renewed.
	TokenRefreshAnnotation = "stretch.dev/token-refresh-at"
	// TokenServiceAccountAnnotation and AudienceAnnotation say which token a
	// token Secret carries.
	TokenServiceAccountAnnotation = "stretch.dev/service-account"
	TokenAudienceAnnotation       = "stretch.dev/token-audience"
	// VirtualNodeManagedLabelsAnnotation lists, comma-separated, the label keys of a
	// virtual node that Stretch set: a key that leaves the provider's or the
	// admin's labels is removed from the node, labels others add are kept.
	VirtualNodeManagedLabelsAnnotation = "peering.stretch.dev/managed-labels"
	// ManagerName names the controller-manager's ServiceAccount, ClusterRole and binding.
	ManagerName = "stretch-controller-manager"
	// VirtualKubeletComponent is the source of the events the virtual kubelets record.
	VirtualKubeletComponent      = "stretch-virtual-kubelet"
	PodPlacementWebhookName      = "stretch-pod-placement"
	OffloadingWebhookName        = "stretch-namespaceoffloading-validation"
	TwinPodsWebhookName          = "stretch-twin-pod-admission"
	TwinEndpointsWebhookName     = "stretch-twin-endpointslice-admission"
	WebhookCertificateSecretName = "stretch-webhook-certs"
)
