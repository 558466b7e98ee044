package tenant

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/cli/install"
	"stretch.dev/stretch/internal/testenv"
)

const (
	homeID  = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"
	otherID = "7d3c2b1a-5f6d-4e3c-8b1a-0b8e9a5c3d1f"
)

var provider *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { provider = s[0] }, "provider")
}

func setup(mgr ctrl.Manager) error {
	return (&Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("tenant")}).SetupWithManager(mgr)
}

// startTenant installs Stretch on the provider once, starts the controller
// and the namespace finalizer envtest lacks.
func startTenant(t *testing.T) (stop func()) {
	t.Helper()
	return startTenantWith(t, setup)
}

// startTenantWith is startTenant with the controller that setup registers.
func startTenantWith(t *testing.T, setup func(ctrl.Manager) error) (stop func()) {
	t.Helper()
	if _, err := install.Install(context.Background(), provider.Client, install.Options{ClusterName: "provider"}, io.Discard); err != nil {
		t.Fatalf("installing Stretch on the provider: %v", err)
	}
	provider.FinalizeNamespaces(t)
	return testenv.StartControllers(t, provider.Config, setup)
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	err := provider.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// request writes a RemoteNamespace as a home cluster does.
func request(t *testing.T, homeClusterID, homeNamespace, twin string) *peeringv1alpha1.RemoteNamespace {
	t.Helper()
	tenant := peeringv1alpha1.TenantNamespace(homeClusterID)
	ensureNamespace(t, tenant)
	rn := &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: homeNamespace},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: homeNamespace, HomeClusterID: homeClusterID, RemoteNamespaceName: twin},
	}
	NewWithT(t).Expect(provider.Client.Create(context.Background(), rn)).To(Succeed())
	return rn
}

func status(g Gomega, rn *peeringv1alpha1.RemoteNamespace) peeringv1alpha1.RemoteNamespaceStatus {
	got := &peeringv1alpha1.RemoteNamespace{}
	g.Expect(provider.Client.Get(context.Background(), client.ObjectKeyFromObject(rn), got)).To(Succeed())
	return got.Status
}

func expectGone(g Gomega, obj client.Object) {
	g.Eventually(func() bool {
		return apierrors.IsNotFound(provider.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj))
	}).Should(BeTrue(), "%T %s is deleted", obj, client.ObjectKeyFromObject(obj))
}

func TestTwinLifecycle(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startTenant(t)

	twin := "shop-" + homeID
	rn := request(t, homeID, "shop", twin)
	g.Eventually(func(g Gomega) {
		st := status(g, rn)
		g.Expect(st.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceReady))
		g.Expect(st.Reason).To(Equal("NamespaceCreated"))
		g.Expect(st.ObservedGeneration).To(Equal(int64(1)))
	}).Should(Succeed())

	ns := &corev1.Namespace{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: twin}, ns)).To(Succeed())
	g.Expect(ns.Annotations).To(HaveKeyWithValue(wellknown.RemoteNamespaceOriginAnnotation, homeID))
	g.Expect(ns.Labels).To(HaveKeyWithValue(wellknown.OriginClusterIDLabel, homeID))
	g.Expect(ns.Labels).To(HaveKeyWithValue(wellknown.OriginNamespaceLabel, "shop"))
	// The grant's name is part of the API (providers' admins see it), apart
	// from the ServiceAccount's and the tenant Role's.
	rb := &rbacv1.RoleBinding{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "stretch-home-workloads"}, rb)).To(Succeed())
	g.Expect(rb.RoleRef.Name).To(Equal(wellknown.RemoteWorkloadsClusterRole))
	g.Expect(rb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: wellknown.TenantServiceAccountName}))

	// The home identity may run workloads in the twin, and nowhere else.
	home := asHome(t, homeID)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "web"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
	g.Expect(home.Create(ctx, pod)).To(Succeed())
	elsewhere := pod.DeepCopy()
	elsewhere.Namespace, elsewhere.ResourceVersion = "default", ""
	g.Expect(apierrors.IsForbidden(home.Create(ctx, elsewhere))).To(BeTrue(), "no rights outside the twin")
	g.Expect(apierrors.IsForbidden(home.Delete(ctx, ns))).To(BeTrue(), "the home cluster cannot delete the twin itself")

	// A namespace recreated behind our back is repaired.
	g.Expect(provider.Client.Delete(ctx, rb)).To(Succeed())
	g.Eventually(func() error {
		return provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: wellknown.TwinRoleBindingName}, &rbacv1.RoleBinding{})
	}).Should(Succeed())

	// A subject added to the grant is taken out again.
	g.Eventually(func(g Gomega) {
		g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: wellknown.TwinRoleBindingName}, rb)).To(Succeed())
		rb.Subjects = append(rb.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Namespace: "default", Name: "intruder"})
		g.Expect(provider.Client.Update(ctx, rb)).To(Succeed())
	}).Should(Succeed())
	g.Eventually(func(g Gomega) []rbacv1.Subject {
		g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: wellknown.TwinRoleBindingName}, rb)).To(Succeed())
		return rb.Subjects
	}).Should(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: wellknown.TenantServiceAccountName}))

	// Unoffload: the twin goes with the request.
	g.Expect(provider.Client.Delete(ctx, rn)).To(Succeed())
	expectGone(g, ns)
	expectGone(g, rn)
}

