package identity_test

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
)

var cluster *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { cluster = s[0] }, "cluster")
}

// TestEnsure runs Ensure against a real API server: one test, because the
// first step needs stretch-system absent and envtest cannot delete a
// namespace (it has no namespace controller).
func TestEnsure(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := cluster.Client

	_, _, err := identity.Ensure(ctx, c, "home", nil)
	g.Expect(err).To(MatchError(ContainSubstring("namespace stretch-system does not exist: create it first")))

	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wellknown.SystemNamespace}})).To(Succeed())
	existingID := uuid.NewString()
	tests := []struct {
		name        string
		existing    *identity.Identity // nil: no identity before
		clusterName string
		labels      map[string]string
		wantCreated bool
		wantLabels  map[string]string // nil: labels
		wantErr     []string          // substrings; then the identity is unchanged
	}{
		{name: "absent: created", clusterName: "home", labels: map[string]string{"region": "eu"}, wantCreated: true},
		{name: "absent, no labels: created", clusterName: "home", wantCreated: true},
		{
			name:        "same name: ID kept, labels updated",
			existing:    &identity.Identity{ID: existingID, Name: "home", Labels: map[string]string{"region": "eu"}},
			clusterName: "home", labels: map[string]string{"region": "us", "tier": "gold"},
		},
		{
			name:        "same name, no labels given: the labels are kept",
			existing:    &identity.Identity{ID: existingID, Name: "home", Labels: map[string]string{"region": "eu"}},
			clusterName: "home", wantLabels: map[string]string{"region": "eu"},
		},
		{
			name:        "same name, empty labels: the labels are removed",
			existing:    &identity.Identity{ID: existingID, Name: "home", Labels: map[string]string{"region": "eu"}},
			clusterName: "home", labels: map[string]string{}, wantLabels: map[string]string{},
		},
		{
			name:        "same name and labels: nothing written",
			existing:    &identity.Identity{ID: existingID, Name: "home", Labels: map[string]string{"region": "eu"}},
			clusterName: "home", labels: map[string]string{"region": "eu"},
		},
		{
			name:        "other name: refused",
			existing:    &identity.Identity{ID: existingID, Name: "home", Labels: map[string]string{"region": "eu"}},
			clusterName: "home-2", labels: map[string]string{"region": "us"},
			wantErr: []string{`already installed as "home"`, `not "home-2"`, existingID, "--cluster-name home"},
		},
		{name: "invalid name: refused", clusterName: "Home", wantErr: []string{`cluster name "Home" is not valid`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			before := setIdentity(t, tt.existing)

			id, created, err := identity.Ensure(ctx, c, tt.clusterName, tt.labels)
			after := &corev1.ConfigMap{}
			getErr := c.Get(ctx, identity.Key, after)
			if len(tt.wantErr) > 0 {
				for _, want := range tt.wantErr {
					g.Expect(err).To(MatchError(ContainSubstring(want)))
				}
				if before == nil {
					g.Expect(getErr).To(HaveOccurred(), "no identity was created")
				} else {
					g.Expect(after.ResourceVersion).To(Equal(before.ResourceVersion), "the identity is unchanged")
				}
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(created).To(Equal(tt.wantCreated))
			g.Expect(id.Name).To(Equal(tt.clusterName))
			if tt.existing != nil {
				g.Expect(id.ID).To(Equal(tt.existing.ID), "the cluster ID is kept")
			} else {
				g.Expect(identity.ValidateClusterID(id.ID)).To(Succeed())
			}
			wantLabels := tt.wantLabels
			if wantLabels == nil {
				wantLabels = tt.labels
			}
			if wantLabels == nil {
				wantLabels = map[string]string{}
			}
			g.Expect(id.Labels).To(Equal(wantLabels))
			loaded, err := identity.Load(ctx, c)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(loaded).To(Equal(id), "what Ensure returns is what is stored")
			if tt.existing != nil && maps.Equal(tt.existing.Labels, wantLabels) {
				g.Expect(after.ResourceVersion).To(Equal(before.ResourceVersion), "an unchanged identity is not rewritten")
			}
		})
	}

	// Replicas (and an install) racing on a cluster without
	// identity agree on one cluster ID, and exactly one of them made it.
	t.Run("concurrent: one ID", func(t *testing.T) {
		g := NewWithT(t)
		setIdentity(t, nil)
		const n = 4
		ids, created, errs := make([]string, n), make([]bool, n), make([]error, n)
		// Counts the creates that lost the race, for the log: whether calls
		// overlap is up to the scheduler.
		var lost atomic.Int32
		direct, err := client.NewWithWatch(cluster.Config, client.Options{Scheme: cluster.Scheme})
		g.Expect(err).NotTo(HaveOccurred())
		racing := interceptor.NewClient(direct, interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			err := c.Create(ctx, obj, opts...)
			if apierrors.IsAlreadyExists(err) {
				lost.Add(1)
			}
			return err
		}})
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				var id identity.Identity
				id, created[i], errs[i] = identity.Ensure(ctx, racing, "home", map[string]string{"replica": "any"})
				ids[i] = id.ID
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			g.Expect(errs[i]).NotTo(HaveOccurred())
		}
		made := 0
		for i := range n {
			g.Expect(ids[i]).To(Equal(ids[0]))
			if created[i] {
				made++
			}
		}
		g.Expect(made).To(Equal(1), "one call made the cluster ID")
		t.Logf("%d of %d calls lost the race to create the identity and kept the winner's ID", lost.Load(), n)
		loaded, err := identity.Load(ctx, c)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(loaded.ID).To(Equal(ids[0]))
	})
}

// setIdentity replaces the cluster's identity by id (none when nil) and
// returns the ConfigMap it wrote.
func setIdentity(t *testing.T, id *identity.Identity) *corev1.ConfigMap {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: identity.Key.Namespace, Name: identity.Key.Name}}
	g.Expect(client.IgnoreNotFound(cluster.Client.Delete(ctx, cm))).To(Succeed())
	if id == nil {
		return nil
	}
	cm = id.ConfigMap()
	g.Expect(cluster.Client.Create(ctx, cm)).To(Succeed())
	return cm
}
