// Package v1alpha1 holds the peering.stretch.dev/v1alpha1 API: the
// RemoteCluster (home side: one per provider) and RemoteNamespace (provider
// side: one per twin namespace requested by a home cluster).
//
// +kubebuilder:object:generate=true
// +groupName=peering.stretch.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "peering.stretch.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
