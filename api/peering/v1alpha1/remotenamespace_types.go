package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RemoteNamespacePhase is the state of a twin namespace on the provider.
// +kubebuilder:validation:Enum=Creating;Ready;CreationFailed;Terminating
type RemoteNamespacePhase string

const (
	// RemoteNamespaceCreating: the twin is being created.
	RemoteNamespaceCreating RemoteNamespacePhase = "Creating"
	// RemoteNamespaceReady: the twin exists and the home identity may use it.
	RemoteNamespaceReady RemoteNamespacePhase = "Ready"
	// RemoteNamespaceCreationFailed: the twin cannot be created; reason and message say why.
	RemoteNamespaceCreationFailed RemoteNamespacePhase = "CreationFailed"
	// RemoteNamespaceTerminating: the twin is being deleted.
	RemoteNamespaceTerminating RemoteNamespacePhase = "Terminating"
)

// Reasons of a RemoteNamespace in CreationFailed.
const (
	// NameTooLongReason: the twin name is longer than 63 characters.
	NameTooLongReason = "NameTooLong"
	// InvalidNameReason: the twin name is not an RFC 1123 DNS label.
	InvalidNameReason = "InvalidName"
	// AlreadyExistsReason: a namespace of that name exists and is not this home's twin.
	AlreadyExistsReason = "AlreadyExists"
	// ForbiddenReason: the twin name is reserved on the provider (kube-*, default, stretch-*).
	ForbiddenReason = "Forbidden"
	// PolicyDeniedReason: the provider's TenantPolicy for the home cluster
	// does not allow the twin (its naming or its name pattern).
	PolicyDeniedReason = "PolicyDenied"
)

// RemoteNamespaceSpec is a home cluster's request for a twin namespace.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: delete the RemoteNamespace and create a new one"
type RemoteNamespaceSpec struct {
	// HomeNamespace is the namespace of the home cluster that is offloaded.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	HomeNamespace string `json:"homeNamespace"`

	// HomeClusterID is the cluster ID of the home cluster.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	HomeClusterID string `json:"homeClusterID"`

	// RemoteNamespaceName is the desired name of the twin namespace. It is not
	// validated here so that a bad name is reported in status, per provider.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	RemoteNamespaceName string `json:"remoteNamespaceName"`
}

// RemoteNamespaceStatus is the provider's answer to the request.
type RemoteNamespaceStatus struct {
	// Phase is Creating, Ready, CreationFailed or Terminating.
	// +optional
	Phase RemoteNamespacePhase `json:"phase,omitempty"`
	// Reason is a CamelCase word for the phase, e.g. AlreadyExists.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message explains the phase and, on failure, what to do.
	// +optional
	Message string `json:"message,omitempty"`
	// ObservedGeneration is the generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// RemoteNamespace lives on a provider, in the tenant namespace of a home
// cluster, and asks the provider to create a twin namespace for it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rns,categories=stretch
// +kubebuilder:printcolumn:name="Twin",type=string,JSONPath=`.spec.remoteNamespaceName`
// +kubebuilder:printcolumn:name="Home Namespace",type=string,JSONPath=`.spec.homeNamespace`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RemoteNamespace struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RemoteNamespaceSpec   `json:"spec"`
	Status RemoteNamespaceStatus `json:"status,omitempty"`
}

// RemoteNamespaceList is a list of RemoteNamespace.
//
// +kubebuilder:object:root=true
type RemoteNamespaceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RemoteNamespace `json:"items"`
}
