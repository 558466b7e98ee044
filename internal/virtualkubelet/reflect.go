package virtualkubelet

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	corev1informers "k8s.io/client-go/informers/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
)

// Kinds of reflected objects, as in metrics.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
	KindService   = "Service"
)

// ReflectionConflictReason: an object of the same name that Stretch did not
// create exists in a twin; it is left alone.
const ReflectionConflictReason = "ReflectionConflict"

// objectKey names a home object to reflect.
type objectKey struct {
	Kind, Namespace, Name string
}

func (o objectKey) String() string { return o.Kind + " " + o.Namespace + "/" + o.Name }

// kindOf returns the reflected kind of obj, "" for others.
func kindOf(obj any) string {
	switch obj.(type) {
	case *corev1.ConfigMap:
		return KindConfigMap
	case *corev1.Secret:
		return KindSecret
	case *corev1.Service:
		return KindService
	}
	return ""
}

// Reflected reports whether a home object is reflected into twins: every
// ConfigMap, Secret and Service but the namespace's own CA, service account
// token Secrets (a reflected token would be a long-lived credential of the
// home cluster; the tokens pods mount are reflected on their own), and names
// reserved for those tokens.
func Reflected(obj client.Object) bool {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		return o.Name != rootCAConfigMap
	case *corev1.Secret:
		return o.Type != corev1.SecretTypeServiceAccountToken && !strings.HasPrefix(o.Name, wellknown.TokenSecretPrefix)
	case *corev1.Service:
		return true
	}
	return false
}

// ReflectedObject returns the twin of a home object in namespace twin.
// Services lose what the provider allocates (cluster IPs, node ports, load
// balancer state); their selector stays, so that they select the remote pods.
func ReflectedObject(home client.Object, twin, homeClusterID string) client.Object {
	meta := remoteMeta(home, twin, homeClusterID)
	switch o := home.(type) {
	case *corev1.ConfigMap:
		return &corev1.ConfigMap{ObjectMeta: meta, Data: o.Data, BinaryData: o.BinaryData, Immutable: o.Immutable}
	case *corev1.Secret:
		return &corev1.Secret{ObjectMeta: meta, Type: o.Type, Data: o.Data, Immutable: o.Immutable}
	case *corev1.Service:
		s := &corev1.Service{ObjectMeta: meta, Spec: *o.Spec.DeepCopy()}
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			s.Spec.ClusterIP = ""
			s.Spec.ClusterIPs = nil
		} else {
			s.Spec.ClusterIPs = nil
		}
		s.Spec.HealthCheckNodePort = 0
		s.Spec.LoadBalancerIP = "" //nolint:staticcheck // deprecated, still honoured by some providers
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
		return s
	}
	panic(fmt.Sprintf("not a reflected kind: %T", home))
}

// inSync reports whether the remote object cur already is want, ignoring
// what the provider allocated.
func inSync(cur, want client.Object) bool {
	if !maps.Equal(cur.GetLabels(), want.GetLabels()) || !maps.Equal(cur.GetAnnotations(), want.GetAnnotations()) {
		return false
	}
	switch c := cur.(type) {
	case *corev1.ConfigMap:
		w := want.(*corev1.ConfigMap)
		return equality.Semantic.DeepEqual(c.Data, w.Data) && equality.Semantic.DeepEqual(c.BinaryData, w.BinaryData) && equality.Semantic.DeepEqual(c.Immutable, w.Immutable)
	case *corev1.Secret:
		w := want.(*corev1.Secret)
		return c.Type == w.Type && equality.Semantic.DeepEqual(c.Data, w.Data) && equality.Semantic.DeepEqual(c.Immutable, w.Immutable)
	case *corev1.Service:
		w := want.(*corev1.Service).DeepCopy()
		keepAllocated(w, c)
		return equality.Semantic.DeepEqual(c.Spec, w.Spec)
	}
	return false
}

