package bench

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/controller/remotecluster"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

const suite = "bench"

var (
	full   = flag.Bool("full", false, "Run the full benchmark (counts 100, 1000, 3000; 3 repetitions) and write -out.")
	out    = flag.String("out", "", "Where the full run writes its report (BENCHMARKS.md); its measurements are kept next to it, with .json, and its plot with .png.")
	counts = flag.String("counts", "100,1000,3000", "Pod counts of the full run.")
	reps   = flag.Int("reps", 3, "Repetitions of each measurement in the full run.")
	// pinnedCounts and pinnedReps are the bursts on CPUs of their own: more
	// repetitions than the shared bursts, whose spread from one repetition
	// to the next is as large as the differences they measure.
	pinnedCounts = flag.String("pinned-counts", "100,1000,3000", "Pod counts of the full run's bursts with each cluster on a CPU of its own.")
	pinnedReps   = flag.Int("pinned-reps", 5, "Repetitions of the full run's bursts with each cluster on a CPU of its own.")
	bulk         = flag.String("bulk", "1000,2500,5000", "Namespace counts of the full run's bulk offloads.")
	// providerCounts and latencyNamespaces are the offload latency's steps.
	providerCounts    = flag.String("providers", "1,2,5,10,20", "Provider counts of the full run's offload latency (peered one after the other).")
	latencyNamespaces = flag.Int("latency-namespaces", 200, "Namespaces offloaded one at a time at each provider count of the full run.")
	// renderOnly renders the report from the measurements kept, after a
	// change of its layout, without measuring anything.
	renderOnly = flag.Bool("render-only", false, "With -out: render -out and its plot from the measurements kept next to it, and run no scenario.")
)

// TestBenchmarks runs every benchmark, each on clusters of its own. With
// -full and -out, it records each scenario that ran and succeeded as its
// section of the measurements next to -out (-out with .json), keeps the
// sections of the others as they were, and renders -out and its plot from
// them all; a failed scenario keeps its previous section and fails the run.
// The smoke run ('make test') passes neither and only logs its report.
func TestBenchmarks(t *testing.T) {
	if *renderOnly {
		render(t)
		return
	}
	write := *full && *out != ""
	if write {
		// Before hours of measurements: a file that cannot be merged into.
		if _, err := loadResults(resultsPath(*out)); err != nil {
			t.Fatal(err)
		}
	}
	run := runScenarios(t, scenarios, runStamp())
	if len(run) == 0 {
		t.Log("no scenario ran (-run matched none): nothing written")
		return
	}
	if !write {
		this := &results{Format: resultsFormat, Sections: map[string]*section{}}
		for _, o := range run {
			this.Sections[o.name] = o.section
		}
		if _, err := this.png(); err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + this.markdown())
		return
	}
	res, err := loadResults(resultsPath(*out))
	if err != nil {
		t.Fatal(err)
	}
	lines, replaced := res.merge(run)
	for _, l := range lines {
		t.Log(l)
	}
	if replaced == 0 {
		t.Logf("no scenario succeeded: %s, %s and its plot are left as they were", resultsPath(*out), *out)
		return
	}
	writeReport(t, res)
}

// render writes -out and its plot again from the measurements kept.
func render(t *testing.T) {
	if *out == "" {
		t.Fatal("-render-only needs -out, the report to render (its measurements are read from -out with .json)")
	}
	res, err := loadResults(resultsPath(*out))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sections) == 0 {
		t.Fatalf("%s holds no measurements: run make bench first", resultsPath(*out))
	}
	writeReport(t, res)
}

