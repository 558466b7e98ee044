package tenancy

import (
	"net/netip"
	"testing"

	. "github.com/onsi/gomega"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestEndpointViolations(t *testing.T) {
	provider := ProviderNetwork{
		Nodes:  []netip.Addr{netip.MustParseAddr("192.168.10.5"), netip.MustParseAddr("fd00::5")},
		Ranges: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12")},
	}
	slice := func(t discoveryv1.AddressType, addrs ...string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{AddressType: t, Endpoints: []discoveryv1.Endpoint{{Addresses: addrs}}}
	}
	for _, tt := range []struct {
		name  string
		slice *discoveryv1.EndpointSlice
		want  []string
	}{
		{"home pods and another provider's", slice(discoveryv1.AddressTypeIPv4, "10.20.0.7", "10.30.1.9"), nil},
		{"IPv6 home pod", slice(discoveryv1.AddressTypeIPv6, "fd10::7"), nil},
		{"cloud metadata", slice(discoveryv1.AddressTypeIPv4, "169.254.169.254"), []string{"endpoint 169.254.169.254 is a link-local address (where clouds serve node metadata and credentials)"}},
		{"loopback", slice(discoveryv1.AddressTypeIPv4, "127.0.0.1"), []string{"endpoint 127.0.0.1 is a loopback address"}},
		{"unspecified", slice(discoveryv1.AddressTypeIPv6, "::"), []string{"endpoint :: is unspecified"}},
		{"multicast", slice(discoveryv1.AddressTypeIPv4, "224.0.0.1"), []string{"endpoint 224.0.0.1 is a multicast address"}},
		{"a provider node", slice(discoveryv1.AddressTypeIPv4, "192.168.10.5"), []string{"endpoint 192.168.10.5 is the address of one of the provider's nodes"}},
		{"an IPv4-mapped provider node", slice(discoveryv1.AddressTypeIPv6, "::ffff:192.168.10.5"), []string{"endpoint ::ffff:192.168.10.5 is the address of one of the provider's nodes"}},
		{"the provider's pods", slice(discoveryv1.AddressTypeIPv4, "10.244.3.4"), []string{"endpoint 10.244.3.4 is in 10.244.0.0/16, the provider's own pod or Service range (its own pods and Services are the provider's to list)"}},
		{"the provider's Services", slice(discoveryv1.AddressTypeIPv4, "10.96.0.1"), []string{"endpoint 10.96.0.1 is in 10.96.0.0/12, the provider's own pod or Service range (its own pods and Services are the provider's to list)"}},
		{"not an IP", slice(discoveryv1.AddressTypeIPv4, "example.com"), []string{"endpoint example.com is not an IP address"}},
		{"FQDN", slice(discoveryv1.AddressTypeFQDN, "example.com"), []string{"its address type is FQDN, which a home cluster may not write into a twin: a name may resolve to any address of the provider"}},
		{"each address once", slice(discoveryv1.AddressTypeIPv4, "127.0.0.1", "127.0.0.1", "10.20.0.1"), []string{"endpoint 127.0.0.1 is a loopback address"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(EndpointViolations(tt.slice, provider)).To(Equal(tt.want))
		})
	}
}
