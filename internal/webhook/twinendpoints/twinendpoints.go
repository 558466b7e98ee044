// Package twinendpoints is the provider's admission of the EndpointSlices a
// home cluster writes into its twins (the endpoints of its pods running
// elsewhere, docs/design.md §4.22): it refuses endpoints that point at the
// provider's own addresses (internal/tenancy says which), so that a twin's
// Services cannot be made to reach, or expose, what the provider keeps
// inside.
package twinendpoints

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"stretch.dev/stretch/internal/tenancy"
)

// Handler admits EndpointSlices in twin namespaces.
type Handler struct {
	// Client reads namespaces, nodes and ServiceCIDRs (cached).
	Client  client.Reader
	Decoder admission.Decoder
}

// +kubebuilder:rbac:groups="",resources=namespaces;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=servicecidrs,verbs=get;list;watch

// Handle admits or refuses one EndpointSlice creation or update.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	slice := &discoveryv1.EndpointSlice{}
	if err := h.Decoder.Decode(req, slice); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	home, err := tenancy.TwinHome(ctx, h.Client, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if home == "" {
		return admission.Allowed("not a twin namespace")
	}
	network, err := h.providerNetwork(ctx)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if why := tenancy.EndpointViolations(slice, network); len(why) > 0 {
		name := slice.Name
		if name == "" {
			name = slice.GenerateName + "*"
		}
		return admission.Denied(tenancy.EndpointsDenial(req.Namespace, name, home, why))
	}
	return admission.Allowed("")
}

// providerNetwork reads this cluster's node addresses, pod ranges (its
// nodes' spec.podCIDRs) and Service ranges (its ServiceCIDRs; none on a
// cluster without that API).
func (h *Handler) providerNetwork(ctx context.Context) (tenancy.ProviderNetwork, error) {
	var n tenancy.ProviderNetwork
	nodes := &corev1.NodeList{}
	if err := h.Client.List(ctx, nodes); err != nil {
		return n, fmt.Errorf("listing the nodes, whose addresses twins' endpoints may not use: %w", err)
	}
	for _, node := range nodes.Items {
		for _, a := range node.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				n.Nodes = append(n.Nodes, ip)
			}
		}
		n.Ranges = append(n.Ranges, prefixes(node.Spec.PodCIDRs)...)
	}
	cidrs := &networkingv1.ServiceCIDRList{}
	switch err := h.Client.List(ctx, cidrs); {
	case meta.IsNoMatchError(err):
	case err != nil:
		return n, fmt.Errorf("listing the ServiceCIDRs, which twins' endpoints may not use: %w", err)
	}
	for _, c := range cidrs.Items {
		n.Ranges = append(n.Ranges, prefixes(c.Spec.CIDRs)...)
	}
	return n, nil
}

func prefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}
