package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NamespaceMappingStrategy says how the twin namespace on a provider is named.
// +kubebuilder:validation:Enum=DefaultName;EnforceSameName;SelectedName
type NamespaceMappingStrategy string

const (
	// DefaultNameMapping names the twin "<namespace>-<homeClusterID>".
	DefaultNameMapping NamespaceMappingStrategy = "DefaultName"
	// EnforceSameNameMapping names the twin like the home namespace.
	EnforceSameNameMapping NamespaceMappingStrategy = "EnforceSameName"
	// SelectedNameMapping names the twin spec.remoteNamespaceName.
	SelectedNameMapping NamespaceMappingStrategy = "SelectedName"
)

// PodOffloadingStrategy says where the pods of an offloaded namespace may run.
// +kubebuilder:validation:Enum=LocalAndRemote;Local;Remote
type PodOffloadingStrategy string

const (
	// LocalAndRemoteStrategy lets pods run on local nodes and on the selected providers.
	LocalAndRemoteStrategy PodOffloadingStrategy = "LocalAndRemote"
	// LocalStrategy keeps pods on local nodes; only the namespace is extended.
	LocalStrategy PodOffloadingStrategy = "Local"
	// RemoteStrategy runs pods only on the selected providers.
	RemoteStrategy PodOffloadingStrategy = "Remote"
)

// OffloadingPhase summarises the state of every twin namespace.
// +kubebuilder:validation:Enum=Ready;NoClusterSelected;InProgress;SomeFailed;AllFailed;Terminating
type OffloadingPhase string

const (
	// ReadyPhase: every selected provider has its twin namespace.
	ReadyPhase OffloadingPhase = "Ready"
	// NoClusterSelectedPhase: the selector matches no provider, or cannot be parsed.
	NoClusterSelectedPhase OffloadingPhase = "NoClusterSelected"
	// InProgressPhase: some twins are still being created.
	InProgressPhase OffloadingPhase = "InProgress"
	// SomeFailedPhase: at least one, but not every, selected provider failed.
	SomeFailedPhase OffloadingPhase = "SomeFailed"
	// AllFailedPhase: every selected provider failed to create its twin.
	AllFailedPhase OffloadingPhase = "AllFailed"
	// TerminatingPhase: the offloading is being removed.
	TerminatingPhase OffloadingPhase = "Terminating"
)

// Per-provider condition types in status.remoteNamespacesConditions.
const (
	// OffloadingRequiredCondition is True when the provider is selected.
	OffloadingRequiredCondition = "OffloadingRequired"
	// RemoteNamespaceReadyCondition is True when the twin exists on the provider.
	RemoteNamespaceReadyCondition = "Ready"
)

// Reasons of the per-provider conditions.
const (
	ClusterSelectedReason    = "ClusterSelected"
	ClusterNotSelectedReason = "ClusterNotSelected"
	NamespaceCreatedReason   = "NamespaceCreated"
	CreatingReason           = "Creating"
	CreationFailedReason     = "CreationFailed"
	TerminatingReason        = "Terminating"
	// ProviderUnreachableReason: an unoffload waited longer than its timeout
	// for a provider that does not answer and may still hold the twin.
	ProviderUnreachableReason = "ProviderUnreachable"
	// TwinNotDeletedReason: an unoffload waited longer than its timeout for
	// a provider that answers but has not deleted the twin: its request is
	// still there (Stretch not running on it, or the twin stuck Terminating).
	TwinNotDeletedReason = "TwinNotDeleted"
	// RemoteVolumesHeldReason: an unoffload keeps the provider's twin
	// because it holds copies of home claims (their data): they go with
	// the user's own delete of the home claims, or a forced unoffload.
	RemoteVolumesHeldReason = "RemoteVolumesHeld"
)

// The rules below read the strategy through has(): they also judge the spec's
// own default ({}), before its fields are defaulted.

