package virtualkubelet

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
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
	// OffloadFailedReason: the provider refused the remote pod; retried.
	OffloadFailedReason = "OffloadFailed"
	// RecreatedReason: the remote pod disappeared while the home pod exists.
	RecreatedReason = "RemotePodRecreated"
)

var (
	everything  = labels.Everything()
	eventScheme = scheme.Scheme
)

var _ vknode.PodLifecycleHandler = &Kubelet{}
var _ vknode.PodNotifier = &Kubelet{}

// CreatePod is called by the pod controller for a pod newly bound to the
// virtual node. The remote pod is created by the pod queue, which retries
// until the twin is ready (the pod stays Pending meanwhile; it never fails
// because its namespace is not offloaded yet).
func (k *Kubelet) CreatePod(_ context.Context, pod *corev1.Pod) error {
	k.pods.Add(pod.Namespace + "/" + pod.Name)
	return nil
}

// UpdatePod forwards what may change in a running pod: images, labels,
// annotations, active deadline.
func (k *Kubelet) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	t := k.twins.get(pod.Namespace)
	if t == nil {
		return nil
	}
	cur, err := t.pods.Pods(t.name).Get(pod.Name)
	if apierrors.IsNotFound(err) {
		k.pods.Add(pod.Namespace + "/" + pod.Name)
		return nil
	}
	if err != nil || !k.ours(cur, pod) {
		return err
	}
	want := RemotePod(pod, t.name, k.HomeClusterID)
	upd := cur.DeepCopy()
	upd.Labels, upd.Annotations = want.Labels, want.Annotations
	upd.Spec.ActiveDeadlineSeconds = want.Spec.ActiveDeadlineSeconds
	for i := range upd.Spec.Containers {
		if i < len(want.Spec.Containers) {
			upd.Spec.Containers[i].Image = want.Spec.Containers[i].Image
		}
	}
	for i := range upd.Spec.InitContainers {
		if i < len(want.Spec.InitContainers) {
			upd.Spec.InitContainers[i].Image = want.Spec.InitContainers[i].Image
		}
	}
	_, err = k.provider.CoreV1().Pods(t.name).Update(ctx, upd, metav1.UpdateOptions{FieldManager: Component})
	k.countError("update-pod", err)
	return err
}

// DeletePod is called by the pod controller for a home pod being deleted.
// The pod queue deletes the remote pod, with the home pod's grace period,
// and then the home pod (see syncPod): deleting here as well would send
// each deletion twice.
func (k *Kubelet) DeletePod(_ context.Context, pod *corev1.Pod) error {
	k.pods.Add(pod.Namespace + "/" + pod.Name)
	return nil
}

// GetPod returns the home pod with the status of its remote pod.
func (k *Kubelet) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	t := k.twins.get(namespace)
	if t == nil {
		return nil, errdefs.NotFoundf("no twin of namespace %s on provider %s", namespace, k.ProviderName)
	}
	r, err := t.pods.Pods(t.name).Get(name)
	if apierrors.IsNotFound(err) || (err == nil && !reflected(r, k.HomeClusterID)) {
		return nil, errdefs.NotFoundf("pod %s/%s has no remote pod on provider %s", namespace, name, k.ProviderName)
	}
	if err != nil {
		return nil, err
	}
	return k.homeViewOf(r), nil
}

// GetPodStatus returns the status of the pod's remote pod.
func (k *Kubelet) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	p, err := k.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &p.Status, nil
}

// GetPods returns the remote pods this cluster runs on the provider, as home
// pods: at start, the pod controller deletes those whose home pod is gone.
func (k *Kubelet) GetPods(context.Context) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for _, t := range k.twins.all() {
		if !t.hasSynced() {
			continue
		}
		remotes, err := t.pods.Pods(t.name).List(everything)
		if err != nil {
			return nil, err
		}
		for _, r := range remotes {
			if reflected(r, k.HomeClusterID) {
				out = append(out, k.homeViewOf(r))
			}
		}
	}
	return out, nil
}

// NotifyPods registers the pod controller's status callback.
func (k *Kubelet) NotifyPods(_ context.Context, notify func(*corev1.Pod)) {
	k.notify = notify
	close(k.ready)
}

// homeViewOf is the home pod of remote pod r with r's status; when the home
// pod is not known, a pod with its coordinates only.
func (k *Kubelet) homeViewOf(r *corev1.Pod) *corev1.Pod {
	ns := r.Labels[peeringv1alpha1.OriginNamespaceLabel]
	if home, err := k.homePods.Pods(ns).Get(r.Name); err == nil {
		return HomeView(home, r)
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: ns, UID: types.UID(r.Annotations[OriginPodUIDAnnotation])}, Status: *r.Status.DeepCopy()}
}

