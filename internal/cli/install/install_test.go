package install

import (
	"bytes"
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/config"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/webhook"
)

var cluster *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { cluster = s[0] }, "provider")
}

// TestInstallLifecycle walks one cluster through install, re-install (which
// renames an earlier release's tenant RBAC), a refused rename, a refused uninstall and the uninstall. It is one test
// because envtest has no namespace controller: stretch-system stays
// Terminating after the uninstall, so nothing can follow it.
func TestInstallLifecycle(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := cluster.Client
	var out bytes.Buffer

	// Install.
	id, err := Install(ctx, c, Options{ClusterName: "provider-eu", ClusterLabels: map[string]string{"region": "eu"}}, &out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(identity.ValidateClusterID(id.ID)).To(Succeed())
	g.Expect(out.String()).To(ContainSubstring("CustomResourceDefinitions established"))

	loaded, err := identity.Load(ctx, c)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(loaded).To(Equal(id))

	crds, err := config.CRDs()
	g.Expect(err).NotTo(HaveOccurred())
	for _, crd := range crds {
		got := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(c.Get(ctx, client.ObjectKey{Name: crd.Name}, got)).To(Succeed())
		g.Expect(got.Spec.Versions).To(HaveLen(len(crd.Spec.Versions)))
	}
	g.Expect(c.Get(ctx, client.ObjectKey{Name: wellknown.SystemNamespace}, &corev1.Namespace{})).To(Succeed())
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: wellknown.ManagerName}, &corev1.ServiceAccount{})).To(Succeed())
	role := &rbacv1.ClusterRole{}
	g.Expect(c.Get(ctx, client.ObjectKey{Name: wellknown.ManagerName}, role)).To(Succeed())
	g.Expect(role.Rules).NotTo(BeEmpty(), "the ClusterRole carries the generated rules")
	binding := &rbacv1.ClusterRoleBinding{}
	g.Expect(c.Get(ctx, client.ObjectKey{Name: wellknown.ManagerName}, binding)).To(Succeed())
	g.Expect(binding.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Namespace: wellknown.SystemNamespace, Name: wellknown.ManagerName}))
	workloads := &rbacv1.ClusterRole{}
	g.Expect(c.Get(ctx, client.ObjectKey{Name: wellknown.RemoteWorkloadsClusterRole}, workloads)).To(Succeed())
	g.Expect(workloads.Rules).NotTo(BeEmpty())
	rtc := &nodev1.RuntimeClass{}
	g.Expect(c.Get(ctx, client.ObjectKey{Name: "stretch"}, rtc)).To(Succeed())
	g.Expect(rtc.Handler).To(Equal("stretch"))

	// A home cluster peered by an earlier release: its tenant's Role and
	// RoleBinding carry the ServiceAccount's name.
	legacyHome := "d4d4d4d4-0000-4000-8000-00000000000d"
	tenant := peeringv1alpha1.TenantNamespace(legacyHome)
	labels := map[string]string{apply.PartOfLabel: apply.PartOf, wellknown.HomeClusterIDLabel: legacyHome}
	legacy := client.ObjectKey{Namespace: tenant, Name: "stretch-home"}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant, Labels: labels}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: legacy.Name, Labels: labels},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{peeringv1alpha1.GroupVersion.Group}, Resources: []string{"remotenamespaces"}, Verbs: []string{"get", "create"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: legacy.Name, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: legacy.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: tenant, Name: "stretch-home"}}},
	} {
		g.Expect(c.Create(ctx, obj)).To(Succeed())
	}

	// Re-install: the ID is kept, the labels are updated, the earlier
	// release's tenant RBAC renamed.
	out.Reset()
	again, err := Install(ctx, c, Options{ClusterName: "provider-eu", ClusterLabels: map[string]string{"region": "eu", "tier": "gold"}}, &out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again.ID).To(Equal(id.ID))
	g.Expect(out.String()).To(ContainSubstring("(kept)"))
	g.Expect(out.String()).To(ContainSubstring("✓ tenant namespace " + tenant + ": Role and RoleBinding stretch-home of an earlier release replaced by stretch-home-requests"))
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home-requests"}, &rbacv1.Role{})).To(Succeed())
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "stretch-home-requests"}, &rbacv1.RoleBinding{})).To(Succeed())
	g.Expect(apierrors.IsNotFound(c.Get(ctx, legacy, &rbacv1.Role{}))).To(BeTrue())
	g.Expect(apierrors.IsNotFound(c.Get(ctx, legacy, &rbacv1.RoleBinding{}))).To(BeTrue())
	loaded, err = identity.Load(ctx, c)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(loaded.Labels).To(Equal(map[string]string{"region": "eu", "tier": "gold"}))

	// A different name is refused and nothing changes.
	before := &corev1.ConfigMap{}
	g.Expect(c.Get(ctx, identity.Key, before)).To(Succeed())
	_, err = Install(ctx, c, Options{ClusterName: "provider-us"}, &out)
	g.Expect(err).To(MatchError(ContainSubstring(`already installed as "provider-eu"`)))
	after := &corev1.ConfigMap{}
	g.Expect(c.Get(ctx, identity.Key, after)).To(Succeed())
	g.Expect(after.ResourceVersion).To(Equal(before.ResourceVersion))

	// Uninstall is refused while a namespace is offloaded, and changes nothing.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "foo"}}
	g.Expect(c.Create(ctx, ns)).To(Succeed())
	off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "foo", Name: "offloading"}}
	g.Expect(c.Create(ctx, off)).To(Succeed())
	err = Uninstall(ctx, nil, c, time.Minute, &out)
	g.Expect(err).To(MatchError(ContainSubstring("namespaces foo are offloaded: run 'stretchctl unoffload namespace foo' first")))
	g.Expect(c.Get(ctx, identity.Key, &corev1.ConfigMap{})).To(Succeed())
	g.Expect(c.Get(ctx, client.ObjectKey{Name: "stretch"}, &nodev1.RuntimeClass{})).To(Succeed())

	// Once unoffloaded, uninstall removes everything install created, and
	// the webhook configurations the manager applied.
	set := webhook.Configurations(webhook.Endpoint{URL: "https://127.0.0.1:9443"}, nil)
	for _, obj := range set.Objects() {
		g.Expect(apply.Object(ctx, c, obj)).To(Succeed())
	}
	g.Expect(c.Delete(ctx, off)).To(Succeed())
	out.Reset()
	g.Expect(Uninstall(ctx, nil, c, time.Minute, &out)).To(Succeed())
	g.Expect(apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(set.PodPlacement), &admissionregistrationv1.MutatingWebhookConfiguration{}))).To(BeTrue())
	for _, v := range []*admissionregistrationv1.ValidatingWebhookConfiguration{set.Offloading, set.TwinPods} {
		g.Expect(apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(v), &admissionregistrationv1.ValidatingWebhookConfiguration{}))).To(BeTrue(), v.Name)
	}
	g.Expect(apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: "stretch"}, &nodev1.RuntimeClass{}))).To(BeTrue())
	g.Expect(apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: wellknown.ManagerName}, &rbacv1.ClusterRole{}))).To(BeTrue())
	g.Expect(apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: wellknown.ManagerName}, &rbacv1.ClusterRoleBinding{}))).To(BeTrue())
	g.Expect(apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: wellknown.RemoteWorkloadsClusterRole}, &rbacv1.ClusterRole{}))).To(BeTrue())
	g.Expect(apierrors.IsNotFound(c.Get(ctx, identity.Key, &corev1.ConfigMap{}))).To(BeTrue())
	for _, crd := range crds {
		g.Eventually(func() bool {
			return apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: crd.Name}, &apiextensionsv1.CustomResourceDefinition{}))
		}).Should(BeTrue(), crd.Name)
	}

	// Uninstalling again is a no-op, even without the CRDs.
	g.Expect(Uninstall(ctx, nil, c, time.Minute, &out)).To(Succeed())
}
