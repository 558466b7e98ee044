package virtualkubelet

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
)

// secretReflector reflects Secrets.
type secretReflector struct{ standalone }

func (secretReflector) kind() string { return KindSecret }

func (secretReflector) object() client.Object { return &corev1.Secret{} }

func (secretReflector) informer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().Secrets().Informer()
}

// reflected leaves out service account token Secrets (a reflected one
// would be a long-lived credential of the home cluster; the tokens pods
// mount are reflected on their own, see tokens.go) and the names reserved
// for those tokens.
func (secretReflector) reflected(obj client.Object) bool {
	return obj.(*corev1.Secret).Type != corev1.SecretTypeServiceAccountToken && !strings.HasPrefix(obj.GetName(), wellknown.TokenSecretPrefix)
}

// neededBy: Secrets mounted, projected or read into env, unless optional.
// Image pull Secrets are not: a pod whose images need none starts without
// them.
func (secretReflector) neededBy(pod *corev1.Pod) []string {
	return podReferences{
		volume: func(v corev1.Volume) (string, *bool, bool) {
			if v.Secret == nil {
				return "", nil, false
			}
			return v.Secret.SecretName, v.Secret.Optional, true
		},
		projected: func(p corev1.VolumeProjection) (string, *bool, bool) {
			if p.Secret == nil {
				return "", nil, false
			}
			return p.Secret.Name, p.Secret.Optional, true
		},
		envFrom: func(e corev1.EnvFromSource) (string, *bool, bool) {
			if e.SecretRef == nil {
				return "", nil, false
			}
			return e.SecretRef.Name, e.SecretRef.Optional, true
		},
		env: func(e corev1.EnvVarSource) (string, *bool, bool) {
			if e.SecretKeyRef == nil {
				return "", nil, false
			}
			return e.SecretKeyRef.Name, e.SecretKeyRef.Optional, true
		},
	}.needed(pod)
}

func (secretReflector) toRemote(obj client.Object, meta metav1.ObjectMeta, _ peeringView) client.Object {
	o := obj.(*corev1.Secret)
	return &corev1.Secret{ObjectMeta: meta, Type: o.Type, Data: o.Data, Immutable: o.Immutable}
}

func (secretReflector) keepAllocated(_, _ client.Object) {}

func (secretReflector) equal(cur, want client.Object) bool {
	c, w := cur.(*corev1.Secret), want.(*corev1.Secret)
	return c.Type == w.Type && equality.Semantic.DeepEqual(c.Data, w.Data) && equality.Semantic.DeepEqual(c.Immutable, w.Immutable)
}

// immutable: a Secret's type never changes, and the data of an immutable
// Secret cannot (its metadata can).
func (r secretReflector) immutable(cur, want client.Object) bool {
	c, w := cur.(*corev1.Secret), want.(*corev1.Secret)
	return c.Type != w.Type || (ptr.Deref(c.Immutable, false) && !r.equal(cur, want))
}
