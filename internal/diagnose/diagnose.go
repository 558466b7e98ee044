// Package diagnose runs the checks of the namespace offloading FAQ over what
// was observed of a home cluster: pure functions, so that each failure case
// is a table row. stretchctl diagnose collects the observations.
package diagnose

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/naming"
	"stretch.dev/stretch/internal/placement"
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
}

// Run runs every check that applies, in the FAQ's order.
func Run(o Observed) []Check {
	off, checks := resource(o)
	if off == nil {
		return checks
	}
	checks = append(checks, phase(off), selectorSyntax(off), selection(o, off), twinName(o, off), providers(o, off), strategy(o, off))
	checks = append(checks, pendingPods(o, off)...)
	return append(checks, refusedPods(o)...)
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

func resource(o Observed) (*offloadingv1alpha1.NamespaceOffloading, []Check) {
	var found *offloadingv1alpha1.NamespaceOffloading
	var others []string
	for i := range o.Offloadings {
		if o.Offloadings[i].Name == offloadingv1alpha1.NamespaceOffloadingName {
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
		c.Result, c.Detail = Failed, fmt.Sprintf("namespace %s has NamespaceOffloadings %s, but Stretch reconciles only the one named %q", o.Namespace, strings.Join(others, ", "), offloadingv1alpha1.NamespaceOffloadingName)
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
	if msg, ok := off.Annotations[offloadingv1alpha1.ClusterSelectorErrorAnnotation]; ok {
		c.Result, c.Detail = Failed, "spec.clusterSelector cannot be parsed: "+msg
		c.Fix = fmt.Sprintf("fix spec.clusterSelector (kubectl edit namespaceoffloading offloading -n %s), or offload again with --selector", off.Namespace)
		return c
	}
	c.Result, c.Detail = Passed, "spec.clusterSelector parses"
	return c
}

func selection(o Observed, off *offloadingv1alpha1.NamespaceOffloading) Check {
	c := Check{Name: selectionCheck}
	sel, err := placement.ParseClusterSelector(off.Spec.ClusterSelector)
	if err != nil {
		c.Result, c.Detail, c.Fix = Failed, "the selector cannot be evaluated (see the syntax check)", "fix the selector first"
		return c
	}
	if len(o.VirtualNodes) == 0 {
		c.Result, c.Detail, c.Fix = Failed, "there is no virtual node: this cluster peers with no provider, or their virtual nodes are not created yet", "stretchctl peer, then stretchctl status"
		return c
	}
	var selected, lines []string
	for _, n := range o.VirtualNodes {
		node := placement.Node{Name: n.Name, Labels: n.Labels}
		if sel.Matches(node) {
			selected = append(selected, n.Name)
			continue
		}
		var why []string
		for _, v := range sel.Explain(node) {
			if v.Empty {
				why = append(why, fmt.Sprintf("term %d is empty", v.Index))
			} else {
				why = append(why, fmt.Sprintf("term %d needs %s", v.Index, strings.Join(v.Failed, " and ")))
			}
		}
		lines = append(lines, fmt.Sprintf("%s is not selected: %s", n.Name, strings.Join(why, "; ")))
	}
	sort.Strings(lines)
	if len(selected) == 0 {
		c.Result, c.Detail = Failed, "no virtual node matches the selector: "+strings.Join(lines, "; ")
		c.Fix = "compare the selector with the virtual nodes' labels (kubectl get nodes --show-labels); labels come from the providers' install (--cluster-labels) and the RemoteClusters' spec.labels"
		return c
	}
	c.Result, c.Detail = Passed, "selected: "+strings.Join(selected, ", ")
	if len(lines) > 0 {
		c.Detail += "; " + strings.Join(lines, "; ")
	}
	return c
}

func twinName(o Observed, off *offloadingv1alpha1.NamespaceOffloading) Check {
	twin := naming.TwinName(off.Spec, off.Namespace, o.HomeClusterID)
	c := Check{Name: "twin namespace name"}
	if p := naming.CheckTwinName(twin, off.Namespace, off.Spec.NamespaceMappingStrategy); p != nil {
		c.Result, c.Detail = Failed, fmt.Sprintf("%s: %s", p.Reason, p.Message)
		c.Fix = "unoffload, then offload with a name that fits: --namespace-mapping-strategy SelectedName --remote-namespace-name NAME"
		return c
	}
	c.Result, c.Detail = Passed, fmt.Sprintf("twin %s (%d of at most %d characters)", twin, len(twin), naming.MaxNamespaceLength)
	if s := off.Spec.NamespaceMappingStrategy; s == "" || s == offloadingv1alpha1.DefaultNameMapping {
		c.Detail += fmt.Sprintf("; with DefaultName a home namespace may have at most %d characters (%s has %d)",
			naming.MaxDefaultNameHomeNamespaceLength, off.Namespace, len(off.Namespace))
	}
	return c
}

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

// Concerned names, sorted and once each, the providers whose twin matters to
// the offloading: those its status says are selected, and others. The
// collector gives those whose virtual node the selector picks
// (SelectorPicks), as the status may lag behind; the checks, those the
// collector looked at.
func Concerned(off *offloadingv1alpha1.NamespaceOffloading, others ...string) []string {
	names := append(off.Status.SelectedProviders(), others...)
	slices.Sort(names)
	return slices.Compact(names)
}

// SelectorPicks names the providers whose virtual node, among nodes, the
// offloading's cluster selector picks; none when it cannot be parsed.
func SelectorPicks(off *offloadingv1alpha1.NamespaceOffloading, nodes []corev1.Node) []string {
	sel, err := placement.ParseClusterSelector(off.Spec.ClusterSelector)
	if err != nil {
		return nil
	}
	var names []string
	for _, n := range nodes {
		if sel.Matches(placement.Node{Name: n.Name, Labels: n.Labels}) {
			names = append(names, strings.TrimPrefix(n.Name, peeringv1alpha1.VirtualNodePrefix))
		}
	}
	return names
}

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

func strategy(o Observed, off *offloadingv1alpha1.NamespaceOffloading) Check {
	s := off.Spec.PodOffloadingStrategy
	if s == "" {
		s = offloadingv1alpha1.LocalAndRemoteStrategy
	}
	detail := map[offloadingv1alpha1.PodOffloadingStrategy]string{
		offloadingv1alpha1.LocalAndRemoteStrategy: "pods run at home or on the selected providers",
		offloadingv1alpha1.RemoteStrategy:         "pods run only on the selected providers",
		offloadingv1alpha1.LocalStrategy:          "pods stay home: only the twin namespaces are created",
	}[s]
	c := Check{Name: "pod offloading strategy", Result: Passed, Detail: fmt.Sprintf("%s: %s", s, detail)}
	if pending := pendingNames(o.Pods); s == offloadingv1alpha1.LocalStrategy && len(pending) > 0 {
		c.Result = Warning
		c.Detail += fmt.Sprintf("; pods %s are Pending at home", strings.Join(pending, ", "))
		c.Fix = fmt.Sprintf(`if they should run on providers: kubectl patch namespaceoffloading offloading -n %s --type merge -p '{"spec":{"podOffloadingStrategy":"LocalAndRemote"}}', then recreate them`, off.Namespace)
	}
	return c
}

func pendingNames(pods []corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		if p.Status.Phase == corev1.PodPending && p.Spec.NodeName == "" {
			names = append(names, p.Name)
		}
	}
	return names
}

// pendingPods checks each Pending pod: terms that contradict, creation before
// the namespace was ready, and the scheduler's last word.
func pendingPods(o Observed, off *offloadingv1alpha1.NamespaceOffloading) []Check {
	var checks []Check
	labelled := o.NamespaceLabels[offloadingv1alpha1.SchedulingEnabledLabel] == "true"
	remote := off.Spec.PodOffloadingStrategy != offloadingv1alpha1.LocalStrategy
	ready := readySince(off)
	for _, pod := range o.Pods {
		if pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" {
			continue
		}
		c := Check{Name: "pending pod " + pod.Name, Result: Warning, Detail: "Pending, not scheduled yet"}
		if msg := lastFailedScheduling(o.Events, pod.Name); msg != "" {
			c.Detail = "the scheduler says: " + msg
		}
		terms := requiredTerms(&pod)
		if len(terms) > 0 && allContradict(terms) {
			var why []string
			for i, t := range terms {
				why = append(why, fmt.Sprintf("term %d: %s", i, strings.Join(placement.Contradiction(t), " contradicts ")))
			}
			c.Result = Failed
			c.Detail = "no node can ever match its node affinity: " + strings.Join(why, "; ") + "; " + c.Detail
			c.Fix = "fix the pod's own nodeAffinity or the NamespaceOffloading's clusterSelector so that they can agree"
		} else if why := createdEarly(&pod, off, ready); remote && why != "" {
			c.Result = Failed
			c.Detail = "it was not placed by Stretch: " + why + ": " + c.Detail
			c.Fix = recreate(&pod)
		} else if remote && labelled && !tolerates(&pod) {
			c.Result = Failed
			c.Detail = "it was not placed by Stretch: created after the offloading was Ready, but without the virtual-node toleration that Stretch's webhook adds (was the webhook configuration missing?): " + c.Detail
			c.Fix = "check that stretch-controller-manager serves its webhooks, then " + recreate(&pod)
		} else {
			c.Fix = "see the scheduler's message; kubectl describe pod -n " + pod.Namespace + " " + pod.Name
		}
		checks = append(checks, c)
	}
	return checks
}

// refusedPodsCheck is the name of the check of the pods providers refused.
const refusedPodsCheck = "pods refused by providers"

// Bounds of what refusedPods quotes: a few pods, each with the start of the
// provider's words; 'kubectl describe pod' shows them whole.
const (
	maxRefusedPods      = 5
	maxRefusalMessage   = 300
	refusalMessageTrail = "..."
)

// refusalRetryMax is how long, at most, the virtual kubelet waits before it
// tries a refused pod again (the max of its refusalRetries): what a
// provider's admin changes is noticed within it.
const refusalRetryMax = "5 minutes"

// refusedPods checks the pods bound to a virtual node whose remote pod the
// provider refused (their PodOffloadedCondition is False with reason
// RefusedByProvider): they stay Pending until the pod or the provider's
// policy changes. Like pendingPods, it says nothing when there are none.
func refusedPods(o Observed) []Check {
	type refused struct{ pod, node, words string }
	var found []refused
	var providers []string
	for _, pod := range o.Pods {
		c := podCondition(&pod, offloadingv1alpha1.PodOffloadedCondition)
		if c == nil || c.Status != corev1.ConditionFalse || c.Reason != offloadingv1alpha1.RefusedByProviderReason {
			continue
		}
		provider := strings.TrimPrefix(pod.Spec.NodeName, peeringv1alpha1.VirtualNodePrefix)
		found = append(found, refused{pod: pod.Name, node: pod.Spec.NodeName, words: providerWords(provider, c.Message)})
		if provider != "" && !slices.Contains(providers, provider) {
			providers = append(providers, provider)
		}
	}
	if len(found) == 0 {
		return nil
	}
	slices.SortFunc(found, func(a, b refused) int { return strings.Compare(a.pod, b.pod) })
	slices.Sort(providers)
	var lines []string
	for _, r := range found[:min(len(found), maxRefusedPods)] {
		lines = append(lines, fmt.Sprintf("%s on %s: %s", r.pod, orDash(r.node), r.words))
	}
	if more := len(found) - maxRefusedPods; more > 0 {
		lines = append(lines, fmt.Sprintf("and %d more", more))
	}
	subject := "1 pod is Pending, refused by its provider"
	if len(found) > 1 {
		subject = fmt.Sprintf("%d pods are Pending, refused by their provider", len(found))
	}
	home := o.HomeClusterID
	if home == "" {
		home = "<home cluster ID>"
	}
	admins := "their provider"
	if len(providers) > 0 {
		admins = strings.Join(providers, ", ")
	}
	return []Check{{Name: refusedPodsCheck, Result: Failed,
		Detail: fmt.Sprintf("%s: %s", subject, strings.Join(lines, "; ")),
		Fix: fmt.Sprintf("change each pod (or its controller's template) to meet what the provider's message names; a changed pod is tried again at once. "+
			"Or ask the admin of %s to allow it: against that provider, 'stretchctl policy show %s' shows this cluster's policy and "+
			"'stretchctl policy set %s' with --limits, --priority-classes or --pod-security changes it (baseline is the loosest level a provider grants: a pod that needs privileged must change); "+
			"a refusal by another admission webhook of the provider is the admin's to lift too; the pods are tried again within %s of such a change. "+
			"'kubectl describe pod -n %s NAME' shows the provider's whole message",
			admins, home, home, refusalRetryMax, o.Namespace)}}
}

// providerWords is what the provider said in a refusal condition's message:
// the virtual kubelet writes "provider P refused the pod: WORDS; change the
// pod to meet...", and the rest is this check's Fix. A message in another
// form is quoted whole. Either is cut to maxRefusalMessage bytes.
func providerWords(provider, msg string) string {
	words := strings.TrimPrefix(msg, fmt.Sprintf("provider %s refused the pod: ", provider))
	if i := strings.LastIndex(words, "; change the pod to meet the provider's policy"); i >= 0 {
		words = words[:i]
	}
	if len(words) > maxRefusalMessage {
		words = strings.ToValidUTF8(words[:maxRefusalMessage-len(refusalMessageTrail)], "") + refusalMessageTrail
	}
	return words
}

// podCondition returns the condition of pod of type t, if any.
func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// recreate says how to have the pod created again, now that Stretch would
// place it: by its controller, if it has one.
func recreate(pod *corev1.Pod) string {
	if owner := metav1.GetControllerOf(pod); owner != nil {
		return fmt.Sprintf("delete it so that its controller, %s %s, creates it again: kubectl delete pod -n %s %s", owner.Kind, owner.Name, pod.Namespace, pod.Name)
	}
	return fmt.Sprintf("delete it and create it again (no controller does it for this pod): kubectl delete pod -n %s %s, then create it as before", pod.Namespace, pod.Name)
}

// readySince is when, as far as the status tells, the offloading could place
// pods: the earliest LastTransitionTime of the selected providers' Ready
// conditions that are True now. That is each provider's latest change to
// Ready, not the first time its twin was Ready: a twin that was Ready, then
// not, then Ready again moves it later. Zero when none is Ready.
func readySince(off *offloadingv1alpha1.NamespaceOffloading) time.Time {
	var since time.Time
	for _, name := range off.Status.SelectedProviders() {
		if r := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition); r != nil && r.Status == metav1.ConditionTrue &&
			(since.IsZero() || r.LastTransitionTime.Before(&metav1.Time{Time: since})) {
			since = r.LastTransitionTime.Time
		}
	}
	return since
}

