package virtualkubelet

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"stretch.dev/stretch/api/wellknown"
)

// Reasons of the events recorded on home pods.
const (
	// OffloadedReason: the remote pod was created on the provider.
	OffloadedReason = "Offloaded"
	// WaitingForTwinReason: the provider has no ready twin of the pod's
	// namespace yet; the pod is created as soon as it has.
	WaitingForTwinReason = "WaitingForTwinNamespace"
	// NameConflictReason: a pod of that name that Stretch did not create
	// exists in the twin namespace.
	NameConflictReason = "RemotePodConflict"
	// OffloadFailedReason: the remote pod could not be created, for a
	// cause that may pass (the provider unreachable, busy, its twin going);
	// retried soon. A refusal that lasts is RefusedByProviderReason (API).
	OffloadFailedReason = "OffloadFailed"
	// RecreatedReason: the remote pod disappeared while the home pod exists.
	RecreatedReason = "RemotePodRecreated"
	// HomeAPIServerUnknownReason: the pod mounts a home token, but no
	// --api-server-url says where its containers reach the home API server,
	// so they reach the provider's, which refuses the token.
	HomeAPIServerUnknownReason = "HomeAPIServerUnknown"
)

var (
	everything  = labels.Everything()
	eventScheme = scheme.Scheme
)

// forwardUpdate carries to remote pod r what may change in the running home
// pod: its labels and annotations, images and active deadline. Labels and
// annotations the provider added (a CNI's, an admission webhook's) are kept;
// those Stretch set that the home pod no longer has are removed (see
// updateRemoteMeta). Nothing is written when they match.
func (k *Kubelet) forwardUpdate(ctx context.Context, t *twin, r, home *corev1.Pod) error {
	upd := forwardedUpdate(r, RemotePod(home, t.name, k.HomeClusterID, k.APIServer))
	if upd == nil {
		return nil
	}
	_, err := k.provider.CoreV1().Pods(t.name).Update(ctx, upd, metav1.UpdateOptions{FieldManager: wellknown.VirtualKubeletComponent})
	if apierrors.IsNotFound(err) {
		return nil // its deletion event syncs it again
	}
	k.countError("update-pod", err)
	return err
}

// forwardedUpdate returns remote pod r with what forwardUpdate carries from
// want (the remote pod the home pod gives now), or nil when r has it all.
// It compares only those fields, and copies r only to change it: every
// status change of every offloaded pod comes through here, and a copy and
// a reflective comparison of whole pods was a tenth of the home manager's
// CPU in a burst (BENCHMARKS-HISTORY.md).
func forwardedUpdate(r, want *corev1.Pod) *corev1.Pod {
	meta := metav1.ObjectMeta{Labels: maps.Clone(r.Labels), Annotations: maps.Clone(r.Annotations)}
	updateRemoteMeta(&meta, want.ObjectMeta)
	if maps.Equal(meta.Labels, r.Labels) && maps.Equal(meta.Annotations, r.Annotations) &&
		ptr.Equal(r.Spec.ActiveDeadlineSeconds, want.Spec.ActiveDeadlineSeconds) &&
		sameImages(r.Spec.Containers, want.Spec.Containers) && sameImages(r.Spec.InitContainers, want.Spec.InitContainers) {
		return nil
	}
	upd := r.DeepCopy()
	upd.Labels, upd.Annotations = meta.Labels, meta.Annotations
	upd.Spec.ActiveDeadlineSeconds = want.Spec.ActiveDeadlineSeconds
	copyImages(upd.Spec.Containers, want.Spec.Containers)
	copyImages(upd.Spec.InitContainers, want.Spec.InitContainers)
	return upd
}

// sameImages reports whether containers cur run the images of want, where
// want has a container of that index.
func sameImages(cur, want []corev1.Container) bool {
	for i := range min(len(cur), len(want)) {
		if cur[i].Image != want[i].Image {
			return false
		}
	}
	return true
}

// copyImages gives containers cur the images of want, by index.
func copyImages(cur, want []corev1.Container) {
	for i := range min(len(cur), len(want)) {
		cur[i].Image = want[i].Image
	}
}

// ours reports whether remote pod r runs for home pod h.
func (k *Kubelet) ours(r, h *corev1.Pod) bool {
	return reflected(r, k.HomeClusterID) && r.Annotations[wellknown.OriginPodUIDAnnotation] == string(h.UID)
}

