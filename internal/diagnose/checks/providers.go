package checks

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/naming"
)

// providers reports, for every selected provider, the state of its twin:
// from the provider's own report when it could be asked, else from the home
// status, which carries the provider's last reason and message.
func providers(o Observed, off *offloadingv1alpha1.NamespaceOffloading) Check {
	c := Check{Name: providersCheck, Result: Passed}
	twin := off.Status.RemoteNamespaceName
	if twin == "" {
		twin = naming.TwinName(off.Spec, off.Namespace, o.HomeClusterID)
	}
	var lines, fixes []string
	for _, name := range Concerned(off, slices.Collect(maps.Keys(o.Providers))...) {
		var p *Provider
		if seen, ok := o.Providers[name]; ok {
			p = &seen
		}
		v := judge(name, p, meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition),
			twin, off, o.HomeClusterID)
		lines = append(lines, v.Detail)
		if v.Fix != "" && !slices.Contains(fixes, v.Fix) {
			fixes = append(fixes, v.Fix)
		}
		if severity[v.Result] > severity[c.Result] {
			c.Result = v.Result
		}
	}
	if len(lines) == 0 {
		c.Detail = "no provider is selected, so none has a twin"
		return c
	}
	c.Detail = strings.Join(lines, "; ")
	c.Fix = strings.Join(fixes, "; ")
	return c
}

var severity = map[Result]int{Passed: 0, Warning: 1, Failed: 2}

// report is one provider's state of the twin: Phase, Reason and Message as
// the provider's RemoteNamespace status has them.
type report struct {
	peeringv1alpha1.RemoteNamespaceStatus
	// missing: the provider was asked and holds no request.
	missing bool
	// fromHome: read from the home status, not from the provider.
	fromHome bool
	// other: a home reason this diagnosis does not know; its message says
	// what to do.
	other bool
}

// homeReport rebuilds the provider's report from the home Ready condition.
func homeReport(r *metav1.Condition) report {
	rep := report{fromHome: true}
	rep.Message = r.Message
	switch {
	case r.Status == metav1.ConditionTrue:
		rep.Phase = peeringv1alpha1.RemoteNamespaceReady
	case r.Reason == offloadingv1alpha1.CreationFailedReason:
		rep.Phase, rep.Reason = peeringv1alpha1.RemoteNamespaceCreationFailed, failureReason(r)
		_, rep.Message, _ = offloadingv1alpha1.SplitCreationFailedMessage(r.Message)
	case offloadingv1alpha1.TwinDeleting(r.Reason):
		rep.Phase = peeringv1alpha1.RemoteNamespaceTerminating
	case r.Reason == offloadingv1alpha1.ProviderUnreachableReason:
		rep.Reason = r.Reason
	case r.Reason == offloadingv1alpha1.CreatingReason:
		rep.Phase = peeringv1alpha1.RemoteNamespaceCreating
	default:
		rep.Reason, rep.other = r.Reason, true
	}
	return rep
}

// stale says whether the home Ready condition contradicts the provider's
// own report: the home controller has not caught up with the provider.
func stale(rep report, home *metav1.Condition) bool {
	if rep.missing {
		return home.Status == metav1.ConditionTrue || home.Reason == offloadingv1alpha1.CreationFailedReason
	}
	switch rep.Phase {
	case peeringv1alpha1.RemoteNamespaceReady:
		return home.Reason != offloadingv1alpha1.NamespaceCreatedReason
	case peeringv1alpha1.RemoteNamespaceCreationFailed:
		return home.Reason != offloadingv1alpha1.CreationFailedReason
	case peeringv1alpha1.RemoteNamespaceCreating:
		return home.Reason != offloadingv1alpha1.CreatingReason
	case peeringv1alpha1.RemoteNamespaceTerminating:
		return !offloadingv1alpha1.TwinDeleting(home.Reason)
	}
	return false
}

