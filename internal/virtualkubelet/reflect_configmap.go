package virtualkubelet

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// configMapReflector reflects ConfigMaps.
type configMapReflector struct{ standalone }

func (configMapReflector) kind() string { return KindConfigMap }

func (configMapReflector) object() client.Object { return &corev1.ConfigMap{} }

func (configMapReflector) informer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().ConfigMaps().Informer()
}

// reflected leaves out the namespace's own CA: the provider's namespaces
// have theirs, and the pods that mount the home one get it with their
// token (see tokens.go).
func (configMapReflector) reflected(obj client.Object) bool {
	return obj.GetName() != rootCAConfigMap
}

// neededBy: ConfigMaps mounted, projected or read into env, unless optional.
func (configMapReflector) neededBy(pod *corev1.Pod) []string {
	return podReferences{
		volume: func(v corev1.Volume) (string, *bool, bool) {
			if v.ConfigMap == nil {
				return "", nil, false
			}
			return v.ConfigMap.Name, v.ConfigMap.Optional, true
		},
		projected: func(p corev1.VolumeProjection) (string, *bool, bool) {
			if p.ConfigMap == nil {
				return "", nil, false
			}
			return p.ConfigMap.Name, p.ConfigMap.Optional, true
		},
		envFrom: func(e corev1.EnvFromSource) (string, *bool, bool) {
			if e.ConfigMapRef == nil {
				return "", nil, false
			}
			return e.ConfigMapRef.Name, e.ConfigMapRef.Optional, true
		},
		env: func(e corev1.EnvVarSource) (string, *bool, bool) {
			if e.ConfigMapKeyRef == nil {
				return "", nil, false
			}
			return e.ConfigMapKeyRef.Name, e.ConfigMapKeyRef.Optional, true
		},
	}.needed(pod)
}

func (configMapReflector) toRemote(obj client.Object, meta metav1.ObjectMeta, _ peeringView) client.Object {
	o := obj.(*corev1.ConfigMap)
	return &corev1.ConfigMap{ObjectMeta: meta, Data: o.Data, BinaryData: o.BinaryData, Immutable: o.Immutable}
}

func (configMapReflector) keepAllocated(_, _ client.Object) {}

func (configMapReflector) equal(cur, want client.Object) bool {
	c, w := cur.(*corev1.ConfigMap), want.(*corev1.ConfigMap)
	return equality.Semantic.DeepEqual(c.Data, w.Data) && equality.Semantic.DeepEqual(c.BinaryData, w.BinaryData) && equality.Semantic.DeepEqual(c.Immutable, w.Immutable)
}

// immutable: the data of an immutable ConfigMap cannot change (its
// metadata can).
func (r configMapReflector) immutable(cur, want client.Object) bool {
	return ptr.Deref(cur.(*corev1.ConfigMap).Immutable, false) && !r.equal(cur, want)
}
