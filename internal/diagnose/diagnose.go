// Package diagnose runs the checks of the namespace offloading FAQ over what
// was observed of a home cluster: pure functions, so that each failure case
// is a table row. stretchctl diagnose collects the observations.
package diagnose

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"

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
}

// Run runs every check that applies, in the FAQ's order.
func Run(o Observed) []Check {
	off, checks := resource(o)
	if off == nil {
		return checks
	}
	checks = append(checks, phase(off), selectorSyntax(off), selection(o, off), twinName(o, off), conflicts(off), strategy(o, off))
	return append(checks, pendingPods(o, off)...)
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

func phase(off *offloadingv1alpha1.NamespaceOffloading) Check {
	p := off.Status.OffloadingPhase
	c := Check{Name: "phase", Detail: fmt.Sprintf("phase %s: %s", orDash(string(p)), phaseMeaning[p])}
	switch p {
	case offloadingv1alpha1.ReadyPhase:
		c.Result = Passed
	case offloadingv1alpha1.InProgressPhase, offloadingv1alpha1.TerminatingPhase, "":
		c.Result, c.Fix = Warning, "wait, then run this again; the checks below say what is missing"
	default:
		c.Result, c.Fix = Failed, "see the checks below"
	}
	return c
}

func selectorSyntax(off *offloadingv1alpha1.NamespaceOffloading) Check {
	c := Check{Name: "cluster selector syntax"}
	if msg, ok := off.Annotations[offloadingv1alpha1.ClusterSelectorErrorAnnotation]; ok {
		c.Result, c.Detail = Failed, "spec.clusterSelector cannot be parsed: "+msg
		c.Fix = fmt.Sprintf("fix spec.clusterSelector (kubectl edit namespaceoffloading offloading -n %s), or offload again with --selector", off.Namespace)
		return c
	}
	c.Result, c.Detail = Passed, "spec.clusterSelector parses"
	return c
}

func selection(o Observed, off *offloadingv1alpha1.NamespaceOffloading) Check {
	c := Check{Name: "virtual nodes against the selector"}
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
	return c
}

func conflicts(off *offloadingv1alpha1.NamespaceOffloading) Check {
	c := Check{Name: "namespaces on the providers"}
	var failed, fine []string
	for _, provider := range off.Status.Providers() {
		conds := off.Status.RemoteNamespacesConditions[provider]
		if meta.IsStatusConditionFalse(conds, offloadingv1alpha1.OffloadingRequiredCondition) {
			continue
		}
		r := meta.FindStatusCondition(conds, offloadingv1alpha1.RemoteNamespaceReadyCondition)
		switch {
		case r == nil:
		case r.Status == "True":
			fine = append(fine, provider+": the twin exists, created by Stretch for this cluster")
		// Names refused for their length or form are the twin name check's.
		case r.Reason == offloadingv1alpha1.CreationFailedReason && strings.HasPrefix(r.Message, peeringv1alpha1.AlreadyExistsReason+":"):
			failed = append(failed, fmt.Sprintf("%s: %s", provider, r.Message))
		default:
			fine = append(fine, fmt.Sprintf("%s: no conflicting namespace reported (%s)", provider, r.Reason))
		}
	}
	if len(failed) == 0 {
		c.Result, c.Detail = Passed, "no provider reports a conflicting namespace"
		if len(fine) > 0 {
			c.Detail += "; " + strings.Join(fine, "; ")
		}
		return c
	}
	c.Result, c.Detail = Failed, strings.Join(failed, "; ")
	c.Fix = "a namespace with the twin's name that Stretch did not create for this cluster is never touched: remove or rename it on that provider, or offload with --namespace-mapping-strategy SelectedName"
	return c
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
		} else if remote && labelled && !tolerates(&pod) {
			c.Result = Failed
			c.Detail = "it was not placed by Stretch (created before the namespace was offloaded, or without the webhook): " + c.Detail
			c.Fix = fmt.Sprintf("delete it so that its controller creates it again: kubectl delete pod -n %s %s", pod.Namespace, pod.Name)
		} else {
			c.Fix = "see the scheduler's message; kubectl describe pod -n " + pod.Namespace + " " + pod.Name
		}
		checks = append(checks, c)
	}
	return checks
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