// writeReport publishes res: its measurements, plot and report.
func writeReport(t *testing.T, res *results) {
	data, err := res.encode()
	if err != nil {
		t.Fatal(err)
	}
	plot, err := res.png()
	if err != nil {
		t.Fatal(err)
	}
	jsonPath, pngPath, err := publish(*out, data, plot, []byte(res.markdown()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s, %s and %s", jsonPath, *out, pngPath)
}

// publish writes the measurements data next to the report out (out with
// .json), the plot (out with .png, which the report shows) and the report
// md to out: each to a temporary file in the same directory first, then
// renamed over the old one once all are written, so that a run stopped half
// way, or a failed write, leaves the last files as they were. The
// measurements are renamed first: the report and plot are rendered from
// them, so any later run renders them again. It returns the paths of the
// measurements and of the plot.
func publish(out string, data, plot, md []byte) (jsonPath, pngPath string, err error) {
	jsonPath = resultsPath(out)
	pngPath = plotPath(out)
	var temps []string
	defer func() {
		for _, tmp := range temps {
			_ = os.Remove(tmp) // gone once renamed
		}
	}()
	files := []struct {
		path string
		data []byte
	}{{jsonPath, data}, {pngPath, plot}, {out, md}}
	for _, f := range files {
		tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*.tmp")
		if err != nil {
			return "", "", fmt.Errorf("writing the benchmark report: %w (is the directory of -out %s writable?)", err, out)
		}
		temps = append(temps, tmp.Name())
		_, err = tmp.Write(f.data)
		if err == nil {
			err = tmp.Chmod(0o644)
		}
		if err2 := tmp.Close(); err == nil {
			err = err2
		}
		if err != nil {
			return "", "", fmt.Errorf("writing %s: %w; %s, %s and %s are left as they were", tmp.Name(), err, jsonPath, out, pngPath)
		}
	}
	if err := os.Rename(temps[0], jsonPath); err != nil {
		return "", "", fmt.Errorf("replacing %s: %w; %s, %s and %s are left as they were", jsonPath, err, jsonPath, out, pngPath)
	}
	// The plot before the report: if the report's rename failed after it,
	// the old report would show a new plot, the smaller harm.
	for i, f := range files[1:] {
		if err := os.Rename(temps[i+1], f.path); err != nil {
			return "", "", fmt.Errorf("replacing %s: %w; %s holds this run's measurements, %s and %s may be the last run's: the next make bench (of any scenario) renders them again", f.path, err, jsonPath, pngPath, out)
		}
	}
	return jsonPath, pngPath, nil
}

// podBurst: a Deployment of n pods until all are Ready where it is created,
// then its deletion until no pod is left.
func podBurst(t *testing.T, report *report) {
	ns, rs := []int{3}, 1
	if *full {
		ns, rs = parseCounts(t, *counts), *reps
	}
	maxPods := ns[len(ns)-1]
	// Enough kwok nodes (110 pods each) for the largest burst, on both sides.
	nodes := maxPods/100 + 1
	b := setUp(t, nodes)

	report.Counts, report.Reps, report.Nodes = ns, rs, nodes
	report.KubeVersion = serverVersion(t, b.home)
	before := b.usage(t)
	rss := startRSS(b.managers["home"].PID, false)
	for _, n := range ns {
		for rep := range rs {
			name := fmt.Sprintf("n%d-r%d", n, rep)
			t.Logf("burst of %d pods, repetition %d", n, rep+1)
			b.quiet(t)
			vanilla := b.burst(t, name, n, b.provider)
			b.quiet(t)
			dual := b.dualBurst(t, name, n)
			b.quiet(t)
			stretch := b.burst(t, name, n, b.home, b.provider)
			report.add(n, vanilla, dual, stretch)
		}
	}
	after := b.usage(t)
	peak, err := rss.end()
	if err != nil {
		t.Fatalf("home manager's peak RSS over the bursts: %v", err)
	}
	report.BurstCPU, report.BurstPeakRSS = after.CPU-before.CPU, peak

	pods := 3
	if *full {
		pods = 500
	}
	report.Admission = b.admissionLatency(t, pods)
	report.Admission.BurstPods = ns[len(ns)-1]
	report.Admission.BurstWith, report.Admission.BurstWithout = b.admissionDuringBurst(t, report.Admission.BurstPods, pods, 1)
	report.Admission.BurstWith16, report.Admission.BurstWithout16 = b.admissionDuringBurst(t, report.Admission.BurstPods, pods, bulkWorkers)
	t.Run("a home manager restart during deletion leaves no pod", func(t *testing.T) {
		g := NewWithT(t)
		n := ns[0]
		b.deploy(t, b.home, offloaded, "restart", n)
		b.waitReady(t, b.home, offloaded, "restart", n)
		g.Expect(b.home.Client.Delete(context.Background(), deployment(offloaded, "restart", n))).To(Succeed())
		// Mid-deletion: once some pods are gone at home.
		b.waitPodsBelow(t, n*3/4+1, b.home)
		b.managers["home"].Stop()
		b.managers["home"] = runManager(t, b.home)
		report.Stuck = b.waitGone(t, 2*time.Minute, b.home, b.provider)
		g.Expect(report.Stuck).To(BeZero(), "pods left after the restart")
	})
}

// pinnedBursts: the pod bursts with each cluster on a CPU of its own, as
// two machines would run them (vanilla on the provider's CPU alone). The
// order of vanilla and Stretch alternates from one repetition to the next,
// and each burst starts on a quiet machine, so that what one leaves behind
// (kwok's last deletions, events sent in the background) is not charged to
// the other.
func pinnedBursts(t *testing.T, report *report) {
	if runtime.NumCPU() < 2 {
		t.Fatalf("the bursts on CPUs of their own need 2 CPUs; this machine has %d", runtime.NumCPU())
	}
	ns, rs := []int{3}, 2
	if *full {
		ns, rs = parseCounts(t, *pinnedCounts), *pinnedReps
	}
	nodes := ns[len(ns)-1]/100 + 1
	b := setUp(t, nodes)
	report.Counts, report.Reps, report.Nodes = ns, rs, nodes
	report.KubeVersion = serverVersion(t, b.home)
	report.PinnedCPUs = [2]int{0, 1}
	b.pin(t, report.PinnedCPUs[0], report.PinnedCPUs[1])
	defer b.unpin(t)
	for _, n := range ns {
		for rep := range rs {
			name := fmt.Sprintf("pinned-n%d-r%d", n, rep)
			var vanilla, stretch measurement
			runs := []func(){
				func() { vanilla = b.burst(t, name, n, b.provider) },
				func() { stretch = b.burst(t, name, n, b.home, b.provider) },
			}
			first := "vanilla"
			if rep%2 == 1 {
				slices.Reverse(runs)
				first = "Stretch"
			}
			t.Logf("burst of %d pods on pinned CPUs, repetition %d, %s first", n, rep+1, first)
			for _, run := range runs {
				b.quiet(t)
				run()
			}
			report.addPinned(n, vanilla, stretch)
		}
	}
}

// quiet waits until neither CPU has been more than quietBusy busy for
// quietSeconds seconds in a row, or for a minute at most: a burst then
// starts without the work the previous one left. The smoke run in make
// test, beside the other packages' tests, waits 5 s at most.
func (b *bench) quiet(t *testing.T) {
	limit := time.Minute
	if !*full {
		limit = 5 * time.Second
	}
	start := time.Now()
	prev, err := machine.CPUTimes()
	if err != nil {
		t.Fatal(err)
	}
	calm := 0
	for calm < quietSeconds {
		if time.Since(start) > limit {
			t.Logf("the machine was still busy %s after the last burst: the next one starts anyway", limit)
			return
		}
		time.Sleep(time.Second)
		cur, err := machine.CPUTimes()
		if err != nil {
			t.Fatal(err)
		}
		calm++
		for i := range cur {
			if i < len(prev) && cur[i].BusySince(prev[i]) > quietBusy {
				calm = 0
			}
		}
		prev = cur
	}
}

const (
	quietBusy    = 0.15
	quietSeconds = 2
)

func parseCounts(t *testing.T, s string) []int {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n <= 0 {
			t.Fatalf("-counts %q: %q is not a positive number", s, f)
		}
		ns = append(ns, n)
	}
	return ns
}

// installStretch installs Stretch in clusters, each named after its entry
// of names, and starts their managers, in the same order.
func installStretch(t *testing.T, clusters []*kwok.Cluster, names []string) []*testenv.ManagerProcess {
	g := NewWithT(t)
	stretchctl := testenv.Command(t, "stretchctl")
	var managers []*testenv.ManagerProcess
	for i, c := range clusters {
		g.Expect(stretchctl("install", "--out-of-cluster", "--kubeconfig", c.Kubeconfig, "--cluster-name", names[i])).To(Succeed())
		managers = append(managers, runManager(t, c))
	}
	return managers
}

// peer peers home with provider, until its virtual node is Ready.
func peer(t *testing.T, home, provider *kwok.Cluster) {
	NewWithT(t).Expect(testenv.Command(t, "stretchctl")("peer", "--kubeconfig", home.Kubeconfig, "--remote-kubeconfig", provider.Kubeconfig, "--wait", "--timeout", "2m")).To(Succeed())
}

// runManager starts Stretch's manager for c with its metrics and profiler
// served, and probing providers as often as a default install does (the
// other suites probe every second, to go faster): at 20 providers, the
// probes of every second alone kept idle clusters busy.
func runManager(t *testing.T, c *kwok.Cluster) *testenv.ManagerProcess {
	return testenv.RunManager(t, suite, c, true, "--remote-cluster-probe-interval", remotecluster.DefaultProbeInterval.String())
}

// offloaded is the home namespace offloaded to the provider, strategy Remote.
const offloaded = "bench"

type bench struct {
	home, provider *kwok.Cluster
	managers       map[string]*testenv.ManagerProcess
}

// setUp starts home and one provider with nodes kwok nodes each and no QPS
// limits, installs and peers them, and offloads namespace bench.
func setUp(t *testing.T, nodes int) *bench {
	return setUpWith(t, kwok.Options{FakeNodes: nodes, DisableQPSLimits: true})
}

// setUpWith is setUp with the clusters' options opts.
func setUpWith(t *testing.T, opts kwok.Options) *bench {
	g := NewWithT(t)
	clusters := testenv.StartKwokClustersForTest(t, suite, opts, "home", "provider")
	b := &bench{home: clusters[0], provider: clusters[1]}
	managers := installStretch(t, clusters, []string{"home", "provider"})
	b.managers = map[string]*testenv.ManagerProcess{"home": managers[0], "provider": managers[1]}
	peer(t, b.home, b.provider)
	stretchctl := testenv.Command(t, "stretchctl")
	g.Expect(b.home.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: offloaded}})).To(Succeed())
	g.Expect(stretchctl("offload", "namespace", offloaded, "--kubeconfig", b.home.Kubeconfig, "--pod-offloading-strategy", "Remote", "--wait")).To(Succeed())
	for _, c := range []*kwok.Cluster{b.home, b.provider} {
		g.Expect(c.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: vanilla}})).To(Succeed())
	}
	return b
}