// syncPod makes the remote pod of a home pod match it: created when missing
// (again when it disappeared behind our back), deleted when the home pod is
// gone, replaced or bound elsewhere, and the home pod deleted at once when
// it is Terminating and its remote pod is gone.
func (k *Kubelet) syncPod(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	home, err := k.homePods.Pods(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	if home != nil && home.Spec.NodeName != k.NodeName {
		home = nil
	}
	if home == nil {
		k.refused.delete(key)
	}
	t := k.twins.get(ns)
	if t == nil && k.twinReady(ns) {
		k.TwinChanged(ns)
		return time.Second, nil // ready but idle until now: watched in a moment
	}
	if t == nil {
		if home != nil && home.DeletionTimestamp != nil {
			// No ready twin (never was, or being deleted with its pods, as
			// in an unoffload): nothing remote to wait for.
			return 0, k.forceDeleteHome(ctx, home)
		}
		if live(home) && k.said.add(key, "twin/"+string(home.UID)) {
			k.recorder.Eventf(home, corev1.EventTypeWarning, WaitingForTwinReason,
				"Provider %s has no ready twin of namespace %s yet: the pod is created there as soon as it has (kubectl get namespaceoffloading offloading -n %s shows why)",
				k.ProviderName, ns, ns)
		}
		return 0, nil // a twin that becomes ready enqueues its pods
	}
	if !t.hasSynced() {
		return time.Second, nil
	}
	r, err := t.pods.Pods(t.name).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	if live(home) {
		k.warnKeptAtHome(home)
		k.warnVolumesAtHome(home, t)
	}
	if r != nil && !reflected(r, k.HomeClusterID) {
		if live(home) && k.said.add(key, "conflict/"+string(home.UID)) {
			k.recorder.Eventf(home, corev1.EventTypeWarning, NameConflictReason,
				"Pod %s/%s on provider %s was not created by Stretch: it is left alone and this pod does not run there; delete or rename one of them", t.name, name, k.ProviderName)
		}
		return 0, nil
	}

	switch {
	case home == nil || (r != nil && !k.ours(r, home)):
		// The home pod is gone, bound elsewhere or replaced by a namesake.
		if home == nil {
			k.said.forgetAll(key)
			k.created.Delete(key)
		}
		if r != nil && r.DeletionTimestamp == nil {
			return 0, k.deleteRemote(ctx, r, nil)
		}
		return 0, nil
	case home.DeletionTimestamp != nil:
		if r == nil {
			return 0, k.forceDeleteHome(ctx, home)
		}
		if r.DeletionTimestamp == nil {
			if err := k.deleteRemote(ctx, r, home.DeletionGracePeriodSeconds); err != nil {
				return 0, err
			}
		}
		// The remote pod has the same grace period: once it is over, a
		// remote pod still there is on a provider that does not finish it,
		// and the home pod goes all the same, as a kubelet's would.
		if wait := time.Until(home.DeletionTimestamp.Time); wait > 0 {
			return wait + time.Second, nil
		}
		return 0, k.forceDeleteHome(ctx, home)
	case home.Status.Phase == corev1.PodSucceeded || home.Status.Phase == corev1.PodFailed:
		return 0, nil
	case r == nil:
		if k.awaited(key, home.UID) {
			// Created moments ago: the informer brings it (and a sync).
			return createdWait, nil
		}
		want := RemotePod(home, t.name, k.HomeClusterID, k.APIServer)
		if ref, ok := k.refused.get(key); ok && ref.holds(home.UID, t, want) {
			if wait := time.Until(ref.next); wait > 0 {
				// Refused, and nothing that may lift it changed: the
				// pod's own updates (the condition) do not retry it.
				return wait, k.showRefusal(ctx, home, ref.message)
			}
		}
		return k.createRemote(ctx, t, home, want)
	default:
		k.statuses.Add(key)
		return 0, k.forwardUpdate(ctx, t, r, home)
	}
}

// forceDeleteHome deletes a Terminating home pod at once: its remote pod is
// gone, or past its grace period.
// A pod deleted once is not deleted again while the cache still shows it
// (the next sync, brought by the remote pod's deletion or its own, would
// otherwise send a second DELETE, answered 404: one per pod in a burst);
// its key is forgotten once the cache shows it gone.
func (k *Kubelet) forceDeleteHome(ctx context.Context, home *corev1.Pod) error {
	key, deleted := home.Namespace+"/"+home.Name, "force-deleted/"+string(home.UID)
	if !k.said.add(key, deleted) {
		return nil
	}
	err := k.Home.CoreV1().Pods(home.Namespace).Delete(ctx, home.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0), Preconditions: metav1.NewUIDPreconditions(string(home.UID))})
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	k.said.forget(key, deleted)
	k.countError("delete-home-pod", err)
	return err
}

