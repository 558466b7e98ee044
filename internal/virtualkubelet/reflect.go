package virtualkubelet

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
)

// Kinds of reflected objects, as in metrics.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
	KindService   = "Service"
)

// Note: KindPersistentVolumeClaim is in reflect_claim.go.

// Reasons of the events reflection records.
const (
	// ReflectionConflictReason, on a home object: an object of the same
	// name that Stretch did not create exists in a twin; it is left alone.
	ReflectionConflictReason = "ReflectionConflict"
	// KeptAtHomeReason, on a home pod: the pod needs an object that
	// wellknown.SkipReflectionAnnotation keeps at home, so that its remote
	// pod cannot start.
	KeptAtHomeReason = "ObjectKeptAtHome"
)

// reflector is what reflecting one kind of home object into the twins
// needs to know of that kind; the loop in this file does the rest (queues,
// the skip-reflection annotation, who owns the copy, creation, deletion,
// and updates that keep what the provider added). A kind is added with one
// reflector, in its own reflect_<kind>.go, listed in reflectors; the
// rights follow it: reading the kind at home (the rbac marker in set.go)
// and writing it in twins (ClusterRole stretch-remote-workloads in
// charts/stretch/templates/rbac.yaml).
//
// A kind whose objects each go to one provider only, and whose copies the
// provider acts on (claims: it binds them), implements peeringReflector
// too: the loop then asks it which provider an object goes to, lets it
// fit the copy to that provider, tell home what the provider did with the
// copy, and decide whether a copy may be deleted (a claim's copy holds
// data: only the user's own delete at home deletes it).
type reflector interface {
	// kind is the kind's name ("ConfigMap"), as in metrics and events.
	kind() string
	// object returns an empty object of the kind.
	object() client.Object
	// informer returns the kind's informer of f, home's or a twin's; it is
	// started with f.
	informer(f informers.SharedInformerFactory) cache.SharedIndexInformer
	// reflected reports whether home object obj is reflected, the
	// skip-reflection annotation aside.
	reflected(obj client.Object) bool
	// neededBy returns the names of the objects of the kind without which
	// pod cannot start.
	neededBy(pod *corev1.Pod) []string
	// toRemote returns the copy of home object obj in a twin, with the
	// metadata meta.
	toRemote(obj client.Object, meta metav1.ObjectMeta) client.Object
	// keepAllocated copies into want, about to be written over cur, what
	// the provider allocated in cur (a Service's cluster IP, node ports).
	keepAllocated(want, cur client.Object)
	// equal reports whether cur holds what want holds, metadata aside.
	equal(cur, want client.Object) bool
	// immutable reports whether cur cannot be made want in place, and is
	// replaced (deleted, then created again).
	immutable(cur, want client.Object) bool
}

// reflectors are the reflected kinds.
var reflectors = []reflector{configMapReflector{}, secretReflector{}, serviceReflector{}, claimReflector{}}

// peeringReflector is a reflector whose objects go each to the twin of one
// provider, chosen per object, and whose copies the provider acts on.
type peeringReflector interface {
	reflector
	// reflectedBy reports whether home object obj, reflected, goes to the
	// provider of kubelet k.
	reflectedBy(k *Kubelet, obj client.Object) bool
	// forProvider fits want, the copy toRemote made, to k's provider.
	forProvider(ctx context.Context, k *Kubelet, want client.Object) error
	// reportBack tells home object home what the provider did with its
	// copy cur (created or in sync).
	reportBack(ctx context.Context, k *Kubelet, home, cur client.Object) error
	// copyOf reports whether cur is the copy of home object home, not of
	// an earlier object of that name.
	copyOf(home, cur client.Object) bool
	// release decides whether cur, the copy of key (nil when there is
	// none), stays although it is not the copy of a home object reflected
	// to k's provider (home, nil when there is none, is the home object
	// of that name), and releases at home what stood for a copy gone. An
	// error keeps the copy.
	release(ctx context.Context, k *Kubelet, key objectKey, home, cur client.Object) (keep bool, err error)
}

