package tenancy

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// TestHomeClustersCannotTouchEachOther: home clusters A and B share the
// provider. A's credentials see nothing of B's, and what A can ask of the
// provider's tenant controller (twins of any name) never reaches B's twin
// or a namespace that exists: such requests fail with a clear status and
// leave B's objects byte for byte as they were.
func TestHomeClustersCannotTouchEachOther(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	ts := setupTenants(t)
	tenantB := peeringv1alpha1.TenantNamespace(homeB)
	// B's twin carries B's grant; it must stay B's alone.
	ts.bObjects = append(ts.bObjects, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ts.twinB, Name: wellknown.TwinRoleBindingName}})
	before := take(g, provider.Client, append(ts.bObjects, ts.bystanderObjects...)...)

	t.Run("A cannot see B's tenant namespace, requests or twin", func(t *testing.T) {
		g := newG(t)
		for _, err := range []error{
			ts.a.List(ctx, &peeringv1alpha1.RemoteNamespaceList{}, client.InNamespace(tenantB)),
			ts.a.List(ctx, &peeringv1alpha1.RemoteNamespaceList{}),
			ts.a.Get(ctx, client.ObjectKey{Namespace: tenantB, Name: "shop"}, &peeringv1alpha1.RemoteNamespace{}),
			ts.a.Get(ctx, client.ObjectKey{Name: tenantB}, &corev1.Namespace{}),
			ts.a.Get(ctx, client.ObjectKey{Name: ts.twinB}, &corev1.Namespace{}),
			ts.a.List(ctx, &corev1.NamespaceList{}),
			ts.a.List(ctx, &corev1.PodList{}, client.InNamespace(ts.twinB)),
			ts.a.List(ctx, &corev1.SecretList{}, client.InNamespace(ts.twinB)),
			ts.a.List(ctx, &corev1.PodList{}),
			ts.a.Get(ctx, client.ObjectKey{Namespace: ts.twinB, Name: "b-secret"}, &corev1.Secret{}),
		} {
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		}
		dc, err := dynamic.NewForConfig(ts.aConfig)
		g.Expect(err).NotTo(HaveOccurred())
		for _, ns := range []string{tenantB, ts.twinB} {
			_, err := dc.Resource(corev1.SchemeGroupVersion.WithResource("pods")).Namespace(ns).Watch(ctx, metav1.ListOptions{})
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "watching pods in %s: %v", ns, err)
		}
		_, err = dc.Resource(peeringv1alpha1.GroupVersion.WithResource("remotenamespaces")).Namespace(tenantB).Watch(ctx, metav1.ListOptions{})
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	})

	t.Run("A cannot touch B's tenant namespace, requests or twin", func(t *testing.T) {
		g := newG(t)
		rn := &peeringv1alpha1.RemoteNamespace{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenantB, Name: "evil"},
			Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: "evil", HomeClusterID: homeB, RemoteNamespaceName: "evil"},
		}
		g.Expect(apierrors.IsForbidden(ts.a.Create(ctx, rn))).To(BeTrue())
		g.Expect(apierrors.IsForbidden(ts.a.Delete(ctx, &peeringv1alpha1.RemoteNamespace{ObjectMeta: metav1.ObjectMeta{Namespace: tenantB, Name: "shop"}}))).To(BeTrue())
		g.Expect(apierrors.IsForbidden(ts.a.Create(ctx, podIn(ts.twinB, "intruder")))).To(BeTrue())
		g.Expect(apierrors.IsForbidden(ts.a.Delete(ctx, podIn(ts.twinB, "b-web")))).To(BeTrue())
		g.Expect(apierrors.IsForbidden(ts.a.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ts.twinB)))).To(BeTrue())
		g.Expect(apierrors.IsForbidden(ts.a.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ts.twinB}}))).To(BeTrue())
		g.Expect(apierrors.IsForbidden(ts.a.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ts.twinB, Name: "a-too"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: wellknown.RemoteWorkloadsClusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: peeringv1alpha1.TenantNamespace(homeA), Name: wellknown.TenantServiceAccountName}},
		}))).To(BeTrue())
	})

	t.Run("A's requests for B's twin or an existing namespace are refused", func(t *testing.T) {
		g := newG(t)
		tests := []struct {
			name, homeNamespace, homeID, twin string
			reason                            string
			message                           string
		}{
			{name: "b-twin", homeNamespace: "shop", homeID: homeA, twin: ts.twinB, reason: peeringv1alpha1.AlreadyExistsReason,
				message: "its stretch.dev/remote-namespace-origin annotation says home cluster " + homeB},
			{name: "b-twin-as-b", homeNamespace: "shop", homeID: homeB, twin: ts.twinB, reason: peeringv1alpha1.ForbiddenReason,
				message: "not in its tenant namespace"},
			{name: "new-as-b", homeNamespace: "stolen", homeID: homeB, twin: "stolen-" + homeB, reason: peeringv1alpha1.ForbiddenReason,
				message: "not in its tenant namespace"},
			{name: "bystander", homeNamespace: bystander, homeID: homeA, twin: bystander, reason: peeringv1alpha1.AlreadyExistsReason,
				message: "has no stretch.dev/remote-namespace-origin annotation, so Stretch did not create it"},
		}
		var requests []*peeringv1alpha1.RemoteNamespace
		for _, tt := range tests {
			// Always into A's tenant namespace: that is all A can write.
			rn := &peeringv1alpha1.RemoteNamespace{
				ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(homeA), Name: tt.name},
				Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: tt.homeNamespace, HomeClusterID: tt.homeID, RemoteNamespaceName: tt.twin},
			}
			g.Expect(ts.a.Create(ctx, rn)).To(Succeed())
			requests = append(requests, rn)
		}
		for i, tt := range tests {
			expectStatus(g, requests[i], peeringv1alpha1.RemoteNamespaceCreationFailed, tt.reason, tt.message)
		}
		g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKey{Name: "stolen-" + homeB}, &corev1.Namespace{}))).To(BeTrue())
		// A gets no grant in B's twin, nor in the bystander namespace.
		for _, ns := range []string{ts.twinB, bystander} {
			rbs := &rbacv1.RoleBindingList{}
			g.Expect(provider.Client.List(ctx, rbs, client.InNamespace(ns))).To(Succeed())
			for _, rb := range rbs.Items {
				for _, s := range rb.Subjects {
					g.Expect(s.Namespace).NotTo(Equal(peeringv1alpha1.TenantNamespace(homeA)), "RoleBinding %s/%s grants A", ns, rb.Name)
				}
			}
		}
		expectUnchanged(g, before, take(g, provider.Client, append(ts.bObjects, ts.bystanderObjects...)...))

		// Withdrawn (as at unoffload), they delete nothing that is not A's.
		for _, rn := range requests {
			g.Expect(ts.a.Delete(ctx, rn)).To(Succeed())
		}
		for _, rn := range requests {
			g.Eventually(func() bool {
				return apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKeyFromObject(rn), &peeringv1alpha1.RemoteNamespace{}))
			}).Should(BeTrue(), "request %s is gone", rn.Name)
		}
		expectUnchanged(g, before, take(g, provider.Client, append(ts.bObjects, ts.bystanderObjects...)...))
	})
}

