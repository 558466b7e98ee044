// Package webhooktest holds what the tests of the webhooks share: a running
// webhook server against an envtest API server, the namespaces, offloadings
// and pods they admit, and readers of what the webhooks answered. It is for
// tests only; no program imports it. Each helper takes the API server (home)
// it works on: every test package starts its own from TestMain.
package webhooktest

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/webhook"
	"stretch.dev/stretch/internal/webhook/certs"
)

// Identity gives home a cluster identity unless it has one, as the webhooks
// need (the offloading webhook names twins after it), and returns the one
// home has.
func Identity(tb testing.TB, home *testenv.APIServer) identity.Identity {
	tb.Helper()
	g := gomega.NewWithT(tb)
	ctx := context.Background()
	g.Expect(home.InstallIdentity(ctx, identity.Identity{ID: uuid.NewString(), Name: "home"})).To(gomega.Succeed())
	id, err := identity.Load(ctx, home.Client)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	return id
}

// Serve runs the webhooks against home, as stretch-controller-manager does
// outside a cluster, until the test ends; it returns once the API server
// calls them. When the test ends, the webhook configurations are deleted
// with the server, so that the API server does not go on calling a server
// that is gone (they fail closed) in the tests that follow.
func Serve(tb testing.TB, home *testenv.APIServer, certOpts certs.Options) (*webhook.Serving, string) {
	tb.Helper()
	g := gomega.NewWithT(tb)
	ctx := context.Background()
	Identity(tb, home)
	g.Expect(client.IgnoreAlreadyExists(home.Client.Create(ctx, &nodev1.RuntimeClass{
		ObjectMeta: metav1.ObjectMeta{Name: wellknown.RuntimeClassName}, Handler: wellknown.RuntimeClassName}))).To(gomega.Succeed())
	addr := testenv.FreeAddr(tb)
	endpoint := webhook.Endpoint{URL: "https://" + addr}
	s, err := webhook.NewServing(addr, endpoint, certOpts)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	// Registered before the manager starts, so run after it has stopped:
	// its rotator would apply them again.
	tb.Cleanup(func() {
		for _, obj := range webhook.Configurations(endpoint, nil).Objects() {
			if err := client.IgnoreNotFound(home.Client.Delete(context.Background(), obj)); err != nil {
				tb.Errorf("deleting webhook configuration %s after the test: %v", obj.GetName(), err)
			}
		}
	})
	testenv.StartManager(tb, home.Config, func(o *ctrl.Options) { o.WebhookServer = s.Server }, s.Setup)
	g.Eventually(s.Rotator.Ready()).WithTimeout(30 * time.Second).Should(gomega.BeClosed())

	// A namespace the webhook answers for, with a Ready offloading.
	ns := "probe-" + strings.ToLower(strings.ReplaceAll(tb.Name(), "/", "-"))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	Namespace(tb, home, ns, true)
	off := OffloadingIn(tb, home, ns, offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy}, offloadingv1alpha1.ReadyPhase)
	g.Eventually(func(g gomega.Gomega) {
		got := Create(g, home, Pod(off.Namespace, nil), true)
		g.Expect(got.Spec.Tolerations).NotTo(gomega.BeEmpty())
	}).WithTimeout(30 * time.Second).Should(gomega.Succeed())
	return s, addr
}

// Namespace creates a namespace on home, with the scheduling label set to
// true when labelled.
func Namespace(tb testing.TB, home *testenv.APIServer, name string, labelled bool) {
	tb.Helper()
	if labelled {
		NamespaceLabelled(tb, home, name, "true")
	} else {
		NamespaceLabelled(tb, home, name, "")
	}
}

// NamespaceLabelled creates a namespace on home whose scheduling label has
// the value, or none when the value is empty.
func NamespaceLabelled(tb testing.TB, home *testenv.APIServer, name, value string) {
	tb.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if value != "" {
		ns.Labels = map[string]string{wellknown.SchedulingEnabledLabel: value}
	}
	gomega.NewWithT(tb).Expect(home.Client.Create(context.Background(), ns)).To(gomega.Succeed())
}

// OffloadingIn creates the namespace's NamespaceOffloading on home and sets
// its phase, as the offloading controller would.
func OffloadingIn(tb testing.TB, home *testenv.APIServer, ns string, spec offloadingv1alpha1.NamespaceOffloadingSpec, phase offloadingv1alpha1.OffloadingPhase) *offloadingv1alpha1.NamespaceOffloading {
	tb.Helper()
	return OffloadingWithStatus(tb, home, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns}, Spec: spec,
		Status: offloadingv1alpha1.NamespaceOffloadingStatus{OffloadingPhase: phase}})
}

