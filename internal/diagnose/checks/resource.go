package checks

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

func resource(o Observed) (*offloadingv1alpha1.NamespaceOffloading, []Check) {
	var found *offloadingv1alpha1.NamespaceOffloading
	var others []string
	for i := range o.Offloadings {
		if o.Offloadings[i].Name == wellknown.NamespaceOffloadingName {
			found = &o.Offloadings[i]
		} else {
			others = append(others, o.Offloadings[i].Name)
		}
	}
	c := Check{Name: "NamespaceOffloading named offloading"}
	switch {
	case found != nil && len(others) == 0:
		c.Result, c.Detail = Passed, fmt.Sprintf("namespace %s has NamespaceOffloading %q", o.Namespace, found.Name)
	case found != nil:
		c.Result, c.Detail = Warning, fmt.Sprintf("namespace %s also has NamespaceOffloadings %s, which are ignored", o.Namespace, strings.Join(others, ", "))
		c.Fix = fmt.Sprintf("delete them: kubectl delete namespaceoffloading -n %s %s", o.Namespace, strings.Join(others, " "))
	case len(others) > 0:
		c.Result, c.Detail = Failed, fmt.Sprintf("namespace %s has NamespaceOffloadings %s, but Stretch reconciles only the one named %q", o.Namespace, strings.Join(others, ", "), wellknown.NamespaceOffloadingName)
		c.Fix = fmt.Sprintf("create it with the right name: stretchctl offload namespace %s (then delete %s)", o.Namespace, strings.Join(others, ", "))
	default:
		c.Result, c.Detail = Failed, fmt.Sprintf("namespace %s is not offloaded: it has no NamespaceOffloading", o.Namespace)
		c.Fix = fmt.Sprintf("stretchctl offload namespace %s", o.Namespace)
	}
	return found, []Check{c}
}

var phaseMeaning = map[offloadingv1alpha1.OffloadingPhase]string{
	offloadingv1alpha1.ReadyPhase:             "every selected provider has its twin namespace",
	offloadingv1alpha1.InProgressPhase:        "providers are still creating the twin namespaces",
	offloadingv1alpha1.NoClusterSelectedPhase: "no provider is selected: the cluster selector is invalid or matches no virtual node",
	offloadingv1alpha1.SomeFailedPhase:        "some providers could not create the twin namespace",
	offloadingv1alpha1.AllFailedPhase:         "no provider could create the twin namespace",
	offloadingv1alpha1.TerminatingPhase:       "the namespace is being unoffloaded",
	"":                                        "the controller has not reconciled it yet (is stretch-controller-manager running?)",
}

// Names of the checks that others refer to.
const (
	selectorSyntaxCheck = "cluster selector syntax"
	selectionCheck      = "virtual nodes against the selector"
	providersCheck      = "namespaces on the providers"
)

func phase(off *offloadingv1alpha1.NamespaceOffloading) Check {
	p := off.Status.OffloadingPhase
	c := Check{Name: "phase", Detail: fmt.Sprintf("phase %s: %s", orDash(string(p)), phaseMeaning[p])}
	switch p {
	case offloadingv1alpha1.ReadyPhase:
		c.Result = Passed
	case offloadingv1alpha1.InProgressPhase, offloadingv1alpha1.TerminatingPhase, "":
		c.Result = Warning
		c.Fix = fmt.Sprintf("wait, then run this again; the check %q below says what each provider reports", providersCheck)
	case offloadingv1alpha1.NoClusterSelectedPhase:
		c.Result = Failed
		c.Fix = fmt.Sprintf("the checks %q and %q below say why", selectorSyntaxCheck, selectionCheck)
	default:
		var failed []string
		for _, name := range off.Status.Providers() {
			if r := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition); r != nil && r.Reason == offloadingv1alpha1.CreationFailedReason {
				failed = append(failed, fmt.Sprintf("%s (%s)", name, failureReason(r)))
			}
		}
		if len(failed) > 0 {
			c.Detail += ": " + strings.Join(failed, ", ")
		}
		c.Result = Failed
		c.Fix = fmt.Sprintf("the check %q below gives each provider's reason and what to do", providersCheck)
	}
	return c
}

// failureReason is the provider's reason in a CreationFailed condition (see
// offloadingv1alpha1.CreationFailedMessage), else the condition's own.
func failureReason(r *metav1.Condition) string {
	if reason, _, ok := offloadingv1alpha1.SplitCreationFailedMessage(r.Message); ok && reason != "" {
		return reason
	}
	return r.Reason
}

func selectorSyntax(off *offloadingv1alpha1.NamespaceOffloading) Check {
	c := Check{Name: selectorSyntaxCheck}
	if msg, ok := off.Annotations[wellknown.ClusterSelectorErrorAnnotation]; ok {
		c.Result, c.Detail = Failed, "spec.clusterSelector cannot be parsed: "+msg
		c.Fix = fmt.Sprintf("fix spec.clusterSelector (kubectl edit namespaceoffloading offloading -n %s), or offload again with --selector", off.Namespace)
		return c
	}
	c.Result, c.Detail = Passed, "spec.clusterSelector parses"
	return c
}
