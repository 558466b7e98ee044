package remotecluster

import (
	"net/netip"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestCollapse(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in, out []string
	}{
		{"empty", nil, nil},
		{"one", []string{"10.244.3.0/24"}, []string{"10.244.3.0/24"}},
		{"siblings join", []string{"10.244.1.0/24", "10.244.0.0/24"}, []string{"10.244.0.0/23"}},
		{"joins cascade", []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"}, []string{"10.244.0.0/22"}},
		{"not siblings though adjacent", []string{"10.244.1.0/24", "10.244.2.0/24"}, []string{"10.244.1.0/24", "10.244.2.0/24"}},
		{"nested dropped", []string{"10.244.0.0/16", "10.244.7.0/24"}, []string{"10.244.0.0/16"}},
		{"duplicates", []string{"10.244.7.0/24", "10.244.7.0/24"}, []string{"10.244.7.0/24"}},
		{"families apart", []string{"fd00:10:244::/64", "10.244.0.0/24", "fd00:10:244:1::/64"}, []string{"10.244.0.0/24", "fd00:10:244::/63"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(prefixStrings(collapse(prefixes(tt.in...)))).To(Equal(tt.out))
		})
	}
}

func TestPodCIDRsOf(t *testing.T) {
	g := NewWithT(t)
	nodes := []corev1.Node{
		{Spec: corev1.NodeSpec{PodCIDR: "10.244.0.0/24", PodCIDRs: []string{"10.244.0.0/24", "fd00::/64"}}},
		{Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"}}, // an old node without podCIDRs
		{Spec: corev1.NodeSpec{PodCIDRs: []string{"not a CIDR"}}},
		{},
	}
	g.Expect(prefixStrings(podCIDRsOf(nodes))).To(Equal([]string{"10.244.0.0/23", "fd00::/64"}))
}

func TestPodCIDRsCondition(t *testing.T) {
	rc := &peeringv1alpha1.RemoteCluster{ObjectMeta: metav1.ObjectMeta{Name: "eu"}}
	home := func(ss ...string) cidrPeer { return cidrPeer{name: "this cluster", cidrs: prefixes(ss...)} }
	for _, tt := range []struct {
		name     string
		provider []netip.Prefix
		home     cidrPeer
		others   []cidrPeer
		status   metav1.ConditionStatus
		reason   string
		message  string
	}{
		{name: "provider unknown", home: home("10.244.0.0/16"), status: metav1.ConditionUnknown, reason: ReasonPodCIDRsUnknown,
			message: "the nodes of provider eu do not say their pod CIDRs"},
		{name: "home unknown", provider: prefixes("10.245.0.0/16"), home: home(), status: metav1.ConditionUnknown, reason: ReasonPodCIDRsUnknown,
			message: "the nodes of this cluster do not say their pod CIDRs (spec.podCIDRs): Stretch cannot tell whether they overlap provider eu's (10.245.0.0/16)"},
		{name: "distinct", provider: prefixes("10.245.0.0/16"), home: home("10.244.0.0/16"), others: []cidrPeer{{"provider us", prefixes("10.246.0.0/16")}},
			status: metav1.ConditionTrue, reason: ReasonPodCIDRsDistinct, message: "the pod CIDRs of provider eu (10.245.0.0/16) overlap neither"},
		{name: "overlaps home", provider: prefixes("10.244.0.0/16"), home: home("10.244.3.0/24"),
			status: metav1.ConditionFalse, reason: ReasonPodCIDRsOverlap, message: "pod CIDR 10.244.0.0/16 of provider eu overlaps 10.244.3.0/24 of this cluster: "},
		{name: "overlaps another provider", provider: prefixes("10.245.0.0/24"), home: home("10.244.0.0/16"), others: []cidrPeer{{"provider us", prefixes("10.245.0.0/16")}},
			status: metav1.ConditionFalse, reason: ReasonPodCIDRsOverlap, message: "pod CIDR 10.245.0.0/24 of provider eu overlaps 10.245.0.0/16 of provider us: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			c := podCIDRsCondition(rc, tt.provider, tt.home, tt.others)
			g.Expect(c.Type).To(Equal(peeringv1alpha1.PodCIDRsDistinctCondition))
			g.Expect(c.Status).To(Equal(tt.status))
			g.Expect(c.Reason).To(Equal(tt.reason))
			g.Expect(c.Message).To(HavePrefix(tt.message))
		})
	}
}
