package crash

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

// suite names the artifacts folder: _artifacts/crash/.
const suite = "crash"

var full = flag.Bool("full", false, "Kill the home manager at every kill point of two offload cycles ('make chaos'), not at a few points of one ('make test').")

var ctx = context.Background()

func TestMain(m *testing.M) {
	flag.Parse()
	for _, tool := range []string{"kwokctl", "kwok", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kubectl", "stretchctl", "stretch-controller-manager"} {
		if _, err := machine.Binary(tool); err != nil {
			fmt.Fprintf(os.Stderr, "crash: %v (stretchctl and stretch-controller-manager come from 'make build')\n", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(2 * time.Minute)
	g.SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	return g
}

// providerName is the provider's cluster name, so its RemoteCluster's.
const providerName = "provider"

// stretch is a home cluster peered with one provider, each running
// bin/stretch-controller-manager, on kwokctl clusters with one kwok node
// each (pods that come home run on home's).
type stretch struct {
	t              *testing.T
	home, provider *kwok.Cluster
	homeID         string
	// manager is the home manager running now.
	manager *testenv.ManagerProcess
	// remember holds what observe saw of the namespace under test.
	remember remembered
}

// setUp starts, installs and peers the clusters; everything stops when t ends.
func setUp(t *testing.T) *stretch {
	g := newG(t)
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: 1}, "home", providerName)
	s := &stretch{t: t, home: clusters[0], provider: clusters[1]}
	for name, c := range map[string]*kwok.Cluster{"home": s.home, providerName: s.provider} {
		_, err := s.stretchctl("install", "--out-of-cluster", "--kubeconfig", c.Kubeconfig, "--cluster-name", name)
		g.Expect(err).NotTo(HaveOccurred())
	}
	s.manager = testenv.RunManager(t, suite, s.home, false)
	testenv.RunManager(t, suite, s.provider, false)
	_, err := s.stretchctl("peer", "--kubeconfig", s.home.Kubeconfig, "--remote-kubeconfig", s.provider.Kubeconfig, "--wait", "--timeout", "2m")
	g.Expect(err).NotTo(HaveOccurred())
	id, err := identity.Load(ctx, s.home.Client)
	g.Expect(err).NotTo(HaveOccurred())
	s.homeID = id.ID
	return s
}

// stretchctl runs bin/stretchctl, logs its command line and output, and
// returns the output (stdout and stderr) and its error.
func (s *stretch) stretchctl(args ...string) (string, error) {
	s.t.Helper()
	bin, err := machine.Binary("stretchctl")
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(cctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	s.t.Logf("$ stretchctl %s\n%s", strings.Join(args, " "), out.String())
	if err != nil {
		err = fmt.Errorf("stretchctl %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

// killHome SIGKILLs the home manager and starts another at once, as a
// Deployment restarts a crashed pod. The dead manager's leader Lease is
// deleted: waiting out its expiry (test/faults covers failover) would only
// add 15 s to every kill.
func (s *stretch) killHome(g *WithT) {
	s.manager.Kill()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: "stretch-controller-manager"}}
	g.Expect(client.IgnoreNotFound(s.home.Client.Delete(ctx, lease))).To(Succeed())
	s.manager = testenv.RunManager(s.t, suite, s.home, false)
}

// podReady reports whether p has the condition Ready=True.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
