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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/controller/remotecluster"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
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
	steps, perStep := []int{1, 2}, 3
	if *full {
		steps, perStep = parseCounts(t, *providerCounts), *latencyNamespaces
	}
	names := []string{"home"}
	for i := range steps[len(steps)-1] {
		names = append(names, fmt.Sprintf("provider-%d", i+1))
	}
	// Namespaces only, no pod: etcd and an API server per cluster, so
	// that 21 clusters fit on one machine.
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{DisableQPSLimits: true, ControlPlaneOnly: true}, names...)
	home, providers := clusters[0], clusters[1:]
	r.OffloadProviders = len(providers)
	managers := installStretch(t, clusters, names)

	peered := 0
	var offloaded []string
	homeManager := managers[0]
	ready := watchOffloadings(t, home)
	for _, p := range steps {
		row := latencyRow{Providers: p, Namespaces: perStep, Extended: len(offloaded)}
		for ; peered < p; peered++ {
			// Once the provider's own manager has opened its watches.
			before := stableWatches(t, providers[peered])
			start := time.Now()
			peer(t, home, providers[peered])
			row.Peering = append(row.Peering, time.Since(start))
			// The watches the peering opened on the new provider, once the
			// virtual node is Ready and they stopped changing (its kubelet
			// watches only busy twins).
			row.Watches = append(row.Watches, stableWatches(t, providers[peered])-before)
		}
		// The empty selector selects every provider: the namespaces already
		// offloaded get twins on the new ones. Measured on its own, and
		// waited for, so that it does not land on the first namespaces
		// below (it did: 11.7 s for the first one at 4 providers).
		start := time.Now()
		ready.wait(t, offloaded, p)
		row.Extension = time.Since(start)
		// The home manager with p providers and the namespaces so far.
		var err error
		row.RSS, err = procStatus(homeManager.PID, "VmRSS")
		g.Expect(err).NotTo(HaveOccurred())
		row.Goroutines, err = testenv.CounterSum(context.Background(), homeManager.MetricsURL, "go_goroutines")
		g.Expect(err).NotTo(HaveOccurred())
		// What its peers cost it at rest, with nothing being offloaded: a
		// window of three probe intervals, so that each peer's probes and
		// lease renewals fall in it.
		row.IdleWindow = time.Second
		if *full {
			row.IdleWindow = 3 * remotecluster.DefaultProbeInterval
		}
		cpu := cpuOf(t, homeManager.PID)
		time.Sleep(row.IdleWindow)
		row.IdleCPU = cpuOf(t, homeManager.PID) - cpu
		busy, cpu := startBusy(t), cpuOf(t, homeManager.PID)
		for i := range perStep {
			ns := fmt.Sprintf("latency-%d-%d", p, i)
			g.Expect(home.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
			start := time.Now()
			g.Expect(home.Client.Create(context.Background(), &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "offloading"}})).To(Succeed())
			ready.wait(t, []string{ns}, p)
			row.Stretch = append(row.Stretch, time.Since(start))
			offloaded = append(offloaded, ns)
			// In order, so that a tail can be placed.
			t.Logf("offload latency, %d providers, namespace %d: %v", p, i, row.Stretch[i].Round(time.Millisecond))

			start = time.Now()
			createDirectly(t, providers[:p], []string{fmt.Sprintf("direct-%d-%d", p, i)})
			row.Direct = append(row.Direct, time.Since(start))
		}
		row.CPUBusy, row.OffloadCPU = busy.end(t), cpuOf(t, homeManager.PID)-cpu
		t.Logf("offload latency, %d providers: %d namespaces already offloaded extended to the new providers in %v; the machine's CPUs %.0f%% busy meanwhile", p, row.Extended, row.Extension.Round(time.Millisecond), 100*row.CPUBusy)
		r.Latency = append(r.Latency, row)
	}
}

