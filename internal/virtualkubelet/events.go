package virtualkubelet

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// remoteEventHandler records on home pods the events the provider records on
// their remote pods (scheduling, image pulls, probes, kills), and on home
// claims those on their copies (provisioning), each once: events older than
// this kubelet, or updates that do not repeat the event, are not forwarded
// again.
func (k *Kubelet) remoteEventHandler() cache.ResourceEventHandler {
	forward := func(ev *corev1.Event) {
		// Event times have a precision of a second: one recorded in the
		// second this kubelet started counts as newer.
		if lastSeen(ev).Before(k.started.Truncate(time.Second)) {
			return
		}
		t := k.twins.byName(ev.Namespace)
		if t == nil {
			return
		}
		if ev.InvolvedObject.Kind == KindPersistentVolumeClaim {
			k.forwardClaimEvent(t, ev)
			return
		}
		if ev.InvolvedObject.Kind != "Pod" {
			return
		}
		home, err := k.homePods.Pods(t.homeNamespace).Get(ev.InvolvedObject.Name)
		if err != nil || home.Spec.NodeName != k.NodeName {
			return
		}
		if r, err := t.pods.Pods(t.name).Get(ev.InvolvedObject.Name); err != nil || !k.ours(r, home) {
			return
		}
		k.recorder.Eventf(home, ev.Type, ev.Reason, "%s (on provider %s)", ev.Message, k.ProviderName)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if ev, ok := o.(*corev1.Event); ok {
				forward(ev)
			}
		},
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Event)
			ev, ok2 := cur.(*corev1.Event)
			if ok1 && ok2 && lastSeen(ev).After(lastSeen(o)) {
				forward(ev)
			}
		},
	}
}

// lastSeen is when an event last happened, whichever API wrote it.
func lastSeen(ev *corev1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.Time
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return ev.CreationTimestamp.Time
}

// forwardClaimEvent records on a home claim event ev, which the provider
// recorded on its copy in twin t.
func (k *Kubelet) forwardClaimEvent(t *twin, ev *corev1.Event) {
	cur, err := t.objects.get(KindPersistentVolumeClaim, t.name, ev.InvolvedObject.Name)
	if err != nil || cur == nil || !reflected(cur, k.HomeClusterID) {
		return
	}
	home, err := k.homeObjects.get(KindPersistentVolumeClaim, t.homeNamespace, ev.InvolvedObject.Name)
	if err != nil || home == nil || !(claimReflector{}).copyOf(home, cur) {
		return
	}
	k.recorder.Eventf(home, ev.Type, ev.Reason, "%s (on provider %s)", ev.Message, k.ProviderName)
}