// TestReservedNamespacesAreNeverTwins: docs/design.md §4.7. Whatever a home cluster
// asks, kube-*, default and stretch-* (the system namespaces, Stretch's own
// and every tenant namespace) are refused with reason Forbidden; the
// existing ones are untouched and the others not created.
func TestReservedNamespacesAreNeverTwins(t *testing.T) {
	g := newG(t)
	ctx := context.Background()
	ts := setupTenants(t)
	existing := []string{"kube-system", "default", "kube-public", "kube-node-lease", wellknown.SystemNamespace,
		peeringv1alpha1.TenantNamespace(homeA), peeringv1alpha1.TenantNamespace(homeB)}
	absent := []string{"kube-fresh", "stretch-fresh", "stretch-tenant-" + "d4d4d4d4-0000-4000-8000-00000000000d"}
	var objs []client.Object
	for _, ns := range existing {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	before := take(g, provider.Client, objs...)

	var requests []*peeringv1alpha1.RemoteNamespace
	for i, twin := range append(append([]string{}, existing...), absent...) {
		rn := requestTwin(g, ts.a, homeA, "reserved-"+string(rune('a'+i)), "r"+string(rune('a'+i)), twin)
		requests = append(requests, rn)
	}
	for _, rn := range requests {
		expectStatus(g, rn, peeringv1alpha1.RemoteNamespaceCreationFailed, peeringv1alpha1.ForbiddenReason,
			`twin namespace name "`+rn.Spec.RemoteNamespaceName+`" is reserved on providers`)
	}
	for _, ns := range absent {
		g.Expect(apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))).To(BeTrue(), "%s is not created", ns)
	}
	for _, ns := range existing {
		rb := &rbacv1.RoleBinding{}
		err := provider.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: wellknown.TwinRoleBindingName}, rb)
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no twin grant in %s", ns)
	}
	for _, rn := range requests {
		g.Expect(ts.a.Delete(ctx, rn)).To(Succeed())
	}
	for _, rn := range requests {
		g.Eventually(func() bool {
			return apierrors.IsNotFound(provider.Client.Get(ctx, client.ObjectKeyFromObject(rn), &peeringv1alpha1.RemoteNamespace{}))
		}).Should(BeTrue())
	}
	expectUnchanged(g, before, take(g, provider.Client, objs...))
}