var (
	reflectorByKind = map[string]reflector{}
	reflectorByType = map[reflect.Type]reflector{}
)

func init() {
	for _, r := range reflectors {
		reflectorByKind[r.kind()] = r
		reflectorByType[reflect.TypeOf(r.object())] = r
	}
}

// reflectorOf returns the reflector of obj's kind, nil for other kinds.
func reflectorOf(obj client.Object) reflector { return reflectorByType[reflect.TypeOf(obj)] }

// objectKey names a home object to reflect.
type objectKey struct {
	Kind, Namespace, Name string
}

func (o objectKey) String() string { return o.Kind + " " + o.Namespace + "/" + o.Name }

// keptAtHome reports whether home object obj carries the annotation that
// keeps it at home.
func keptAtHome(obj metav1.Object) bool {
	return obj.GetAnnotations()[wellknown.SkipReflectionAnnotation] == "true"
}

// reflects reports whether r reflects home object obj.
func reflects(r reflector, obj client.Object) bool { return !keptAtHome(obj) && r.reflected(obj) }

// reflects reports whether r reflects home object obj into the twins of
// k's provider.
func (k *Kubelet) reflects(r reflector, obj client.Object) bool {
	if p, ok := r.(peeringReflector); ok && !p.reflectedBy(k, obj) {
		return false
	}
	return reflects(r, obj)
}

// Reflected reports whether a home object is reflected into twins: every
// ConfigMap, Secret and Service, and every claim of Stretch's provisioner
// whose node the scheduler chose (into the twin of that node's provider
// only), but those that the annotation wellknown.SkipReflectionAnnotation
// keeps at home and those each kind's reflector leaves out (the
// namespace's own CA, service account tokens).
func Reflected(obj client.Object) bool {
	r := reflectorOf(obj)
	return r != nil && reflects(r, obj)
}

// ReflectedObject returns the copy of a home object that Stretch creates in
// namespace twin: its data, its labels and annotations with the origin
// labels, and the lists of the keys Stretch set (see
// wellknown.RemotePodManagedLabelsAnnotation). Services lose what the
// provider allocates (cluster IPs, node ports, load balancer state); their
// selector stays, so that they select the remote pods. It returns nil for
// a kind that is not reflected.
func ReflectedObject(home client.Object, twin, homeClusterID string) client.Object {
	r := reflectorOf(home)
	if r == nil {
		return nil
	}
	return r.toRemote(home, reflectedMeta(home, twin, homeClusterID))
}

// reflectedMeta is the metadata of the copy of home in twin.
func reflectedMeta(home metav1.Object, twin, homeClusterID string) metav1.ObjectMeta {
	m := remoteMeta(home, twin, homeClusterID)
	setManagedKeys(&m)
	return m
}

// updateOf returns want as written over cur, its copy in a twin: with the
// label and annotation keys the provider added to cur (Stretch's own that
// the home object no longer has go, see updateRemoteMeta), cur's
// finalizers (a load balancer controller's), and what the provider
// allocated in it. A copy made by an older release, without the lists of
// the keys Stretch set, counts the keys the home object has now as those.
func updateOf(r reflector, cur, want client.Object) client.Object {
	upd := want.DeepCopyObject().(client.Object)
	meta := metav1.ObjectMeta{Labels: maps.Clone(cur.GetLabels()), Annotations: maps.Clone(cur.GetAnnotations())}
	updateRemoteMeta(&meta, metav1.ObjectMeta{Labels: want.GetLabels(), Annotations: want.GetAnnotations()})
	upd.SetLabels(meta.Labels)
	upd.SetAnnotations(meta.Annotations)
	upd.SetFinalizers(cur.GetFinalizers())
	upd.SetResourceVersion(cur.GetResourceVersion())
	r.keepAllocated(upd, cur)
	return upd
}

