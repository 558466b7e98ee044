// Package v1alpha1 holds the peering.stretch.dev/v1alpha1 API: the
// RemoteCluster (home side: one per provider), and on the provider side the
// RemoteNamespace (one per twin namespace requested by a home cluster) and
// the TenantPolicy (what one home cluster may run there).
//
// +kubebuilder:object:generate=true
// +groupName=peering.stretch.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "peering.stretch.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&RemoteCluster{},
		&RemoteClusterList{},
		&RemoteNamespace{},
		&RemoteNamespaceList{},
		&TenantPolicy{},
		&TenantPolicyList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
