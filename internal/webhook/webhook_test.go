package webhook_test

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/webhook"
	"stretch.dev/stretch/internal/webhook/certs"
)

var (
	home   *testenv.APIServer
	homeID = uuid.NewString()
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { home = s[0] }, "home")
}

// serve runs the webhooks against home, as stretch-controller-manager does
// outside a cluster, until the test ends; it returns once the API server
// calls them.
func serve(t *testing.T, certOpts certs.Options) (*webhook.Serving, string) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(home.InstallIdentity(ctx, identity.Identity{ID: homeID, Name: "home"})).To(Succeed())
	g.Expect(client.IgnoreAlreadyExists(home.Client.Create(ctx, &nodev1.RuntimeClass{
		ObjectMeta: metav1.ObjectMeta{Name: peeringv1alpha1.RuntimeClassName}, Handler: peeringv1alpha1.RuntimeClassName}))).To(Succeed())
	addr := testenv.FreeAddr(t)
	s, err := webhook.NewServing(addr, webhook.Endpoint{URL: "https://" + addr}, certOpts)
	g.Expect(err).NotTo(HaveOccurred())
	testenv.StartManager(t, home.Config, func(o *ctrl.Options) { o.WebhookServer = s.Server }, s.Setup)
	g.Eventually(s.Rotator.Ready()).WithTimeout(30 * time.Second).Should(BeClosed())

	// A namespace the webhook answers for, with a Ready offloading.
	ns := "probe-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	namespace(t, ns, true)
	off := offloadingIn(t, ns, offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy}, offloadingv1alpha1.ReadyPhase)
	g.Eventually(func(g Gomega) {
		got := create(g, pod(off.Namespace, nil), true)
		g.Expect(got.Spec.Tolerations).NotTo(BeEmpty())
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return s, addr
}

// namespace creates a namespace, with the scheduling label set to true
// when labelled.
func namespace(t *testing.T, name string, labelled bool) {
	t.Helper()
	if labelled {
		namespaceLabelled(t, name, "true")
	} else {
		namespaceLabelled(t, name, "")
	}
}

// namespaceLabelled creates a namespace whose scheduling label has the
// value, or none when the value is empty.
func namespaceLabelled(t *testing.T, name, value string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if value != "" {
		ns.Labels = map[string]string{offloadingv1alpha1.SchedulingEnabledLabel: value}
	}
	NewWithT(t).Expect(home.Client.Create(context.Background(), ns)).To(Succeed())
}

// offloadingIn creates the namespace's NamespaceOffloading and sets its
// phase, as the offloading controller would.
func offloadingIn(t *testing.T, ns string, spec offloadingv1alpha1.NamespaceOffloadingSpec, phase offloadingv1alpha1.OffloadingPhase) *offloadingv1alpha1.NamespaceOffloading {
	t.Helper()
	return offloadingWithStatus(t, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns}, Spec: spec,
		Status: offloadingv1alpha1.NamespaceOffloadingStatus{OffloadingPhase: phase}})
}

// offloadingWithStatus creates off, named offloading, and then writes its
// status, as the offloading controller would.
func offloadingWithStatus(t *testing.T, off *offloadingv1alpha1.NamespaceOffloading) *offloadingv1alpha1.NamespaceOffloading {
	t.Helper()
	g := NewWithT(t)
	off = off.DeepCopy()
	off.Name = offloadingv1alpha1.NamespaceOffloadingName
	status := off.Status
	g.Eventually(func() error { return home.Client.Create(context.Background(), off) }).WithTimeout(30 * time.Second).Should(Succeed())
	if status.OffloadingPhase != "" || len(status.RemoteNamespacesConditions) > 0 {
		off.Status = status
		g.Expect(home.Client.Status().Update(context.Background(), off)).To(Succeed())
	}
	return off
}

// providerConditions are the conditions of a selected provider whose twin
// is in the state the Ready condition says.
func providerConditions(ready metav1.ConditionStatus, reason, message string) offloadingv1alpha1.RemoteNamespaceConditions {
	now := metav1.Now()
	return offloadingv1alpha1.RemoteNamespaceConditions{
		{Type: offloadingv1alpha1.OffloadingRequiredCondition, Status: metav1.ConditionTrue, Reason: offloadingv1alpha1.ClusterSelectedReason,
			Message: "the cluster selector selects this provider", LastTransitionTime: now},
		{Type: offloadingv1alpha1.RemoteNamespaceReadyCondition, Status: ready, Reason: reason, Message: message, LastTransitionTime: now},
	}
}

// podWebhookCalls is how many requests the pod webhook has served in this
// process, as controller-runtime counts them. The count is exact once a
// request returns: the counter moves when the handler returns, before its
// response (a few hundred bytes, buffered until then) is sent.
func podWebhookCalls(g Gomega) float64 {
	families, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
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

func pod(ns string, affinity *corev1.NodeSelector) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "app-"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}}
	if affinity != nil {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: affinity}}
	}
	return p
}

// create creates the pod (only as a dry run when dryRun) and returns what
// the API server stored, webhook changes included.
func create(g Gomega, p *corev1.Pod, dryRun bool) *corev1.Pod {
	p = p.DeepCopy()
	var opts []client.CreateOption
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	g.Expect(home.Client.Create(context.Background(), p, opts...)).To(Succeed())
	return p
}

// warningClient is a client of home that keeps the API server's warnings.
type warningClient struct {
	client.Client
	mu       sync.Mutex
	warnings []string
}

func newWarningClient(t *testing.T) *warningClient {
	w := &warningClient{}
	cfg := rest.CopyConfig(home.Config)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: home.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	w.Client = c
	return w
}

func (w *warningClient) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningClient) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	return out
}

// servedSerial is the serial number of the certificate the server presents.
func servedSerial(g Gomega, addr string) string {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the certificate
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}