// unchanged reports whether writing upd (see updateOf) over cur would
// change nothing.
func unchanged(r reflector, cur, upd client.Object) bool {
	return maps.Equal(cur.GetLabels(), upd.GetLabels()) && maps.Equal(cur.GetAnnotations(), upd.GetAnnotations()) && r.equal(cur, upd)
}

// inSync reports whether the copy cur in a twin already is want, but for
// what the provider allocated or added.
func inSync(cur, want client.Object) bool {
	r := reflectorOf(cur)
	return unchanged(r, cur, updateOf(r, cur, want))
}

// objectCaches read the reflected kinds of one cluster, home or a twin,
// from its informers' caches, by kind.
type objectCaches map[string]cache.Indexer

func newObjectCaches(f informers.SharedInformerFactory) objectCaches {
	c := objectCaches{}
	for _, r := range reflectors {
		c[r.kind()] = r.informer(f).GetIndexer()
	}
	return c
}

// get returns the object of kind ns/name, nil when there is none.
func (c objectCaches) get(kind, ns, name string) (client.Object, error) {
	o, ok, err := c[kind].GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil, err
	}
	return o.(client.Object), nil
}

// list returns the objects of kind in ns.
func (c objectCaches) list(kind, ns string) []client.Object {
	l, _ := c[kind].ByIndex(cache.NamespaceIndex, ns)
	out := make([]client.Object, 0, len(l))
	for _, o := range l {
		out = append(out, o.(client.Object))
	}
	return out
}

// syncObject makes the copy of a home object in its twin equal to it:
// created, updated (replaced when that cannot be done in place), or deleted
// when the home object is gone or kept at home. An object of the twin that
// Stretch did not create is never changed; in one it did, the provider's
// own label and annotation keys and finalizers stay.
func (k *Kubelet) syncObject(ctx context.Context, key objectKey) (time.Duration, error) {
	r := reflectorByKind[key.Kind]
	t := k.twins.get(key.Namespace)
	if t == nil {
		return 0, nil
	}
	if !t.hasSynced() {
		return time.Second, nil
	}
	home, err := k.homeObjects.get(key.Kind, key.Namespace, key.Name)
	if err != nil {
		return 0, err
	}
	atHome := home
	if home != nil && !k.reflects(r, home) {
		if keptAtHome(home) {
			k.enqueuePodsNeeding(r, home)
		}
		home = nil
	}
	cur, err := t.objects.get(key.Kind, t.name, key.Name)
	if err != nil {
		return 0, err
	}
	c := k.Peer.Client
	p, peered := r.(peeringReflector)
	if peered && (cur == nil || reflected(cur, k.HomeClusterID) && cur.GetDeletionTimestamp() == nil) &&
		(home == nil || cur != nil && !p.copyOf(home, cur)) {
		// Gone at home, or not here: the kind says whether its copy goes.
		keep, err := p.release(ctx, k, key, atHome, cur)
		if keep || err != nil || cur == nil {
			return 0, err
		}
		if home != nil { // the copy of an earlier object of that name
			err := c.Delete(ctx, cur, client.Preconditions{UID: ptrUID(cur)})
			if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return time.Second, nil
			}
			k.countError("reflect-"+strings.ToLower(key.Kind), err)
			return 0, err
		}
	}
	switch {
	case cur != nil && !reflected(cur, k.HomeClusterID):
		if home != nil && k.said.add(key.String(), "conflict/"+string(cur.GetUID())) {
			k.recorder.Eventf(home, corev1.EventTypeWarning, ReflectionConflictReason,
				"%s %s/%s on provider %s was not created by Stretch: it is left alone, and pods there see it instead of this one", key.Kind, t.name, key.Name, k.ProviderName)
		}
		return 0, nil
	case cur != nil && cur.GetDeletionTimestamp() != nil:
		// Held by a finalizer of the provider's: its deletion syncs it again.
		return 0, nil
	case home == nil:
		k.said.forgetAll(key.String())
		if cur == nil {
			return 0, nil
		}
		err := c.Delete(ctx, cur, client.Preconditions{UID: ptrUID(cur)})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return 0, nil
		}
		k.countError("reflect-"+strings.ToLower(key.Kind), err)
		return 0, err
	}
	want := r.toRemote(home, reflectedMeta(home, t.name, k.HomeClusterID))
	if peered {
		if err := p.forProvider(ctx, k, want); err != nil {
			return 0, err
		}
	}
	if cur == nil {
		err = c.Create(ctx, want, client.FieldOwner(wellknown.VirtualKubeletComponent))
		if apierrors.IsAlreadyExists(err) {
			// The cache is behind. An object that is not ours brings no
			// event (they are filtered out), so look again once the cache
			// has it: it is then judged as ours, or left alone and said.
			return time.Second, nil
		}
		if err == nil && peered {
			err = p.reportBack(ctx, k, home, want)
		}
	} else {
		upd := updateOf(r, cur, want)
		switch {
		case unchanged(r, cur, upd):
			if peered {
				return 0, p.reportBack(ctx, k, home, cur)
			}
			return 0, nil
		case r.immutable(cur, want):
			err = c.Delete(ctx, cur, client.Preconditions{UID: ptrUID(cur)})
			if err == nil || apierrors.IsNotFound(err) {
				return time.Second, nil // created again once the deletion is seen
			}
		default:
			err = c.Update(ctx, upd, client.FieldOwner(wellknown.VirtualKubeletComponent))
		}
	}
	if apierrors.IsConflict(err) {
		return time.Second, nil
	}
	k.countError("reflect-"+strings.ToLower(key.Kind), err)
	return 0, err
}