// pin runs every process of the home cluster and its manager on CPU home,
// and those of the provider and its manager on CPU provider.
func (b *bench) pin(t *testing.T, home, provider int) {
	for role, cpu := range map[string]int{"home": home, "provider": provider} {
		c := map[string]*kwok.Cluster{"home": b.home, "provider": b.provider}[role]
		if err := c.Pin(cpu); err != nil {
			t.Fatal(err)
		}
		if err := machine.Pin(b.managers[role].PID, cpu); err != nil {
			t.Fatalf("%s manager: %v", role, err)
		}
	}
}

// unpin lets every process of both clusters run on every CPU again.
func (b *bench) unpin(t *testing.T) {
	for role, c := range map[string]*kwok.Cluster{"home": b.home, "provider": b.provider} {
		if err := c.Pin(); err != nil {
			t.Fatal(err)
		}
		if err := machine.Pin(b.managers[role].PID); err != nil {
			t.Fatalf("%s manager: %v", role, err)
		}
	}
}

// vanilla is the namespace of the baselines, on both clusters.
const vanilla = "vanilla"

// measurement is one burst: until every pod is Ready, then until none is
// left, and the API writes per pod on each cluster.
type measurement struct {
	Ready, Deleted time.Duration
	// Writes per pod on home and on the provider.
	HomeWrites, ProviderWrites float64
	// Writes are the writes on home and on the provider, by request.
	Writes [2]testenv.Writes
	// WebhookCalls per pod, to the home manager's webhooks.
	WebhookCalls float64
	// CPU is the CPU time of every process of home and of the provider
	// (Stretch's manager included), creation and deletion together.
	CPU [2]time.Duration `json:",omitzero"`
}

