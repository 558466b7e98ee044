package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterIDPattern is the form of a cluster ID: a lower-case UUID.
const ClusterIDPattern = `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`

// Condition types of a RemoteCluster.
const (
	// APIReachableCondition is True while the provider's API server answers.
	APIReachableCondition = "APIReachable"
	// AuthenticatedCondition is True while the issued credentials are accepted.
	AuthenticatedCondition = "Authenticated"
	// VirtualNodeReadyCondition is True while the virtual node is Ready.
	VirtualNodeReadyCondition = "VirtualNodeReady"
	// PodCIDRsDistinctCondition is True while the provider's pod CIDRs
	// overlap neither this cluster's nor another provider's: the pod IPs
	// Stretch publishes in endpoints then name one pod each. False names
	// the overlap; Unknown when a side's nodes do not say their pod CIDRs.
	PodCIDRsDistinctCondition = "PodCIDRsDistinct"
)

// SecretKeyReference names a key of a Secret in a given namespace.
type SecretKeyReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Namespace of the Secret.
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
	// Key in the Secret's data that holds the kubeconfig.
	// +kubebuilder:default=kubeconfig
	// +optional
	Key string `json:"key,omitempty"`
}

// RemoteClusterSpec describes a peering with one provider.
type RemoteClusterSpec struct {
	// ClusterID is the provider's immutable cluster ID (a UUID).
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.clusterID is immutable: a different provider needs a new RemoteCluster (stretchctl unpeer, then stretchctl peer)"
	ClusterID string `json:"clusterID"`

	// KubeconfigSecretRef is the Secret that holds the kubeconfig the provider issued.
	KubeconfigSecretRef SecretKeyReference `json:"kubeconfigSecretRef"`

	// Labels are extra labels for the virtual node, on top of the provider's own.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Resources caps what the virtual node advertises; unset resources come
	// from the provider's nodes.
	// +optional
	Resources corev1.ResourceList `json:"resources,omitempty"`

	// Cordoned stops new pods from being placed on the virtual node.
	// +optional
	Cordoned bool `json:"cordoned,omitempty"`

	// StorageClasses map the home storage classes of Stretch's provisioner
	// (volumes.stretch.dev, such as class stretch) to the provider's
	// classes: a claim of the home class is created on this provider with
	// the provider's class. A home class not listed gets the provider's
	// default class.
	// +listType=map
	// +listMapKey=homeClass
	// +optional
	StorageClasses []StorageClassMapping `json:"storageClasses,omitempty"`
}

// StorageClassMapping maps a home storage class to a provider's.
type StorageClassMapping struct {
	// HomeClass is the home StorageClass.
	// +kubebuilder:validation:MinLength=1
	HomeClass string `json:"homeClass"`
	// ProviderClass is the provider's StorageClass for claims of HomeClass;
	// empty: the provider's default class.
	// +optional
	ProviderClass string `json:"providerClass,omitempty"`
}

// ProviderClass returns the provider's class for claims of home class
// homeClass, nil for the provider's default class.
func (s *RemoteClusterSpec) ProviderClass(homeClass string) *string {
	for _, m := range s.StorageClasses {
		if m.HomeClass == homeClass && m.ProviderClass != "" {
			c := m.ProviderClass
			return &c
		}
	}
	return nil
}

// RemoteClusterStatus is what the home cluster observed of the provider.
type RemoteClusterStatus struct {
	// Conditions: APIReachable, Authenticated, VirtualNodeReady and
	// PodCIDRsDistinct.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ClusterName is the provider's cluster name, as its identity says.
	// +optional
	ClusterName string `json:"clusterName,omitempty"`

	// Labels are the provider's cluster labels, as its identity says.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Capacity is what the provider's nodes offer, before the spec's caps.
	// +optional
	Capacity corev1.ResourceList `json:"capacity,omitempty"`

	// PodCIDRs are the pod CIDRs of the provider's nodes (spec.podCIDRs),
	// adjacent ranges merged; empty when its nodes do not say them (a
	// network plugin that allocates pod IPs itself).
	// +listType=atomic
	// +optional
	PodCIDRs []string `json:"podCIDRs,omitempty"`

	// Policy is the TenantPolicy the provider holds for this cluster, as
	// last read: the virtual node advertises no more than its limits. Unset
	// when the provider has none (nothing is limited) or was never read.
	// When it cannot be read (say the issued credentials predate the right
	// to), the last one read stays.
	// +optional
	Policy *ProviderPolicy `json:"policy,omitempty"`

	// LastHeartbeatTime is the last time the provider answered.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`

	// ObservedGeneration is the generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ProviderPolicy is what a provider's TenantPolicy for this cluster says:
// the provider's admin sets it there, this cluster can only read it.
type ProviderPolicy struct {
	// Limits cap what this cluster's pods may request across all its twins
	// on the provider together (cpu, memory, ephemeral-storage, pods as a
	// count, extended resources such as nvidia.com/gpu). Empty: no limit.
	// +optional
	Limits corev1.ResourceList `json:"limits,omitempty"`

	// Used is what this cluster's pods request across its twins on the
	// provider, as the provider counted it when it was read.
	// +optional
	Used corev1.ResourceList `json:"used,omitempty"`

	// PodSecurity is the Pod Security Standard level the provider enforces
	// on the twins: baseline or restricted. A plain string, not an enum, so
	// that a level a newer provider knows can still be recorded.
	// +optional
	PodSecurity string `json:"podSecurity,omitempty"`

	// PriorityClasses are the priority classes this cluster's pods may name
	// on the provider; empty: none.
	// +listType=set
	// +optional
	PriorityClasses []string `json:"priorityClasses,omitempty"`
}

// RemoteCluster is a provider that this (home) cluster peers with. It is named
// after the provider's cluster name and yields the virtual node stretch-<name>.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=rcl,categories=stretch
// +kubebuilder:printcolumn:name="Cluster ID",type=string,JSONPath=`.spec.clusterID`
// +kubebuilder:printcolumn:name="Reachable",type=string,JSONPath=`.status.conditions[?(@.type=="APIReachable")].status`
// +kubebuilder:printcolumn:name="Node Ready",type=string,JSONPath=`.status.conditions[?(@.type=="VirtualNodeReady")].status`
// +kubebuilder:printcolumn:name="Cordoned",type=boolean,JSONPath=`.spec.cordoned`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RemoteCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RemoteClusterSpec   `json:"spec"`
	Status RemoteClusterStatus `json:"status,omitempty"`
}

// RemoteClusterList is a list of RemoteCluster.
//
// +kubebuilder:object:root=true
type RemoteClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RemoteCluster `json:"items"`
}
