package remote_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/remote"
	"stretch.dev/stretch/internal/scheme"
	"stretch.dev/stretch/internal/testenv"
)

var provider *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { provider = s[0] }, "provider")
}

// startRegistry runs a registry in a manager until the test ends, and
// returns a function that stops the manager and waits for it.
func startRegistry(t *testing.T) (*remote.Registry, func()) {
	r := remote.NewRegistry(scheme.New(), remote.Options{Timeout: 5 * time.Second})
	stop := testenv.StartControllers(t, provider.Config, func(mgr ctrl.Manager) error { return mgr.Add(r) })
	return r, stop
}

func kubeconfig(t *testing.T) []byte {
	data, err := os.ReadFile(provider.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestEnsureReusesAndReplaces(t *testing.T) {
	g := NewWithT(t)
	r, _ := startRegistry(t)
	id := uuid.NewString()

	p1, err := r.Ensure(t.Context(), id, kubeconfig(t))
	g.Expect(err).NotTo(HaveOccurred())
	again, err := r.Ensure(t.Context(), id, kubeconfig(t))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again).To(BeIdenticalTo(p1), "same kubeconfig, same peer")

	// New credentials for the same provider replace the peer.
	other, err := provider.KubeconfigWithToken("new-token")
	g.Expect(err).NotTo(HaveOccurred())
	p2, err := r.Ensure(t.Context(), id, other)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p2).NotTo(BeIdenticalTo(p1))
	g.Expect(p1.Done()).To(BeClosed(), "the replaced peer is stopped")
	got, ok := r.Get(id)
	g.Expect(ok).To(BeTrue())
	g.Expect(got).To(BeIdenticalTo(p2))
}

func TestEnsureInvalidKubeconfig(t *testing.T) {
	g := NewWithT(t)
	r, _ := startRegistry(t)
	for _, data := range [][]byte{[]byte("garbage: ["), []byte("apiVersion: v1\nkind: Config\n")} {
		_, err := r.Ensure(t.Context(), "x", data)
		g.Expect(err).To(MatchError(remote.ErrInvalidKubeconfig))
	}
	g.Expect(r.ClusterIDs()).To(BeEmpty())
}

func TestRemoveAndStop(t *testing.T) {
	g := NewWithT(t)
	r, stop := startRegistry(t)
	a, err := r.Ensure(t.Context(), "a", kubeconfig(t))
	g.Expect(err).NotTo(HaveOccurred())
	b, err := r.Ensure(t.Context(), "b", kubeconfig(t))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.ClusterIDs()).To(Equal([]string{"a", "b"}))

	r.Remove("a")
	g.Expect(a.Done()).To(BeClosed())
	_, ok := r.Get("a")
	g.Expect(ok).To(BeFalse())
	r.Remove("a") // no-op

	stop()
	g.Expect(b.Done()).To(BeClosed(), "stopping the registry stops every peer")
	_, err = r.Ensure(t.Context(), "c", kubeconfig(t))
	g.Expect(err).To(MatchError(ContainSubstring("stopped")))
}

func TestPeerReadsProvider(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	r, _ := startRegistry(t)
	id := identity.Identity{ID: uuid.NewString(), Name: "provider", Labels: map[string]string{"region": "eu"}}
	g.Expect(provider.InstallIdentity(ctx, id)).To(Succeed())
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "registry-test"}}
	g.Expect(provider.Client.Create(ctx, node)).To(Succeed())
	t.Cleanup(func() { _ = provider.Client.Delete(context.Background(), node) })

	p, err := r.Ensure(ctx, id.ID, kubeconfig(t))
	g.Expect(err).NotTo(HaveOccurred())
	cm := &corev1.ConfigMap{}
	g.Expect(p.Client.Get(ctx, identity.Key, cm)).To(Succeed())
	g.Eventually(func(g Gomega) {
		nodes, err := p.ListNodes(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(nodes).To(ContainElement(HaveField("Name", "registry-test")))
	}).Should(Succeed())
}

