package checks

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/naming"
	"stretch.dev/stretch/internal/placement"
)

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
			names = append(names, strings.TrimPrefix(n.Name, wellknown.VirtualNodePrefix))
		}
	}
	return names
}