func ptrUID(o client.Object) *types.UID { u := o.GetUID(); return &u }

// enqueuePodsNeeding enqueues the pods bound to the virtual node that need
// home object obj, of r's kind: their sync says it is kept at home.
func (k *Kubelet) enqueuePodsNeeding(r reflector, obj client.Object) {
	pods, _ := k.homePods.Pods(obj.GetNamespace()).List(everything)
	for _, p := range pods {
		if live(p) && slices.Contains(r.neededBy(p), obj.GetName()) {
			k.pods.Add(p.Namespace + "/" + p.Name)
		}
	}
}

// warnKeptAtHome records on home pod p, once per pod and object, a Warning
// event for each object p needs that the skip-reflection annotation keeps
// at home.
func (k *Kubelet) warnKeptAtHome(p *corev1.Pod) {
	for _, r := range reflectors {
		for _, name := range r.neededBy(p) {
			obj, err := k.homeObjects.get(r.kind(), p.Namespace, name)
			if err != nil || obj == nil || !keptAtHome(obj) || !r.reflected(obj) {
				continue
			}
			if k.said.add(p.Namespace+"/"+p.Name, "kept-at-home/"+string(p.UID)+"/"+r.kind()+"/"+name) {
				k.recorder.Eventf(p, corev1.EventTypeWarning, KeptAtHomeReason,
					"%s %s/%s is kept at home by its annotation %s=true and is not reflected to provider %s: the remote pod cannot start until it is reflected (remove the annotation) or the pod stops using it",
					r.kind(), p.Namespace, name, wellknown.SkipReflectionAnnotation, k.ProviderName)
			}
		}
	}
}

// podContainers returns the init containers and containers of pod.
// podReferences finds in a pod the objects of one kind it refers to: each
// accessor returns the name and optionality of a reference, and whether it
// holds one of that kind.
type podReferences struct {
	volume    func(corev1.Volume) (string, *bool, bool)
	projected func(corev1.VolumeProjection) (string, *bool, bool)
	envFrom   func(corev1.EnvFromSource) (string, *bool, bool)
	env       func(corev1.EnvVarSource) (string, *bool, bool)
}

