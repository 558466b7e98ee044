// Package offloading is the validating webhook of NamespaceOffloadings: it
// refuses what the controllers would ignore or cannot honour, and warns,
// still admitting, about what will not work as the user may expect.
package offloadingvalidation

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/naming"
	"stretch.dev/stretch/internal/placement"
)

// maxNamedPods bounds the pods a warning names.
const maxNamedPods = 5

// Handler validates NamespaceOffloadings. Client reads virtual nodes from the
// manager's cache; APIReader reads the pods of the namespace, which are not
// cached.
type Handler struct {
	Client    client.Reader
	APIReader client.Reader
	Decoder   admission.Decoder

	// Home gives the cluster ID twin names are made of.
	Home *identity.IDCache
}

// Handle answers one CREATE or UPDATE.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	off := &offloadingv1alpha1.NamespaceOffloading{}
	if err := h.Decoder.Decode(req, off); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if off.Namespace == "" {
		off.Namespace = req.Namespace
	}
	if off.Name != wellknown.NamespaceOffloadingName {
		return admission.Denied(fmt.Sprintf("NamespaceOffloading %s/%s: the name must be %q, the only one Stretch reconciles (one per namespace): create it with metadata.name: %s",
			off.Namespace, off.Name, wellknown.NamespaceOffloadingName, wellknown.NamespaceOffloadingName))
	}
	var old *offloadingv1alpha1.NamespaceOffloading
	if req.Operation == admissionv1.Update {
		old = &offloadingv1alpha1.NamespaceOffloading{}
		if err := h.Decoder.DecodeRaw(req.OldObject, old); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if msg := immutableChange(old, off); msg != "" {
			return admission.Denied(msg)
		}
	}

	var warnings []string
	if _, err := placement.ParseClusterSelector(off.Spec.ClusterSelector); err != nil {
		warnings = append(warnings, fmt.Sprintf("spec.clusterSelector cannot be parsed, so no provider will be selected (phase NoClusterSelected): %v", err))
	}
	if w, err := h.twinNameWarning(ctx, off); err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	} else if w != "" {
		warnings = append(warnings, w)
	}
	if old == nil || strategy(old) != strategy(off) {
		w, err := h.violations(ctx, off)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if w != "" {
			warnings = append(warnings, w)
		}
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

// immutableChange says what is wrong with an update that changes how the
// twins are named: renaming twins would mean deleting them with their
// contents.
func immutableChange(old, cur *offloadingv1alpha1.NamespaceOffloading) string {
	mapping := func(o *offloadingv1alpha1.NamespaceOffloading) offloadingv1alpha1.NamespaceMappingStrategy {
		if o.Spec.NamespaceMappingStrategy == "" {
			return offloadingv1alpha1.DefaultNameMapping
		}
		return o.Spec.NamespaceMappingStrategy
	}
	switch {
	case mapping(old) != mapping(cur):
		return fmt.Sprintf("NamespaceOffloading %s/%s: spec.namespaceMappingStrategy is immutable (%s to %s): it names the twins, which hold the offloaded pods; delete the NamespaceOffloading (unoffload) and create it again to change it",
			cur.Namespace, cur.Name, mapping(old), mapping(cur))
	case old.Spec.RemoteNamespaceName != cur.Spec.RemoteNamespaceName:
		return fmt.Sprintf("NamespaceOffloading %s/%s: spec.remoteNamespaceName is immutable (%q to %q): it names the twins, which hold the offloaded pods; delete the NamespaceOffloading (unoffload) and create it again to change it",
			cur.Namespace, cur.Name, old.Spec.RemoteNamespaceName, cur.Spec.RemoteNamespaceName)
	}
	return ""
}

// twinNameWarning warns when no provider will accept the twin's name.
func (h *Handler) twinNameWarning(ctx context.Context, off *offloadingv1alpha1.NamespaceOffloading) (string, error) {
	homeID, err := h.Home.ClusterID(ctx)
	if err != nil {
		return "", err
	}
	twin := naming.TwinName(off.Spec, off.Namespace, homeID)
	if p := naming.CheckTwinName(twin, off.Namespace, off.Spec.NamespaceMappingStrategy); p != nil {
		return fmt.Sprintf("every provider will refuse the twin namespace (%s): %s", p.Reason, p.Message), nil
	}
	return "", nil
}

func strategy(o *offloadingv1alpha1.NamespaceOffloading) offloadingv1alpha1.PodOffloadingStrategy {
	if o.Spec.PodOffloadingStrategy == "" {
		return offloadingv1alpha1.LocalAndRemoteStrategy
	}
	return o.Spec.PodOffloadingStrategy
}

// violations warns about running pods the (new) strategy would not place
// where they are: they stay until recreated.
func (h *Handler) violations(ctx context.Context, off *offloadingv1alpha1.NamespaceOffloading) (string, error) {
	s := strategy(off)
	if s == offloadingv1alpha1.LocalAndRemoteStrategy {
		return "", nil
	}
	nodes := &corev1.NodeList{}
	if err := h.Client.List(ctx, nodes, client.MatchingLabels{wellknown.VirtualNodeTypeLabel: wellknown.VirtualNodeTypeValue}); err != nil {
		return "", fmt.Errorf("listing virtual nodes: %w", err)
	}
	virtual := map[string]bool{}
	for _, n := range nodes.Items {
		virtual[n.Name] = true
	}
	pods := &corev1.PodList{}
	if err := h.APIReader.List(ctx, pods, client.InNamespace(off.Namespace)); err != nil {
		return "", fmt.Errorf("listing the pods of namespace %s: %w", off.Namespace, err)
	}
	var names []string
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		onVirtual := virtual[p.Spec.NodeName]
		// Pods of runtime class stretch belong on virtual nodes whatever
		// the strategy.
		forced := placement.ForcesRemote(&p.Spec)
		if s == offloadingv1alpha1.LocalStrategy && onVirtual && !forced || s == offloadingv1alpha1.RemoteStrategy && !onVirtual {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	where := "on virtual nodes"
	if s == offloadingv1alpha1.RemoteStrategy {
		where = "on home nodes"
	}
	shown := names
	if len(shown) > maxNamedPods {
		shown = append(shown[:maxNamedPods:maxNamedPods], fmt.Sprintf("and %d more", len(names)-maxNamedPods))
	}
	return fmt.Sprintf("%d running pods of namespace %s are %s, where podOffloadingStrategy %s would not place them (%s); they stay there until recreated, e.g. with kubectl rollout restart",
		len(names), off.Namespace, where, s, strings.Join(shown, ", ")), nil
}
