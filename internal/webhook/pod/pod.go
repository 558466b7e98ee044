// Package pod is the mutating webhook that places the pods of offloaded
// namespaces: it adds the virtual-node toleration and the required node
// affinity their NamespaceOffloading asks for (internal/placement), and
// turns away pods created before the offloading is Ready.
package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/placement"
)

// ContradictionReason is the reason of the Warning event about a pod none of
// whose node-affinity terms can match a node.
const ContradictionReason = "ContradictoryNodeAffinity"

// Handler places pods; it reads NamespaceOffloadings from the manager's
// cache.
type Handler struct {
	Client   client.Reader
	Decoder  admission.Decoder
	Recorder events.EventRecorder
}

// Handle answers one pod CREATE in a namespace with the scheduling label.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	ns := req.Namespace
	off := &offloadingv1alpha1.NamespaceOffloading{}
	err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: offloadingv1alpha1.NamespaceOffloadingName}, off)
	switch {
	case apierrors.IsNotFound(err):
		return admission.Denied(fmt.Sprintf("namespace %s has label %s=true but no NamespaceOffloading named %q, so its pods cannot be placed yet: retry once it is offloaded (kubectl get namespaceoffloadings %s -n %s shows phase Ready), or remove the label to run pods at home only",
			ns, offloadingv1alpha1.SchedulingEnabledLabel, offloadingv1alpha1.NamespaceOffloadingName, offloadingv1alpha1.NamespaceOffloadingName, ns))
	case err != nil:
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading NamespaceOffloading %s/%s: %w", ns, offloadingv1alpha1.NamespaceOffloadingName, err))
	}
	switch off.Status.OffloadingPhase {
	case offloadingv1alpha1.TerminatingPhase:
		return admission.Allowed("namespace " + ns + " is being unoffloaded: its pods stay home")
	case "", offloadingv1alpha1.InProgressPhase:
		phase := string(off.Status.OffloadingPhase)
		if phase == "" {
			phase = "not reconciled yet"
		}
		return admission.Denied(fmt.Sprintf("namespace %s is being offloaded (phase %s): a pod created now could not be placed on its providers; retry in a few seconds, once kubectl get namespaceoffloadings %s -n %s shows phase Ready (controllers such as Deployments retry by themselves)",
			ns, phase, offloadingv1alpha1.NamespaceOffloadingName, ns))
	}

	policy := placement.Policy{
		Strategy:    off.Spec.PodOffloadingStrategy,
		Selector:    off.Spec.ClusterSelector,
		ForceRemote: ptr.Deref(pod.Spec.RuntimeClassName, "") == peeringv1alpha1.RuntimeClassName,
	}
	contradictions := placement.Apply(pod, policy)
	mutated, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	resp := admission.PatchResponseFromRaw(req.Object.Raw, mutated)
	if len(contradictions) > 0 {
		msg := fmt.Sprintf("no node can match the node affinity of this pod once combined with the placement of namespace %s (podOffloadingStrategy %s), so it will stay Pending: %s; fix the pod's own nodeAffinity or the NamespaceOffloading's clusterSelector",
			ns, strategyName(policy), strings.Join(contradictions, "; "))
		resp.Warnings = append(resp.Warnings, msg)
		if !ptr.Deref(req.DryRun, false) {
			regarding := pod.DeepCopy()
			regarding.Namespace = ns // a pod's own namespace may be left to the request
			h.event(ctx, regarding, off, msg)
		}
	}
	return resp
}

// event records the contradiction on the pod when it has a name already,
// else on the NamespaceOffloading.
func (h *Handler) event(ctx context.Context, pod *corev1.Pod, off *offloadingv1alpha1.NamespaceOffloading, msg string) {
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	var regarding client.Object = off
	if pod.Name != "" {
		regarding = pod
	}
	h.Recorder.Eventf(regarding, nil, corev1.EventTypeWarning, ContradictionReason, "PlacePod", "pod %s: %s", name, msg)
	ctrl.LoggerFrom(ctx).V(4).Info("admitted a pod whose node affinity matches no node", "pod", name, "namespace", pod.Namespace)
}

func strategyName(p placement.Policy) string {
	s := string(p.Strategy)
	if s == "" {
		s = string(offloadingv1alpha1.LocalAndRemoteStrategy)
	}
	if p.ForceRemote {
		s += ", forced Remote by runtimeClassName " + peeringv1alpha1.RuntimeClassName
	}
	return s
}
