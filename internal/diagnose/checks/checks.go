// Package checks runs the checks of the namespace offloading FAQ over what
// was observed of a home cluster: pure functions, so that each failure case
// is a table row, one file per family of checks (the resource, the
// selection, the providers, the pods). stretchctl diagnose collects the
// observations.
package checks

import (
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

// Result is the outcome of a check.
type Result string

// Results of a check.
const (
	Passed  Result = "passed"
	Warning Result = "warning"
	Failed  Result = "failed"
)

// Check is one verdict, with what to do when it did not pass.
type Check struct {
	Name   string `json:"name"`
	Result Result `json:"result"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Observed is what the checks look at, all read from the home cluster.
type Observed struct {
	Namespace     string
	HomeClusterID string
	// NamespaceLabels are the labels of the home namespace.
	NamespaceLabels map[string]string
	// Offloadings are every NamespaceOffloading of the namespace.
	Offloadings []offloadingv1alpha1.NamespaceOffloading
	// VirtualNodes are the nodes labelled stretch.dev/type=virtual-node.
	VirtualNodes []corev1.Node
	// Pods are the namespace's pods.
	Pods []corev1.Pod
	// Events are the namespace's events (the scheduler's among them).
	Events []eventsv1.Event
	// Providers are, by name, what the home cluster knows of the providers
	// the offloading concerns, and what each says itself of the twin.
	Providers map[string]Provider
}

// Provider is what the home cluster knows of one provider, and what the
// provider itself reports of the twin namespace when it could be asked.
type Provider struct {
	// Peered is whether the home cluster has a RemoteCluster of that name.
	Peered bool
	// Unreachable is why the home cluster cannot use the provider (its
	// RemoteCluster's APIReachable or Authenticated condition is False);
	// empty when it can.
	Unreachable string
	// Asked is whether the provider was read, with the home cluster's peer
	// credentials.
	Asked bool
	// Request is the status of the twin namespace request on the provider:
	// its own report. Nil when it has none, or was not asked.
	Request *peeringv1alpha1.RemoteNamespaceStatus
	// AskError is why the provider could not be asked.
	AskError string
	// PodCIDROverlap is the message of its RemoteCluster's PodCIDRsDistinct
	// condition when that is False; empty otherwise.
	PodCIDROverlap string
}

// Run runs every check that applies, in the FAQ's order.
func Run(o Observed) []Check {
	off, checks := resource(o)
	if off == nil {
		return checks
	}
	checks = append(checks, phase(off), selectorSyntax(off), selection(o, off), twinName(o, off), providers(o, off), strategy(o, off))
	checks = append(checks, pendingPods(o, off)...)
	checks = append(checks, refusedPods(o)...)
	return append(checks, podCIDROverlaps(o, off)...)
}

// AllPassed reports whether every check passed.
func AllPassed(checks []Check) bool {
	for _, c := range checks {
		if c.Result != Passed {
			return false
		}
	}
	return true
}

// Offloading is the NamespaceOffloading of o that Stretch reconciles, the
// one named offloading; nil when there is none.
func Offloading(o Observed) *offloadingv1alpha1.NamespaceOffloading {
	off, _ := resource(o)
	return off
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
