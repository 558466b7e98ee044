package manager_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/manager"
	"stretch.dev/stretch/internal/testenv"
)

var cluster *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { cluster = s[0] }, "home")
}

func TestRunInstalled(t *testing.T) {
	g := newG(t)
	ctx := t.Context()
	installIdentity(t)

	opts, probes, metricsURL := testOptions(t)
	run := start(t, opts)

	expectGet(g, probes+"/healthz", http.StatusOK, "ok")
	expectGet(g, probes+"/readyz", http.StatusOK, "ok")
	expectGet(g, metricsURL, http.StatusOK, `stretch_build_info{version="dev"} 1`)

	lease := &coordinationv1.Lease{}
	leaseKey := types.NamespacedName{Namespace: wellknown.SystemNamespace, Name: "stretch-controller-manager"}
	g.Eventually(func(g Gomega) {
		g.Expect(cluster.Client.Get(ctx, leaseKey, lease)).To(Succeed())
		g.Expect(lease.Spec.HolderIdentity).To(HaveValue(Not(BeEmpty())))
	}).Should(Succeed())

	run.cancel()
	g.Eventually(run.done).Should(BeClosed())
	g.Expect(run.err).NotTo(HaveOccurred())
	// Released on cancel: the next replica need not wait out the lease.
	g.Expect(cluster.Client.Get(ctx, leaseKey, lease)).To(Succeed())
	g.Expect(lease.Spec.HolderIdentity).To(Or(BeNil(), HaveValue(BeEmpty())))
}

func TestRunNotInstalled(t *testing.T) {
	g := newG(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: identity.Key.Namespace, Name: identity.Key.Name}}
	g.Expect(client.IgnoreNotFound(cluster.Client.Delete(t.Context(), cm))).To(Succeed())

	opts, probes, _ := testOptions(t)
	opts.LeaderElect = false // the Lease namespace may not exist either
	logs := &testenv.SyncBuffer{}
	opts.Zap.DestWriter = logs
	run := start(t, opts)

	expectGet(g, probes+"/healthz", http.StatusOK, "ok")
	expectGet(g, probes+"/readyz", http.StatusInternalServerError, "[-]cluster-identity failed")
	g.Eventually(logs.String).Should(ContainSubstring("stretchctl install"))

	run.cancel()
	g.Eventually(run.done).Should(BeClosed())
	g.Expect(run.err).NotTo(HaveOccurred())
}

// With --cluster-name, the manager gives its cluster the identity before it
// starts (no 'stretchctl install' needed), keeps its ID when started again
// with other labels, and refuses to start under another name.
func TestRunEnsuresIdentity(t *testing.T) {
	g := newG(t)
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wellknown.SystemNamespace}}
	if err := cluster.Client.Create(ctx, ns); !apierrors.IsAlreadyExists(err) {
		g.Expect(err).NotTo(HaveOccurred())
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: identity.Key.Namespace, Name: identity.Key.Name}}
	g.Expect(client.IgnoreNotFound(cluster.Client.Delete(ctx, cm))).To(Succeed())
	t.Cleanup(func() { g.Expect(client.IgnoreNotFound(cluster.Client.Delete(context.Background(), cm))).To(Succeed()) })

	runUntilReady := func(name string, labels map[string]string) identity.Identity {
		opts, probes, _ := testOptions(t)
		opts.LeaderElect = false
		opts.ClusterName, opts.ClusterLabels = name, labels
		run := start(t, opts)
		expectGet(g, probes+"/readyz", http.StatusOK, "ok")
		run.cancel()
		g.Eventually(run.done).Should(BeClosed())
		g.Expect(run.err).NotTo(HaveOccurred())
		id, err := identity.Load(ctx, cluster.Client)
		g.Expect(err).NotTo(HaveOccurred())
		return id
	}

	first := runUntilReady("home", map[string]string{"region": "eu"})
	g.Expect(first.Name).To(Equal("home"))
	g.Expect(first.Labels).To(Equal(map[string]string{"region": "eu"}))

	// A helm upgrade or re-install: same name, new labels, same ID.
	again := runUntilReady("home", map[string]string{"region": "eu", "tier": "gold"})
	g.Expect(again.ID).To(Equal(first.ID))
	g.Expect(again.Labels).To(Equal(map[string]string{"region": "eu", "tier": "gold"}))

	// Another name: Run fails before starting anything, naming the fix.
	opts, _, _ := testOptions(t)
	opts.ClusterName = "other"
	err := manager.Run(ctx, opts)
	g.Expect(err).To(MatchError(ContainSubstring(`already installed as "home"`)))
	g.Expect(err).To(MatchError(ContainSubstring("set the value clusterName=home (or pass --cluster-name home)")))
	id, err := identity.Load(ctx, cluster.Client)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(id).To(Equal(again), "the identity is unchanged")
}

func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	return g
}

// installIdentity does what 'stretchctl install' does to the identity, and
// removes it again after the test.
func installIdentity(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wellknown.SystemNamespace}}
	if err := cluster.Client.Create(t.Context(), ns); !apierrors.IsAlreadyExists(err) {
		g.Expect(err).NotTo(HaveOccurred())
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: identity.Key.Namespace, Name: identity.Key.Name},
		Data:       map[string]string{"clusterID": uuid.NewString(), "clusterName": "home", "clusterLabels": "region: eu\n"},
	}
	g.Expect(cluster.Client.Create(t.Context(), cm)).To(Succeed())
	t.Cleanup(func() {
		g.Expect(client.IgnoreNotFound(cluster.Client.Delete(context.Background(), cm))).To(Succeed())
	})
}

// testOptions returns the options of a manager for cluster on free local
// ports, with the URL of its probes and of its /metrics.
func testOptions(t *testing.T) (opts manager.Options, probes, metricsURL string) {
	opts = manager.DefaultOptions()
	opts.Kubeconfig = cluster.Kubeconfig
	opts.RunsAgainInProcess = true
	opts.HealthProbeBindAddress = testenv.FreeAddr(t)
	opts.MetricsBindAddress = testenv.FreeAddr(t)
	opts.WebhookBindAddress = testenv.FreeAddr(t)
	opts.KubeletBindAddress = testenv.FreeAddr(t)
	return opts, "http://" + opts.HealthProbeBindAddress, "http://" + opts.MetricsBindAddress + "/metrics"
}

// running is a manager.Run in the background; err is set once done is closed.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start runs manager.Run until the test ends or cancel is called; the test
// waits for Run to return, so nothing logs after it.
func start(t *testing.T, opts manager.Options) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = manager.Run(ctx, opts)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// expectGet waits until GET url answers code with a body containing body.
func expectGet(g *WithT, url string, code int, body string) {
	g.Eventually(func(g Gomega) {
		resp, err := http.Get(url)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.StatusCode).To(Equal(code), "body: %s", b)
		g.Expect(string(b)).To(ContainSubstring(body))
	}).Should(Succeed(), "GET %s", url)
}
