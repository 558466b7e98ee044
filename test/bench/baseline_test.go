package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/naming"
	"stretch.dev/stretch/internal/tenancy"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
)

// stopStretch stops every manager and removes the webhook configurations
// they registered (which fail closed without them), so that the design
// baseline's writes meet no controller of Stretch.
func stopStretch(t *testing.T, managers []*testenv.ManagerProcess, clusters []*kwok.Cluster) {
	g := NewWithT(t)
	for _, m := range managers {
		m.Stop()
	}
	for _, c := range clusters {
		for _, name := range []string{wellknown.OffloadingWebhookName, wellknown.TwinPodsWebhookName, wellknown.TwinEndpointsWebhookName} {
			g.Expect(client.IgnoreNotFound(c.Client.Delete(context.Background(), &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}))).To(Succeed())
		}
		g.Expect(client.IgnoreNotFound(c.Client.Delete(context.Background(), &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: wellknown.PodPlacementWebhookName}}))).To(Succeed())
	}
}

// designBaseline offloads size new namespaces to providers the way the
// design needs it and nothing more, bulkWorkers at a time, with Stretch
// stopped: the user's NamespaceOffloading, then, per namespace, the
// finalizer, the scheduling label and one status at home, and per provider
// the request, the twin namespace, its RoleBinding and the request's
// status. One client does it all, as cluster admin (Stretch writes the
// requests with the issued credentials, the rest as its managers): what it
// costs is the API servers' work for those objects. It returns how long
// and the writes.
func designBaseline(t *testing.T, home *kwok.Cluster, providers []*kwok.Cluster, size int) (time.Duration, []testenv.Writes) {
	g := NewWithT(t)
	ctx := context.Background()
	id, err := identity.Load(ctx, home.Client)
	g.Expect(err).NotTo(HaveOccurred())
	tenant := peeringv1alpha1.TenantNamespace(id.ID)
	nss := make([]string, size)
	for i := range nss {
		nss[i] = fmt.Sprintf("design-%d-%d", size, i)
	}
	inParallel(t, nss, func(ns string) error {
		return home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	clusters := append([]*kwok.Cluster{home}, providers...)
	before := apiWrites(g, clusters)
	start := time.Now()
	inParallel(t, nss, func(ns string) error { return offloadByDesign(ctx, home, providers, tenant, id.ID, ns) })
	took := time.Since(start)
	t.Logf("design baseline of %d namespaces: written in %v", size, took.Round(time.Millisecond))
	return took, writesSince(apiWrites(g, clusters), before)
}

// offloadByDesign writes the objects of one namespace's offload.
func offloadByDesign(ctx context.Context, home *kwok.Cluster, providers []*kwok.Cluster, tenant, homeID, ns string) error {
	off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.NamespaceOffloadingName}}
	if err := home.Client.Create(ctx, off); err != nil {
		return err
	}
	twin := naming.TwinName(off.Spec, ns, homeID)
	patch := client.MergeFrom(off.DeepCopy())
	off.Finalizers = []string{wellknown.NamespaceOffloadingFinalizer}
	if err := home.Client.Patch(ctx, off, patch); err != nil {
		return err
	}
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := home.Client.Patch(ctx, namespace, client.RawPatch(client.Merge.Type(),
		[]byte(`{"metadata":{"labels":{"`+wellknown.SchedulingEnabledLabel+`":"true"}}}`))); err != nil {
		return err
	}
	conditions := map[string]offloadingv1alpha1.RemoteNamespaceConditions{}
	for i, p := range providers {
		rn := &peeringv1alpha1.RemoteNamespace{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: ns},
			Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: ns, HomeClusterID: homeID, RemoteNamespaceName: twin},
		}
		if err := p.Client.Create(ctx, rn); err != nil {
			return err
		}
		labels := tenancy.PodSecurityLabels(peeringv1alpha1.PodSecurityBaseline)
		labels[wellknown.OriginClusterIDLabel], labels[wellknown.OriginNamespaceLabel] = homeID, ns
		if err := p.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: twin, Labels: labels,
			Annotations: map[string]string{wellknown.RemoteNamespaceOriginAnnotation: homeID}}}); err != nil {
			return err
		}
		if err := p.Client.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: wellknown.TwinRoleBindingName, Labels: map[string]string{wellknown.OriginClusterIDLabel: homeID}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: wellknown.RemoteWorkloadsClusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: tenant, Name: wellknown.TenantServiceAccountName}},
		}); err != nil {
			return err
		}
		rn.Status = peeringv1alpha1.RemoteNamespaceStatus{Phase: peeringv1alpha1.RemoteNamespaceReady, Reason: "NamespaceCreated",
			Message: "twin namespace " + twin + " created", ObservedGeneration: rn.Generation}
		if err := p.Client.Status().Update(ctx, rn); err != nil {
			return err
		}
		now := metav1.Now()
		conditions[fmt.Sprintf("provider-%d", i+1)] = offloadingv1alpha1.RemoteNamespaceConditions{
			{Type: offloadingv1alpha1.OffloadingRequiredCondition, Status: metav1.ConditionTrue, Reason: "ClusterSelected", Message: "selected", LastTransitionTime: now},
			{Type: offloadingv1alpha1.RemoteNamespaceReadyCondition, Status: metav1.ConditionTrue, Reason: offloadingv1alpha1.NamespaceCreatedReason, Message: "twin namespace " + twin + " created", LastTransitionTime: now},
		}
	}
	patch = client.MergeFrom(off.DeepCopy())
	off.Status = offloadingv1alpha1.NamespaceOffloadingStatus{OffloadingPhase: offloadingv1alpha1.ReadyPhase, RemoteNamespaceName: twin,
		ObservedGeneration: off.Generation, RemoteNamespacesConditions: conditions}
	return home.Client.Status().Patch(ctx, off, patch)
}
