package virtualkubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// A provider may refuse a remote pod for good: its Pod Security level, a
// quota, a limit range or an admission webhook of its policy. Retrying the
// same pod at the queue's pace would only load the provider's API server,
// so such a pod is said refused on the home pod (a condition and an event)
// and tried again slowly; at once when the home pod or its twin changes;
// soon when a remote pod of ours goes (a quota or limit it freed).

// maxProviderMessage bounds the provider's words quoted in a condition: a
// webhook may answer at length, and the pod's status is no place for it.
const maxProviderMessage = 1024

// refusalRetry is how a refused pod is tried again: after first, doubling
// up to max; a remote pod of ours going brings the next try forward, but
// not sooner than gap after the last one. A refusal is lifted by a person
// (the pod's owner, who changes the pod, tried at once; or the provider's
// admin, noticed within max), so the first retry is worth waiting for; at
// max, a thousand refused pods cost the provider some 3 requests a second.
type refusalRetry struct {
	first, max, gap time.Duration
}

// after is the wait before attempt number attempts+1, attempts (≥ 1)
// having been refused.
func (r refusalRetry) after(attempts int) time.Duration {
	d := r.first
	for i := 1; i < attempts && d < r.max; i++ {
		d *= 2
	}
	return min(d, r.max)
}

// refusalRetries are the waits of every kubelet; tests shorten or lengthen
// them.
var refusalRetries = refusalRetry{first: 30 * time.Second, max: 5 * time.Minute, gap: 30 * time.Second}

// Refusal reasons, as counted in stretch_virtualkubelet_pod_refusals_total:
// the provider's status reasons that the same pod meets again.
const (
	refusedForbidden  = "Forbidden"
	refusedInvalid    = "Invalid"
	refusedBadRequest = "BadRequest"
	refusedTooLarge   = "RequestEntityTooLarge"
)

// refusalReason returns why the provider's API server refused to create a
// remote pod when the same pod would be refused again (its admission:
// Pod Security, quotas, limit ranges, webhooks, validation), or "" when a
// retry soon may succeed: conflicts, timeouts, throttling, server errors,
// lost connections; a twin being deleted (Forbidden, NamespaceTerminating,
// or NotFound) and an authorization denial, which is no verdict on the pod
// (the twin's RoleBinding may not be in the provider's authorizer cache
// yet, or the peering lost its rights, which the peering reports).
func refusalReason(err error) string {
	switch {
	case err == nil:
		return ""
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause),
		strings.Contains(err.Error(), "because it is being terminated"):
		return ""
	case apierrors.IsForbidden(err):
		if strings.Contains(err.Error(), `is forbidden: User "`) {
			return "" // the authorizer's words, not admission's
		}
		return refusedForbidden
	case apierrors.IsInvalid(err):
		return refusedInvalid
	case apierrors.IsRequestEntityTooLargeError(err):
		return refusedTooLarge
	case apierrors.IsBadRequest(err):
		// Also an admission webhook that denies without a code.
		return refusedBadRequest
	}
	return ""
}

// refusal is a home pod whose remote pod the provider refused.
type refusal struct {
	uid types.UID
	// twin and want are the twin and remote pod refused: another twin, or
	// a change of the home pod that changes its remote pod, is tried at once.
	twin *twin
	want *corev1.Pod
	// message is the condition's message.
	message string
	// attempts is how many times in a row it was refused; last is when it
	// was last, next when it is tried again.
	attempts   int
	last, next time.Time
}

// holds reports whether r still stands for home pod uid's remote pod want
// in twin t.
func (r *refusal) holds(uid types.UID, t *twin, want *corev1.Pod) bool {
	return r.uid == uid && r.twin == t &&
		equality.Semantic.DeepEqual(r.want.ObjectMeta, want.ObjectMeta) && equality.Semantic.DeepEqual(r.want.Spec, want.Spec)
}

// refusals are the refused home pods of a kubelet, by key.
type refusals struct {
	mu sync.Mutex
	m  map[string]*refusal
}

func (s *refusals) get(key string) (refusal, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[key]
	if !ok {
		return refusal{}, false
	}
	return *r, true
}

func (s *refusals) set(key string, r refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*refusal{}
	}
	s.m[key] = &r
}

func (s *refusals) delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

// bringForward makes every refused pod due no later than gap after its last
// attempt (now at the earliest), and returns the keys whose next attempt
// moved, with their new waits.
func (s *refusals) bringForward(now time.Time, gap time.Duration) map[string]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	moved := map[string]time.Duration{}
	for key, r := range s.m {
		at := r.last.Add(gap)
		if at.Before(now) {
			at = now
		}
		if at.Before(r.next) {
			r.next = at
			moved[key] = at.Sub(now)
		}
	}
	return moved
}

