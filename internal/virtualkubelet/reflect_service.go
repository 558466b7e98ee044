package virtualkubelet

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// serviceReflector reflects Services. A copy keeps the type, selector and
// ports of its home Service, and gets what the provider allocates there
// (cluster IPs, node ports, load balancer state); its selector selects
// the remote pods.
type serviceReflector struct{ standalone }

func (serviceReflector) kind() string { return KindService }

func (serviceReflector) object() client.Object { return &corev1.Service{} }

func (serviceReflector) informer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().Services().Informer()
}

func (serviceReflector) reflected(client.Object) bool { return true }

// neededBy: none; a pod starts without the Services it calls.
func (serviceReflector) neededBy(*corev1.Pod) []string { return nil }

func (serviceReflector) toRemote(obj client.Object, meta metav1.ObjectMeta, _ peeringView) client.Object {
	s := &corev1.Service{ObjectMeta: meta, Spec: *obj.(*corev1.Service).Spec.DeepCopy()}
	if s.Spec.ClusterIP != corev1.ClusterIPNone {
		s.Spec.ClusterIP = ""
	}
	s.Spec.ClusterIPs = nil
	s.Spec.HealthCheckNodePort = 0
	s.Spec.LoadBalancerIP = "" //nolint:staticcheck // deprecated, still honoured by some providers
	for i := range s.Spec.Ports {
		s.Spec.Ports[i].NodePort = 0
	}
	return s
}

// keepAllocated keeps the cluster IPs (unless the Service becomes headless
// or stops being so: see immutable), IP families, node ports, and the
// defaults the provider's API server filled in.
func (serviceReflector) keepAllocated(want, cur client.Object) {
	w, c := want.(*corev1.Service), cur.(*corev1.Service)
	if headless(w) == headless(c) {
		w.Spec.ClusterIP, w.Spec.ClusterIPs = c.Spec.ClusterIP, c.Spec.ClusterIPs
	}
	w.Spec.IPFamilies, w.Spec.IPFamilyPolicy = c.Spec.IPFamilies, c.Spec.IPFamilyPolicy
	w.Spec.HealthCheckNodePort = c.Spec.HealthCheckNodePort
	if w.Spec.InternalTrafficPolicy == nil {
		w.Spec.InternalTrafficPolicy = c.Spec.InternalTrafficPolicy
	}
	if w.Spec.ExternalTrafficPolicy == "" {
		w.Spec.ExternalTrafficPolicy = c.Spec.ExternalTrafficPolicy
	}
	if w.Spec.SessionAffinity == "" {
		w.Spec.SessionAffinity = c.Spec.SessionAffinity
	}
	for i := range w.Spec.Ports {
		for _, p := range c.Spec.Ports {
			if p.Name == w.Spec.Ports[i].Name {
				w.Spec.Ports[i].NodePort = p.NodePort
				if w.Spec.Ports[i].Protocol == "" {
					w.Spec.Ports[i].Protocol = p.Protocol
				}
				if w.Spec.Ports[i].TargetPort.IntVal == 0 && w.Spec.Ports[i].TargetPort.StrVal == "" {
					w.Spec.Ports[i].TargetPort = p.TargetPort
				}
			}
		}
	}
}

func (serviceReflector) equal(cur, want client.Object) bool {
	return equality.Semantic.DeepEqual(cur.(*corev1.Service).Spec, want.(*corev1.Service).Spec)
}

// immutable: a cluster IP, once allocated, cannot become None, nor None
// an IP.
func (serviceReflector) immutable(cur, want client.Object) bool {
	return headless(cur.(*corev1.Service)) != headless(want.(*corev1.Service))
}

func headless(s *corev1.Service) bool { return s.Spec.ClusterIP == corev1.ClusterIPNone }