func TestTwinRefused(t *testing.T) {
	startTenant(t)
	tests := []struct {
		name, homeID, homeNamespace, twin string
		wantReason                        string
		wantMessage                       string
	}{
		{name: "27-character home namespace", homeID: homeID, homeNamespace: strings.Repeat("a", 27), twin: strings.Repeat("a", 27) + "-" + homeID,
			wantReason: peeringv1alpha1.NameTooLongReason, wantMessage: "at most 26 characters"},
		{name: "not a namespace name", homeID: homeID, homeNamespace: "invalid", twin: "Not_Valid",
			wantReason: peeringv1alpha1.InvalidNameReason, wantMessage: "not a valid namespace name"},
		{name: "reserved kube-system", homeID: homeID, homeNamespace: "kube-system", twin: "kube-system",
			wantReason: peeringv1alpha1.ForbiddenReason, wantMessage: "reserved on providers"},
		{name: "reserved stretch-system", homeID: homeID, homeNamespace: "sys", twin: "stretch-system",
			wantReason: peeringv1alpha1.ForbiddenReason, wantMessage: "reserved on providers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			rn := request(t, tt.homeID, tt.homeNamespace, tt.twin)
			g.Eventually(func(g Gomega) {
				st := status(g, rn)
				g.Expect(st.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceCreationFailed))
				g.Expect(st.Reason).To(Equal(tt.wantReason))
				g.Expect(st.Message).To(ContainSubstring(tt.wantMessage))
			}).Should(Succeed())
			g.Expect(provider.Client.Delete(context.Background(), rn)).To(Succeed())
			expectGone(g, rn)
		})
	}
}

func TestRequestOutsideItsTenantIsRefused(t *testing.T) {
	g := NewWithT(t)
	startTenant(t)
	// Written into otherID's tenant namespace, claiming to come from homeID.
	tenant := peeringv1alpha1.TenantNamespace(otherID)
	ensureNamespace(t, tenant)
	rn := &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "spoof"},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: "spoof", HomeClusterID: homeID, RemoteNamespaceName: "spoof-" + homeID},
	}
	g.Expect(provider.Client.Create(context.Background(), rn)).To(Succeed())
	g.Eventually(func(g Gomega) {
		st := status(g, rn)
		g.Expect(st.Reason).To(Equal(peeringv1alpha1.ForbiddenReason))
		g.Expect(st.Message).To(ContainSubstring("not in its tenant namespace"))
	}).Should(Succeed())
	g.Expect(apierrors.IsNotFound(provider.Client.Get(context.Background(), client.ObjectKey{Name: "spoof-" + homeID}, &corev1.Namespace{}))).To(BeTrue())
}