// createdEarly says why a pod was created before Stretch could place it, or
// "". A pod with the virtual-node toleration that Stretch's webhook adds was
// placed by the webhook, whenever it was created (readySince moves later when
// a twin becomes Ready again, or another provider is selected). For a pod
// without it, the creation time tells why it lacks it: compared with the time
// the offloading became Ready (the webhook turns pods away before that), or,
// when no provider is Ready, with the NamespaceOffloading's creation. Both
// have a resolution of a second: a pod created within that second is early.
func createdEarly(pod *corev1.Pod, off *offloadingv1alpha1.NamespaceOffloading, ready time.Time) string {
	if tolerates(pod) {
		return ""
	}
	event := "the offloading became Ready"
	if ready.IsZero() {
		ready, event = off.CreationTimestamp.Time, "the NamespaceOffloading was created"
	}
	created := pod.CreationTimestamp.Time
	if ready.IsZero() || created.IsZero() || created.After(ready) {
		return ""
	}
	const lacks = ", and it lacks the virtual-node toleration that Stretch's webhook adds"
	if created.Equal(ready) {
		return fmt.Sprintf("it was created at %s, the second %s%s", created.UTC().Format(time.RFC3339), event, lacks)
	}
	return fmt.Sprintf("it was created at %s, before %s at %s%s", created.UTC().Format(time.RFC3339), event, ready.UTC().Format(time.RFC3339), lacks)
}

func requiredTerms(pod *corev1.Pod) []corev1.NodeSelectorTerm {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

func allContradict(terms []corev1.NodeSelectorTerm) bool {
	for _, t := range terms {
		if placement.Contradiction(t) == nil {
			return false
		}
	}
	return true
}

func tolerates(pod *corev1.Pod) bool {
	for _, t := range pod.Spec.Tolerations {
		if t.Key == peeringv1alpha1.VirtualNodeTaintKey || t.Key == "" && t.Operator == corev1.TolerationOpExists {
			return true
		}
	}
	return false
}

// lastFailedScheduling is the note of the newest FailedScheduling event
// about the pod.
func lastFailedScheduling(events []eventsv1.Event, pod string) string {
	var newest *eventsv1.Event
	for i := range events {
		e := &events[i]
		if e.Reason != "FailedScheduling" || e.Regarding.Kind != "Pod" || e.Regarding.Name != pod {
			continue
		}
		if newest == nil || eventTime(e).After(eventTime(newest)) {
			newest = e
		}
	}
	if newest == nil {
		return ""
	}
	return newest.Note
}

func eventTime(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	default:
		return e.DeprecatedLastTimestamp.Time
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
