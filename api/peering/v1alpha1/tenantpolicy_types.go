package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodSecurityLevel is a Pod Security Standard level the twins of a home
// cluster are held to.
// +kubebuilder:validation:Enum=baseline;restricted
type PodSecurityLevel string

const (
	// PodSecurityBaseline forbids the known privilege escalations:
	// privileged containers, host namespaces, hostPath, hostPort, added
	// capabilities, unsafe sysctls. The default.
	PodSecurityBaseline PodSecurityLevel = "baseline"
	// PodSecurityRestricted also requires non-root users, no privilege
	// escalation, dropped capabilities and a seccomp profile.
	PodSecurityRestricted PodSecurityLevel = "restricted"
)

// TwinNaming is how a requested twin name relates to its home namespace, as
// the provider sees it: <namespace>-<home cluster ID> is DefaultName,
// <namespace> is EnforceSameName, any other name is SelectedName. They are
// the offloading API's namespace mapping strategies.
// +kubebuilder:validation:Enum=DefaultName;EnforceSameName;SelectedName
type TwinNaming string

const (
	// DefaultNameTwin: <home namespace>-<home cluster ID>.
	DefaultNameTwin TwinNaming = "DefaultName"
	// EnforceSameNameTwin: the home namespace's own name.
	EnforceSameNameTwin TwinNaming = "EnforceSameName"
	// SelectedNameTwin: any other name.
	SelectedNameTwin TwinNaming = "SelectedName"
)

// TenantPolicySpec is what a provider lets one home cluster run.
type TenantPolicySpec struct {
	// Limits cap what the home cluster's pods request across all its twins
	// together: cpu, memory, ephemeral-storage, pods (a count), and any
	// extended resource such as nvidia.com/gpu. The provider refuses a pod
	// that would go over one, or that requests nothing of a limited
	// resource; status.used reports what is used against them. Empty: no
	// limit.
	// +optional
	Limits corev1.ResourceList `json:"limits,omitempty"`

	// PodSecurity is the Pod Security Standard level enforced on every twin
	// with Pod Security Admission labels, which the home cluster cannot
	// change.
	// +kubebuilder:default=baseline
	// +optional
	PodSecurity PodSecurityLevel `json:"podSecurity,omitempty"`

	// PriorityClasses are the priority classes its pods may name (empty:
	// none). The provider refuses a pod that names another one, but for the
	// provider's own global default class, which pods that name none get.
	// +listType=set
	// +optional
	PriorityClasses []string `json:"priorityClasses,omitempty"`

	// TwinNamings are the namings of twin namespaces the provider accepts.
	// Empty: all three.
	// +listType=set
	// +optional
	TwinNamings []TwinNaming `json:"twinNamings,omitempty"`

	// TwinNamePattern is a regular expression (RE2, anchored) every twin
	// name must match. Empty: any valid name.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	TwinNamePattern string `json:"twinNamePattern,omitempty"`
}

// TenantPolicyStatus is what the home cluster uses against the policy.
type TenantPolicyStatus struct {
	// Used is what the home cluster's pods request across its twins now:
	// the resources the limits name, and pods.
	// +optional
	Used corev1.ResourceList `json:"used,omitempty"`
	// Conditions: Enforced says whether the policy is applied to every
	// twin (its Pod Security labels) and why not.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// TenantPolicy lives on a provider, in the tenant namespace of a home cluster
// (stretch-tenant-<home cluster ID>), named policy, and says what that home
// cluster may run there. It belongs to the provider's admin: the home
// cluster may read it, never write it. Without one, the defaults of its
// fields apply.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tp,categories=stretch
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'policy'",message="the name must be policy, the only one Stretch reads in a tenant namespace"
// +kubebuilder:printcolumn:name="Pod Security",type=string,JSONPath=`.spec.podSecurity`
// +kubebuilder:printcolumn:name="Limits",type=string,JSONPath=`.spec.limits`
// +kubebuilder:printcolumn:name="Used",type=string,JSONPath=`.status.used`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TenantPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TenantPolicySpec   `json:"spec,omitempty"`
	Status TenantPolicyStatus `json:"status,omitempty"`
}

// TenantPolicyList is a list of TenantPolicy.
//
// +kubebuilder:object:root=true
type TenantPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TenantPolicy `json:"items"`
}