// keepAllocated copies into want what the provider allocated in cur, which
// an update must not change.
func keepAllocated(want, cur *corev1.Service) {
	want.Spec.ClusterIP, want.Spec.ClusterIPs = cur.Spec.ClusterIP, cur.Spec.ClusterIPs
	want.Spec.IPFamilies, want.Spec.IPFamilyPolicy = cur.Spec.IPFamilies, cur.Spec.IPFamilyPolicy
	want.Spec.HealthCheckNodePort = cur.Spec.HealthCheckNodePort
	if want.Spec.InternalTrafficPolicy == nil {
		want.Spec.InternalTrafficPolicy = cur.Spec.InternalTrafficPolicy
	}
	if want.Spec.ExternalTrafficPolicy == "" {
		want.Spec.ExternalTrafficPolicy = cur.Spec.ExternalTrafficPolicy
	}
	if want.Spec.SessionAffinity == "" {
		want.Spec.SessionAffinity = cur.Spec.SessionAffinity
	}
	for i := range want.Spec.Ports {
		for _, p := range cur.Spec.Ports {
			if p.Name == want.Spec.Ports[i].Name {
				want.Spec.Ports[i].NodePort = p.NodePort
				if want.Spec.Ports[i].Protocol == "" {
					want.Spec.Ports[i].Protocol = p.Protocol
				}
				if want.Spec.Ports[i].TargetPort.IntVal == 0 && want.Spec.Ports[i].TargetPort.StrVal == "" {
					want.Spec.Ports[i].TargetPort = p.TargetPort
				}
			}
		}
	}
}

// immutable reports whether cur cannot be updated in place: immutable data,
// or a Secret type change.
func immutable(cur, want client.Object) bool {
	switch c := cur.(type) {
	case *corev1.ConfigMap:
		return c.Immutable != nil && *c.Immutable
	case *corev1.Secret:
		return (c.Immutable != nil && *c.Immutable) || c.Type != want.(*corev1.Secret).Type
	}
	return false
}

// objectListers read the reflected kinds of one cluster from caches.
type objectListers struct {
	configMaps corev1listers.ConfigMapLister
	secrets    corev1listers.SecretLister
	services   corev1listers.ServiceLister
}

func newObjectListers(core corev1informers.Interface) objectListers {
	return objectListers{configMaps: core.ConfigMaps().Lister(), secrets: core.Secrets().Lister(), services: core.Services().Lister()}
}

// reflectedKinds are the kinds objectListers read.
var reflectedKinds = []string{KindConfigMap, KindSecret, KindService}

