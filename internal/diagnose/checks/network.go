package checks

import (
	"fmt"
	"strings"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
)

// podCIDRsCheck is the name of the check of the providers' pod CIDRs.
const podCIDRsCheck = "pod CIDRs of the providers"

// podCIDROverlaps warns when a selected provider's pod CIDRs overlap this
// cluster's or another provider's (its RemoteCluster's PodCIDRsDistinct
// condition is False, docs/design.md §4.22): the pods run, but the pod IPs
// published in the namespace's Services' endpoints are ambiguous. It says
// nothing otherwise.
func podCIDROverlaps(o Observed, off *offloadingv1alpha1.NamespaceOffloading) []Check {
	var lines []string
	for _, name := range Concerned(off, SelectorPicks(off, o.VirtualNodes)...) {
		if p, ok := o.Providers[name]; ok && p.PodCIDROverlap != "" {
			lines = append(lines, name+": "+p.PodCIDROverlap)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return []Check{{Name: podCIDRsCheck, Result: Warning,
		Detail: strings.Join(lines, "; "),
		Fix: fmt.Sprintf("the pods of %s run, but Services that reach pods in another cluster may reach the wrong one: give the clusters distinct pod CIDRs, or rely only on Services whose endpoints stay in one cluster; 'kubectl get remotecluster NAME -o yaml' shows status.podCIDRs",
			o.Namespace)}}
}
