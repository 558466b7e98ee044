package tenant

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv"
)

// legacyTwin brings the provider to what an earlier release left for the
// request of homeNamespace: the twin namespace with its grant under
// LegacyTwinRoleBindingName, and no grant of the current name. It returns
// the request, not yet created.
func legacyTwin(t *testing.T, homeNamespace string) *peeringv1alpha1.RemoteNamespace {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	twin := homeNamespace + "-" + homeID
	rn := &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: homeNamespace},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: homeNamespace, HomeClusterID: homeID, RemoteNamespaceName: twin},
	}
	ensureNamespace(t, rn.Namespace)
	g.Expect(provider.Client.Create(ctx, twinNamespace(rn, peeringv1alpha1.PodSecurityBaseline))).To(Succeed())
	old := twinRoleBinding(rn)
	old.Name = wellknown.LegacyTwinRoleBindingName
	g.Expect(provider.Client.Create(ctx, old)).To(Succeed())
	return rn
}

// orderChecked fails a test whose controller deletes a twin's grant of the
// legacy name while the API server has no grant of the current name: the
// home cluster would be without one.
type orderChecked struct {
	client.Client
	mu       sync.Mutex
	failures []string
	deleted  int
}

func (c *orderChecked) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	if rb, ok := obj.(*rbacv1.RoleBinding); ok && rb.Name == wellknown.LegacyTwinRoleBindingName {
		err := provider.Client.Get(ctx, client.ObjectKey{Namespace: rb.Namespace, Name: wellknown.TwinRoleBindingName}, &rbacv1.RoleBinding{})
		c.mu.Lock()
		c.deleted++
		if err != nil {
			c.failures = append(c.failures, fmt.Sprintf("RoleBinding %s/%s deleted while %s is not there: %v", rb.Namespace, rb.Name, wellknown.TwinRoleBindingName, err))
		}
		c.mu.Unlock()
	}
	return c.Client.Delete(ctx, obj, opts...)
}

// TestLegacyTwinGrantReplaced: a twin that an earlier release granted under
// LegacyTwinRoleBindingName gets the grant of the current name, then loses
// the old one, and its home cluster may still run workloads there; a
// RoleBinding of the old name that is not Stretch's grant is left exactly
// as it was.
func TestLegacyTwinGrantReplaced(t *testing.T) {
	ctx := context.Background()
	subject := rbacv1.Subject{Kind: "ServiceAccount", Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: wellknown.TenantServiceAccountName}
	tests := []struct {
		name string
		// theirs replaces Stretch's old grant; nil keeps it.
		theirs *rbacv1.RoleBinding
	}{
		{name: "Stretch's old grant"},
		{name: "a user's RoleBinding of the old name", theirs: &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: wellknown.LegacyTwinRoleBindingName},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
		}},
		{name: "the old grant with a subject added by a user", theirs: &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: wellknown.LegacyTwinRoleBindingName},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: wellknown.RemoteWorkloadsClusterRole},
			Subjects:   []rbacv1.Subject{subject, {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			home := fmt.Sprintf("legacy%d", i)
			rn := legacyTwin(t, home)
			twin := rn.Spec.RemoteNamespaceName
			legacy := client.ObjectKey{Namespace: twin, Name: wellknown.LegacyTwinRoleBindingName}
			if tt.theirs != nil {
				g.Expect(provider.Client.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: legacy.Name}})).To(Succeed())
				tt.theirs.Namespace = twin
				g.Expect(provider.Client.Create(ctx, tt.theirs)).To(Succeed())
			}
			before := &rbacv1.RoleBinding{}
			g.Expect(provider.Client.Get(ctx, legacy, before)).To(Succeed())

			checked := &orderChecked{}
			startTenantWith(t, func(mgr ctrl.Manager) error {
				checked.Client = mgr.GetClient()
				return (&Reconciler{Client: checked, Recorder: mgr.GetEventRecorder("tenant")}).SetupWithManager(mgr)
			})
			g.Expect(provider.Client.Create(ctx, rn)).To(Succeed())
			// Ready is written after the old grant was dealt with, in the
			// same pass.
			g.Eventually(func(g Gomega) {
				g.Expect(status(g, rn).Phase).To(Equal(peeringv1alpha1.RemoteNamespaceReady))
			}).Should(Succeed())

			rb := &rbacv1.RoleBinding{}
			g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: wellknown.TwinRoleBindingName}, rb)).To(Succeed())
			g.Expect(rb.RoleRef.Name).To(Equal(wellknown.RemoteWorkloadsClusterRole))
			g.Expect(rb.Subjects).To(ConsistOf(subject))
			if tt.theirs == nil {
				g.Eventually(func() bool {
					return apierrors.IsNotFound(provider.Client.Get(ctx, legacy, &rbacv1.RoleBinding{}))
				}).Should(BeTrue(), "Stretch's old grant is deleted")
			} else {
				after := &rbacv1.RoleBinding{}
				g.Expect(provider.Client.Get(ctx, legacy, after)).To(Succeed())
				g.Expect(after.UID).To(Equal(before.UID))
				g.Expect(after.ResourceVersion).To(Equal(before.ResourceVersion), "a user's RoleBinding is not modified")
			}
			checked.mu.Lock()
			g.Expect(checked.failures).To(BeEmpty())
			if tt.theirs == nil {
				g.Expect(checked.deleted).To(BeNumerically(">=", 1))
			} else {
				g.Expect(checked.deleted).To(BeZero(), "no delete is even tried")
			}
			checked.mu.Unlock()

			// The home identity still runs workloads in the twin.
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "web"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
			g.Expect(asHome(t, homeID).Create(ctx, pod)).To(Succeed())

			g.Expect(provider.Client.Delete(ctx, rn)).To(Succeed())
			expectGone(g, rn)
		})
	}
}

