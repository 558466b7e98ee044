package virtualkubelet

import (
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/remote"
)

// A change of a twin request reaches the kubelet of the provider it comes
// from; one of a NamespaceOffloading's status, the kubelets of the
// providers it names before or after; its creation, deletion or a change
// of its spec, every kubelet.
func TestSetTellsTheKubeletsConcerned(t *testing.T) {
	offloading := func(generation int64, providers ...string) *offloadingv1alpha1.NamespaceOffloading {
		o := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "offloading", Generation: generation}}
		o.Status.RemoteNamespacesConditions = map[string]offloadingv1alpha1.RemoteNamespaceConditions{}
		for _, p := range providers {
			o.Status.RemoteNamespacesConditions[p] = nil
		}
		return o
	}
	// A request is named after its home namespace.
	request := &peeringv1alpha1.RemoteNamespace{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "ns"}}
	deleting := offloading(1, "a")
	deleting.DeletionTimestamp = ptr.To(metav1.Now())
	all := []string{"a", "b", "c"}
	for _, c := range []struct {
		name   string
		change func(*Set)
		told   []string
	}{
		{"a request of provider b", func(s *Set) { s.requestChanged("id-b", request) }, []string{"b"}},
		{"a request of an unknown provider", func(s *Set) { s.requestChanged("id-x", request) }, nil},
		{"an offloading created", func(s *Set) { s.offloadingChanged(nil, offloading(1)) }, all},
		{"an offloading deleted", func(s *Set) { s.offloadingChanged(nil, offloading(1, "a")) }, all},
		{"its spec changed", func(s *Set) { s.offloadingChanged(offloading(1, "a"), offloading(2, "a")) }, all},
		{"its deletion started", func(s *Set) { s.offloadingChanged(offloading(1, "a"), deleting) }, all},
		{"its status about a", func(s *Set) { s.offloadingChanged(offloading(1, "a"), offloading(1, "a")) }, []string{"a"}},
		{"a provider added to its status", func(s *Set) { s.offloadingChanged(offloading(1, "a"), offloading(1, "a", "c")) }, []string{"a", "c"}},
		{"a provider gone from its status", func(s *Set) { s.offloadingChanged(offloading(1, "b", "c"), offloading(1, "b")) }, []string{"b", "c"}},
		{"its status names no provider yet", func(s *Set) { s.offloadingChanged(offloading(1), offloading(1)) }, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			s := &Set{kubelets: map[string]*running{}}
			for _, name := range all {
				s.kubelets[name] = &running{
					peer:    &remote.Peer{ClusterID: "id-" + name},
					kubelet: &Kubelet{Config: Config{ProviderName: name}, dirtied: make(chan struct{}, 1)},
				}
			}
			c.change(s)
			var told []string
			for _, name := range all {
				if dirty := s.kubelets[name].kubelet.dirty.take(); len(dirty) > 0 {
					g.Expect(dirty).To(Equal([]string{"ns"}), "only the twin of the offloading's namespace is looked at again")
					told = append(told, name)
				}
			}
			slices.Sort(told)
			g.Expect(told).To(Equal(c.told))
		})
	}
}
