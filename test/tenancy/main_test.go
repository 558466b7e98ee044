package tenancy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/cli/install"
	"stretch.dev/stretch/internal/cli/peer"
	"stretch.dev/stretch/internal/controller/tenant"
	"stretch.dev/stretch/internal/testenv"
)

// Cluster IDs of the home clusters that share the provider. homeA and homeB
// hold only credentials (what 'stretchctl peer' issues on the provider);
// homeRun is the ID of the home API server, on which Stretch runs.
const (
	homeA   = "a1a1a1a1-0000-4000-8000-00000000000a"
	homeB   = "b2b2b2b2-0000-4000-8000-00000000000b"
	homeRun = "c3c3c3c3-0000-4000-8000-00000000000c"
)

var (
	home, provider *testenv.APIServer

	installOnce sync.Once
	installErr  error
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { home, provider = s[0], s[1] }, "home", "provider")
}

func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	return g
}

// installProvider runs 'stretchctl install' on the provider once: its
// identity, the controller-manager's RBAC and the role a home cluster gets in
// its twins, as in production.
func installProvider(t *testing.T) {
	t.Helper()
	installOnce.Do(func() {
		_, installErr = install.Install(context.Background(), provider.Client, install.Options{ClusterName: "provider"}, io.Discard)
	})
	if installErr != nil {
		t.Fatalf("installing Stretch on the provider: %v", installErr)
	}
}

// startProviderSide runs the provider's tenant controller, and the namespace
// finalizer envtest lacks, until the test ends.
func startProviderSide(t *testing.T) {
	t.Helper()
	installProvider(t)
	provider.FinalizeNamespaces(t)
	testenv.StartControllers(t, provider.Config, func(mgr ctrl.Manager) error {
		return (&tenant.Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("tenant")}).SetupWithManager(mgr)
	})
}

// issue issues the credentials of home cluster homeID on the provider, as
// 'stretchctl peer' does, and returns the REST config a home cluster builds
// from them: the provider's address and CA and the bearer token, nothing else.
func issue(t *testing.T, homeID string) *rest.Config {
	t.Helper()
	creds, err := peer.IssueCredentials(context.Background(), provider.Client, provider.Config, homeID, io.Discard)
	if err != nil {
		t.Fatalf("issuing credentials for %s: %v", homeID, err)
	}
	kubeconfig, err := creds.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BearerToken == "" || len(cfg.CertData) > 0 || cfg.Impersonate.UserName != "" {
		t.Fatalf("the issued kubeconfig should authenticate with its token only: %+v", cfg)
	}
	cfg.QPS = -1
	cfg.WarningHandler = rest.NoWarnings{}
	return cfg
}

func clientFor(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: provider.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// requestTwin writes, with client c, a RemoteNamespace into the tenant
// namespace of homeID, as that home cluster's offloading controller does.
func requestTwin(g Gomega, c client.Client, homeID, name, homeNamespace, twin string) *peeringv1alpha1.RemoteNamespace {
	rn := &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: name},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: homeNamespace, HomeClusterID: homeID, RemoteNamespaceName: twin},
	}
	g.ExpectWithOffset(1, c.Create(context.Background(), rn)).To(Succeed())
	return rn
}

// expectStatus waits for the provider's answer to a request.
func expectStatus(g Gomega, rn *peeringv1alpha1.RemoteNamespace, phase peeringv1alpha1.RemoteNamespacePhase, reason string, message ...string) {
	g.EventuallyWithOffset(1, func(g Gomega) {
		got := &peeringv1alpha1.RemoteNamespace{}
		g.Expect(provider.Client.Get(context.Background(), client.ObjectKeyFromObject(rn), got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(phase), "%s/%s: %s", got.Namespace, got.Name, got.Status.Message)
		g.Expect(got.Status.Reason).To(Equal(reason))
		for _, m := range message {
			g.Expect(got.Status.Message).To(ContainSubstring(m))
		}
	}).Should(Succeed())
}

// snapshot is the JSON of objects as the API server serves them, resource
// version included: two equal snapshots mean nothing was written.
type snapshot map[string]string

func take(g Gomega, c client.Client, objs ...client.Object) snapshot {
	s := snapshot{}
	for _, o := range objs {
		g.ExpectWithOffset(1, c.Get(context.Background(), client.ObjectKeyFromObject(o), o)).To(Succeed())
		data, err := json.Marshal(o)
		g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
		s[keyOf(o)] = string(data)
	}
	return s
}

func keyOf(o client.Object) string {
	return fmt.Sprintf("%T %s", o, client.ObjectKeyFromObject(o))
}

// podIn is a minimal pod.
func podIn(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
	}
}

// expectUnchanged fails with each object of before that is not the same in
// after.
func expectUnchanged(g Gomega, before, after snapshot) {
	for k, v := range before {
		g.ExpectWithOffset(1, after[k]).To(Equal(v), "%s changed; it was\n%s", k, v)
	}
}
