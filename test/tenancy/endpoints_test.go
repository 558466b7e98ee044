package tenancy

import (
	"context"
	"net/netip"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/virtualkubelet"
)

// endpointSlice is a slice of Service svc in ns with one endpoint at addr.
func endpointSlice(ns, name, svc, addr string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80)}},
	}
}

// TestEndpointsIntoTheProviderRefused: with the credentials the provider
// issued, a home cluster may write into its twin the endpoints of its pods
// elsewhere, but none at the provider's own addresses (its nodes, its pod
// and Service ranges; the API server itself refuses loopback and
// link-local ones, a cloud's metadata service among them), through which
// a twin's Service would reach or expose the provider's insides
// (CVE-2021-25740). The provider's admin is not judged. A home slice that
// points there is not reflected, and says why at home.
func TestEndpointsIntoTheProviderRefused(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	twin, creds, _ := runAttacker(t, g, "endpoints")

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "endpoints-node"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.0.0/24", PodCIDRs: []string{"10.244.0.0/24"}}}
	g.Expect(provider.Client.Create(ctx, node)).To(Succeed())
	t.Cleanup(func() { _ = provider.Client.Delete(context.Background(), node) })
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.77.5"}}
	g.Expect(provider.Client.Status().Update(ctx, node)).To(Succeed())
	cidrs := &networkingv1.ServiceCIDRList{}
	g.Expect(provider.Client.List(ctx, cidrs)).To(Succeed())
	g.Expect(cidrs.Items).NotTo(BeEmpty(), "the provider's API server keeps its default ServiceCIDR")
	serviceIP := netip.MustParsePrefix(cidrs.Items[0].Spec.CIDRs[0]).Addr().Next().String()

	ours := func(name, why string) string {
		return "EndpointSlice " + twin + "/direct-" + name + " of home cluster " + homeRun + " is not allowed in a twin: " + why
	}
	for _, tt := range []struct{ name, addr, refused string }{
		// The API server's validation refuses these for everyone.
		{"cloud-metadata", "169.254.169.254", `Invalid value: "169.254.169.254": may not be in the link-local range`},
		{"loopback", "127.0.0.1", `Invalid value: "127.0.0.1": may not be in the loopback range`},
		// The twin endpoint admission refuses these to home clusters.
		{"provider-node", "192.168.77.5", ours("provider-node", "endpoint 192.168.77.5 is the address of one of the provider's nodes")},
		{"provider-pods", "10.244.0.9", ours("provider-pods", "endpoint 10.244.0.9 is in 10.244.0.0/24, the provider's own pod or Service range")},
		{"provider-services", serviceIP, ours("provider-services", "endpoint "+serviceIP+" is in "+cidrs.Items[0].Spec.CIDRs[0]+", the provider's own pod or Service range")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := newG(t)
			s := endpointSlice(twin, "direct-"+tt.name, "web", tt.addr)
			// Until the webhook and its node cache are in place.
			g.Eventually(func() error { return creds.Create(ctx, s.DeepCopy(), client.DryRunAll) }).Should(MatchError(ContainSubstring(tt.refused)))
			err := creds.Create(ctx, s)
			g.Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKeyFromObject(s), &discoveryv1.EndpointSlice{}))).To(BeTrue())
		})
	}

	t.Run("a home pod's endpoint is allowed, and may not be turned into one of the provider's", func(t *testing.T) {
		g := newG(t)
		s := endpointSlice(twin, "direct-home-pod", "web", "10.20.0.7")
		g.Expect(creds.Create(ctx, s)).To(Succeed())
		s.Endpoints[0].Addresses = []string{"192.168.77.5"}
		err := creds.Update(ctx, s)
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		g.Expect(err.Error()).To(ContainSubstring("a home cluster may publish only the endpoints of its pods running outside this provider"))
	})

	t.Run("the provider's admin is not judged", func(t *testing.T) {
		g := newG(t)
		g.Expect(provider.Client.Create(ctx, endpointSlice(twin, "admin-slice", "web", "10.244.0.9"))).To(Succeed())
	})

	t.Run("from home: not reflected, and the home slice says why", func(t *testing.T) {
		g := newG(t)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "endpoints", Name: "metadata"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
		g.Expect(home.Client.Create(ctx, svc)).To(Succeed())
		g.Expect(home.Client.Create(ctx, endpointSlice("endpoints", "metadata-1", "metadata", "192.168.77.5"))).To(Succeed())
		g.Eventually(func(g Gomega) []string {
			list := &eventsv1.EventList{}
			g.Expect(home.Client.List(ctx, list, client.InNamespace("endpoints"))).To(Succeed())
			var notes []string
			for _, e := range list.Items {
				if e.Regarding.Name == "metadata-1" && e.Reason == virtualkubelet.ReflectionFailedReason {
					notes = append(notes, e.Note)
				}
			}
			return notes
		}).Should(ConsistOf(And(ContainSubstring("refused the copy of EndpointSlice endpoints/metadata-1"), ContainSubstring("endpoint 192.168.77.5 is the address of one of the provider's nodes"))))
		g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "metadata-1"}, &discoveryv1.EndpointSlice{}))).To(BeTrue())
	})
}