// burst deploys n pods in namespace vanilla of where[0] (or in the
// offloaded namespace when where is home and the provider) and measures.
func (b *bench) burst(t *testing.T, name string, n int, where ...*kwok.Cluster) measurement {
	ns := vanilla
	if len(where) == 2 {
		ns = offloaded
	}
	before, calls, cpu := b.writes(t), b.webhookCalls(t), b.clusterCPU(t)
	start := time.Now()
	b.deploy(t, where[0], ns, name, n)
	b.waitReady(t, where[0], ns, name, n)
	m := measurement{Ready: time.Since(start)}
	after := b.writes(t)
	for i := range after {
		m.Writes[i] = after[i].Since(before[i])
	}
	m.HomeWrites = float64(m.Writes[0].Total()) / float64(n)
	m.ProviderWrites = float64(m.Writes[1].Total()) / float64(n)
	m.WebhookCalls = float64(b.webhookCalls(t)-calls) / float64(n)
	start = time.Now()
	if err := where[0].Client.Delete(context.Background(), deployment(ns, name, n)); err != nil {
		t.Fatal(err)
	}
	if left := b.waitGone(t, 10*time.Minute, where...); left > 0 {
		t.Fatalf("%d pods of %s left after 10 minutes", left, name)
	}
	m.Deleted = time.Since(start)
	for i, c := range b.clusterCPU(t) {
		m.CPU[i] = c - cpu[i]
	}
	return m
}

