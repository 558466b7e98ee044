package tenancy

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

// bystander is a provider namespace that has nothing to do with Stretch.
const bystander = "bystander"

// tenants is a provider with two home clusters peered to it, A and B, each
// with the twin of its namespace shop, and a namespace of the provider's
// own: what the tests of credentials and isolation run against.
type tenants struct {
	aConfig, bConfig *rest.Config
	a, b             client.Client
	twinA, twinB     string
	// bObjects are what B runs in its twin and its tenant namespace.
	bObjects []client.Object
	// bystanderObjects are the provider's own.
	bystanderObjects []client.Object
}

// setupTenants runs the provider side until the test ends and brings the
// provider to the state of tenants (idempotent: tests share the provider).
func setupTenants(t *testing.T) *tenants {
	t.Helper()
	g := newG(t)
	ctx := context.Background()
	startProviderSide(t)
	ts := &tenants{aConfig: issue(t, homeA), bConfig: issue(t, homeB), twinA: "shop-" + homeA, twinB: "shop-" + homeB}
	ts.a, ts.b = clientFor(t, ts.aConfig), clientFor(t, ts.bConfig)

	for _, h := range []struct {
		c        client.Client
		id, twin string
	}{{c: ts.a, id: homeA, twin: ts.twinA}, {c: ts.b, id: homeB, twin: ts.twinB}} {
		rn := &peeringv1alpha1.RemoteNamespace{
			ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(h.id), Name: "shop"},
			Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: "shop", HomeClusterID: h.id, RemoteNamespaceName: h.twin},
		}
		// The home cluster's own credentials write the request.
		g.Expect(client.IgnoreAlreadyExists(h.c.Create(ctx, rn))).To(Succeed())
		expectStatus(g, rn, peeringv1alpha1.RemoteNamespaceReady, "NamespaceCreated")
	}

	// B runs workloads in its twin, with its own credentials.
	ts.bObjects = []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ts.twinB, Name: "b-config"}, Data: map[string]string{"k": "b"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ts.twinB, Name: "b-secret"}, StringData: map[string]string{"password": "b's"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ts.twinB, Name: "b-svc"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
		podIn(ts.twinB, "b-web"),
	}
	for _, o := range ts.bObjects {
		g.Expect(client.IgnoreAlreadyExists(ts.b.Create(ctx, o))).To(Succeed())
	}
	ts.bObjects = append(ts.bObjects,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ts.twinB}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: peeringv1alpha1.TenantNamespace(homeB)}},
		&peeringv1alpha1.RemoteNamespace{ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(homeB), Name: "shop"}},
	)

	ts.bystanderObjects = []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: bystander}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: bystander, Name: "precious"}, Data: map[string]string{"k": "v"}},
	}
	for _, o := range ts.bystanderObjects {
		g.Expect(client.IgnoreAlreadyExists(provider.Client.Create(ctx, o))).To(Succeed())
	}
	return ts
}
