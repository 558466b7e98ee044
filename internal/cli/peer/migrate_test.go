package peer

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// legacyTenant makes on provider-eu what an earlier release of 'stretchctl
// peer' issued to a new home cluster: its tenant namespace and ServiceAccount,
// and the Role and RoleBinding of today's requestsRBAC under the legacy name.
// It returns the home cluster's ID.
func legacyTenant(ctx context.Context, g *WithT) string {
	id := uuid.NewString()
	ns := peeringv1alpha1.TenantNamespace(id)
	role, binding := requestsRBAC(id)
	role.Name, binding.Name, binding.RoleRef.Name = "stretch-home", "stretch-home", "stretch-home"
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: tenantLabels(id)}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stretch-home", Labels: tenantLabels(id)}},
		role, binding,
	} {
		g.Expect(eu.Client.Create(ctx, obj)).To(Succeed())
	}
	return id
}

// asTenant is a client with the identity of home cluster id's ServiceAccount.
func asTenant(g *WithT, id string) client.Client {
	cfg := rest.CopyConfig(eu.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + peeringv1alpha1.TenantNamespace(id) + ":stretch-home"}
	c, err := client.New(cfg, client.Options{Scheme: eu.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	return c
}

// expectRequests checks that home cluster id may write a twin request, as
// its offloading controller does.
func expectRequests(ctx context.Context, g *WithT, id, name string) {
	rn := &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(id), Name: name},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: name, HomeClusterID: id, RemoteNamespaceName: name + "-" + id},
	}
	g.ExpectWithOffset(1, asTenant(g, id).Create(ctx, rn)).To(Succeed())
}

// expectRenamed checks that tenant id has the Role and RoleBinding of the
// current name, as peer issues them, and none of the legacy name.
func expectRenamed(ctx context.Context, g *WithT, id string) {
	ns := peeringv1alpha1.TenantNamespace(id)
	wantRole, wantBinding := requestsRBAC(id)
	role := &rbacv1.Role{}
	g.ExpectWithOffset(1, eu.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "stretch-home-requests"}, role)).To(Succeed())
	g.ExpectWithOffset(1, role.Rules).To(Equal(wantRole.Rules))
	binding := &rbacv1.RoleBinding{}
	g.ExpectWithOffset(1, eu.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "stretch-home-requests"}, binding)).To(Succeed())
	g.ExpectWithOffset(1, binding.RoleRef).To(Equal(wantBinding.RoleRef))
	g.ExpectWithOffset(1, binding.Subjects).To(Equal(wantBinding.Subjects))
	legacy := client.ObjectKey{Namespace: ns, Name: "stretch-home"}
	g.ExpectWithOffset(1, apierrors.IsNotFound(eu.Client.Get(ctx, legacy, &rbacv1.Role{}))).To(BeTrue(), "the legacy Role is deleted")
	g.ExpectWithOffset(1, apierrors.IsNotFound(eu.Client.Get(ctx, legacy, &rbacv1.RoleBinding{}))).To(BeTrue(), "the legacy RoleBinding is deleted")
}

// newFirst fails when a Role or RoleBinding of the legacy name is deleted
// while the tenant lacks one of the current name.
type newFirst struct {
	client.Client
	failures []string
	deletes  int
}

func (c *newFirst) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	if obj.GetName() == wellknown.LegacyTenantRoleName {
		c.deletes++
		for _, current := range []client.Object{&rbacv1.Role{}, &rbacv1.RoleBinding{}} {
			if err := c.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: wellknown.TenantRoleName}, current); err != nil {
				c.failures = append(c.failures, fmt.Sprintf("%T %s/%s deleted while %T %s is missing: %v", obj, obj.GetNamespace(), obj.GetName(), current, wellknown.TenantRoleName, err))
			}
		}
	}
	return c.Client.Delete(ctx, obj, opts...)
}