// clusterCPU is the CPU time so far of every process of home and of the
// provider, each with its manager.
func (b *bench) clusterCPU(t *testing.T) [2]time.Duration {
	side := func(c *kwok.Cluster, role string) time.Duration {
		return cpuOf(t, append(slices.Collect(maps.Values(c.PIDs())), b.managers[role].PID)...)
	}
	return [2]time.Duration{side(b.home, "home"), side(b.provider, "provider")}
}

// dualBurst deploys n pods on home's own nodes and n on the provider's at
// once: the API work offloading cannot avoid when both share the CPUs.
func (b *bench) dualBurst(t *testing.T, name string, n int) measurement {
	var wg sync.WaitGroup
	ms := make([]measurement, 2)
	for i, c := range []*kwok.Cluster{b.home, b.provider} {
		wg.Go(func() { ms[i] = b.burst(t, "dual-"+name, n, c) })
	}
	wg.Wait()
	return measurement{Ready: max(ms[0].Ready, ms[1].Ready), Deleted: max(ms[0].Deleted, ms[1].Deleted)}
}

func deployment(ns, name string, n int) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(n)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10"}},
				},
			},
		},
	}
}

func (b *bench) deploy(t *testing.T, c *kwok.Cluster, ns, name string, n int) {
	if err := c.Client.Create(context.Background(), deployment(ns, name, n)); err != nil {
		t.Fatal(err)
	}
}

// waitReady waits until the Deployment reports n ready replicas.
func (b *bench) waitReady(t *testing.T, c *kwok.Cluster, ns, name string, n int) {
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
		d := &appsv1.Deployment{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return false, nil
		}
		return d.Status.ReadyReplicas == int32(n), nil
	})
	if err != nil {
		t.Fatalf("deployment %s/%s on %s: not %d ready replicas after 15 minutes", ns, name, c.Name, n)
	}
}

// pods counts the pods of the benchmark's namespaces on c.
func pods(ctx context.Context, c *kwok.Cluster) (int, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := c.Client.List(ctx, list); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range list.Items {
		if p.Namespace != "kube-system" {
			n++
		}
	}
	return n, nil
}

// waitPodsBelow waits until c has fewer than n pods.
func (b *bench) waitPodsBelow(t *testing.T, n int, c *kwok.Cluster) {
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := pods(ctx, c)
		return err == nil && got < n, nil
	})
	if err != nil {
		t.Fatalf("%s: still %d pods or more after 5 minutes", c.Name, n)
	}
}

// waitGone waits up to timeout until no pod is left on the clusters and
// returns how many are left. It asks for one pod at a time: listing them
// all every 100 ms cost the API servers more than the deletion of a
// 10,000-pod burst did.
func (b *bench) waitGone(t *testing.T, timeout time.Duration, cs ...*kwok.Cluster) int {
	_ = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, c := range cs {
			list := &metav1.PartialObjectMetadataList{}
			list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
			if err := c.Client.List(ctx, list, client.Limit(1), client.MatchingFieldsSelector{Selector: notKubeSystem}); err != nil || len(list.Items) > 0 {
				return false, nil
			}
		}
		return true, nil
	})
	left := 0
	for _, c := range cs {
		n, err := pods(context.Background(), c)
		if err != nil {
			t.Fatalf("counting the pods left on %s: %v", c.Name, err)
		}
		left += n
	}
	return left
}

// notKubeSystem selects the objects outside kube-system.
var notKubeSystem = fields.OneTermNotEqualSelector("metadata.namespace", "kube-system")

// serverVersion is the version c's API server reports.
func serverVersion(t *testing.T, c *kwok.Cluster) string {
	d, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	v, err := d.ServerVersion()
	if err != nil {
		t.Fatalf("version of %s's API server: %v", c.Name, err)
	}
	return v.GitVersion
}