// ours reports whether remote pod r runs for home pod h.
func (k *Kubelet) ours(r, h *corev1.Pod) bool {
	return reflected(r, k.HomeClusterID) && r.Annotations[OriginPodUIDAnnotation] == string(h.UID)
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
	t := k.twins.get(ns)
	if t == nil && k.twinReady(ns) {
		k.TwinsChanged()
		return time.Second, nil // ready but idle until now: watched in a moment
	}
	if t == nil {
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
			err := k.Home.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0), Preconditions: metav1.NewUIDPreconditions(string(home.UID))})
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				err = nil
			}
			return 0, err
		}
		if r.DeletionTimestamp == nil {
			return 0, k.deleteRemote(ctx, r, home.DeletionGracePeriodSeconds)
		}
		return 0, nil
	case home.Status.Phase == corev1.PodSucceeded || home.Status.Phase == corev1.PodFailed:
		return 0, nil
	case r == nil:
		if k.awaited(key, home.UID) {
			// Created moments ago: the informer brings it (and a sync).
			return createdWait, nil
		}
		return 0, k.createRemote(ctx, t, home)
	default:
		k.statuses.Add(key)
		return 0, nil
	}
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

func (k *Kubelet) createRemote(ctx context.Context, t *twin, home *corev1.Pod) error {
	for _, ref := range tokensOf(home) {
		if err := k.ensureToken(ctx, t, ref, false); err != nil {
			return k.offloadFailed(home, fmt.Errorf("service account token %s: %w", ref.ServiceAccount, err))
		}
	}
	want := RemotePod(home, t.name, k.HomeClusterID)
	_, err := k.provider.CoreV1().Pods(t.name).Create(ctx, want, metav1.CreateOptions{FieldManager: Component})
	if apierrors.IsAlreadyExists(err) {
		return nil // the cache is behind; the informer brings it
	}
	if err != nil {
		return k.offloadFailed(home, err)
	}
	key := home.Namespace + "/" + home.Name
	k.created.Store(key, creation{uid: home.UID, at: time.Now()})
	recreated := !k.said.add(key, "created/"+string(home.UID))
	if recreated {
		k.recorder.Eventf(home, corev1.EventTypeWarning, RecreatedReason, "Remote pod %s/%s on provider %s disappeared while this pod exists: created again", t.name, home.Name, k.ProviderName)
	} else {
		k.recorder.Eventf(home, corev1.EventTypeNormal, OffloadedReason, "Created as pod %s/%s on provider %s", t.name, home.Name, k.ProviderName)
		k.Metrics.observeStage(k.ProviderName, stageCreated, home, time.Now())
	}
	k.said.forget(key, "offload-failed/"+string(home.UID))
	return nil
}

// offloadFailed reports err on the home pod once per pod and cause, and
// returns it so that the pod is retried.
func (k *Kubelet) offloadFailed(home *corev1.Pod, err error) error {
	k.countError("create-pod", err)
	if k.said.add(home.Namespace+"/"+home.Name, "offload-failed/"+string(home.UID)) {
		k.recorder.Eventf(home, corev1.EventTypeWarning, OffloadFailedReason, "Provider %s refused the remote pod, retrying: %v", k.ProviderName, err)
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

// syncStatus sends the status of a remote pod home, through the pod
// controller (which writes it only when it changed).
func (k *Kubelet) syncStatus(ctx context.Context, key string) (time.Duration, error) {
	select {
	case <-k.ready:
	case <-ctx.Done():
		return 0, nil
	}
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	home, err := k.homePods.Pods(ns).Get(name)
	if err != nil || home.Spec.NodeName != k.NodeName {
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
	// The pod controller compares whole pods, metadata included, so it
	// would write the same status again after each of our own writes.
	if equality.Semantic.DeepEqual(view.Status, home.Status) {
		return 0, nil
	}
	if r.Status.Phase == corev1.PodRunning && home.Status.Phase != corev1.PodRunning {
		k.Metrics.observeStage(k.ProviderName, stageRunning, home, time.Now())
	}
	k.notify(view)
	return 0, nil
}

// remotePodHandler maps changes of remote pods to their home pods, whose
// sync also sends the status home. Every event counts: after an outage the
// relisted pods are how a remote pod whose home pod went meanwhile is found.
func (k *Kubelet) remotePodHandler() cache.ResourceEventHandler {
	enqueue := func(o any) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if r, ok := o.(*corev1.Pod); ok && reflected(r, k.HomeClusterID) {
			key := r.Labels[peeringv1alpha1.OriginNamespaceLabel] + "/" + r.Name
			k.created.Delete(key)
			k.pods.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, o any) { enqueue(o) },
		DeleteFunc: enqueue,
	}
}

// twinHandlers are the handlers of every twin's informers.
func (k *Kubelet) twinHandlers() twinHandlers {
	return twinHandlers{pods: k.remotePodHandler(), objects: k.remoteObjectHandler(), events: k.remoteEventHandler()}
}

// quietRecorder drops the pod controller's "created/updated in provider"
// events: creation is asynchronous here, and the Offloaded event says when it
// really happened.
type quietRecorder struct{ record.EventRecorder }

func (q quietRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	if slices.Contains([]string{"ProviderCreateSuccess", "ProviderUpdateSuccess"}, reason) {
		return
	}
	q.EventRecorder.Event(obj, eventtype, reason, message)
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