// createdWait is how long a remote pod just created may stay unseen by the
// twin's informer before it is looked for again; after createdTTL it is
// created again (AlreadyExists then means it is there after all).
const (
	createdWait = time.Second
	createdTTL  = 30 * time.Second
)

// creation is a remote pod created for the home pod uid at a time.
type creation struct {
	uid types.UID
	at  time.Time
}

// awaited reports whether the remote pod of home pod key (uid) was created
// recently and the informer has not shown it yet.
func (k *Kubelet) awaited(key string, uid types.UID) bool {
	v, ok := k.created.Load(key)
	if !ok {
		return false
	}
	c := v.(creation)
	if c.uid != uid || time.Since(c.at) > createdTTL {
		k.created.Delete(key)
		return false
	}
	return true
}

// live reports whether p is a home pod that should run.
func live(p *corev1.Pod) bool {
	return p != nil && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// createRemote creates want, the remote pod of home in twin t. It returns
// when to look again: a refused pod is tried again later (see refusedBy),
// other failures are errors, retried soon.
func (k *Kubelet) createRemote(ctx context.Context, t *twin, home, want *corev1.Pod) (time.Duration, error) {
	for _, ref := range tokensOf(home) {
		if err := k.ensureToken(ctx, t, ref, false); err != nil {
			return 0, k.offloadFailed(home, fmt.Errorf("service account token %s: %w", ref.ServiceAccount, err))
		}
	}
	key := home.Namespace + "/" + home.Name
	_, err := k.provider.CoreV1().Pods(t.name).Create(ctx, want, metav1.CreateOptions{FieldManager: wellknown.VirtualKubeletComponent})
	if apierrors.IsAlreadyExists(err) {
		k.refused.delete(key)
		return 0, nil // the cache is behind; the informer brings it
	}
	if reason := refusalReason(err); reason != "" {
		return k.refusedBy(ctx, t, home, want, reason, err)
	}
	if err != nil {
		return 0, k.offloadFailed(home, err)
	}
	// A refusal the pod showed goes with the remote pod's status, which
	// replaces the home pod's.
	k.refused.delete(key)
	k.created.Store(key, creation{uid: home.UID, at: time.Now()})
	recreated := !k.said.add(key, "created/"+string(home.UID))
	if recreated {
		k.recorder.Eventf(home, corev1.EventTypeWarning, RecreatedReason, "Remote pod %s/%s on provider %s disappeared while this pod exists: created again", t.name, home.Name, k.ProviderName)
	} else {
		k.recorder.Eventf(home, corev1.EventTypeNormal, OffloadedReason, "Created as pod %s/%s on provider %s", t.name, home.Name, k.ProviderName)
		k.Metrics.observeStage(k.ProviderName, stageCreated, home, time.Now())
	}
	if k.APIServer.Host == "" && len(tokensOf(home)) > 0 && k.said.add(key, "no-api-server/"+string(home.UID)) {
		k.recorder.Eventf(home, corev1.EventTypeWarning, HomeAPIServerUnknownReason,
			"The service account token this pod mounts is a token of this cluster, but its containers reach the API server of provider %s (KUBERNETES_SERVICE_HOST), which refuses it: set --api-server-url on stretch-controller-manager (Helm chart value apiServerURL, or 'stretchctl install --api-server-url') to the URL at which offloaded pods reach this cluster's API server",
			k.ProviderName)
	}
	k.said.forget(key, "offload-failed/"+string(home.UID))
	return 0, nil
}

// offloadFailed reports err, which may pass, on the home pod once per pod,
// and returns it so that the pod is retried soon.
func (k *Kubelet) offloadFailed(home *corev1.Pod, err error) error {
	k.countError("create-pod", err)
	if k.said.add(home.Namespace+"/"+home.Name, "offload-failed/"+string(home.UID)) {
		k.recorder.Eventf(home, corev1.EventTypeWarning, OffloadFailedReason, "Creating the remote pod on provider %s failed, retrying: %v", k.ProviderName, err)
	}
	return fmt.Errorf("creating the remote pod of %s/%s: %w", home.Namespace, home.Name, err)
}

func (k *Kubelet) deleteRemote(ctx context.Context, r *corev1.Pod, grace *int64) error {
	err := k.provider.CoreV1().Pods(r.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{GracePeriodSeconds: grace, Preconditions: metav1.NewUIDPreconditions(string(r.UID))})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	k.countError("delete-pod", err)
	return err
}

// syncStatus writes the status of a remote pod home when it differs. A home
// pod that Succeeded or Failed keeps its last status, as with a kubelet.
func (k *Kubelet) syncStatus(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	home, err := k.homePods.Pods(ns).Get(name)
	if err != nil || home.Spec.NodeName != k.NodeName || home.Status.Phase == corev1.PodSucceeded || home.Status.Phase == corev1.PodFailed {
		return 0, nil
	}
	t := k.twins.get(ns)
	if t == nil {
		return 0, nil
	}
	r, err := t.pods.Pods(t.name).Get(name)
	if err != nil || !k.ours(r, home) {
		return 0, nil
	}
	view := HomeView(home, r)
	if equality.Semantic.DeepEqual(view.Status, home.Status) {
		return 0, nil
	}
	// Written over the home pod's resourceVersion: a conflict is retried,
	// from the cache's newer home pod.
	_, err = k.Home.CoreV1().Pods(ns).UpdateStatus(ctx, view, metav1.UpdateOptions{FieldManager: wellknown.VirtualKubeletComponent})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		k.countError("update-pod-status", err)
		return 0, err
	}
	if r.Status.Phase == corev1.PodRunning && home.Status.Phase != corev1.PodRunning {
		k.Metrics.observeStage(k.ProviderName, stageRunning, home, time.Now())
	}
	return 0, nil
}

