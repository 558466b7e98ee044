// Package naming decides the names of twin namespaces and checks them, so that
// the home side (which warns and diagnoses) and the provider side (which
// creates the twins) apply the same rules.
package naming

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

const (
	// MaxNamespaceLength is the RFC 1123 label limit that namespace names obey.
	MaxNamespaceLength = validation.DNS1123LabelMaxLength
	// clusterIDSuffixLength is "-" and a 36-character cluster ID.
	clusterIDSuffixLength = 1 + 36
	// MaxDefaultNameHomeNamespaceLength is the longest home namespace whose
	// DefaultName twin still fits: 63 - 37 = 26.
	MaxDefaultNameHomeNamespaceLength = MaxNamespaceLength - clusterIDSuffixLength
)

// TwinName is the name of the twin namespace of homeNamespace on every provider.
func TwinName(spec offloadingv1alpha1.NamespaceOffloadingSpec, homeNamespace, homeClusterID string) string {
	switch spec.NamespaceMappingStrategy {
	case offloadingv1alpha1.EnforceSameNameMapping:
		return homeNamespace
	case offloadingv1alpha1.SelectedNameMapping:
		return spec.RemoteNamespaceName
	default:
		return homeNamespace + "-" + homeClusterID
	}
}

// Problem is why a twin name cannot be used: a RemoteNamespace reason and a
// message that says what to do.
type Problem struct {
	Reason  string
	Message string
}

func (p *Problem) Error() string { return p.Reason + ": " + p.Message }

// CheckTwinName returns the problem of a twin name, or nil. homeNamespace is
// used in the advice; strategy says which advice applies.
func CheckTwinName(twin, homeNamespace string, strategy offloadingv1alpha1.NamespaceMappingStrategy) *Problem {
	if len(twin) > MaxNamespaceLength {
		msg := fmt.Sprintf("twin namespace name %q is %d characters long, over the limit of %d for namespace names (RFC 1123 label)", twin, len(twin), MaxNamespaceLength)
		if strategy == offloadingv1alpha1.DefaultNameMapping || strategy == "" {
			msg += fmt.Sprintf(": with namespaceMappingStrategy DefaultName the twin is \"<namespace>-<home cluster ID>\", so the home namespace may have at most %d characters (%q has %d); use a shorter namespace, or namespaceMappingStrategy SelectedName with a shorter remoteNamespaceName", MaxDefaultNameHomeNamespaceLength, homeNamespace, len(homeNamespace))
		} else {
			msg += fmt.Sprintf(": with namespaceMappingStrategy %s, choose a spec.remoteNamespaceName of at most %d characters", offloadingv1alpha1.SelectedNameMapping, MaxNamespaceLength)
		}
		return &Problem{Reason: peeringv1alpha1.NameTooLongReason, Message: msg}
	}
	if errs := validation.IsDNS1123Label(twin); len(errs) > 0 {
		return &Problem{Reason: peeringv1alpha1.InvalidNameReason, Message: fmt.Sprintf("twin namespace name %q is not a valid namespace name: %s", twin, strings.Join(errs, "; "))}
	}
	if Reserved(twin) {
		return &Problem{Reason: peeringv1alpha1.ForbiddenReason, Message: fmt.Sprintf("twin namespace name %q is reserved on providers (kube-*, default and stretch-* are never twins): choose another name with namespaceMappingStrategy SelectedName", twin)}
	}
	return nil
}

// Reserved reports whether a provider namespace can never be a twin.
func Reserved(namespace string) bool {
	return namespace == "default" || strings.HasPrefix(namespace, "kube-") || strings.HasPrefix(namespace, "stretch-")
}
