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

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// Kinds of reflected objects, as in metrics.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
	KindService   = "Service"
	KindIngress   = "Ingress"
	// KindEndpointSlice is discovery.k8s.io/v1 EndpointSlice.
	KindEndpointSlice = "EndpointSlice"
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
	// ReflectionFailedReason, on a home object: the provider refused its
	// copy in a twin (admission, quota, validation).
	ReflectionFailedReason = "ReflectionFailed"
)

// reflector is what reflecting one kind of home object into the twins
// needs to know of that kind; the loop in this file does the rest (queues,
// the skip-reflection annotation, who owns the copy, creation, deletion,
// and updates that keep what the provider added). A kind is added with one
// reflector, in its own reflect_<kind>.go, listed in reflectors; the
// rights follow it: reading the kind at home (the rbac marker in set.go)
// and writing it in twins (ClusterRole stretch-remote-workloads in
// charts/stretch/templates/rbac.yaml, whose rules charts/charts_test.go
// and test/tenancy/credentials_test.go pin; docs/security.md lists them).
// The copy may differ by peering (toRemote sees which one), and a kind's
// objects may follow a home object of another kind (parentKind): they are
// reflected only while it is, and synced again when it changes.
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
	// toRemote returns the copy of home object obj in a twin of peering p,
	// with the metadata meta; nil when that peering's twins have no use
	// for one (a copy there is then deleted).
	toRemote(obj client.Object, meta metav1.ObjectMeta, p peeringView) client.Object
	// parentKind is the kind whose home objects this kind's objects
	// follow, "" when they stand alone; parentName names the one obj
	// follows ("" for none: obj is not reflected).
	parentKind() string
	parentName(obj client.Object) string
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
var reflectors = []reflector{configMapReflector{}, secretReflector{}, serviceReflector{}, endpointSliceReflector{}, ingressReflector{}, claimReflector{}}

// peeringView is what a reflector sees of the peering it writes a copy for.
// The zero value stands for a peering that runs no pod of the namespace.
type peeringView struct {
	// nodeName is the peering's virtual node: the provider knows the pods
	// bound to it as its own.
	nodeName string
}

// standalone, embedded in a reflector, says that its kind's objects follow
// no other kind's.
type standalone struct{}

func (standalone) parentKind() string { return "" }

func (standalone) parentName(client.Object) string { return "" }

// namespaceOptIn is a reflector of a kind reflected only on request (an
// Ingress): an object its reflected leaves out is reflected still when its
// namespace's NamespaceOffloading asks for the kind.
type namespaceOptIn interface {
	optedInBy(spec offloadingv1alpha1.NamespaceOffloadingSpec) bool
}

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

// reflects reports whether r reflects home object obj, judged on the object
// alone (not on its namespace's opt-in: see Kubelet.reflects).
func reflects(r reflector, obj client.Object) bool { return !keptAtHome(obj) && r.reflected(obj) }

// reflects reports whether r reflects home object obj into the twins of
// k's provider: reflects, for a kind whose objects go to one provider each
// only to its own, and for a kind reflected on request when obj's
// namespace requests it.
func (k *Kubelet) reflects(r reflector, obj client.Object) bool {
	if p, ok := r.(peeringReflector); ok && !p.reflectedBy(k, obj) {
		return false
	}
	if reflects(r, obj) {
		return true
	}
	o, ok := r.(namespaceOptIn)
	if !ok || keptAtHome(obj) {
		return false
	}
	off := &offloadingv1alpha1.NamespaceOffloading{}
	key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: wellknown.NamespaceOffloadingName}
	if err := k.Offloadings.Get(context.Background(), key, off); err != nil {
		return false // not offloaded, or unoffloaded: the twin goes
	}
	return o.optedInBy(off.Spec)
}

// Reflected reports whether a home object is reflected into twins, judged
// on the object alone: every ConfigMap, Secret, Service and EndpointSlice,
// and every claim of Stretch's provisioner whose node the scheduler chose
// (into the twin of that node's provider only), but those that the
// annotation wellknown.SkipReflectionAnnotation keeps at home and those
// each kind's reflector leaves out (the namespace's own CA, service
// account tokens, slices of no Service), and the Ingresses annotated
// wellknown.ReflectAnnotation. An EndpointSlice is reflected only while
// its Service is, and the Ingresses of a namespace whose
// NamespaceOffloading sets spec.reflectIngresses are reflected too: this
// looks up neither.
func Reflected(obj client.Object) bool {
	r := reflectorOf(obj)
	return r != nil && reflects(r, obj)
}

