// Package pod is the mutating webhook that places the pods of offloaded
// namespaces: it adds the virtual-node toleration and the required node
// affinity their NamespaceOffloading asks for (internal/placement), and
// turns away pods that could not start as placed: created before any
// provider is ready, or bound to providers none of which will take them.
package podplacement

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
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

// Handle answers one pod CREATE: from a namespace with the scheduling label,
// or, for pods of runtime class stretch, from any namespace but the system
// ones.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	in, err := decodePlaced(req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	pod := in.pod()
	ns := req.Namespace
	forced := placement.ForcesRemote(&pod.Spec)
	off := &offloadingv1alpha1.NamespaceOffloading{}
	err = h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: wellknown.NamespaceOffloadingName}, off)
	switch {
	case apierrors.IsNotFound(err) && forced:
		return admission.Denied(fmt.Sprintf("pod %s in namespace %s has runtimeClassName %s, which runs pods on providers only, but namespace %s is not offloaded (no NamespaceOffloading named %q), so the pod could never start: offload the namespace first (kubectl stretch offload namespace %s), or remove runtimeClassName %s to run the pod at home",
			displayName(pod), ns, wellknown.RuntimeClassName, ns, wellknown.NamespaceOffloadingName, ns, wellknown.RuntimeClassName))
	case apierrors.IsNotFound(err):
		return admission.Denied(fmt.Sprintf("namespace %s has label %s=true but no NamespaceOffloading named %q, so its pods cannot be placed yet: retry once it is offloaded (kubectl get namespaceoffloadings %s -n %s shows phase Ready), or remove the label to run pods at home only",
			ns, wellknown.SchedulingEnabledLabel, wellknown.NamespaceOffloadingName, wellknown.NamespaceOffloadingName, ns))
	case err != nil:
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading NamespaceOffloading %s/%s: %w", ns, wellknown.NamespaceOffloadingName, err))
	}
	d := decide(off, forced)
	if d.deny != "" {
		return admission.Denied(d.deny)
	}
	if !d.place {
		return admission.Allowed("")
	}

	policy := placement.Policy{Strategy: off.Spec.PodOffloadingStrategy, Selector: off.Spec.ClusterSelector, ForceRemote: forced}
	before := pod.Spec.DeepCopy()
	contradictions := placement.Apply(pod, policy)
	resp := admission.Patched("", in.patch(before, &pod.Spec)...)
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

// decision is what becomes of a pod, given its namespace's offloading.
type decision struct {
	// deny, when set, refuses the pod with this message.
	deny string
	// place applies the offloading's placement to the pod.
	place bool
}

// decide admits a pod when it can be scheduled as it will be placed, and
// refuses it with what to do otherwise, because its node affinity is fixed
// at creation: a pod placed from a state that cannot work would stay
// Pending after the state is fixed, while a refused one is created again
// by its controller (a Deployment's ReplicaSet retries, showing the message
// in its FailedCreate events), once the state allows it.
//
//   - Pods that stay home (strategy Local, without runtime class stretch)
//     are left alone whatever the phase: the webhook only sees them when a
//     user labelled the namespace by hand.
//   - Terminating: pods stay home; a pod of runtime class stretch, which
//     can run nowhere else, is refused.
//   - Ready: placed.
//   - InProgress or SomeFailed (a provider being added to a Ready namespace,
//     or one failing): placed as soon as one selected provider has its twin,
//     as pods then have somewhere to go; refused, to be retried, while none
//     has one yet (also before the first status, phase "").
//   - NoClusterSelected or AllFailed: no provider will take pods until the
//     user acts. With LocalAndRemote, pods are placed (they run at home);
//     pods that only run on providers (strategy Remote, runtime class
//     stretch) are refused with the phase's cause and its fix.
func decide(off *offloadingv1alpha1.NamespaceOffloading, forced bool) decision {
	strategy := off.Spec.PodOffloadingStrategy
	if strategy == "" {
		strategy = offloadingv1alpha1.LocalAndRemoteStrategy
	}
	remoteOnly := forced || strategy == offloadingv1alpha1.RemoteStrategy
	ns, phase := off.Namespace, off.Status.OffloadingPhase
	switch {
	case phase == offloadingv1alpha1.TerminatingPhase && forced:
		return decision{deny: fmt.Sprintf("namespace %s is being unoffloaded (phase %s): a pod with runtimeClassName %s runs on providers only, and the namespace's twins there are being deleted, so the pod could never start: remove runtimeClassName %s to run it at home, or offload the namespace again once the unoffload is over (kubectl stretch offload namespace %s)",
			ns, phase, wellknown.RuntimeClassName, wellknown.RuntimeClassName, ns)}
	case phase == offloadingv1alpha1.TerminatingPhase, strategy == offloadingv1alpha1.LocalStrategy && !forced:
		return decision{}
	case phase == offloadingv1alpha1.ReadyPhase:
		return decision{place: true}
	case phase == offloadingv1alpha1.NoClusterSelectedPhase || phase == offloadingv1alpha1.AllFailedPhase:
		if !remoteOnly {
			return decision{place: true}
		}
		return decision{deny: stuck(off, forced)}
	case len(readyProviders(off)) > 0:
		return decision{place: true}
	}
	shown := string(phase)
	if shown == "" {
		shown = "not reconciled yet"
	}
	return decision{deny: fmt.Sprintf("namespace %s is being offloaded (phase %s) and no provider has its twin namespace yet: a pod created now could not be placed on its providers; retry in a few seconds, once kubectl get namespaceoffloadings %s -n %s shows phase Ready or -o yaml a provider whose Ready condition is True (controllers such as Deployments retry by themselves)",
		ns, shown, wellknown.NamespaceOffloadingName, ns)}
}

