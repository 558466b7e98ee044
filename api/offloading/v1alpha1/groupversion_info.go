// Package v1alpha1 holds the offloading.stretch.dev/v1alpha1 API: the
// NamespaceOffloading resource with which a user extends a home namespace onto
// provider clusters.
//
// +kubebuilder:object:generate=true
// +groupName=offloading.stretch.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "offloading.stretch.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