// needed are the names pod refers to without marking them optional: those
// it cannot start without.
func (r podReferences) needed(pod *corev1.Pod) []string {
	var names []string
	need := func(name string, optional *bool, ok bool) {
		if ok && !ptr.Deref(optional, false) {
			names = append(names, name)
		}
	}
	for _, v := range pod.Spec.Volumes {
		need(r.volume(v))
		if v.Projected != nil {
			for _, p := range v.Projected.Sources {
				need(r.projected(p))
			}
		}
	}
	for _, c := range podContainers(pod) {
		for _, e := range c.EnvFrom {
			need(r.envFrom(e))
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil {
				need(r.env(*e.ValueFrom))
			}
		}
	}
	return names
}

func podContainers(pod *corev1.Pod) []corev1.Container {
	return slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers)
}

// reflectedCounts returns, by kind, the objects reflected into the twins
// of the peering.
func (k *Kubelet) reflectedCounts() map[string]int {
	n := map[string]int{}
	for _, r := range reflectors {
		n[r.kind()] = 0
		for _, t := range k.twins.all() {
			for _, o := range t.objects.list(r.kind(), t.name) {
				if reflected(o, k.HomeClusterID) {
					n[r.kind()]++
				}
			}
		}
	}
	return n
}

// homeObjectHandlers registers, on the shared home informers, handlers that
// enqueue the objects of namespaces this peering has twins of.
func (k *Kubelet) homeObjectHandlers() registrations {
	var regs registrations
	for _, r := range reflectors {
		enqueue := func(o any) { k.enqueueHomeObject(r, o) }
		inf := r.informer(k.Objects.factory)
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    enqueue,
			UpdateFunc: func(_, o any) { enqueue(o) },
			DeleteFunc: enqueue,
		})
		if err == nil {
			regs = append(regs, registration{inf, reg})
		}
	}
	return regs
}

type registration struct {
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
}

type registrations []registration

func (r registrations) remove() {
	for _, x := range r {
		_ = x.informer.RemoveEventHandler(x.reg)
	}
}

func (k *Kubelet) enqueueHomeObject(r reflector, o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	obj, ok := o.(client.Object)
	if !ok {
		return
	}
	if k.twins.get(obj.GetNamespace()) == nil {
		if k.reflects(r, obj) && k.twinReady(obj.GetNamespace()) {
			k.TwinsChanged() // an idle twin, not watched yet, has work now
		}
		return
	}
	k.objects.Add(objectKey{Kind: r.kind(), Namespace: obj.GetNamespace(), Name: obj.GetName()})
}

// enqueueNamespaceObjects enqueues every reflected kind's objects of a home
// namespace, and the reflected objects of its twin (which may be left over).
func (k *Kubelet) enqueueNamespaceObjects(ns string) {
	t := k.twins.get(ns)
	for _, r := range reflectors {
		objs := k.homeObjects.list(r.kind(), ns)
		if t != nil {
			objs = append(objs, t.objects.list(r.kind(), t.name)...)
		}
		for _, o := range objs {
			k.objects.Add(objectKey{Kind: r.kind(), Namespace: ns, Name: o.GetName()})
		}
	}
}

// remoteObjectHandler maps changes of the copies of r's kind in twins to
// their home objects: an edit or deletion made on the provider is undone.
// An update counts for the home object of the old copy too, should the
// edit have changed its origin label.
func (k *Kubelet) remoteObjectHandler(r reflector) cache.ResourceEventHandler {
	enqueue := func(o any) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		obj, ok := o.(client.Object)
		if !ok || !reflected(obj, k.HomeClusterID) || obj.GetLabels()[wellknown.ReflectedLabel] != "true" {
			return
		}
		k.objects.Add(objectKey{Kind: r.kind(), Namespace: obj.GetLabels()[wellknown.OriginNamespaceLabel], Name: obj.GetName()})
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(old, o any) { enqueue(old); enqueue(o) },
		DeleteFunc: enqueue,
	}
}