// get returns the object of kind ns/name, nil when there is none.
func (l objectListers) get(kind, ns, name string) (client.Object, error) {
	var obj client.Object
	var err error
	switch kind {
	case KindConfigMap:
		obj, err = l.configMaps.ConfigMaps(ns).Get(name)
	case KindSecret:
		obj, err = l.secrets.Secrets(ns).Get(name)
	case KindService:
		obj, err = l.services.Services(ns).Get(name)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return obj, err
}

// list returns the objects of kind in ns.
func (l objectListers) list(kind, ns string) []client.Object {
	var out []client.Object
	switch kind {
	case KindConfigMap:
		l, _ := l.configMaps.ConfigMaps(ns).List(everything)
		out = objects(l)
	case KindSecret:
		l, _ := l.secrets.Secrets(ns).List(everything)
		out = objects(l)
	case KindService:
		l, _ := l.services.Services(ns).List(everything)
		out = objects(l)
	}
	return out
}

func objects[T client.Object](l []T) []client.Object {
	out := make([]client.Object, len(l))
	for i := range l {
		out[i] = l[i]
	}
	return out
}

// homeObject returns the home object key names, nil when it does not exist
// or is not reflected.
func (k *Kubelet) homeObject(key objectKey) (client.Object, error) {
	obj, err := k.homeObjects.get(key.Kind, key.Namespace, key.Name)
	if err != nil || obj == nil || !Reflected(obj) {
		return nil, err
	}
	return obj, nil
}

// syncObject makes the twin of a home object equal to it: created, updated
// (replaced when immutable), or deleted when the home object is gone. An
// object of the twin that Stretch did not create is never changed.
func (k *Kubelet) syncObject(ctx context.Context, key objectKey) (time.Duration, error) {
	t := k.twins.get(key.Namespace)
	if t == nil {
		return 0, nil
	}
	if !t.hasSynced() {
		return time.Second, nil
	}
	home, err := k.homeObject(key)
	if err != nil {
		return 0, err
	}
	cur, err := t.objects.get(key.Kind, t.name, key.Name)
	if err != nil {
		return 0, err
	}
	c := k.Peer.Client
	switch {
	case cur != nil && !reflected(cur, k.HomeClusterID):
		if home != nil && k.said.add(key.String(), "conflict/"+string(cur.GetUID())) {
			k.recorder.Eventf(home, corev1.EventTypeWarning, ReflectionConflictReason,
				"%s %s/%s on provider %s was not created by Stretch: it is left alone, and pods there see it instead of this one", key.Kind, t.name, key.Name, k.ProviderName)
		}
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
	want := ReflectedObject(home, t.name, k.HomeClusterID)
	switch {
	case cur == nil:
		err = c.Create(ctx, want, client.FieldOwner(wellknown.VirtualKubeletComponent))
		if apierrors.IsAlreadyExists(err) {
			// The cache is behind. An object that is not ours brings no
			// event (they are filtered out), so look again once the cache
			// has it: it is then judged as ours, or left alone and said.
			return time.Second, nil
		}
	case inSync(cur, want):
		return 0, nil
	case immutable(cur, want):
		err = c.Delete(ctx, cur, client.Preconditions{UID: ptrUID(cur)})
		if err == nil || apierrors.IsNotFound(err) {
			return time.Second, nil // created again once the deletion is seen
		}
	default:
		if s, ok := want.(*corev1.Service); ok {
			keepAllocated(s, cur.(*corev1.Service))
		}
		want.SetResourceVersion(cur.GetResourceVersion())
		err = c.Update(ctx, want, client.FieldOwner(wellknown.VirtualKubeletComponent))
	}
	if apierrors.IsConflict(err) {
		return time.Second, nil
	}
	k.countError("reflect-"+strings.ToLower(key.Kind), err)
	return 0, err
}

func ptrUID(o client.Object) *types.UID { u := o.GetUID(); return &u }

// reflectedCounts returns, by kind, the objects reflected into the twins
// of the peering.
func (k *Kubelet) reflectedCounts() map[string]int {
	n := map[string]int{}
	for _, kind := range reflectedKinds {
		n[kind] = 0
		for _, t := range k.twins.all() {
			for _, o := range t.objects.list(kind, t.name) {
				if reflected(o, k.HomeClusterID) {
					n[kind]++
				}
			}
		}
	}
	return n
}

// homeObjectHandlers registers, on the shared home informers, handlers that
// enqueue the objects of namespaces this peering has twins of.
func (k *Kubelet) homeObjectHandlers() registrations {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { k.enqueueHomeObject(o) },
		UpdateFunc: func(_, o any) { k.enqueueHomeObject(o) },
		DeleteFunc: func(o any) { k.enqueueHomeObject(o) },
	}
	core := k.Objects.factory.Core().V1()
	var regs registrations
	for _, inf := range []cache.SharedIndexInformer{core.ConfigMaps().Informer(), core.Secrets().Informer(), core.Services().Informer()} {
		if reg, err := inf.AddEventHandler(h); err == nil {
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

func (k *Kubelet) enqueueHomeObject(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	obj, ok := o.(client.Object)
	kind := kindOf(o)
	if !ok || kind == "" {
		return
	}
	if k.twins.get(obj.GetNamespace()) == nil {
		if Reflected(obj) && k.twinReady(obj.GetNamespace()) {
			k.TwinsChanged() // an idle twin, not watched yet, has work now
		}
		return
	}
	k.objects.Add(objectKey{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()})
}

// enqueueNamespaceObjects enqueues every reflected kind's objects of a home
// namespace, and the reflected objects of its twin (which may be left over).
func (k *Kubelet) enqueueNamespaceObjects(ns string) {
	t := k.twins.get(ns)
	for _, kind := range reflectedKinds {
		objs := k.homeObjects.list(kind, ns)
		if t != nil {
			objs = append(objs, t.objects.list(kind, t.name)...)
		}
		for _, o := range objs {
			k.objects.Add(objectKey{Kind: kind, Namespace: ns, Name: o.GetName()})
		}
	}
}

// remoteObjectHandler maps changes of reflected objects in twins to their
// home objects: an edit or deletion made on the provider is undone.
func (k *Kubelet) remoteObjectHandler() cache.ResourceEventHandler {
	enqueue := func(o any) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		obj, ok := o.(client.Object)
		kind := kindOf(o)
		if !ok || kind == "" || !reflected(obj, k.HomeClusterID) || obj.GetLabels()[wellknown.ReflectedLabel] != "true" {
			return
		}
		k.objects.Add(objectKey{Kind: kind, Namespace: obj.GetLabels()[wellknown.OriginNamespaceLabel], Name: obj.GetName()})
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, o any) { enqueue(o) },
		DeleteFunc: enqueue,
	}
}
