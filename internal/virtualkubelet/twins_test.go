package virtualkubelet

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

// One namespace's twin is started, kept, renamed or stopped on its own, as
// update does for all of them.
func TestTwinSetOne(t *testing.T) {
	g := NewWithT(t)
	s := newTwinSet()
	var started, stopped []string
	start := func(home, name string) *twin {
		started = append(started, home+"/"+name)
		return &twin{homeNamespace: home, name: name, cancel: func() { stopped = append(stopped, home+"/"+name) }}
	}
	g.Expect(s.setOne("a", "", start)).To(BeNil(), "no twin, none wanted")
	g.Expect(s.setOne("a", "twin-a", start)).NotTo(BeNil())
	g.Expect(s.setOne("b", "twin-b", start)).NotTo(BeNil())
	g.Expect(s.setOne("a", "twin-a", start)).To(BeNil(), "the same twin is kept")
	g.Expect(s.setOne("a", "twin-a2", start).name).To(Equal("twin-a2"))
	g.Expect(s.setOne("b", "", start)).To(BeNil())
	g.Expect(started).To(Equal([]string{"a/twin-a", "b/twin-b", "a/twin-a2"}))
	g.Expect(stopped).To(Equal([]string{"a/twin-a", "b/twin-b"}))
	g.Expect(s.len()).To(Equal(1))
	g.Expect(s.get("a").name).To(Equal("twin-a2"))
}

// readyTwin keeps the requests readyTwins keeps, one at a time.
func TestReadyTwin(t *testing.T) {
	rn := func(home, cluster string, phase peeringv1alpha1.RemoteNamespacePhase, deleting bool) *peeringv1alpha1.RemoteNamespace {
		r := &peeringv1alpha1.RemoteNamespace{ObjectMeta: metav1.ObjectMeta{Name: home},
			Spec:   peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: home, HomeClusterID: cluster, RemoteNamespaceName: home + "-twin"},
			Status: peeringv1alpha1.RemoteNamespaceStatus{Phase: phase}}
		if deleting {
			r.DeletionTimestamp = &metav1.Time{}
		}
		return r
	}
	yes := func(*peeringv1alpha1.RemoteNamespace) bool { return true }
	no := func(*peeringv1alpha1.RemoteNamespace) bool { return false }
	tests := []struct {
		name      string
		rn        *peeringv1alpha1.RemoteNamespace
		requested func(*peeringv1alpha1.RemoteNamespace) bool
		want      string
	}{
		{"ready", rn("a", "home", peeringv1alpha1.RemoteNamespaceReady, false), yes, "a-twin"},
		{"another home's", rn("a", "other", peeringv1alpha1.RemoteNamespaceReady, false), yes, ""},
		{"not ready", rn("a", "home", "", false), yes, ""},
		{"being deleted", rn("a", "home", peeringv1alpha1.RemoteNamespaceReady, true), yes, ""},
		{"not requested", rn("a", "home", peeringv1alpha1.RemoteNamespaceReady, false), no, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			name, ok := readyTwin(tt.rn, "home", tt.requested)
			g.Expect(name).To(Equal(tt.want))
			g.Expect(ok).To(Equal(tt.want != ""))
			all := readyTwins([]peeringv1alpha1.RemoteNamespace{*tt.rn}, "home", tt.requested)
			g.Expect(all).To(HaveLen(map[bool]int{true: 1, false: 0}[ok]))
		})
	}
}

// The dirty namespaces are taken once each, however often they were marked.
func TestDirtyNamespaces(t *testing.T) {
	g := NewWithT(t)
	k := &Kubelet{dirtied: make(chan struct{}, 1)}
	k.TwinChanged("a")
	k.TwinChanged("b")
	k.TwinChanged("a")
	g.Expect(k.dirtied).To(HaveLen(1))
	g.Expect(k.dirty.take()).To(ConsistOf("a", "b"))
	g.Expect(k.dirty.take()).To(BeEmpty())
}