// stuck says why no provider will take the pods of a namespace in phase
// NoClusterSelected or AllFailed, and what to do.
func stuck(off *offloadingv1alpha1.NamespaceOffloading, forced bool) string {
	ns, phase := off.Namespace, off.Status.OffloadingPhase
	var cause, fix string
	if phase == offloadingv1alpha1.NoClusterSelectedPhase {
		cause = "its clusterSelector selects no provider"
		if msg := off.Annotations[wellknown.ClusterSelectorErrorAnnotation]; msg != "" {
			cause += " (it cannot be parsed: " + msg + ")"
		}
		fix = fmt.Sprintf("fix spec.clusterSelector of NamespaceOffloading %s/%s (stretchctl diagnose namespace %s says which requirement each virtual node fails)",
			ns, wellknown.NamespaceOffloadingName, ns)
	} else {
		cause = "every selected provider failed to create the twin namespace (" + strings.Join(failures(off), "; ") + ")"
		fix = fmt.Sprintf("fix what the providers report (kubectl get namespaceoffloadings %s -n %s -o yaml; stretchctl diagnose namespace %s)",
			wellknown.NamespaceOffloadingName, ns, ns)
	}
	why, or := "podOffloadingStrategy Remote", "set podOffloadingStrategy LocalAndRemote to run pods at home meanwhile"
	if forced {
		why, or = "runtimeClassName "+wellknown.RuntimeClassName, "remove runtimeClassName "+wellknown.RuntimeClassName+" to run the pod at home"
	}
	return fmt.Sprintf("namespace %s is offloaded to no provider (phase %s): %s, so this pod, which runs on providers only (%s), could never start; %s, then create the pod again, or %s",
		ns, phase, cause, why, fix, or)
}

// readyProviders are the selected providers whose twin namespace exists.
func readyProviders(off *offloadingv1alpha1.NamespaceOffloading) []string {
	var names []string
	for _, name := range off.Status.SelectedProviders() {
		if meta.IsStatusConditionTrue(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition) {
			names = append(names, name)
		}
	}
	return names
}

// failures are the selected providers' reasons for not having a twin, sorted.
func failures(off *offloadingv1alpha1.NamespaceOffloading) []string {
	var out []string
	for _, name := range off.Status.SelectedProviders() {
		if c := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition); c != nil && c.Status != metav1.ConditionTrue {
			out = append(out, name+": "+c.Message)
		}
	}
	if len(out) == 0 {
		out = []string{"no provider states it"}
	}
	return out
}

// displayName names a pod that may only have a generateName yet.
func displayName(pod *corev1.Pod) string {
	switch {
	case pod.Name != "":
		return pod.Name
	case pod.GenerateName != "":
		return pod.GenerateName + "*"
	}
	return "(unnamed)"
}

// event records the contradiction on the pod when it has a name already,
// else on the NamespaceOffloading.
func (h *Handler) event(ctx context.Context, pod *corev1.Pod, off *offloadingv1alpha1.NamespaceOffloading, msg string) {
	name := displayName(pod)
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
		s += ", forced Remote by runtimeClassName " + wellknown.RuntimeClassName
	}
	return s
}