// TestExistingNamespaceIsNeverTouched is the FAQ's "a namespace with the
// same name already exists": the request fails on this provider, and the
// namespace and its contents stay exactly as they were, also on unoffload.
func TestExistingNamespaceIsNeverTouched(t *testing.T) {
	startTenant(t)
	tests := []struct {
		name        string
		existing    *corev1.Namespace
		wantMessage string
	}{
		{name: "created by someone else", existing: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "taken"}},
			wantMessage: "it has no stretch.dev/remote-namespace-origin annotation, so Stretch did not create it"},
		{name: "twin of another home cluster", existing: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "theirs",
			Annotations: map[string]string{wellknown.RemoteNamespaceOriginAnnotation: otherID},
			Labels:      map[string]string{wellknown.OriginClusterIDLabel: otherID, wellknown.OriginNamespaceLabel: "theirs"}}},
			wantMessage: "says home cluster " + otherID},
		{name: "twin of another namespace of the same home", existing: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shared",
			Annotations: map[string]string{wellknown.RemoteNamespaceOriginAnnotation: homeID},
			Labels:      map[string]string{wellknown.OriginClusterIDLabel: homeID, wellknown.OriginNamespaceLabel: "first"}}},
			wantMessage: `but for home namespace "first"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			g.Expect(provider.Client.Create(ctx, tt.existing)).To(Succeed())
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: tt.existing.Name, Name: "precious"}, Data: map[string]string{"k": "v"}}
			g.Expect(provider.Client.Create(ctx, cm)).To(Succeed())
			nsBefore, cmBefore := tt.existing.DeepCopy(), cm.DeepCopy()

			rn := request(t, homeID, "requester-"+tt.existing.Name, tt.existing.Name)
			g.Eventually(func(g Gomega) {
				st := status(g, rn)
				g.Expect(st.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceCreationFailed))
				g.Expect(st.Reason).To(Equal(peeringv1alpha1.AlreadyExistsReason))
				g.Expect(st.Message).To(ContainSubstring(tt.wantMessage))
				g.Expect(st.Message).To(ContainSubstring("left untouched"))
			}).Should(Succeed())

			g.Expect(provider.Client.Delete(ctx, rn)).To(Succeed())
			expectGone(g, rn)

			ns := &corev1.Namespace{}
			g.Expect(provider.Client.Get(ctx, client.ObjectKeyFromObject(nsBefore), ns)).To(Succeed())
			g.Expect(ns.ResourceVersion).To(Equal(nsBefore.ResourceVersion), "the existing namespace is not modified")
			g.Expect(ns.DeletionTimestamp).To(BeNil(), "the existing namespace is not deleted")
			got := &corev1.ConfigMap{}
			g.Expect(provider.Client.Get(ctx, client.ObjectKeyFromObject(cmBefore), got)).To(Succeed())
			g.Expect(got.ResourceVersion).To(Equal(cmBefore.ResourceVersion))
		})
	}
}

// TestRestartConverges stops the controller after the twin exists and starts
// a new one: it adopts its own twin, creates nothing twice, and deletes it.
func TestRestartConverges(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	stop := startTenant(t)
	twin := "restart-" + homeID
	rn := request(t, homeID, "restart", twin)
	g.Eventually(func(g Gomega) {
		g.Expect(status(g, rn).Phase).To(Equal(peeringv1alpha1.RemoteNamespaceReady))
	}).Should(Succeed())
	ns := &corev1.Namespace{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: twin}, ns)).To(Succeed())
	stop()

	testenv.StartControllers(t, provider.Config, setup)
	g.Expect(provider.Client.Delete(ctx, rn)).To(Succeed())
	expectGone(g, rn)
	expectGone(g, ns)
}

// crashing is the manager's client with a crash point: the twin's grant
// (RoleBinding) created, the request's status written, or the grant of the
// legacy name deleted, never returns until the manager stops, as if the
// process died right there; reached is closed once the point is hit.
type crashing struct {
	client.Client
	at      string // "grant", "status" or "legacy"
	reached chan struct{}
	once    sync.Once
}

func (c *crashing) crash(ctx context.Context) error {
	c.once.Do(func() { close(c.reached) })
	<-ctx.Done()
	return ctx.Err()
}

func (c *crashing) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if _, ok := obj.(*rbacv1.RoleBinding); ok && c.at == "grant" {
		return c.crash(ctx)
	}
	return c.Client.Create(ctx, obj, opts...)
}

func (c *crashing) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	if rb, ok := obj.(*rbacv1.RoleBinding); ok && c.at == "legacy" && rb.Name == wellknown.LegacyTwinRoleBindingName {
		return c.crash(ctx)
	}
	return c.Client.Delete(ctx, obj, opts...)
}

func (c *crashing) Status() client.SubResourceWriter { return crashingStatus{c.Client.Status(), c} }

type crashingStatus struct {
	client.SubResourceWriter
	c *crashing
}

func (s crashingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if s.c.at == "status" {
		return s.c.crash(ctx)
	}
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// TestRestartMidTwinCreation stops the controller in the middle of a twin's
// creation, after the namespace exists but before its grant, or before the
// request's status says so, and starts a new one: it adopts the namespace
// it made, and nothing is made twice.
func TestRestartMidTwinCreation(t *testing.T) {
	for _, at := range []string{"grant", "status"} {
		t.Run(at, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			c := &crashing{at: at, reached: make(chan struct{})}
			stop := startTenantWith(t, func(mgr ctrl.Manager) error {
				c.Client = mgr.GetClient()
				return (&Reconciler{Client: c, Recorder: mgr.GetEventRecorder("tenant")}).SetupWithManager(mgr)
			})
			home := "crash-" + at
			twin := home + "-" + homeID
			rn := request(t, homeID, home, twin)
			g.Eventually(c.reached).WithTimeout(10 * time.Second).Should(BeClosed())
			stop()

			// What the crash left: the namespace, and nothing said yet.
			ns := &corev1.Namespace{}
			g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: twin}, ns)).To(Succeed())
			g.Expect(status(g, rn).Phase).To(BeEmpty())
			grant := client.ObjectKey{Namespace: twin, Name: wellknown.TwinRoleBindingName}
			if at == "grant" {
				g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, grant, &rbacv1.RoleBinding{}))).To(BeTrue())
			}

			testenv.StartControllers(t, provider.Config, setup)
			g.Eventually(func(g Gomega) {
				g.Expect(status(g, rn).Phase).To(Equal(peeringv1alpha1.RemoteNamespaceReady))
			}).WithTimeout(10 * time.Second).Should(Succeed())
			twins := &corev1.NamespaceList{}
			g.Expect(provider.Client.List(ctx, twins, client.MatchingLabels{wellknown.OriginNamespaceLabel: home})).To(Succeed())
			g.Expect(twins.Items).To(HaveLen(1))
			g.Expect(twins.Items[0].UID).To(Equal(ns.UID), "the same namespace, adopted")
			grants := &rbacv1.RoleBindingList{}
			g.Expect(provider.Client.List(ctx, grants, client.InNamespace(twin))).To(Succeed())
			g.Expect(grants.Items).To(HaveLen(1))
			g.Expect(grants.Items[0].Name).To(Equal(wellknown.TwinRoleBindingName))

			g.Expect(provider.Client.Delete(ctx, rn)).To(Succeed())
			expectGone(g, ns)
			expectGone(g, rn)
		})
	}
}

// asHome is a client with the identity the provider issued to a home cluster.
func asHome(t *testing.T, homeClusterID string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(provider.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + peeringv1alpha1.TenantNamespace(homeClusterID) + ":" + wellknown.TenantServiceAccountName}
	c, err := client.New(cfg, client.Options{Scheme: provider.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// behind reads Namespaces and RoleBindings from a cache that has not seen
// them yet, as the manager's cache is for a moment after its own creates.
type behind struct{ client.Client }

func (b behind) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	switch obj.(type) {
	case *corev1.Namespace, *rbacv1.RoleBinding:
		return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
	}
	return b.Client.Get(ctx, key, obj, opts...)
}

// TestCacheBehindItsOwnCreates reconciles a request twice with reads that do
// not see the twin or its grant: the second pass finds them on the API server
// instead of failing on AlreadyExists, and the request stays Ready (a bulk
// offload had its requests flap to Creating, and wait for retries).
func TestCacheBehindItsOwnCreates(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	if _, err := install.Install(ctx, provider.Client, install.Options{ClusterName: "provider"}, io.Discard); err != nil {
		t.Fatalf("installing Stretch on the provider: %v", err)
	}
	twin := "behind-" + homeID
	rn := request(t, homeID, "behind", twin)
	r := &Reconciler{Client: behind{provider.Client}, apiReader: provider.Client, Recorder: events.NewFakeRecorder(10)}
	for pass := 1; pass <= 2; pass++ {
		_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(rn)})
		g.Expect(err).NotTo(HaveOccurred(), "pass %d", pass)
		st := status(g, rn)
		g.Expect(st.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceReady), "pass %d: %s", pass, st.Message)
	}
	rb := &rbacv1.RoleBinding{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: wellknown.TwinRoleBindingName}, rb)).To(Succeed())
	g.Expect(rb.Subjects).To(HaveLen(1))

	// A grant someone replaced with one of another role cannot be changed
	// in place: the status says what to do.
	g.Expect(provider.Client.Delete(ctx, rb)).To(Succeed())
	rb.ObjectMeta = metav1.ObjectMeta{Namespace: rb.Namespace, Name: rb.Name}
	rb.RoleRef.Name = "view"
	g.Expect(provider.Client.Create(ctx, rb)).To(Succeed())
	r.Client = provider.Client
	_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(rn)})
	g.Expect(err).To(MatchError(ContainSubstring("binds ClusterRole view instead of ClusterRole " + wellknown.RemoteWorkloadsClusterRole + ": delete it so that Stretch recreates it")))
	st := status(g, rn)
	g.Expect(st.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceCreating))
	g.Expect(st.Reason).To(Equal("GrantingAccess"))
	g.Expect(provider.Client.Delete(ctx, rb)).To(Succeed())

	// Withdrawn, with the controller running: the twin goes.
	startTenant(t)
	g.Expect(provider.Client.Delete(ctx, rn)).To(Succeed())
	expectGone(g, rn)
}
