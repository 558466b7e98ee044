package virtualkubelet

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// ingressReflector reflects Ingresses, by opt-in only (docs/design.md
// §4.16): an Ingress exposes the namespace on the provider's ingress
// controller, at the provider's addresses and under its DNS, which its
// owner has to want. The copy keeps the rules, TLS (its Secrets are
// reflected like any), default backend and class name; the provider's
// controller writes the copy's status, which stays there (one home Ingress
// may be served by several providers and by home's own controller).
type ingressReflector struct{ standalone }

func (ingressReflector) kind() string { return KindIngress }

func (ingressReflector) object() client.Object { return &networkingv1.Ingress{} }

func (ingressReflector) informer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Networking().V1().Ingresses().Informer()
}

// reflected: the Ingresses that opt in themselves; those of a namespace
// that opts in are added by optedInBy.
func (ingressReflector) reflected(obj client.Object) bool {
	return obj.GetAnnotations()[wellknown.ReflectAnnotation] == "true"
}

// optedInBy: every Ingress of a namespace whose NamespaceOffloading sets
// spec.reflectIngresses.
func (ingressReflector) optedInBy(spec offloadingv1alpha1.NamespaceOffloadingSpec) bool {
	return spec.ReflectIngresses
}

// neededBy: none; a pod starts without the Ingresses that route to it.
func (ingressReflector) neededBy(*corev1.Pod) []string { return nil }

func (ingressReflector) toRemote(obj client.Object, meta metav1.ObjectMeta, _ peeringView) client.Object {
	return &networkingv1.Ingress{ObjectMeta: meta, Spec: *obj.(*networkingv1.Ingress).Spec.DeepCopy()}
}

func (ingressReflector) keepAllocated(want, cur client.Object) {
	w := want.(*networkingv1.Ingress)
	if w.Spec.IngressClassName == nil {
		// A provider's default class is written in by its admission.
		w.Spec.IngressClassName = cur.(*networkingv1.Ingress).Spec.IngressClassName
	}
}

func (ingressReflector) equal(cur, want client.Object) bool {
	return equality.Semantic.DeepEqual(cur.(*networkingv1.Ingress).Spec, want.(*networkingv1.Ingress).Spec)
}

func (ingressReflector) immutable(client.Object, client.Object) bool { return false }
