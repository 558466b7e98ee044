// Package tenancy is what a provider lets one home cluster do, as pure
// functions that the provider's controllers and its pod admission share: the
// defaults of a TenantPolicy, the Pod Security labels of twins, how a twin
// name is classified and checked against the policy, and what the home
// cluster's pods use; and TwinHome, the one read they all start with.
package tenancy

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/naming"
)

// EnforcedCondition says whether a TenantPolicy holds on every twin of its
// home cluster, and why not.
const EnforcedCondition = "Enforced"

// Reasons of the Enforced condition; when several apply, the first in this
// order is the reason and the message tells them all.
const (
	// EnforcedReason: every twin carries the policy's Pod Security labels
	// and is allowed by it.
	EnforcedReason = "Enforced"
	// NotInTenantNamespaceReason: the policy is not in a tenant namespace,
	// so it applies to no home cluster.
	NotInTenantNamespaceReason = "NotInTenantNamespace"
	// InvalidTwinNamePatternReason: twinNamePattern does not compile; no new
	// twin is created until it is fixed.
	InvalidTwinNamePatternReason = "InvalidTwinNamePattern"
	// PodSecurityLabelsMissingReason: some twins lack the policy's Pod
	// Security labels (the tenant controller sets them again).
	PodSecurityLabelsMissingReason = "PodSecurityLabelsMissing"
	// TwinsOutsidePolicyReason: some twins were created before the policy
	// forbade them, and are kept with their workloads.
	TwinsOutsidePolicyReason = "TwinsOutsidePolicy"
)

// Pod Security Admission's namespace labels are <prefix><mode> (the level)
// and <prefix><mode>-version (which release's standard the level means).
const (
	podSecurityPrefix = "pod-security.kubernetes.io/"
	// latest makes a level mean the standard of the API server's own release.
	podSecurityVersion = "latest"
)

// podSecurityModes are the PSA modes a twin carries a level for: enforce
// refuses, warn tells the client (the home cluster's virtual kubelet),
// audit marks the audit log.
var podSecurityModes = []string{"enforce", "warn", "audit"}

// PodSecurityLevel is the level the twins of a home cluster are held to
// under policy p, which is nil when the home cluster has no TenantPolicy:
// baseline unless p names another.
func PodSecurityLevel(p *peeringv1alpha1.TenantPolicy) peeringv1alpha1.PodSecurityLevel {
	if p == nil || p.Spec.PodSecurity == "" {
		return peeringv1alpha1.PodSecurityBaseline
	}
	return p.Spec.PodSecurity
}

// PodSecurityLabels are the labels every twin carries for level: each mode at
// that level, against the latest version of the standard.
func PodSecurityLabels(level peeringv1alpha1.PodSecurityLevel) map[string]string {
	labels := make(map[string]string, 2*len(podSecurityModes))
	for _, mode := range podSecurityModes {
		labels[podSecurityPrefix+mode] = string(level)
		labels[podSecurityPrefix+mode+"-version"] = podSecurityVersion
	}
	return labels
}

// PodSecurityDrift returns, sorted, the Pod Security labels that labels lack
// or hold with another value than PodSecurityLabels(level).
func PodSecurityDrift(labels map[string]string, level peeringv1alpha1.PodSecurityLevel) []string {
	var drift []string
	for k, v := range PodSecurityLabels(level) {
		if got, ok := labels[k]; !ok || got != v {
			drift = append(drift, k)
		}
	}
	slices.Sort(drift)
	return drift
}

// Naming is how the provider sees a requested twin name: DefaultName when it
// is <homeNamespace>-<homeClusterID>, EnforceSameName when it is
// homeNamespace, SelectedName otherwise. (A provider sees only the name, not
// the home cluster's mapping strategy: a SelectedName equal to the home
// namespace is EnforceSameName here.)
func Naming(twin, homeNamespace, homeClusterID string) peeringv1alpha1.TwinNaming {
	switch twin {
	case homeNamespace + "-" + homeClusterID:
		return peeringv1alpha1.DefaultNameTwin
	case homeNamespace:
		return peeringv1alpha1.EnforceSameNameTwin
	}
	return peeringv1alpha1.SelectedNameTwin
}