// OffloadingWithStatus creates off on home, named offloading, and then
// writes its status, as the offloading controller would.
func OffloadingWithStatus(tb testing.TB, home *testenv.APIServer, off *offloadingv1alpha1.NamespaceOffloading) *offloadingv1alpha1.NamespaceOffloading {
	tb.Helper()
	g := gomega.NewWithT(tb)
	off = off.DeepCopy()
	off.Name = wellknown.NamespaceOffloadingName
	status := off.Status
	g.Eventually(func() error { return home.Client.Create(context.Background(), off) }).WithTimeout(30 * time.Second).Should(gomega.Succeed())
	if status.OffloadingPhase != "" || len(status.RemoteNamespacesConditions) > 0 {
		off.Status = status
		g.Expect(home.Client.Status().Update(context.Background(), off)).To(gomega.Succeed())
	}
	return off
}

// Edit changes the NamespaceOffloading on home, retrying on conflicts.
func Edit(tb testing.TB, home *testenv.APIServer, off *offloadingv1alpha1.NamespaceOffloading, change func(*offloadingv1alpha1.NamespaceOffloading)) {
	tb.Helper()
	gomega.NewWithT(tb).Eventually(func() error {
		cur := &offloadingv1alpha1.NamespaceOffloading{}
		if err := home.Client.Get(context.Background(), client.ObjectKeyFromObject(off), cur); err != nil {
			return err
		}
		change(cur)
		return home.Client.Update(context.Background(), cur)
	}).Should(gomega.Succeed())
}

// ProviderConditions are the conditions of a selected provider whose twin
// is in the state the Ready condition says.
func ProviderConditions(ready metav1.ConditionStatus, reason, message string) offloadingv1alpha1.RemoteNamespaceConditions {
	now := metav1.Now()
	return offloadingv1alpha1.RemoteNamespaceConditions{
		{Type: offloadingv1alpha1.OffloadingRequiredCondition, Status: metav1.ConditionTrue, Reason: offloadingv1alpha1.ClusterSelectedReason,
			Message: "the cluster selector selects this provider", LastTransitionTime: now},
		{Type: offloadingv1alpha1.RemoteNamespaceReadyCondition, Status: ready, Reason: reason, Message: message, LastTransitionTime: now},
	}
}

// PodWebhookCalls is how many requests the pod webhook has served in this
// process, as controller-runtime counts them. The count is exact once a
// request returns: the counter moves when the handler returns, before its
// response (a few hundred bytes, buffered until then) is sent.
func PodWebhookCalls(g gomega.Gomega) float64 {
	families, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && l.GetValue() == "/mutate-pod" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// Pod is a pod of namespace ns with a generateName, required to run on
// nodes the affinity selects when it is not nil.
func Pod(ns string, affinity *corev1.NodeSelector) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "app-"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}}
	if affinity != nil {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: affinity}}
	}
	return p
}

// Create creates the pod on home (only as a dry run when dryRun) and
// returns what the API server stored, webhook changes included.
func Create(g gomega.Gomega, home *testenv.APIServer, p *corev1.Pod, dryRun bool) *corev1.Pod {
	p = p.DeepCopy()
	var opts []client.CreateOption
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	g.Expect(home.Client.Create(context.Background(), p, opts...)).To(gomega.Succeed())
	return p
}

// WarningClient is a client of an API server that keeps the server's
// warnings until Take.
type WarningClient struct {
	client.Client
	mu       sync.Mutex
	warnings []string
}

// NewWarningClient returns a WarningClient of home.
func NewWarningClient(tb testing.TB, home *testenv.APIServer) *WarningClient {
	tb.Helper()
	w := &WarningClient{}
	cfg := rest.CopyConfig(home.Config)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: home.Scheme})
	if err != nil {
		tb.Fatal(err)
	}
	w.Client = c
	return w
}

// HandleWarningHeader keeps the warning (rest.WarningHandler).
func (w *WarningClient) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

// Take returns the warnings received since the last Take.
func (w *WarningClient) Take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	return out
}

// ServedSerial is the serial number of the certificate the server at addr
// presents.
func ServedSerial(g gomega.Gomega, addr string) string {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the certificate
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}
