package virtualkubelet

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
)

// endpointSliceController is the value of discoveryv1.LabelManagedBy on
// the slices Kubernetes' EndpointSlice controller derives from the pods a
// Service selects.
const endpointSliceController = "endpointslice-controller.k8s.io"

// endpointSliceReflector reflects the EndpointSlices of reflected Services
// (docs/design.md §4.22), so that a twin's Service also reaches the
// endpoints that run elsewhere. A slice follows its Service (the label
// kubernetes.io/service-name): it is reflected only while the Service is.
//
// The provider's own EndpointSlice controller lists, in each twin, the
// remote pods that the reflected Service selects there. So the copy of a
// slice that the home controller derived from pods leaves out the
// endpoints on this peering's virtual node (those very pods, under their
// home names): it holds the home pods and those on other providers. A
// slice written by hand (or mirrored from Endpoints), as selector-less
// Services have, is copied whole. A slice left with no endpoint has no
// copy.
//
// Copies are labelled as managed by wellknown.EndpointSliceManager, so that
// the provider's controllers leave them alone while kube-proxy, which
// reads every slice of a Service, routes to them. They keep the
// addresses, ports, conditions (ready, serving, terminating: the home
// controller derives them from the home pods, whose readiness follows
// their remote pods), hostname (headless DNS) and zone, and drop what names
// home objects: nodeName (a home node; the provider's kube-proxy would take
// an endpoint on a node of the same name as local), targetRef (a home pod
// the provider does not have) and hints (computed for the home cluster's
// zones and nodes).
type endpointSliceReflector struct{}

func (endpointSliceReflector) kind() string { return KindEndpointSlice }

func (endpointSliceReflector) object() client.Object { return &discoveryv1.EndpointSlice{} }

func (endpointSliceReflector) informer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Discovery().V1().EndpointSlices().Informer()
}

// reflected: the slices of a Service.
func (r endpointSliceReflector) reflected(obj client.Object) bool { return r.parentName(obj) != "" }

// neededBy: none; a pod starts without the endpoints it calls.
func (endpointSliceReflector) neededBy(*corev1.Pod) []string { return nil }

func (endpointSliceReflector) parentKind() string { return KindService }

func (endpointSliceReflector) parentName(obj client.Object) string {
	return obj.GetLabels()[discoveryv1.LabelServiceName]
}

func (endpointSliceReflector) toRemote(obj client.Object, meta metav1.ObjectMeta, p peeringView) client.Object {
	home := obj.(*discoveryv1.EndpointSlice)
	fromPods := home.Labels[discoveryv1.LabelManagedBy] == endpointSliceController
	var endpoints []discoveryv1.Endpoint
	for _, e := range home.Endpoints {
		if fromPods && p.nodeName != "" && ptr.Deref(e.NodeName, "") == p.nodeName {
			continue // the provider lists its pod itself
		}
		endpoints = append(endpoints, discoveryv1.Endpoint{
			Addresses:  slices.Clone(e.Addresses),
			Conditions: *e.Conditions.DeepCopy(),
			Hostname:   e.Hostname,
			Zone:       e.Zone,
		})
	}
	if len(endpoints) == 0 {
		return nil
	}
	meta.Labels[discoveryv1.LabelManagedBy] = wellknown.EndpointSliceManager
	// The label may be new to the copy: it is one of the keys Stretch sets.
	metav1.SetMetaDataAnnotation(&meta, wellknown.RemotePodManagedLabelsAnnotation, keyList(meta.Labels))
	s := &discoveryv1.EndpointSlice{ObjectMeta: meta, AddressType: home.AddressType, Endpoints: endpoints}
	for _, port := range home.Ports {
		s.Ports = append(s.Ports, *port.DeepCopy())
	}
	return s
}

func (endpointSliceReflector) keepAllocated(_, _ client.Object) {}

func (endpointSliceReflector) equal(cur, want client.Object) bool {
	c, w := cur.(*discoveryv1.EndpointSlice), want.(*discoveryv1.EndpointSlice)
	return c.AddressType == w.AddressType && equality.Semantic.DeepEqual(c.Endpoints, w.Endpoints) && equality.Semantic.DeepEqual(c.Ports, w.Ports)
}

// immutable: a slice's address type.
func (endpointSliceReflector) immutable(cur, want client.Object) bool {
	return cur.(*discoveryv1.EndpointSlice).AddressType != want.(*discoveryv1.EndpointSlice).AddressType
}