// usage is the home manager's CPU time so far (its PeakRSS is the peak
// since it started: phases measure theirs with startRSS).
func (b *bench) usage(t *testing.T) testenv.ProcessUsage {
	u, err := testenv.UsageOf(b.managers["home"].PID)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// webhookCalls returns the admission requests the home manager served so far.
func (b *bench) webhookCalls(t *testing.T) int64 {
	n, err := testenv.CounterSum(context.Background(), b.managers["home"].MetricsURL, "controller_runtime_webhook_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// admissionLatency creates n bare pods at home, 16 at a time, in a
// namespace the webhook ignores and in the offloaded one, and returns each
// creation's duration; then the same as dry runs, which pass admission
// (the webhook included) but store nothing and start no pod: the cost of
// admission alone.
func (b *bench) admissionLatency(t *testing.T, n int) admission {
	var a admission
	var mu sync.Mutex
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("admit-%d", i)
	}
	for _, dryRun := range []bool{true, false} {
		for _, ns := range []string{vanilla, offloaded} {
			var opts []client.CreateOption
			into := map[string]*[]time.Duration{vanilla: &a.Without, offloaded: &a.With}[ns]
			if dryRun {
				opts = append(opts, client.DryRunAll)
				into = map[string]*[]time.Duration{vanilla: &a.DryRunWithout, offloaded: &a.DryRunWith}[ns]
			}
			cpuBefore := b.admissionCPU(t)
			inParallel(t, names, func(name string) error {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10"}}}}
				start := time.Now()
				err := b.home.Client.Create(context.Background(), p, opts...)
				d := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				*into = append(*into, d)
				return err
			})
			if dryRun {
				cpu := (b.admissionCPU(t) - cpuBefore) / time.Duration(n)
				*map[string]*time.Duration{vanilla: &a.CPUWithout, offloaded: &a.CPUWith}[ns] = cpu
			}
		}
	}
	for _, ns := range []string{vanilla, offloaded} {
		if err := b.home.Client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
	}
	if left := b.waitGone(t, 5*time.Minute, b.home, b.provider); left > 0 {
		t.Fatalf("%d pods left after the admission run", left)
	}
	return a
}

// admissionDuringBurst makes n dry-run pod creations at home, alternately
// in the offloaded namespace (through the webhook) and in one the webhook
// ignores, at most `at` at a time, while a Deployment of burst pods is
// offloaded: both under the same load. It returns the durations with and
// without the webhook.
func (b *bench) admissionDuringBurst(t *testing.T, burst, n, at int) (with, without []time.Duration) {
	creations := make([]int, 2*n)
	for i := range creations {
		creations[i] = i
	}
	name := fmt.Sprintf("admission-burst-%d", at)
	b.deploy(t, b.home, offloaded, name, burst)
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, at)
	for range at {
		wg.Go(func() {
			for i := range work {
				ns := []string{offloaded, vanilla}[i%2]
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("admit-burst-%d", i)},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10"}}}}
				start := time.Now()
				err := b.home.Client.Create(context.Background(), p, client.DryRunAll)
				d := time.Since(start)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				mu.Lock()
				if ns == offloaded {
					with = append(with, d)
				} else {
					without = append(without, d)
				}
				mu.Unlock()
			}
		})
	}
	for _, i := range creations {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("a dry-run creation during the burst: %v", err)
	}
	b.waitReady(t, b.home, offloaded, name, burst)
	if err := b.home.Client.Delete(context.Background(), deployment(offloaded, name, burst)); err != nil {
		t.Fatal(err)
	}
	if left := b.waitGone(t, 10*time.Minute, b.home, b.provider); left > 0 {
		t.Fatalf("%d pods left after the admission burst", left)
	}
	return with, without
}

// admissionCPU is the CPU time the home API server and the home manager
// used so far: what admitting a pod costs, the webhook's share included.
func (b *bench) admissionCPU(t *testing.T) time.Duration {
	return cpuOf(t, b.home.PIDs()["kube-apiserver"], b.managers["home"].PID)
}

// writes returns the API writes each API server (home, provider) served so far.
func (b *bench) writes(t *testing.T) [2]testenv.Writes {
	return [2]testenv.Writes(apiWrites(NewWithT(t), []*kwok.Cluster{b.home, b.provider}))
}
