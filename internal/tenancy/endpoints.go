package tenancy

import (
	"fmt"
	"net/netip"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// ProviderNetwork is what a twin's EndpointSlices written by a home cluster
// may not point at (docs/security.md, "Endpoints"): the provider's own
// addresses. A Service of the twin (a NodePort or LoadBalancer one among
// them) forwards to its endpoints from the provider's nodes, so an
// endpoint there would let the home cluster reach, or expose, what the
// provider keeps inside (CVE-2021-25740).
type ProviderNetwork struct {
	// Nodes are the provider's node addresses.
	Nodes []netip.Addr
	// Ranges are the provider's pod and Service ranges.
	Ranges []netip.Prefix
}

// EndpointViolations returns why the endpoints of slice, written by a home
// cluster into its twin, point where they may not: at a loopback,
// link-local, multicast or unspecified address (a node's own, or a cloud's
// metadata service), at a provider node, or into the provider's pod or
// Service ranges (the pods and Services of the twin are the provider's to
// list). An FQDN slice is refused: no home slice Stretch reflects has one,
// and a name may resolve anywhere. Empty: allowed.
func EndpointViolations(slice *discoveryv1.EndpointSlice, provider ProviderNetwork) []string {
	if slice.AddressType == discoveryv1.AddressTypeFQDN {
		return []string{"its address type is FQDN, which a home cluster may not write into a twin: a name may resolve to any address of the provider"}
	}
	var why []string
	seen := map[string]bool{}
	for _, ep := range slice.Endpoints {
		for _, a := range ep.Addresses {
			if seen[a] {
				continue
			}
			seen[a] = true
			if reason := forbiddenAddress(a, provider); reason != "" {
				why = append(why, fmt.Sprintf("endpoint %s is %s", a, reason))
			}
		}
	}
	return why
}

func forbiddenAddress(s string, provider ProviderNetwork) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "not an IP address"
	}
	a = a.Unmap()
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast():
		return "a link-local address (where clouds serve node metadata and credentials)"
	case a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast():
		return "a multicast address"
	}
	for _, n := range provider.Nodes {
		if n.Unmap() == a {
			return "the address of one of the provider's nodes"
		}
	}
	for _, r := range provider.Ranges {
		if r.Contains(a) {
			return fmt.Sprintf("in %s, the provider's own pod or Service range (its own pods and Services are the provider's to list)", r)
		}
	}
	return ""
}

// EndpointsDenial is the message that refuses slice ns/name of home cluster
// home for why.
func EndpointsDenial(ns, name, home string, why []string) string {
	return fmt.Sprintf("EndpointSlice %s/%s of home cluster %s is not allowed in a twin: %s; a home cluster may publish only the endpoints of its pods running outside this provider (home pods, or pods on other providers), which must not overlap this provider's node addresses or pod and Service ranges",
		ns, name, home, strings.Join(why, "; "))
}