// TwinNamePattern compiles a policy's twinNamePattern, anchored at both ends
// as the API says; nil when the pattern is empty (any name).
func TwinNamePattern(pattern string) (*regexp.Regexp, error) {
	if pattern == "" {
		return nil, nil
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return nil, fmt.Errorf("twinNamePattern %q is not a valid RE2 regular expression: %w", pattern, err)
	}
	return re, nil
}

// Violation says, in a few words, why spec does not allow a twin; "" when it
// does. An invalid twinNamePattern allows no twin: a pattern is there to
// restrict names, and a typo must not open what it was meant to close.
func Violation(spec peeringv1alpha1.TenantPolicySpec, twin, homeNamespace, homeClusterID string) string {
	n := Naming(twin, homeNamespace, homeClusterID)
	if len(spec.TwinNamings) > 0 && !slices.Contains(spec.TwinNamings, n) {
		return fmt.Sprintf("its naming is %s and the policy allows only %s", n, joinNamings(spec.TwinNamings))
	}
	re, err := TwinNamePattern(spec.TwinNamePattern)
	switch {
	case err != nil:
		return "the policy's " + err.Error() + ", which allows no new twin"
	case re != nil && !re.MatchString(twin):
		return fmt.Sprintf("it does not match the policy's twinNamePattern %q", spec.TwinNamePattern)
	}
	return ""
}

// CheckTwin returns why policy p (nil: no TenantPolicy, which allows every
// twin) refuses to create a twin, with reason PolicyDenied and a message
// that names the policy, the rule and what to do; nil when it allows it.
func CheckTwin(p *peeringv1alpha1.TenantPolicy, twin, homeNamespace, homeClusterID string) *naming.Problem {
	if p == nil {
		return nil
	}
	why := Violation(p.Spec, twin, homeNamespace, homeClusterID)
	if why == "" {
		return nil
	}
	return &naming.Problem{Reason: peeringv1alpha1.PolicyDeniedReason, Message: fmt.Sprintf(
		"the provider's TenantPolicy %s/%s does not allow twin namespace %q of home namespace %s: %s; %s",
		p.Namespace, p.Name, twin, homeNamespace, why, fix(p.Spec, twin, homeNamespace, homeClusterID))}
}

// fix is what the home cluster's user, or the provider's admin, can do about
// a refused twin.
func fix(spec peeringv1alpha1.TenantPolicySpec, twin, homeNamespace, homeClusterID string) string {
	admin := "or ask the provider's admin to change the policy ('stretchctl policy show' on the provider shows it)"
	if _, err := TwinNamePattern(spec.TwinNamePattern); err != nil {
		return "the provider's admin must fix the pattern ('stretchctl policy set " + homeClusterID + " --twin-name-pattern RE' on the provider)"
	}
	n := Naming(twin, homeNamespace, homeClusterID)
	if len(spec.TwinNamings) > 0 && !slices.Contains(spec.TwinNamings, n) {
		return "offload the namespace with namespaceMappingStrategy " + joinNamings(spec.TwinNamings) + ", " + admin
	}
	return "choose a twin name that matches it (namespaceMappingStrategy SelectedName with spec.remoteNamespaceName), " + admin
}

func joinNamings(namings []peeringv1alpha1.TwinNaming) string {
	s := make([]string, len(namings))
	for i, n := range namings {
		s[i] = string(n)
	}
	slices.Sort(s)
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// HomeOfTwin is the home cluster ID of namespace labels and annotations
// that Stretch gave a twin (origin annotation and label agreeing), or "".
func HomeOfTwin(labels, annotations map[string]string) string {
	id := annotations[wellknown.RemoteNamespaceOriginAnnotation]
	if id == "" || labels[wellknown.OriginClusterIDLabel] != id {
		return ""
	}
	return id
}

// TwinHome is the home cluster ID of namespace ns when Stretch made it a
// twin, "" when it is not one or does not exist: what the provider's
// admission of objects in twins starts with.
func TwinHome(ctx context.Context, c client.Reader, ns string) (string, error) {
	n := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: ns}, n); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	return HomeOfTwin(n.Labels, n.Annotations), nil
}

// HomeOfTenant is the home cluster ID whose tenant namespace namespace is, or
// "" when it is not a tenant namespace.
func HomeOfTenant(namespace string) string {
	id, ok := strings.CutPrefix(namespace, wellknown.TenantNamespacePrefix)
	if !ok || identity.ValidateClusterID(id) != nil {
		return ""
	}
	return id
}
