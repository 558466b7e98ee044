package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/testenv"
)

// bulkWorkers is how many creations run at once in the bulk runs, for
// Stretch and for the baseline alike.
const bulkWorkers = 16

// offloadLatency measures NamespaceOffloading created → Ready for 1, 2 and
// 4 providers, one namespace at a time, against a client creating the same
// twin namespaces on the providers directly; then a bulk offload of many
// namespaces to 2 providers at once against the same twins created directly.
func offloadLatency(t *testing.T, r *report) {
	g := NewWithT(t)
	steps, perStep, bulks := []int{1, 2}, 3, []int{2, 4}
	if *full {
		steps, perStep, bulks = []int{1, 2, 4}, 50, parseCounts(t, *bulk)
	}
	names := []string{"home"}
	for i := range steps[len(steps)-1] {
		names = append(names, fmt.Sprintf("provider-%d", i+1))
	}
	clusters := testenv.StartKwokClustersForTest(t, suite, testenv.KwokOptions{DisableQPSLimits: true}, names...)
	home, providers := clusters[0], clusters[1:]
	stretchctl := testenv.Command(t, "stretchctl")
	var managers []*testenv.ManagerProcess
	for i, c := range clusters {
		g.Expect(stretchctl("install", "--kubeconfig", c.Kubeconfig, "--cluster-name", names[i])).To(Succeed())
		managers = append(managers, testenv.RunManager(t, suite, c, true))
	}

	peered := 0
	for _, p := range steps {
		for ; peered < p; peered++ {
			g.Expect(stretchctl("peer", "--kubeconfig", home.Kubeconfig, "--remote-kubeconfig", providers[peered].Kubeconfig, "--wait", "--timeout", "2m")).To(Succeed())
		}
		var stretch, direct []time.Duration
		for i := range perStep {
			ns := fmt.Sprintf("latency-%d-%d", p, i)
			g.Expect(home.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
			start := time.Now()
			g.Expect(home.Client.Create(context.Background(), &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "offloading"}})).To(Succeed())
			waitReady(t, home, []string{ns})
			stretch = append(stretch, time.Since(start))
			// In order, so that a tail can be placed (right after a peering?).
			t.Logf("offload latency, %d providers, namespace %d: %v", p, i, stretch[i].Round(time.Millisecond))

			start = time.Now()
			createDirectly(t, providers[:p], []string{fmt.Sprintf("direct-%d-%d", p, i)})
			direct = append(direct, time.Since(start))
		}
		r.Latency = append(r.Latency, latencyRow{Providers: p, Namespaces: perStep, Stretch: stretch, Direct: direct})
	}

	// Bulk: to the first two providers, selected by name.
	selector := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
		Key: peeringv1alpha1.RemoteClusterNameLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{names[1], names[2]},
	}}}}}
	for _, size := range bulks {
		r.Bulk = append(r.Bulk, bulkOffload(t, home, managers[:3], providers[:2], selector, size))
	}
}

// bulkOffload offloads size new namespaces at once to the providers selector
// picks, and creates the same twins on providers directly. managers are the
// home manager and the providers'.
func bulkOffload(t *testing.T, home *testenv.KwokCluster, managers []*testenv.ManagerProcess, providers []*testenv.KwokCluster, selector *corev1.NodeSelector, size int) bulkRow {
	homeManager := managers[0]
	g := NewWithT(t)
	var nss, direct []string
	for i := range size {
		nss = append(nss, fmt.Sprintf("bulk-%d-%d", size, i))
		direct = append(direct, fmt.Sprintf("bulk-direct-%d-%d", size, i))
	}
	inParallel(t, nss, func(ns string) error {
		return home.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	before, err := testenv.UsageOf(homeManager.PID)
	g.Expect(err).NotTo(HaveOccurred())
	failedBefore := failedReconciles(g, managers)
	start := time.Now()
	inParallel(t, nss, func(ns string) error {
		return home.Client.Create(context.Background(), &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "offloading"},
			Spec: offloadingv1alpha1.NamespaceOffloadingSpec{ClusterSelector: selector}})
	})
	waitReady(t, home, nss)
	row := bulkRow{Namespaces: size, Stretch: time.Since(start)}
	after, err := testenv.UsageOf(homeManager.PID)
	g.Expect(err).NotTo(HaveOccurred())
	row.CPU, row.PeakRSS = after.CPU-before.CPU, after.PeakRSS
	row.FailedReconciles = failedReconciles(g, managers) - failedBefore
	start = time.Now()
	createDirectly(t, providers, direct)
	row.Direct = time.Since(start)
	return row
}

// failedReconciles sums the reconciles that returned an error, and were
// retried, in managers.
func failedReconciles(g Gomega, managers []*testenv.ManagerProcess) int64 {
	var n int64
	for _, m := range managers {
		c, err := testenv.CounterSum(context.Background(), m.MetricsURL, "controller_runtime_reconcile_errors_total")
		g.Expect(err).NotTo(HaveOccurred())
		n += c
	}
	return n
}

// waitReady waits until the NamespaceOffloadings of nss are Ready.
func waitReady(t *testing.T, home *testenv.KwokCluster, nss []string) {
	pending := slices.Clone(nss)
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
		if len(pending) > 1 {
			list := &offloadingv1alpha1.NamespaceOffloadingList{}
			if err := home.Client.List(ctx, list); err != nil {
				return false, nil
			}
			ready := map[string]bool{}
			for _, o := range list.Items {
				ready[o.Namespace] = o.Status.OffloadingPhase == offloadingv1alpha1.ReadyPhase
			}
			pending = slices.DeleteFunc(pending, func(ns string) bool { return ready[ns] })
			return len(pending) == 0, nil
		}
		o := &offloadingv1alpha1.NamespaceOffloading{}
		if err := home.Client.Get(ctx, client.ObjectKey{Namespace: pending[0], Name: "offloading"}, o); err != nil {
			return false, nil
		}
		return o.Status.OffloadingPhase == offloadingv1alpha1.ReadyPhase, nil
	})
	if err != nil {
		t.Fatalf("%d NamespaceOffloadings not Ready after 15 minutes, e.g. %s", len(pending), pending[0])
	}
}

// createDirectly creates namespaces nss on every provider, as a client
// would, bulkWorkers at a time.
func createDirectly(t *testing.T, providers []*testenv.KwokCluster, nss []string) {
	type job struct {
		c  *testenv.KwokCluster
		ns string
	}
	var jobs []job
	for _, ns := range nss {
		for _, c := range providers {
			jobs = append(jobs, job{c, ns})
		}
	}
	inParallel(t, jobs, func(j job) error {
		return j.c.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: j.ns}})
	})
}

// inParallel runs f on every item, bulkWorkers at a time; an error fails t.
func inParallel[T any](t *testing.T, items []T, f func(T) error) {
	work := make(chan T)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range bulkWorkers {
		wg.Go(func() {
			for it := range work {
				if err := f(it); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
