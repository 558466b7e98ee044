package v1alpha1

import (
	"maps"
	"slices"
)

// Providers returns the names of the providers the status reports on,
// sorted.
func (s *NamespaceOffloadingStatus) Providers() []string {
	return slices.Sorted(maps.Keys(s.RemoteNamespacesConditions))
}
