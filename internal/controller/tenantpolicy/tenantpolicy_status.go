package tenantpolicy

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/tenancy"
)

// maxListed bounds the twins a message names.
const maxListed = 10

// setEnforced sets the Enforced condition of policy, whose home cluster is
// home ("" when the policy is not in a tenant namespace) and whose twins are
// twins.
func setEnforced(policy *peeringv1alpha1.TenantPolicy, home string, twins []corev1.Namespace) {
	status, reason, message := enforced(policy, home, twins)
	meta.SetStatusCondition(&policy.Status.Conditions, metav1.Condition{
		Type: tenancy.EnforcedCondition, Status: status, Reason: reason, Message: message, ObservedGeneration: policy.Generation,
	})
}

// enforced is the status, reason and message of the Enforced condition.
func enforced(policy *peeringv1alpha1.TenantPolicy, home string, twins []corev1.Namespace) (metav1.ConditionStatus, string, string) {
	if home == "" {
		return metav1.ConditionFalse, tenancy.NotInTenantNamespaceReason, fmt.Sprintf(
			"TenantPolicy %s/%s applies to no home cluster: it is read only in a tenant namespace, %s<home cluster ID>; create it there ('stretchctl policy set HOME' does)",
			policy.Namespace, policy.Name, wellknown.TenantNamespacePrefix)
	}
	level := tenancy.PodSecurityLevel(policy)
	var unlabelled, outside []string
	live := 0
	for _, ns := range twins {
		if !ns.DeletionTimestamp.IsZero() {
			continue // going, with everything in it
		}
		live++
		if drift := tenancy.PodSecurityDrift(ns.Labels, level); len(drift) > 0 {
			unlabelled = append(unlabelled, fmt.Sprintf("%s (%s)", ns.Name, strings.Join(drift, ", ")))
		}
		if why := tenancy.Violation(policy.Spec, ns.Name, ns.Labels[wellknown.OriginNamespaceLabel], home); why != "" {
			outside = append(outside, fmt.Sprintf("%s (%s)", ns.Name, why))
		}
	}

	var reasons, messages []string
	if _, err := tenancy.TwinNamePattern(policy.Spec.TwinNamePattern); err != nil {
		reasons = append(reasons, tenancy.InvalidTwinNamePatternReason)
		messages = append(messages, fmt.Sprintf("%s: no new twin is created for home cluster %s until it is fixed; existing twins are kept", err, home))
		outside = nil // every twin is outside an invalid pattern: said once above
	}
	if len(unlabelled) > 0 {
		reasons = append(reasons, tenancy.PodSecurityLabelsMissingReason)
		messages = append(messages, fmt.Sprintf("%d of %d twins lack the Pod Security labels of level %s: %s; the tenant controller sets them again, so if this lasts check that stretch-controller-manager runs and may patch namespaces",
			len(unlabelled), live, level, list(unlabelled)))
	}
	if len(outside) > 0 {
		reasons = append(reasons, tenancy.TwinsOutsidePolicyReason)
		messages = append(messages, fmt.Sprintf("%d of %d twins were created before the policy forbade them and are kept with their workloads (not deleted): %s; unoffload them on the home cluster, or widen the policy",
			len(outside), live, list(outside)))
	}
	if len(reasons) > 0 {
		return metav1.ConditionFalse, reasons[0], strings.Join(messages, "; ")
	}
	if live == 0 {
		return metav1.ConditionTrue, tenancy.EnforcedReason, fmt.Sprintf("home cluster %s has no twin yet; its twins get Pod Security level %s", home, level)
	}
	return metav1.ConditionTrue, tenancy.EnforcedReason, fmt.Sprintf("all %d twins of home cluster %s carry Pod Security level %s and are allowed by the policy", live, home, level)
}

// list names at most maxListed items, sorted.
func list(items []string) string {
	slices.Sort(items)
	if len(items) <= maxListed {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:maxListed], ", "), len(items)-maxListed)
}
