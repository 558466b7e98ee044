package remotecluster

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// Reasons of the PodCIDRsDistinct condition (docs/design.md §4.22).
const (
	// ReasonPodCIDRsDistinct: no overlap.
	ReasonPodCIDRsDistinct = "PodCIDRsDistinct"
	// ReasonPodCIDRsOverlap: the provider's pod CIDRs overlap this
	// cluster's or another provider's.
	ReasonPodCIDRsOverlap = "PodCIDRsOverlap"
	// ReasonPodCIDRsUnknown: a side's nodes do not say their pod CIDRs.
	ReasonPodCIDRsUnknown = "PodCIDRsUnknown"
)

// podCIDRsOf returns the pod CIDRs of nodes, adjacent and nested ranges
// merged, so that the status of a cluster of thousands of nodes holds a
// few ranges.
func podCIDRsOf(nodes []corev1.Node) []netip.Prefix {
	var all []netip.Prefix
	for _, n := range nodes {
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil {
				all = append(all, p.Masked())
			}
		}
	}
	return collapse(all)
}

// collapse returns the smallest sorted list of prefixes that covers the same
// addresses as ps: nested prefixes dropped, sibling halves joined.
func collapse(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	for {
		slices.SortFunc(out, comparePrefixes)
		out = slices.Compact(out)
		merged := make([]netip.Prefix, 0, len(out))
		changed := false
		for _, p := range out {
			if n := len(merged); n > 0 {
				last := merged[n-1]
				if last.Contains(p.Addr()) && last.Bits() <= p.Bits() {
					changed = true
					continue // nested in the last one
				}
				if parent, ok := siblings(last, p); ok {
					merged[n-1] = parent
					changed = true
					continue
				}
			}
			merged = append(merged, p)
		}
		out = merged
		if !changed {
			return out
		}
	}
}

// comparePrefixes sorts by family, address, then wider first.
func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// siblings returns the prefix a and b are the two halves of.
func siblings(a, b netip.Prefix) (netip.Prefix, bool) {
	if a.Bits() != b.Bits() || a.Bits() == 0 || a.Addr().Is4() != b.Addr().Is4() || a == b {
		return netip.Prefix{}, false
	}
	parent, err := a.Addr().Prefix(a.Bits() - 1)
	if err != nil || !parent.Contains(b.Addr()) {
		return netip.Prefix{}, false
	}
	return parent, true
}

// overlap returns the first range of a that overlaps one of b, and that one.
func overlap(a, b []netip.Prefix) (netip.Prefix, netip.Prefix, bool) {
	for _, x := range a {
		for _, y := range b {
			if x.Overlaps(y) {
				return x, y, true
			}
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}

func parsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func prefixStrings(ps []netip.Prefix) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// cidrPeer is a cluster whose pod CIDRs a provider's must not overlap.
type cidrPeer struct {
	// name says which cluster, as in a message: "this cluster" or
	// "provider eu".
	name  string
	cidrs []netip.Prefix
}

// podCIDRsCondition judges the provider's pod CIDRs (docs/design.md
// §4.22) against this cluster's and the other providers'.
func podCIDRsCondition(rc *peeringv1alpha1.RemoteCluster, provider []netip.Prefix, home cidrPeer, others []cidrPeer) metav1.Condition {
	c := metav1.Condition{Type: peeringv1alpha1.PodCIDRsDistinctCondition}
	const fix = "give the clusters distinct pod CIDRs (kube-controller-manager --cluster-cidr, or the network plugin's IP pools), or use a multi-cluster network that translates pod addresses"
	switch {
	case len(provider) == 0:
		c.Status, c.Reason = metav1.ConditionUnknown, ReasonPodCIDRsUnknown
		c.Message = fmt.Sprintf("the nodes of provider %s do not say their pod CIDRs (spec.podCIDRs; its network plugin may allocate pod IPs itself): Stretch cannot tell whether the pod IPs it publishes in endpoints overlap this cluster's; make sure they do not", rc.Name)
		return c
	case len(home.cidrs) == 0:
		c.Status, c.Reason = metav1.ConditionUnknown, ReasonPodCIDRsUnknown
		c.Message = fmt.Sprintf("the nodes of this cluster do not say their pod CIDRs (spec.podCIDRs): Stretch cannot tell whether they overlap provider %s's (%s); make sure they do not", rc.Name, strings.Join(prefixStrings(provider), ", "))
		return c
	}
	for _, other := range append([]cidrPeer{home}, others...) {
		if x, y, ok := overlap(provider, other.cidrs); ok {
			c.Status, c.Reason = metav1.ConditionFalse, ReasonPodCIDRsOverlap
			c.Message = fmt.Sprintf("pod CIDR %s of provider %s overlaps %s of %s: a pod IP that Stretch publishes in Services' endpoints may name a pod in either cluster, and no network can route it to the right one; %s", x, rc.Name, y, other.name, fix)
			return c
		}
	}
	c.Status, c.Reason = metav1.ConditionTrue, ReasonPodCIDRsDistinct
	c.Message = fmt.Sprintf("the pod CIDRs of provider %s (%s) overlap neither this cluster's nor another provider's", rc.Name, strings.Join(prefixStrings(provider), ", "))
	return c
}

// cidrPeers returns this cluster's pod CIDRs (its nodes but the virtual
// ones) and the other providers', as their RemoteClusters last recorded.
func (r *Reconciler) cidrPeers(ctx context.Context, rc *peeringv1alpha1.RemoteCluster) (cidrPeer, []cidrPeer, error) {
	// Read only: no copy of every node at every probe of every provider.
	nodes := &corev1.NodeList{}
	if err := r.Client.List(ctx, nodes, client.UnsafeDisableDeepCopy); err != nil {
		return cidrPeer{}, nil, fmt.Errorf("listing this cluster's nodes for their pod CIDRs: %w", err)
	}
	var real []corev1.Node
	for _, n := range nodes.Items {
		if n.Labels[wellknown.VirtualNodeTypeLabel] != wellknown.VirtualNodeTypeValue {
			real = append(real, n)
		}
	}
	home := cidrPeer{name: "this cluster", cidrs: podCIDRsOf(real)}
	rcs := &peeringv1alpha1.RemoteClusterList{}
	if err := r.Client.List(ctx, rcs, client.UnsafeDisableDeepCopy); err != nil {
		return cidrPeer{}, nil, fmt.Errorf("listing RemoteClusters for their pod CIDRs: %w", err)
	}
	var others []cidrPeer
	for _, o := range rcs.Items {
		if o.Name != rc.Name && o.DeletionTimestamp.IsZero() && len(o.Status.PodCIDRs) > 0 {
			others = append(others, cidrPeer{name: "provider " + o.Name, cidrs: parsePrefixes(o.Status.PodCIDRs)})
		}
	}
	return home, others, nil
}
