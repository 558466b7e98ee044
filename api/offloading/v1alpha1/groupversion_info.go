// Package v1alpha1 holds the offloading.stretch.dev/v1alpha1 API: the
// NamespaceOffloading resource with which a user extends a home namespace onto
// provider clusters.
//
// +kubebuilder:object:generate=true
// +groupName=offloading.stretch.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "offloading.stretch.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&NamespaceOffloading{},
		&NamespaceOffloadingList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