// bulkOffloads offloads N namespaces at once, for each N of -bulk, from a
// home to 2 providers of their own, then writes the same offloads by design
// only, Stretch stopped. It has clusters of its own: beside the offload
// latency's 20 providers, their idle managers ran during Stretch's offloads
// and not during the design baseline's, and the home manager had 20 peers.
func bulkOffloads(t *testing.T, r *report) {
	bulks := []int{2, 4}
	if *full {
		bulks = parseCounts(t, *bulk)
	}
	names := []string{"home", "provider-1", "provider-2"}
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{DisableQPSLimits: true, ControlPlaneOnly: true}, names...)
	home, providers := clusters[0], clusters[1:]
	managers := installStretch(t, clusters, names)
	for _, p := range providers {
		peer(t, home, p)
	}
	ready := watchOffloadings(t, home)
	// The empty selector would do as well: both providers are selected by
	// name, as a user sending namespaces to some providers of many would.
	selector := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
		Key: wellknown.RemoteClusterNameLabel, Operator: corev1.NodeSelectorOpIn, Values: names[1:],
	}}}}}
	for _, size := range bulks {
		r.Bulk = append(r.Bulk, bulkOffload(t, home, ready, managers, providers, selector, size))
	}
	// The same offloads by design only, Stretch stopped (the last use of
	// these clusters).
	stopStretch(t, managers, clusters)
	for i, size := range bulks {
		r.Bulk[i].Design, r.Bulk[i].DesignWrites = designBaseline(t, home, providers, size)
	}
}

// bulkOffload offloads size new namespaces at once to the providers selector
// picks, and creates the same twins on providers directly. managers are the
// home manager and the providers'.
func bulkOffload(t *testing.T, home *kwok.Cluster, ready *offloadings, managers []*testenv.ManagerProcess, providers []*kwok.Cluster, selector *corev1.NodeSelector, size int) bulkRow {
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
	clusters := append([]*kwok.Cluster{home}, providers...)
	before, err := testenv.UsageOf(homeManager.PID)
	g.Expect(err).NotTo(HaveOccurred())
	rss := startRSS(homeManager.PID, false)
	failedBefore := failedReconciles(g, managers)
	writesBefore := apiWrites(g, clusters)
	rssBefore, err := procStatus(homeManager.PID, "VmRSS")
	g.Expect(err).NotTo(HaveOccurred())
	cpuBefore := cpuByProcess(t, home, providers, managers)
	start := time.Now()
	inParallel(t, nss, func(ns string) error {
		return home.Client.Create(context.Background(), &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "offloading"},
			Spec: offloadingv1alpha1.NamespaceOffloadingSpec{ClusterSelector: selector}})
	})
	ready.wait(t, nss, len(providers))
	row := bulkRow{Namespaces: size, Stretch: time.Since(start)}
	t.Logf("bulk offload of %d namespaces to %d providers: Ready in %v", size, len(providers), row.Stretch.Round(time.Millisecond))
	row.CPUByProcess = map[string]time.Duration{}
	for name, cpu := range cpuByProcess(t, home, providers, managers) {
		row.CPUByProcess[name] = cpu - cpuBefore[name]
	}
	rssAfter, err := procStatus(homeManager.PID, "VmRSS")
	g.Expect(err).NotTo(HaveOccurred())
	row.RSSGrowth = rssAfter - rssBefore
	after, err := testenv.UsageOf(homeManager.PID)
	g.Expect(err).NotTo(HaveOccurred())
	row.CPU = after.CPU - before.CPU
	row.PeakRSS, err = rss.end()
	g.Expect(err).NotTo(HaveOccurred(), "home manager's peak RSS during the bulk offload of %d namespaces", size)
	row.FailedReconciles = failedReconciles(g, managers) - failedBefore
	row.Writes = writesSince(apiWrites(g, clusters), writesBefore)
	writesBefore = apiWrites(g, clusters)
	start = time.Now()
	createDirectly(t, providers, direct)
	row.Direct = time.Since(start)
	row.DirectWrites = writesSince(apiWrites(g, clusters), writesBefore)
	return row
}

// cpuByProcess returns the CPU time used so far by the processes that do
// the work of an offload: the API servers and etcds of home and of the
// providers (summed), the home manager and the providers' managers
// (summed), by name.
func cpuByProcess(t *testing.T, home *kwok.Cluster, providers []*kwok.Cluster, managers []*testenv.ManagerProcess) map[string]time.Duration {
	out := map[string]time.Duration{}
	add := func(name string, pid int) { out[name] += cpuOf(t, pid) }
	for _, c := range append([]*kwok.Cluster{home}, providers...) {
		side := "providers'"
		if c == home {
			side = "home"
		}
		for component, pid := range c.PIDs() {
			add(side+" "+component, pid)
		}
	}
	add("home manager", managers[0].PID)
	for _, m := range managers[1:] {
		add("providers' managers", m.PID)
	}
	return out
}