// judge is the verdict on one provider: the Check's Result, Detail (one
// line naming the provider) and Fix. p is nil when the collector did not
// look at the provider.
func judge(name string, p *Provider, home *metav1.Condition, twin string, off *offloadingv1alpha1.NamespaceOffloading, homeID string) Check {
	tenant := peeringv1alpha1.TenantNamespace(homeID)
	deleting := !off.DeletionTimestamp.IsZero() || off.Status.OffloadingPhase == offloadingv1alpha1.TerminatingPhase
	if p == nil {
		p = &Provider{Peered: true}
	}
	peerFix := fmt.Sprintf("check the peering with %s: 'stretchctl status' shows its conditions and what to do", name)
	if deleting {
		peerFix += fmt.Sprintf("; if it is gone for good, finish without it: stretchctl unoffload namespace %s --force", off.Namespace)
	}

	var rep report
	switch {
	case p.Asked && p.Request == nil:
		rep.missing = true
	case p.Asked:
		rep.RemoteNamespaceStatus = *p.Request
	case home != nil:
		rep = homeReport(home)
	}
	// Where the report comes from, when that matters to the reader.
	note := ""
	switch {
	case !p.Asked && p.AskError != "":
		note = fmt.Sprintf(" (from the home status: %s could not be asked: %s)", name, p.AskError)
	case p.Asked && home != nil && stale(rep, home):
		note = fmt.Sprintf(" (the home status still says %s: is stretch-controller-manager running on the home cluster?)", home.Reason)
	}
	unreachable := p.Unreachable
	if unreachable == "" && rep.fromHome {
		_, unreachable, _ = offloadingv1alpha1.SplitUnreachableMessage(rep.Message)
	}

	switch {
	case !p.Peered:
		return Check{Result: Failed, Detail: fmt.Sprintf("%s: the home cluster no longer peers with it (there is no RemoteCluster %s), yet the status names it", name, name),
			Fix: fmt.Sprintf("peer with %s again ('stretchctl peer'), or unoffload with --force and offload again", name)}
	case unreachable != "":
		last := ""
		if home != nil {
			seen, _, _ := offloadingv1alpha1.SplitUnreachableMessage(home.Message)
			last = fmt.Sprintf("; it last reported %s: %s", home.Reason, seen)
		}
		return Check{Result: Failed, Detail: fmt.Sprintf("%s does not answer the home cluster: %s%s", name, unreachable, last), Fix: peerFix}
	case rep.Reason == offloadingv1alpha1.ProviderUnreachableReason:
		return Check{Result: Failed, Detail: fmt.Sprintf("%s: %s: %s", name, rep.Reason, rep.Message), Fix: peerFix}
	case home != nil && home.Reason == offloadingv1alpha1.TwinNotDeletedReason && !rep.missing:
		// The unoffload is overdue and the provider answers but keeps its
		// twin: the home message names the likely causes on the provider
		// and the way out.
		detail := fmt.Sprintf("%s: %s: %s", name, home.Reason, home.Message)
		if p.Asked {
			detail += fmt.Sprintf(" (%s reports its request %s)", name, orDash(string(rep.Phase)))
		}
		return Check{Result: Failed, Detail: detail,
			Fix: fmt.Sprintf("check that Stretch's controller-manager runs on %s and what holds twin %s there ('kubectl get namespace %s -o yaml' on %s); to finish without waiting: stretchctl unoffload namespace %s --force",
				name, twin, twin, name, off.Namespace)}
	case rep.other:
		return Check{Result: Failed, Detail: fmt.Sprintf("%s: %s: %s", name, rep.Reason, rep.Message),
			Fix: fmt.Sprintf("act on the home status's message about %s; 'kubectl get namespaceoffloading offloading -n %s -o yaml' shows it", name, off.Namespace)}
	case rep.missing && deleting:
		return Check{Result: Passed, Detail: fmt.Sprintf("%s: the twin and its request are gone", name)}
	case rep.missing:
		return Check{Result: Warning, Detail: fmt.Sprintf("%s holds no request for a twin of %s in %s%s", name, off.Namespace, tenant, note),
			Fix: "the home cluster's stretch-controller-manager sends the request: check that it runs, then run this again"}
	case !p.Asked && home == nil:
		return Check{Result: Warning, Detail: fmt.Sprintf("%s is selected, but the home status says nothing of its twin yet%s", name, note),
			Fix: "wait, then run this again; if it stays so, check that stretch-controller-manager runs on the home cluster"}
	}

	// A failure is told by the provider's reason, as in the home status
	// ("AlreadyExists: ..."); other phases by the phase, then the reason.
	line := fmt.Sprintf("%s: %s", name, rep.Phase)
	switch {
	case rep.Phase == peeringv1alpha1.RemoteNamespaceCreationFailed && rep.Reason != "":
		line = fmt.Sprintf("%s: %s", name, rep.Reason)
	case rep.Reason != "" && rep.Reason != string(rep.Phase):
		line += fmt.Sprintf(" (%s)", rep.Reason)
	}
	if rep.Message != "" {
		line += ": " + rep.Message
	}
	if rep.Phase == "" {
		line = name + ": it has the request but has not answered it yet"
	}
	line += note
	switch rep.Phase {
	case peeringv1alpha1.RemoteNamespaceReady:
		return Check{Result: Passed, Detail: fmt.Sprintf("%s: twin %s exists, created by Stretch for this cluster%s", name, twin, note)}
	case peeringv1alpha1.RemoteNamespaceCreationFailed:
		return Check{Result: Failed, Detail: line, Fix: failureFix(name, twin, tenant, off.Namespace, rep.Reason)}
	case peeringv1alpha1.RemoteNamespaceTerminating:
		return Check{Result: Warning, Detail: line, Fix: fmt.Sprintf("wait until %s has deleted the twin, then run this again", name)}
	default: // Creating, or not answered yet
		return Check{Result: Warning, Detail: line,
			Fix: fmt.Sprintf("wait, then run this again; if it stays so, the stretch-controller-manager of %s does not create the twin: its logs and 'kubectl get remotenamespace %s -n %s -o yaml' on %s say why", name, off.Namespace, tenant, name)}
	}
}

// failureFix says what to do about a provider that refused the twin, by the
// provider's reason.
func failureFix(provider, twin, tenant, namespace, reason string) string {
	switch reason {
	case peeringv1alpha1.AlreadyExistsReason:
		return fmt.Sprintf("namespace %s on %s was not created by Stretch for this cluster (the provider's message says who made it) and Stretch never touches it: remove or rename it on that provider, or unoffload and offload again with --namespace-mapping-strategy SelectedName --remote-namespace-name OTHER", twin, provider)
	case peeringv1alpha1.NameTooLongReason, peeringv1alpha1.InvalidNameReason, peeringv1alpha1.ForbiddenReason:
		return fmt.Sprintf("%s refuses the twin name %s: unoffload, then offload with a name it accepts: --namespace-mapping-strategy SelectedName --remote-namespace-name NAME", provider, twin)
	default:
		return fmt.Sprintf("act on %s's message; on %s, 'kubectl get remotenamespace %s -n %s -o yaml' and its events say more", provider, provider, namespace, tenant)
	}
}