// NamespaceOffloadingSpec is what the user asks for.
// +kubebuilder:validation:XValidation:rule="!has(self.namespaceMappingStrategy) || self.namespaceMappingStrategy != 'SelectedName' || (has(self.remoteNamespaceName) && size(self.remoteNamespaceName) > 0)",message="spec.remoteNamespaceName is required when spec.namespaceMappingStrategy is SelectedName: set it to the name the twin namespaces must have"
// +kubebuilder:validation:XValidation:rule="(has(self.namespaceMappingStrategy) && self.namespaceMappingStrategy == 'SelectedName') || !has(self.remoteNamespaceName) || size(self.remoteNamespaceName) == 0",message="spec.remoteNamespaceName is only allowed with spec.namespaceMappingStrategy SelectedName"
// +kubebuilder:validation:XValidation:rule="(has(self.namespaceMappingStrategy) ? self.namespaceMappingStrategy : 'DefaultName') == (has(oldSelf.namespaceMappingStrategy) ? oldSelf.namespaceMappingStrategy : 'DefaultName')",message="spec.namespaceMappingStrategy is immutable: delete the NamespaceOffloading (unoffload) and create it again to change it"
// +kubebuilder:validation:XValidation:rule="has(self.remoteNamespaceName) == has(oldSelf.remoteNamespaceName) && (!has(self.remoteNamespaceName) || self.remoteNamespaceName == oldSelf.remoteNamespaceName)",message="spec.remoteNamespaceName is immutable: delete the NamespaceOffloading (unoffload) and create it again to change it"
type NamespaceOffloadingSpec struct {
	// NamespaceMappingStrategy says how twin namespaces are named on the providers.
	// Immutable.
	// +kubebuilder:default=DefaultName
	// +optional
	NamespaceMappingStrategy NamespaceMappingStrategy `json:"namespaceMappingStrategy,omitempty"`

	// RemoteNamespaceName is the twin name with the SelectedName strategy.
	// Immutable.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	RemoteNamespaceName string `json:"remoteNamespaceName,omitempty"`

	// PodOffloadingStrategy says where the pods of this namespace may run.
	// +kubebuilder:default=LocalAndRemote
	// +optional
	PodOffloadingStrategy PodOffloadingStrategy `json:"podOffloadingStrategy,omitempty"`

	// ClusterSelector selects providers by the labels of their virtual nodes
	// (and metadata.name for matchFields): terms are ORed, the requirements of
	// a term ANDed. Absent or without terms selects every provider. A selector that cannot be
	// parsed is accepted and reported in status and in the
	// offloading.stretch.dev/cluster-selector-error annotation.
	// +optional
	ClusterSelector *corev1.NodeSelector `json:"clusterSelector,omitempty"`

	// ReflectIngresses reflects every Ingress of this namespace into its
	// twins, where the providers' ingress controllers serve them. Off by
	// default: an Ingress exposes the namespace at the providers' addresses.
	// One Ingress opts in alone with the annotation stretch.dev/reflect:
	// "true"; stretch.dev/skip-reflection: "true" keeps one at home.
	// +optional
	ReflectIngresses bool `json:"reflectIngresses,omitempty"`
}

// RemoteNamespaceConditions are the conditions of one provider's twin namespace.
// +listType=map
// +listMapKey=type
type RemoteNamespaceConditions []metav1.Condition

// NamespaceOffloadingStatus is what the controllers observed.
type NamespaceOffloadingStatus struct {
	// OffloadingPhase summarises every provider's state: Terminating,
	// NoClusterSelected, Ready, AllFailed, SomeFailed or InProgress (first match wins).
	// +optional
	OffloadingPhase OffloadingPhase `json:"offloadingPhase,omitempty"`

	// RemoteNamespaceName is the name of the twin namespaces.
	// +optional
	RemoteNamespaceName string `json:"remoteNamespaceName,omitempty"`

	// ObservedGeneration is the generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// RemoteNamespacesConditions holds, per provider name, the conditions
	// OffloadingRequired and Ready of its twin namespace.
	// +optional
	RemoteNamespacesConditions map[string]RemoteNamespaceConditions `json:"remoteNamespacesConditions,omitempty"`
}

// NamespaceOffloading extends its namespace onto the provider clusters that
// its cluster selector picks. Only the object named "offloading" is reconciled.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=nsoff,categories=stretch
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.offloadingPhase`
// +kubebuilder:printcolumn:name="Pod Strategy",type=string,JSONPath=`.spec.podOffloadingStrategy`
// +kubebuilder:printcolumn:name="Mapping",type=string,JSONPath=`.spec.namespaceMappingStrategy`
// +kubebuilder:printcolumn:name="Remote Namespace",type=string,JSONPath=`.status.remoteNamespaceName`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NamespaceOffloading struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	// +optional
	Spec   NamespaceOffloadingSpec   `json:"spec,omitempty"`
	Status NamespaceOffloadingStatus `json:"status,omitempty"`
}

// NamespaceOffloadingList is a list of NamespaceOffloading.
//
// +kubebuilder:object:root=true
type NamespaceOffloadingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NamespaceOffloading `json:"items"`
}
