// Package twinpod is the provider's admission of pods in twin namespaces: it
// refuses what a home cluster's TenantPolicy, and the rules of every twin,
// do not allow (internal/tenancy says what they are), with a message that
// the home cluster's user reads on the home pod. Pod Security Admission,
// through the twin's labels, refuses the privilege escalations; this refuses
// the rest: another node, the control plane's taints, another identity,
// priority classes, and going over the policy's limits.
package twinpod

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/homepods"
	"stretch.dev/stretch/internal/tenancy"
)

// reservationTTL is how long an admitted pod counts against its home
// cluster's limits before the pods cache shows it: beyond it, the API
// server refused the pod after this webhook allowed it (another admission
// step), or it was deleted at once.
const reservationTTL = 30 * time.Second

// Handler admits pods in twin namespaces.
type Handler struct {
	// Client reads namespaces, TenantPolicies and PriorityClasses (cached).
	Client client.Reader
	// Pods reads the home clusters' pods (a homepods.Cache).
	Pods    client.Reader
	Decoder admission.Decoder

	// Admissions of one home cluster's pods that have limits to check are
	// made one at a time, and remember what they admitted until the cache
	// shows it: two pods created together must not both take the last
	// room. (Replicas of the manager each keep their own; see the
	// operations documentation.)
	mu       sync.Mutex
	homes    map[string]*sync.Mutex
	reserved map[string]map[types.NamespacedName]reservation
	now      func() time.Time
}

type reservation struct {
	requests corev1.ResourceList
	at       time.Time
}

// +kubebuilder:rbac:groups=scheduling.k8s.io,resources=priorityclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=peering.stretch.dev,resources=tenantpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces;pods,verbs=get;list;watch

// Handle admits or refuses one pod creation or update.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	pod.Namespace = req.Namespace
	home, err := tenancy.TwinHome(ctx, h.Client, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if home == "" {
		return admission.Allowed("not a twin namespace")
	}
	if req.Operation == admissionv1.Update {
		return h.update(req, pod, home)
	}

	policy := &peeringv1alpha1.TenantPolicy{}
	switch err := h.Client.Get(ctx, types.NamespacedName{Namespace: peeringv1alpha1.TenantNamespace(home), Name: wellknown.TenantPolicyName}, policy); {
	case apierrors.IsNotFound(err):
		policy = nil
	case err != nil:
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading the TenantPolicy of home cluster %s: %w", home, err))
	}
	defaultPriority, err := h.defaultPriorityClass(ctx)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if why := tenancy.PodViolations(policy, pod, home, defaultPriority); len(why) > 0 {
		return deny(pod, policy, home, why)
	}
	if policy == nil || len(policy.Spec.Limits) == 0 {
		return admission.Allowed("")
	}
	why, err := h.admitWithinLimits(ctx, pod, policy, home)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if len(why) > 0 {
		return deny(pod, policy, home, why)
	}
	return admission.Allowed("")
}

// update refuses what a pod's update may add: tolerations of the control
// plane, or a change of the label that counts the pod against its home
// cluster's limits.
func (h *Handler) update(req admission.Request, pod *corev1.Pod, home string) admission.Response {
	old := &corev1.Pod{}
	if err := h.Decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	why := tenancy.TolerationViolations(old.Spec.Tolerations, pod.Spec.Tolerations)
	if pod.Labels[wellknown.OriginClusterIDLabel] != old.Labels[wellknown.OriginClusterIDLabel] {
		why = append(why, fmt.Sprintf("it changes the label %s, which counts the pod against the home cluster's limits", wellknown.OriginClusterIDLabel))
	}
	if len(why) > 0 {
		return deny(pod, nil, home, why)
	}
	return admission.Allowed("")
}

// defaultPriorityClass is the class the API server gives a pod that names
// none: allowed, since the provider chose it.
func (h *Handler) defaultPriorityClass(ctx context.Context) (string, error) {
	list := &schedulingv1.PriorityClassList{}
	if err := h.Client.List(ctx, list); err != nil {
		return "", fmt.Errorf("listing PriorityClasses: %w", err)
	}
	for _, pc := range list.Items {
		if pc.GlobalDefault {
			return pc.Name, nil
		}
	}
	return "", nil
}

// admitWithinLimits checks pod against the limits of policy, one pod of the
// home cluster at a time, and reserves what it requests when it fits.
func (h *Handler) admitWithinLimits(ctx context.Context, pod *corev1.Pod, policy *peeringv1alpha1.TenantPolicy, home string) ([]string, error) {
	lock := h.homeLock(home)
	lock.Lock()
	defer lock.Unlock()

	pods, err := homepods.OfHome(ctx, h.Client, h.Pods, home)
	if err != nil {
		return nil, err
	}
	requests := tenancy.PodRequests(pod)
	why := tenancy.LimitViolations(policy.Spec.Limits, tenancy.Usage(h.withReserved(home, pods)), requests)
	if len(why) == 0 {
		h.reserve(home, pod, requests)
	}
	return why, nil
}

func (h *Handler) homeLock(home string) *sync.Mutex {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.homes == nil {
		h.homes = map[string]*sync.Mutex{}
	}
	if h.homes[home] == nil {
		h.homes[home] = &sync.Mutex{}
	}
	return h.homes[home]
}

func (h *Handler) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}

// withReserved adds to pods those admitted that the cache does not show
// yet, as pods that request what they did; reservations the cache shows, or
// that are too old, go.
func (h *Handler) withReserved(home string, pods []corev1.Pod) []corev1.Pod {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[types.NamespacedName]bool, len(pods))
	for i := range pods {
		seen[types.NamespacedName{Namespace: pods[i].Namespace, Name: pods[i].Name}] = true
	}
	now := h.clock()
	for key, r := range h.reserved[home] {
		if seen[key] || now.Sub(r.at) > reservationTTL {
			delete(h.reserved[home], key)
			continue
		}
		pods = append(pods, corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "reserved", Resources: corev1.ResourceRequirements{Requests: r.requests}}}}})
	}
	return pods
}

func (h *Handler) reserve(home string, pod *corev1.Pod, requests corev1.ResourceList) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reserved == nil {
		h.reserved = map[string]map[types.NamespacedName]reservation{}
	}
	if h.reserved[home] == nil {
		h.reserved[home] = map[types.NamespacedName]reservation{}
	}
	h.reserved[home][types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}] = reservation{requests: requests, at: h.clock()}
}

// deny refuses pod with every reason, naming the policy (when one applies)
// and what the home cluster's user and the provider's admin can do.
func deny(pod *corev1.Pod, policy *peeringv1alpha1.TenantPolicy, home string, why []string) admission.Response {
	by := "the rules of twin namespaces"
	if policy != nil {
		by = fmt.Sprintf("TenantPolicy %s/%s", policy.Namespace, policy.Name)
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	return admission.Denied(fmt.Sprintf("pod %s/%s of home cluster %s is not allowed by %s: %s; change the pod, or ask the provider's admin ('stretchctl policy show %s' on the provider shows the policy, 'stretchctl policy set %s' changes it)",
		pod.Namespace, name, home, by, strings.Join(why, "; "), home, home))
}
