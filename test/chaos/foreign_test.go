package chaos

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Objects on the provider that Stretch did not create, made by its admin.
const (
	// clashing is the home namespace whose twin name (DefaultName) the
	// provider's admin took first.
	clashing = "clash"
	// providerOwn is a provider namespace of the provider's own.
	providerOwn = "provider-own"
	// foreignName names every object the provider's admin creates.
	foreignName = "theirs"
)

// foreignKinds are listed in the foreign namespaces: what Stretch reflects or
// grants in a twin, and what the admin put there. Whatever is there is part
// of the snapshot, so an object added is seen as well as one changed.
var foreignKinds = []schema.GroupVersionKind{
	corev1.SchemeGroupVersion.WithKind("ConfigMap"),
	corev1.SchemeGroupVersion.WithKind("Secret"),
	corev1.SchemeGroupVersion.WithKind("Pod"),
	corev1.SchemeGroupVersion.WithKind("Service"),
	corev1.SchemeGroupVersion.WithKind("ServiceAccount"),
	corev1.SchemeGroupVersion.WithKind("ResourceQuota"),
	corev1.SchemeGroupVersion.WithKind("LimitRange"),
	rbacv1.SchemeGroupVersion.WithKind("Role"),
	rbacv1.SchemeGroupVersion.WithKind("RoleBinding"),
}

// foreignNamespaces are the provider namespaces that Stretch did not create:
// one with the twin name of home namespace clashing, one of the provider's own.
func (w *world) foreignNamespaces() []string {
	return []string{clashing + "-" + w.homeID, providerOwn}
}

// createForeign creates, as the provider's admin, the foreign namespaces,
// each with a ConfigMap, a Secret and a Pod, and a ClusterRole. The pods are
// held by a scheduling gate: no scheduler or kubelet changes them, so any
// change is Stretch's.
func (w *world) createForeign(g *WithT) {
	c := w.provider.Client
	for _, ns := range w.foreignNamespaces() {
		g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"owner": "provider-admin"}}})).To(Succeed())
		meta := metav1.ObjectMeta{Namespace: ns, Name: foreignName, Labels: map[string]string{"owner": "provider-admin"}}
		g.Expect(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"owner": "provider"}})).To(Succeed())
		g.Expect(c.Create(ctx, &corev1.Secret{ObjectMeta: meta, StringData: map[string]string{"password": "provider's own"}})).To(Succeed())
		pod := &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{
			Containers:                   []corev1.Container{{Name: "app", Image: "registry.example/provider:1"}},
			SchedulingGates:              []corev1.PodSchedulingGate{{Name: "example.com/held"}},
			AutomountServiceAccountToken: ptr.To(false),
		}}
		// Pods are refused until the controller-manager made the namespace's
		// default ServiceAccount.
		g.Eventually(func() error { return c.Create(ctx, pod.DeepCopy()) }).Should(Succeed())
		// What the controller-manager adds to every namespace is there
		// before the snapshot.
		g.Eventually(func() error {
			return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kube-root-ca.crt"}, &corev1.ConfigMap{})
		}).Should(Succeed())
	}
	g.Expect(c.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "provider-own-reader", Labels: map[string]string{"owner": "provider-admin"}},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	})).To(Succeed())
}

// snapshot is the JSON of objects, as the API server serves them (uid,
// resourceVersion and managedFields included), by "Kind namespace/name".
type snapshot map[string]string

// snapshotForeign reads every object of the foreign namespaces (of
// foreignKinds), the namespaces themselves and the ClusterRole.
func (w *world) snapshotForeign(g Gomega) snapshot {
	s := snapshot{}
	add := func(u *unstructured.Unstructured) {
		data, err := u.MarshalJSON()
		g.Expect(err).NotTo(HaveOccurred())
		s[fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())] = string(data)
	}
	get := func(gvk schema.GroupVersionKind, name string) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		g.Expect(w.provider.Client.Get(ctx, client.ObjectKey{Name: name}, u)).To(Succeed())
		add(u)
	}
	for _, ns := range w.foreignNamespaces() {
		get(corev1.SchemeGroupVersion.WithKind("Namespace"), ns)
		for _, gvk := range foreignKinds {
			list := &unstructured.UnstructuredList{}
			list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
			g.Expect(w.provider.Client.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			for i := range list.Items {
				add(&list.Items[i])
			}
		}
	}
	get(rbacv1.SchemeGroupVersion.WithKind("ClusterRole"), "provider-own-reader")
	return s
}

// expectUnchanged checks that the foreign objects are byte-for-byte what
// before holds: none changed, none gone, none added.
func (w *world) expectUnchanged(t *testing.T, g Gomega, before snapshot) {
	t.Helper()
	after := w.snapshotForeign(g)
	var diffs []string
	for _, key := range slices.Sorted(maps.Keys(before)) {
		switch now, ok := after[key]; {
		case !ok:
			diffs = append(diffs, key+": gone")
		case now != before[key]:
			diffs = append(diffs, fmt.Sprintf("%s: changed\n  before: %s\n  after:  %s", key, before[key], now))
		}
	}
	for key, now := range after {
		if _, ok := before[key]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: added: %s", key, now))
		}
	}
	g.Expect(diffs).To(BeEmpty(), "provider objects that Stretch did not create")
	t.Logf("%d provider objects that Stretch did not create are byte-for-byte unchanged", len(before))
}