// TestMigrateTenants: 'stretchctl install' gives the tenants of earlier
// releases the Role and RoleBinding of the current name before it deletes
// Stretch's old ones, the home cluster's identity keeps writing its twin
// requests throughout, and what is not Stretch's is left alone. Run again,
// it changes nothing.
func TestMigrateTenants(t *testing.T) {
	ctx, g := setup(t)

	ours := legacyTenant(ctx, g)
	expectRequests(ctx, g, ours, "before")

	// A user added a subject to the old binding: it is no longer Stretch's,
	// and it keeps the old Role it binds.
	edited := legacyTenant(ctx, g)
	editedNS := peeringv1alpha1.TenantNamespace(edited)
	editedKey := client.ObjectKey{Namespace: editedNS, Name: "stretch-home"}
	editedBinding := &rbacv1.RoleBinding{}
	g.Expect(eu.Client.Get(ctx, editedKey, editedBinding)).To(Succeed())
	editedBinding.Subjects = append(editedBinding.Subjects, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"})
	g.Expect(eu.Client.Update(ctx, editedBinding)).To(Succeed())

	// A tenant whose objects of the old name are a user's own.
	users := uuid.NewString()
	usersNS := peeringv1alpha1.TenantNamespace(users)
	usersObjects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: usersNS, Labels: tenantLabels(users)}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: usersNS, Name: "stretch-home"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: usersNS, Name: "stretch-home"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}}},
	}
	for _, obj := range usersObjects {
		g.Expect(eu.Client.Create(ctx, obj)).To(Succeed())
	}

	before := snapshot(ctx, g, eu.Client)
	c := &newFirst{Client: eu.Client}
	var out bytes.Buffer
	g.Expect(MigrateTenants(ctx, c, &out)).To(Succeed())
	g.Expect(c.failures).To(BeEmpty())
	g.Expect(c.deletes).To(Equal(2), "Stretch's old Role and RoleBinding of one tenant")

	expectRenamed(ctx, g, ours)
	g.Expect(out.String()).To(ContainSubstring("✓ tenant namespace " + peeringv1alpha1.TenantNamespace(ours) + ": Role and RoleBinding stretch-home of an earlier release replaced by stretch-home-requests"))
	expectRequests(ctx, g, ours, "after")

	// The edited tenant: the new objects exist, the user's binding and the
	// Role it binds are as they were.
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: editedNS, Name: "stretch-home-requests"}, &rbacv1.RoleBinding{})).To(Succeed())
	after := snapshot(ctx, g, eu.Client)
	for _, key := range []string{"*v1.RoleBinding " + editedNS + "/stretch-home", "*v1.Role " + editedNS + "/stretch-home"} {
		g.Expect(after).To(HaveKeyWithValue(key, before[key]))
	}
	g.Expect(out.String()).To(ContainSubstring("! tenant namespace " + editedNS + ": RoleBinding stretch-home is not the one Stretch made (it binds Role stretch-home to 2 subjects), so it is left in place with Role stretch-home"))

	// The user's tenant: untouched, nothing added.
	for _, key := range []string{"*v1.Role " + usersNS + "/stretch-home", "*v1.RoleBinding " + usersNS + "/stretch-home"} {
		g.Expect(before).To(HaveKey(key))
		g.Expect(after).To(HaveKeyWithValue(key, before[key]))
	}
	g.Expect(after).NotTo(HaveKey("*v1.Role " + usersNS + "/stretch-home-requests"))
	g.Expect(after).NotTo(HaveKey("*v1.RoleBinding " + usersNS + "/stretch-home-requests"))
	g.Expect(out.String()).NotTo(ContainSubstring(usersNS))

	// Again: nothing to do for ours and the user's; the edited tenant says
	// again why its old binding stays.
	out.Reset()
	g.Expect(MigrateTenants(ctx, eu.Client, &out)).To(Succeed())
	g.Expect(snapshot(ctx, g, eu.Client)).To(Equal(after))
	g.Expect(out.String()).NotTo(ContainSubstring(peeringv1alpha1.TenantNamespace(ours)))
	g.Expect(out.String()).NotTo(ContainSubstring(usersNS))
}

// TestRepeerLegacyTenant: peering again over a peering of an earlier release
// issues the current names and deletes the old ones.
func TestRepeerLegacyTenant(t *testing.T) {
	ctx, g := setup(t)
	id := legacyTenant(ctx, g)
	var out bytes.Buffer
	_, err := IssueCredentials(ctx, eu.Client, eu.Config, id, &out)
	g.Expect(err).NotTo(HaveOccurred())
	expectRenamed(ctx, g, id)
	g.Expect(out.String()).To(ContainSubstring("replaced by stretch-home-requests"))
	expectRequests(ctx, g, id, "repeered")
}
