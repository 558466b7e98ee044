package peering

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

// ConditionTypes are the conditions of a RemoteCluster, in the order a
// peering comes up: each needs the one before it.
var ConditionTypes = []string{
	peeringv1alpha1.APIReachableCondition,
	peeringv1alpha1.AuthenticatedCondition,
	peeringv1alpha1.VirtualNodeReadyCondition,
}

// ConditionStatus is the status of one condition, "Unknown" when absent.
func ConditionStatus(conds []metav1.Condition, condType string) metav1.ConditionStatus {
	if c := meta.FindStatusCondition(conds, condType); c != nil {
		return c.Status
	}
	return metav1.ConditionUnknown
}

// Problem is the first condition of ConditionTypes that is not True, or nil
// when the peering is healthy.
func Problem(conds []metav1.Condition) *metav1.Condition {
	for _, t := range ConditionTypes {
		c := meta.FindStatusCondition(conds, t)
		if c == nil {
			return &metav1.Condition{Type: t, Status: metav1.ConditionUnknown, Reason: "NoStatus",
				Message: "the home controller (stretch-controller-manager) has not reported on this peering yet"}
		}
		if c.Status != metav1.ConditionTrue {
			return c
		}
	}
	return nil
}

// Summary is a one-line account of a RemoteCluster's conditions, e.g.
// "APIReachable=True Authenticated=False (Unauthorized: token rejected)".
func Summary(conds []metav1.Condition) string {
	parts := make([]string, 0, len(ConditionTypes)+1)
	for _, t := range ConditionTypes {
		parts = append(parts, fmt.Sprintf("%s=%s", t, ConditionStatus(conds, t)))
	}
	if p := Problem(conds); p != nil {
		parts = append(parts, fmt.Sprintf("(%s: %s)", p.Reason, p.Message))
	}
	return strings.Join(parts, " ")
}