// retryRefused tries the refused pods again soon: a remote pod of ours
// went, which may free what a provider's quota or limits refused them.
func (k *Kubelet) retryRefused() {
	for key, after := range k.refused.bringForward(time.Now(), refusalRetries.gap) {
		k.pods.AddAfter(key, after)
	}
}

// refusedBy records that the provider refused remote pod want of home pod
// home in twin t with err (for reason), says so on the home pod, and
// returns when to try again.
func (k *Kubelet) refusedBy(ctx context.Context, t *twin, home, want *corev1.Pod, reason string, err error) (time.Duration, error) {
	k.countError("create-pod", err)
	k.Metrics.refusals.WithLabelValues(k.ProviderName, reason).Inc()
	key := home.Namespace + "/" + home.Name
	now := time.Now()
	prev, had := k.refused.get(key)
	had = had && prev.uid == home.UID
	attempts := 1
	if had && prev.holds(home.UID, t, want) {
		attempts = prev.attempts + 1
	}
	// Jittered, so that pods refused together do not come back together.
	wait := wait.Jitter(refusalRetries.after(attempts), 0.1)
	msg := refusalMessage(k.ProviderName, err)
	k.refused.set(key, refusal{uid: home.UID, twin: t, want: want, message: msg, attempts: attempts, last: now, next: now.Add(wait)})
	// Once per pod and cause: not again at each retry, nor after a restart
	// when the pod says it already.
	if (!had || prev.message != msg) && !refusalShown(home, msg) {
		k.recorder.Event(home, corev1.EventTypeWarning, offloadingv1alpha1.RefusedByProviderReason, msg)
	}
	k.Log.V(1).Info("provider refused the remote pod", "pod", key, "reason", reason, "attempts", attempts, "retryAfter", wait)
	return wait, k.showRefusal(ctx, home, msg)
}

// refusalMessage is what the home pod says of a refusal: the provider's own
// words, and what lifts it.
func refusalMessage(provider string, err error) string {
	said := providerWords(err)
	return fmt.Sprintf("provider %s refused the pod: %s; change the pod to meet the provider's policy (a changed pod is tried at once), or ask the admin of provider %s to allow it (the pod stays Pending and is tried again every %s, up to every %s)",
		provider, said, provider, shortDuration(refusalRetries.first), shortDuration(refusalRetries.max))
}

// providerWords is the provider's error err, cut at maxProviderMessage.
func providerWords(err error) string {
	said := err.Error()
	if len(said) > maxProviderMessage {
		said = strings.ToValidUTF8(said[:maxProviderMessage], "") + "..."
	}
	return said
}

// shortDuration writes d without its trailing zero units: 5m, not 5m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// offloadedCondition returns the PodOffloadedCondition of pod, if any.
func offloadedCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == offloadingv1alpha1.PodOffloadedCondition {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// refusalShown reports whether home pod says it was refused with msg.
func refusalShown(home *corev1.Pod, msg string) bool {
	c := offloadedCondition(home)
	return c != nil && c.Status == corev1.ConditionFalse && c.Reason == offloadingv1alpha1.RefusedByProviderReason && c.Message == msg
}

// showRefusal sets the PodOffloadedCondition of the home pod to False with
// msg, unless it says so already. It is a patch of that condition alone:
// the pod's phase stays Pending, as the provider's admin may lift the
// refusal, and no other writer of the status is overwritten. (A namesake
// that replaced the pod meanwhile would get it; its own sync, which tries
// its remote pod, then sets or clears it.)
func (k *Kubelet) showRefusal(ctx context.Context, home *corev1.Pod, msg string) error {
	if refusalShown(home, msg) {
		return nil
	}
	transition := metav1.Now()
	if c := offloadedCondition(home); c != nil && c.Status == corev1.ConditionFalse {
		transition = c.LastTransitionTime
	}
	patch, err := json.Marshal(map[string]any{
		"status": map[string]any{"conditions": []corev1.PodCondition{{
			Type: offloadingv1alpha1.PodOffloadedCondition, Status: corev1.ConditionFalse, LastTransitionTime: transition,
			Reason: offloadingv1alpha1.RefusedByProviderReason, Message: msg,
		}}},
	})
	if err != nil {
		return err
	}
	_, err = k.Home.CoreV1().Pods(home.Namespace).Patch(ctx, home.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: wellknown.VirtualKubeletComponent}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	k.countError("update-pod-status", err)
	if err != nil {
		return fmt.Errorf("saying on pod %s/%s that provider %s refused it: %w", home.Namespace, home.Name, k.ProviderName, err)
	}
	return nil
}