// TestLegacyTwinGrantRestart stops the controller right when it is about to
// delete the old grant, after it made the new one, and starts a new one: the
// new grant is kept as it is and the old one deleted.
func TestLegacyTwinGrantRestart(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	rn := legacyTwin(t, "legacyrestart")
	twin := rn.Spec.RemoteNamespaceName

	c := &crashing{at: "legacy", reached: make(chan struct{})}
	stop := startTenantWith(t, func(mgr ctrl.Manager) error {
		c.Client = mgr.GetClient()
		return (&Reconciler{Client: c, Recorder: mgr.GetEventRecorder("tenant")}).SetupWithManager(mgr)
	})
	g.Expect(provider.Client.Create(ctx, rn)).To(Succeed())
	g.Eventually(c.reached).WithTimeout(10 * time.Second).Should(BeClosed())
	stop()

	// What the crash left: both grants.
	current := &rbacv1.RoleBinding{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: wellknown.TwinRoleBindingName}, current)).To(Succeed())
	legacy := client.ObjectKey{Namespace: twin, Name: wellknown.LegacyTwinRoleBindingName}
	g.Expect(provider.Client.Get(ctx, legacy, &rbacv1.RoleBinding{})).To(Succeed())

	testenv.StartControllers(t, provider.Config, setup)
	g.Eventually(func() bool {
		return apierrors.IsNotFound(provider.Client.Get(ctx, legacy, &rbacv1.RoleBinding{}))
	}).Should(BeTrue())
	after := &rbacv1.RoleBinding{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKeyFromObject(current), after)).To(Succeed())
	g.Expect(after.UID).To(Equal(current.UID), "the new grant is not made twice")
	g.Eventually(func(g Gomega) {
		g.Expect(status(g, rn).Phase).To(Equal(peeringv1alpha1.RemoteNamespaceReady))
	}).Should(Succeed())

	g.Expect(provider.Client.Delete(ctx, rn)).To(Succeed())
	expectGone(g, rn)
}