// stableWatches returns the watches c's API server serves, once the count
// read twice a second apart is the same: managers open theirs over the
// seconds after they start (on the first provider peered, an early read
// counted 18 watches where the peering opened 2).
func stableWatches(t *testing.T, c *kwok.Cluster) int64 {
	last := int64(-1)
	var n int64
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		if n, err = testenv.APIWatches(ctx, c.Config); err != nil {
			return false, err
		}
		done := n == last
		last = n
		return done, nil
	})
	if err != nil {
		t.Fatalf("the watches of cluster %s did not settle in a minute (last count %d): %v", c.Name, n, err)
	}
	return n
}

// apiWrites returns the writes each API server of clusters served so far.
func apiWrites(g Gomega, clusters []*kwok.Cluster) []testenv.Writes {
	w := make([]testenv.Writes, len(clusters))
	for i, c := range clusters {
		var err error
		w[i], err = testenv.APIWrites(context.Background(), c.Config)
		g.Expect(err).NotTo(HaveOccurred())
	}
	return w
}

// writesSince returns, cluster by cluster, the writes of after not in before.
func writesSince(after, before []testenv.Writes) []testenv.Writes {
	d := make([]testenv.Writes, len(after))
	for i := range after {
		d[i] = after[i].Since(before[i])
	}
	return d
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

// offloadings follows the home cluster's NamespaceOffloadings through one
// watch, so that waiting for thousands of them costs the API servers
// nothing: listing them all every 20 ms, as the first version did, cost
// the home API server more as the bulk grew than the offloads did.
type offloadings struct {
	mu sync.Mutex
	// readyOn is, by namespace, how many providers have a Ready twin when
	// the phase is Ready, else -1.
	readyOn map[string]int
	// changed is closed, and replaced, at every change.
	changed chan struct{}
}

// watchOffloadings starts following home's NamespaceOffloadings until t ends.
func watchOffloadings(t *testing.T, home *kwok.Cluster) *offloadings {
	o := &offloadings{readyOn: map[string]int{}, changed: make(chan struct{})}
	testenv.SetLogger()
	c, err := crcache.New(home.Config, crcache.Options{Scheme: home.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	inf, err := c.GetInformer(ctx, &offloadingv1alpha1.NamespaceOffloading{}, crcache.BlockUntilSynced(false))
	if err != nil {
		t.Fatal(err)
	}
	seen := func(obj any) {
		off, ok := obj.(*offloadingv1alpha1.NamespaceOffloading)
		if !ok {
			return
		}
		n := -1
		if off.Status.OffloadingPhase == offloadingv1alpha1.ReadyPhase {
			n = 0
			for _, conds := range off.Status.RemoteNamespacesConditions {
				if meta.IsStatusConditionTrue(conds, offloadingv1alpha1.RemoteNamespaceReadyCondition) {
					n++
				}
			}
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		o.readyOn[off.Namespace] = n
		close(o.changed)
		o.changed = make(chan struct{})
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: seen, UpdateFunc: func(_, obj any) { seen(obj) }}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the NamespaceOffloadings of the home cluster could not be listed")
	}
	return o
}

// wait waits until the NamespaceOffloadings of nss are Ready, each with its
// twin on providers providers.
func (o *offloadings) wait(t *testing.T, nss []string, providers int) {
	pending := slices.Clone(nss)
	timeout := time.After(15 * time.Minute)
	for {
		o.mu.Lock()
		pending = slices.DeleteFunc(pending, func(ns string) bool { return o.readyOn[ns] == providers })
		changed := o.changed
		o.mu.Unlock()
		if len(pending) == 0 {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%d NamespaceOffloadings not Ready with a twin on %d providers after 15 minutes, e.g. %s", len(pending), providers, pending[0])
		}
	}
}

// createDirectly creates namespaces nss on every provider, as a client
// would, bulkWorkers at a time.
func createDirectly(t *testing.T, providers []*kwok.Cluster, nss []string) {
	type job struct {
		c  *kwok.Cluster
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