// ReflectedObject returns the copy of a home object that Stretch creates in
// namespace twin: its data, its labels and annotations with the origin
// labels, and the lists of the keys Stretch set (see
// wellknown.RemotePodManagedLabelsAnnotation). Services lose what the
// provider allocates (cluster IPs, node ports, load balancer state); their
// selector stays, so that they select the remote pods. EndpointSlices are
// copied as for a peering that runs none of their pods (see
// endpointSliceReflector). It returns nil for a kind that is not reflected,
// and for an object that has no copy (an EndpointSlice with no endpoint).
func ReflectedObject(home client.Object, twin, homeClusterID string) client.Object {
	r := reflectorOf(home)
	if r == nil {
		return nil
	}
	return r.toRemote(home, reflectedMeta(home, twin, homeClusterID), peeringView{})
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
// when the home object is gone or kept at home, when the object it follows
// is (an EndpointSlice's Service), or when this peering needs no copy. An
// object of the twin that Stretch did not create is never changed; in one
// it did, the provider's own label and annotation keys and finalizers stay.
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
	if home != nil && keptAtHome(home) {
		k.enqueuePodsNeeding(r, home)
	}
	var want client.Object
	if home != nil && k.reflectsHome(r, home) {
		want = r.toRemote(home, reflectedMeta(home, t.name, k.HomeClusterID), peeringView{nodeName: k.NodeName})
	}
	cur, err := t.objects.get(key.Kind, t.name, key.Name)
	if err != nil {
		return 0, err
	}
	c := k.Peer.Client
	p, peered := r.(peeringReflector)
	if peered && (cur == nil || reflected(cur, k.HomeClusterID) && cur.GetDeletionTimestamp() == nil) &&
		(want == nil || cur != nil && !p.copyOf(home, cur)) {
		// Gone at home, or not here: the kind says whether its copy goes.
		keep, err := p.release(ctx, k, key, atHome, cur)
		if keep || err != nil || cur == nil {
			return 0, err
		}
		if want != nil { // the copy of an earlier object of that name
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
		if want != nil && k.said.add(key.String(), "conflict/"+string(cur.GetUID())) {
			k.recorder.Eventf(home, corev1.EventTypeWarning, ReflectionConflictReason,
				"%s %s/%s on provider %s was not created by Stretch: it is left alone, and pods there see it instead of this one", key.Kind, t.name, key.Name, k.ProviderName)
		}
		return 0, nil
	case cur != nil && cur.GetDeletionTimestamp() != nil:
		// Held by a finalizer of the provider's: its deletion syncs it again.
		return 0, nil
	case want == nil:
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
	k.reflectionResult(home, key, err)
	return 0, err
}

// reflectionResult says on home object home, with one Warning event per
// distinct cause, that the provider refused its copy (its admission, a
// quota, validation: see refusalReason), so that its owner learns why the
// pods that use it do not start there; a transient failure is only
// retried. A copy written again lets the next refusal be said again.
func (k *Kubelet) reflectionResult(home client.Object, key objectKey, err error) {
	if err == nil {
		k.said.forgetAll("reflect/" + key.String())
		return
	}
	if refusalReason(err) == "" {
		return
	}
	said := providerWords(err)
	if k.said.add("reflect/"+key.String(), "refused/"+string(home.GetUID())+"/"+said) {
		k.recorder.Eventf(home, corev1.EventTypeWarning, ReflectionFailedReason,
			"provider %s refused the copy of %s in twin %s: %s; change the %s to meet the provider's rules, ask the provider's admin to allow it, or keep it at home with the annotation %s=true (it is tried again with backoff)",
			k.ProviderName, key, k.twins.get(key.Namespace).name, said, strings.ToLower(key.Kind), wellknown.SkipReflectionAnnotation)
	}
}

func ptrUID(o client.Object) *types.UID { u := o.GetUID(); return &u }

// reflectsHome reports whether home object obj of r's kind is reflected:
// r reflects it (or obj's namespace asks for it, see Kubelet.reflects)
// and, for a kind that follows another, the home object it follows exists
// and is reflected.
func (k *Kubelet) reflectsHome(r reflector, obj client.Object) bool {
	if !k.reflects(r, obj) {
		return false
	}
	kind := r.parentKind()
	if kind == "" {
		return true
	}
	name := r.parentName(obj)
	if name == "" {
		return false
	}
	parent, err := k.homeObjects.get(kind, obj.GetNamespace(), name)
	return err == nil && parent != nil && k.reflectsHome(reflectorByKind[kind], parent)
}

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
			k.TwinChanged(obj.GetNamespace()) // an idle twin, not watched yet, has work now
		}
		return
	}
	k.objects.Add(objectKey{Kind: r.kind(), Namespace: obj.GetNamespace(), Name: obj.GetName()})
	// The objects that follow it are reflected or not with it.
	for _, c := range reflectors {
		if c.parentKind() != r.kind() {
			continue
		}
		for _, o := range k.homeObjects.list(c.kind(), obj.GetNamespace()) {
			if c.parentName(o) == obj.GetName() {
				k.objects.Add(objectKey{Kind: c.kind(), Namespace: o.GetNamespace(), Name: o.GetName()})
			}
		}
	}
}

// optInChanged syncs the objects of home namespace ns again: its
// NamespaceOffloading asks for other kinds (see namespaceOptIn). An idle
// twin, not watched yet, may have work now.
func (k *Kubelet) optInChanged(ns string) {
	if k.twins.get(ns) == nil {
		k.TwinChanged(ns)
		return
	}
	k.enqueueNamespaceObjects(ns)
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