// remotePodHandler maps changes of remote pods to their home pods, whose
// sync also sends the status home. Every event counts: after an outage the
// relisted pods are how a remote pod whose home pod went meanwhile is found.
// A remote pod of ours that goes or finishes may free what a quota or a
// limit of the provider refused other pods: they are tried again soon.
func (k *Kubelet) remotePodHandler() cache.ResourceEventHandler {
	ours := func(o any) *corev1.Pod {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if r, ok := o.(*corev1.Pod); ok && reflected(r, k.HomeClusterID) {
			return r
		}
		return nil
	}
	enqueue := func(r *corev1.Pod) {
		key := r.Labels[wellknown.OriginNamespaceLabel] + "/" + r.Name
		k.created.Delete(key)
		k.pods.Add(key)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if r := ours(o); r != nil {
				enqueue(r)
			}
		},
		UpdateFunc: func(old, o any) {
			if r := ours(o); r != nil {
				enqueue(r)
				if was := ours(old); was != nil && !finished(was) && finished(r) {
					k.retryRefused()
				}
			}
		},
		DeleteFunc: func(o any) {
			if r := ours(o); r != nil {
				enqueue(r)
				k.retryRefused()
			}
		},
	}
}

// finished reports whether pod p ran to its end, and counts no more in its
// namespace's quota.
func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// twinHandlers are the handlers of every twin's informers.
func (k *Kubelet) twinHandlers() twinHandlers {
	return twinHandlers{pods: k.remotePodHandler(), objects: k.remoteObjectHandler, events: k.remoteEventHandler()}
}

// onceSet remembers, per object key, the conditions already reported, so
// that a condition that lasts is reported once.
type onceSet struct {
	mu   sync.Mutex
	keys map[string]map[string]struct{}
}

func newOnceSet() *onceSet { return &onceSet{keys: map[string]map[string]struct{}{}} }

// add records what for key and reports whether it was new.
func (s *onceSet) add(key, what string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key][what]; ok {
		return false
	}
	if s.keys[key] == nil {
		s.keys[key] = map[string]struct{}{}
	}
	s.keys[key][what] = struct{}{}
	return true
}

// forget forgets what for key.
func (s *onceSet) forget(key, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys[key], what)
}

// forgetAll forgets key, once its object is gone.
func (s *onceSet) forgetAll(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, key)
}