func TestListNodesUnauthorized(t *testing.T) {
	g := NewWithT(t)
	r, _ := startRegistry(t)
	bogus, err := provider.KubeconfigWithToken("bogus")
	g.Expect(err).NotTo(HaveOccurred())
	p, err := r.Ensure(t.Context(), "bogus", bogus)
	g.Expect(err).NotTo(HaveOccurred())

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = p.ListNodes(ctx)
	g.Expect(apierrors.IsUnauthorized(err)).To(BeTrue(), "want 401, got %v", err)
	g.Expect(p.Client.Get(ctx, identity.Key, &corev1.ConfigMap{})).To(Satisfy(apierrors.IsUnauthorized))
}

// inNamespace returns the provider's kubeconfig with ns as its context's
// namespace, as issued credentials have.
func inNamespace(t *testing.T, ns string) []byte {
	cfg, err := clientcmd.Load(kubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Contexts[cfg.CurrentContext].Namespace = ns
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// seen records the names of the objects the handlers of a watch were told
// of, by the cluster ID of the peer that saw them.
type seen struct {
	mu    sync.Mutex
	names map[string]bool
}

func (s *seen) handler() remote.HandlerFor {
	return func(clusterID string) toolscache.ResourceEventHandler {
		add := func(obj any) {
			o, ok := obj.(client.Object)
			if !ok {
				return
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			s.names[clusterID+":"+o.GetNamespace()+"/"+o.GetName()] = true
		}
		return toolscache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, o any) { add(o) }}
	}
}

// has reports whether the peer of every cluster ID in clusterIDs saw the
// object named name (namespace/name).
func (s *seen) has(name string, clusterIDs ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range clusterIDs {
		if !s.names[id+":"+name] {
			return false
		}
	}
	return true
}

// anywhere reports whether some peer saw the object named name.
func (s *seen) anywhere(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.names {
		if _, n, _ := strings.Cut(k, ":"); n == name {
			return true
		}
	}
	return false
}

func TestWatchInCredentialsNamespace(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	for _, ns := range []string{"watched", "elsewhere"} {
		g.Expect(client.IgnoreAlreadyExists(provider.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))).To(Succeed())
	}
	r, _ := startRegistry(t)
	before := &seen{names: map[string]bool{}}
	r.Watch(&corev1.ConfigMap{}, before.handler())
	early, err := r.Ensure(ctx, "early", inNamespace(t, "watched"))
	g.Expect(err).NotTo(HaveOccurred())
	late, err := r.Ensure(ctx, "late", inNamespace(t, "watched"))
	g.Expect(err).NotTo(HaveOccurred())
	after := &seen{names: map[string]bool{}}
	r.Watch(&corev1.ConfigMap{}, after.handler()) // peers that already run start watching too

	for _, ns := range []string{"watched", "elsewhere"} {
		g.Expect(provider.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cm"}})).To(Succeed())
	}
	// Each peer's handler is the one made for its cluster ID.
	g.Eventually(func() bool {
		return before.has("watched/cm", "early", "late") && after.has("watched/cm", "early", "late")
	}).Should(BeTrue())
	g.Consistently(func() bool { return before.anywhere("elsewhere/cm") || after.anywhere("elsewhere/cm") }, time.Second).Should(BeFalse(),
		"only the credentials' namespace is watched")
	for _, p := range []*remote.Peer{early, late} {
		g.Eventually(func(g Gomega) {
			reader, err := p.Reader(&corev1.ConfigMap{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(reader.Get(ctx, client.ObjectKey{Namespace: "watched", Name: "cm"}, &corev1.ConfigMap{})).To(Succeed())
		}).Should(Succeed())
	}
	_, err = early.Reader(&corev1.Secret{})
	g.Expect(err).To(MatchError(ContainSubstring("not complete yet")), "a kind nobody watches is never listed")
}

func TestReaderOfUnauthorizedPeerSaysWhy(t *testing.T) {
	g := NewWithT(t)
	r, _ := startRegistry(t)
	r.Watch(&corev1.ConfigMap{}, remote.Everywhere(toolscache.ResourceEventHandlerFuncs{}))
	bogus, err := provider.KubeconfigWithToken("bogus")
	g.Expect(err).NotTo(HaveOccurred())
	p, err := r.Ensure(t.Context(), "bogus", bogus)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() error {
		_, err := p.Reader(&corev1.ConfigMap{})
		return err
	}).Should(Satisfy(apierrors.IsUnauthorized))
}
