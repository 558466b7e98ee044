package bench

import (
	"bytes"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"stretch.dev/stretch/internal/testenv"
)

// millis returns the durations of v milliseconds.
func millis(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentileAndSpread(t *testing.T) {
	tests := []struct {
		in       []time.Duration
		p50, p99 float64
	}{
		{nil, 0, 0},
		{millis(7), 7, 7},
		{millis(5, 1, 3, 2, 4), 3, 5},
		{millis(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 5, 10},
	}
	for _, tt := range tests {
		g := NewWithT(t)
		g.Expect(percentile(tt.in, 50)).To(Equal(tt.p50), "%v", tt.in)
		g.Expect(percentile(tt.in, 99)).To(Equal(tt.p99), "%v", tt.in)
	}
	g := NewWithT(t)
	g.Expect(percentile(millis(5, 1, 3, 2, 4), 100)).To(Equal(5.0))
	g.Expect(spreadOf([]float64{3, 1, 2})).To(Equal(spread{1, 2, 3}))
	g.Expect(ratios([]float64{2, 9}, []float64{1, 3})).To(Equal([]float64{2, 3}))
}

// The plot has a panel per measurement, with the lines' colors drawn.
func TestPlot(t *testing.T) {
	g := NewWithT(t)
	r := &report{Counts: []int{100, 1000}}
	r.add(100, measurement{Ready: time.Second}, measurement{Ready: 2 * time.Second}, measurement{Ready: 3 * time.Second})
	r.add(1000, measurement{Ready: 5 * time.Second}, measurement{Ready: 8 * time.Second}, measurement{Ready: 9 * time.Second})
	r.Latency = []latencyRow{{Providers: 1, Stretch: []time.Duration{time.Second}, Direct: []time.Duration{time.Millisecond}}, {Providers: 2, Stretch: []time.Duration{2 * time.Second}, Direct: []time.Duration{time.Millisecond}}}
	r.Bulk = []bulkRow{{Namespaces: 10, Stretch: time.Second, Direct: time.Second / 2, Design: time.Second}, {Namespaces: 20, Stretch: 2 * time.Second, Direct: time.Second, Design: 1500 * time.Millisecond}}
	data, err := everyScenario(r).png()
	g.Expect(err).NotTo(HaveOccurred())
	img, err := png.Decode(bytes.NewReader(data))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(img.Bounds().Dx()).To(Equal(4 * panelW))
	g.Expect(img.Bounds().Dy()).To(Equal(panelH))
	colors := map[[3]uint32]bool{}
	for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
		for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
			r, g, b, _ := img.At(x, y).RGBA()
			colors[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	for _, c := range []struct{ R, G, B uint8 }{{blue.R, blue.G, blue.B}, {orange.R, orange.G, orange.B}, {green.R, green.G, green.B}} {
		g.Expect(colors).To(HaveKey([3]uint32{uint32(c.R), uint32(c.G), uint32(c.B)}))
	}
	md := everyScenario(r).markdown()
	g.Expect(md).To(ContainSubstring("| 1000 | 5.00 / 5.00 / 5.00 | 8.00 / 8.00 / 8.00 | 9.00 / 9.00 / 9.00 | 1.80 / 1.80 / 1.80 | 1.12 / 1.12 / 1.12 |"))
	g.Expect(md).To(ContainSubstring("| 20 | 2.00 | 1.50 | 1.33 | 1.00 | 2.00 |"))
}

// Writes are broken down per pod by request, for the largest count.
func TestWritesTable(t *testing.T) {
	g := NewWithT(t)
	before := testenv.Writes{"POST pods": 10, "PUT pods/status": 4}
	after := testenv.Writes{"POST pods": 110, "PUT pods/status": 204, "POST events": 50}
	g.Expect(after.Since(before)).To(Equal(testenv.Writes{"POST pods": 100, "PUT pods/status": 200, "POST events": 50}))
	g.Expect(after.Since(before).Total()).To(Equal(int64(350)))

	r := &report{Counts: []int{100}}
	vanilla := measurement{Writes: [2]testenv.Writes{{}, {"POST pods": 100, "PUT pods/status": 100}}}
	stretch := measurement{Writes: [2]testenv.Writes{{"POST pods": 100, "POST events": 50}, {"POST pods": 100, "PUT pods/status": 200}}}
	r.add(100, vanilla, measurement{}, stretch)
	table := writesTable(r)
	g.Expect(table).To(ContainSubstring("| POST events | 0.00 | 0.50 | 0.00 |"))
	g.Expect(table).To(ContainSubstring("| PUT pods/status | 1.00 | 0.00 | 2.00 |"))
	g.Expect(table).To(ContainSubstring("| **total** | 2.00 | 1.50 | 3.00 |"))
	g.Expect(writesTable(&report{})).To(BeEmpty())
}

// A tail of fewer than 200 samples is their maximum, labelled max (n=…);
// from 200 samples on it is the p99.
func TestTail(t *testing.T) {
	// samples returns n durations of 1..n ms, largest first.
	samples := func(n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(n-i) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		n    int
		want string
	}{
		{0, "no samples"},
		{1, "max (n=1) 1.0"},
		{50, "max (n=50) 50.0"},
		// The nearest-rank p99 of 150 samples would be the 149th (149 ms):
		// not a p99 either, so the maximum is printed.
		{150, "max (n=150) 150.0"},
		{199, "max (n=199) 199.0"},
		{200, "p99 198.0"},
		{500, "p99 495.0"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			NewWithT(t).Expect(tail(samples(tt.n))).To(Equal(tt.want))
		})
	}
}

// The report prints no p99 of fewer than 200 samples, and links the
// hand-written history instead of holding it.
func TestReportTails(t *testing.T) {
	g := NewWithT(t)
	r := &report{Counts: []int{3}}
	r.add(3, measurement{}, measurement{}, measurement{})
	ds := make([]time.Duration, 50)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Millisecond
	}
	r.Admission = admission{With: ds, Without: ds, DryRunWith: ds, DryRunWithout: ds}
	r.Latency = []latencyRow{{Providers: 1, Namespaces: len(ds), Stretch: ds, Direct: ds}}
	r.Bulk = []bulkRow{{Namespaces: 10, Stretch: time.Second, Direct: time.Second, PeakRSS: rssPeak{Bytes: 95 << 20}}}
	r.BurstPeakRSS = rssPeak{Bytes: 231 << 20, Sampled: true}
	md := everyScenario(r).markdown()
	g.Expect(md).To(ContainSubstring("| dry run | 25.0 | max (n=50) 50.0 | 25.0 | max (n=50) 50.0 |"))
	g.Expect(md).To(ContainSubstring("| 1 | 50 | 25.0 | max (n=50) 50.0 | 25.0 | max (n=50) 50.0 |"))
	g.Expect(md).NotTo(MatchRegexp(`\| p99 [0-9]`))
	g.Expect(md).To(ContainSubstring("| 0.0 | 95 | 0 |"))
	g.Expect(md).To(ContainSubstring("peak RSS (MiB) 231 (sampled)."))
	g.Expect(md).To(ContainSubstring("](BENCHMARKS-HISTORY.md)"))
	g.Expect(md).NotTo(ContainSubstring("What the suite found"))
}

// A failed or partial run leaves the last measurements, report and plot as
// they were; a complete one replaces all three and leaves no temporary
// file; the measurements go first, so that a report left behind can be
// rendered again from them.
func TestPublish(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "BENCHMARKS.md")
	data, plot := filepath.Join(dir, "BENCHMARKS.json"), filepath.Join(dir, "BENCHMARKS.png")
	g.Expect(os.WriteFile(out, []byte("old report"), 0o644)).To(Succeed())
	g.Expect(os.WriteFile(plot, []byte("old plot"), 0o644)).To(Succeed())
	g.Expect(os.WriteFile(data, []byte("old data"), 0o644)).To(Succeed())
	content := func(path string) string {
		data, err := os.ReadFile(path)
		g.Expect(err).NotTo(HaveOccurred())
		return string(data)
	}
	entries := func() []string {
		es, err := os.ReadDir(dir)
		g.Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}

	gotJSON, gotPNG, err := publish(out, []byte("new data"), []byte("new plot"), []byte("new report"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(gotJSON).To(Equal(data))
	g.Expect(gotPNG).To(Equal(plot))
	g.Expect(content(out)).To(Equal("new report"))
	g.Expect(content(plot)).To(Equal("new plot"))
	g.Expect(content(data)).To(Equal("new data"))
	g.Expect(entries()).To(ConsistOf("BENCHMARKS.json", "BENCHMARKS.md", "BENCHMARKS.png"))
	for _, path := range []string{out, plot, data} {
		info, err := os.Stat(path)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o644)))
	}

	// blocked puts a non-empty directory in path's place: nothing can be
	// renamed over it.
	blocked := func(path string) {
		g.Expect(os.Remove(path)).To(Succeed())
		g.Expect(os.Mkdir(path, 0o755)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(path, "keep"), nil, 0o644)).To(Succeed())
	}
	// The measurements cannot be replaced: all three stay the last ones,
	// and no temporary file is left.
	blocked(data)
	_, _, err = publish(out, []byte("newer data"), []byte("newer plot"), []byte("newer report"))
	g.Expect(err).To(MatchError(ContainSubstring("left as they were")))
	g.Expect(content(out)).To(Equal("new report"))
	g.Expect(content(plot)).To(Equal("new plot"))
	g.Expect(entries()).To(ConsistOf("BENCHMARKS.json", "BENCHMARKS.md", "BENCHMARKS.png"))
	g.Expect(os.RemoveAll(data)).To(Succeed())
	g.Expect(os.WriteFile(data, []byte("new data"), 0o644)).To(Succeed())

	// The plot cannot be replaced: the measurements are this run's, the
	// report the last one, and the error says the next run renders it.
	blocked(plot)
	_, _, err = publish(out, []byte("newer data"), []byte("newer plot"), []byte("newer report"))
	g.Expect(err).To(MatchError(ContainSubstring("renders them again")))
	g.Expect(content(data)).To(Equal("newer data"))
	g.Expect(content(out)).To(Equal("new report"))
	g.Expect(entries()).To(ConsistOf("BENCHMARKS.json", "BENCHMARKS.md", "BENCHMARKS.png"))
}

// The peak RSS of a phase is its own, not the process's since it started:
// memory touched and released before the phase does not count. Measured on
// this test's own process, with the high-water mark reset and with the
// sampling fallback.
func TestRSSMeter(t *testing.T) {
	const before, during = 192 << 20, 32 << 20
	// touch maps size bytes, writes every page and returns the unmap.
	touch := func(g Gomega, size int) func() {
		m, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		g.Expect(err).NotTo(HaveOccurred())
		for i := 0; i < len(m); i += os.Getpagesize() {
			m[i] = 1
		}
		return func() { g.Expect(syscall.Munmap(m)).To(Succeed()) }
	}
	for _, sample := range []bool{false, true} {
		t.Run(fmt.Sprintf("sampled=%v", sample), func(t *testing.T) {
			g := NewWithT(t)
			touch(g, before)()
			hwm, err := procStatus(os.Getpid(), "VmHWM")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(hwm).To(BeNumerically(">=", before))

			m := startRSS(os.Getpid(), sample)
			g.Expect(m.sampled).To(Equal(sample), "clear_refs refused: the fallback would be used")
			unmap := touch(g, during)
			if sample {
				// Hold the memory until a sample has seen it.
				seen := m.sampleCount()
				g.Eventually(m.sampleCount).Should(BeNumerically(">", seen))
			}
			unmap()
			peak, err := m.end()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(peak.Sampled).To(Equal(sample))
			g.Expect(peak.Bytes).To(BeNumerically(">=", during))
			g.Expect(peak.Bytes).To(BeNumerically("<", hwm-before+during+during), "the phase's peak includes memory released before it")
			g.Expect(strings.HasSuffix(peak.String(), "(sampled)")).To(Equal(sample))
		})
	}
}

// The pinned bursts make a table of their own, with the CPUs named and the
// ratios per repetition.
func TestPinnedTable(t *testing.T) {
	g := NewWithT(t)
	r := &report{Counts: []int{100}, Reps: 2, Nodes: 2, PinnedCPUs: [2]int{0, 1}}
	g.Expect(r.pinnedTable()).To(BeEmpty())
	r.addPinned(100, measurement{Ready: 10 * time.Second, Deleted: 8 * time.Second, CPU: [2]time.Duration{time.Second, 17 * time.Second}},
		measurement{Ready: 11 * time.Second, Deleted: 12 * time.Second, CPU: [2]time.Duration{20 * time.Second, 19 * time.Second}})
	r.addPinned(100, measurement{Ready: 10 * time.Second, Deleted: 10 * time.Second, CPU: [2]time.Duration{time.Second, 19 * time.Second}},
		measurement{Ready: 13 * time.Second, Deleted: 10 * time.Second, CPU: [2]time.Duration{22 * time.Second, 21 * time.Second}})
	table := r.pinnedTable()
	g.Expect(table).To(ContainSubstring("pinned to CPU 0 and every process of the provider to CPU 1"))
	g.Expect(table).To(ContainSubstring("Vanilla and Stretch take turns at going first, and each burst starts once both CPUs have been under 15% busy for 2 s."))
	g.Expect(table).To(ContainSubstring("| 100 | 10.00 / 10.00 / 10.00 | 11.00 / 13.00 / 13.00 | 1.10 / 1.30 / 1.30 | 8.00 / 10.00 / 10.00 | 10.00 / 12.00 / 12.00 | 1.00 / 1.50 / 1.50 | 17.00 / 19.00 / 19.00 | 20.00 / 22.00 / 22.00 | 19.00 / 21.00 / 21.00 |"))
	g.Expect(everyScenario(r).markdown()).To(ContainSubstring("\n## Pod burst, each cluster on a CPU of its own\n"))
}

// The senders table lists each request's senders per pod, busiest first,
// leaves out the rare ones and says why a known one stays.
func TestWritersTable(t *testing.T) {
	g := NewWithT(t)
	g.Expect(writersTable(nil)).To(BeEmpty())
	writeReasons["DELETE pods (404)|kwok"] = "kwok deletes twice"
	t.Cleanup(func() { delete(writeReasons, "DELETE pods (404)|kwok") })
	table := writersTable([]writersRow{{Scenario: "vanilla", Phase: "creation until Ready", Cluster: "provider", Pods: 100, Writes: map[string]map[string]int64{
		"POST pods":         {"kube-controller-manager as system:serviceaccount:kube-system:replicaset-controller": 100},
		"DELETE pods (404)": {"kwok as system:admin": 48, "kubectl as system:admin": 30, "rare as x": 0},
	}}})
	g.Expect(table).To(ContainSubstring("One burst of 100 pods"))
	g.Expect(table).To(ContainSubstring("| vanilla | creation until Ready | provider | DELETE pods (404) | kwok as system:admin | 0.48 | kwok deletes twice |\n| vanilla | creation until Ready | provider | DELETE pods (404) | kubectl as system:admin | 0.30 |  |\n| vanilla | creation until Ready | provider | POST pods |"))
	g.Expect(table).NotTo(ContainSubstring("rare as x"))
}

// The providers table divides the growth from the first count by the
// providers added, and compares each p50 with the one at 2 providers.
func TestProvidersTable(t *testing.T) {
	g := NewWithT(t)
	g.Expect(providersTable(nil)).To(BeEmpty())
	table := providersTable([]latencyRow{
		{Providers: 1, Stretch: millis(100), Direct: millis(10), Peering: millis(2000), Watches: []int64{5}, RSS: 100 << 20, Goroutines: 300,
			IdleCPU: 50 * time.Millisecond, IdleWindow: 10 * time.Second, OffloadCPU: 20 * time.Millisecond},
		{Providers: 2, Stretch: millis(150), Direct: millis(20), Peering: millis(3000), Watches: []int64{5}, RSS: 110 << 20, Goroutines: 340,
			IdleCPU: 80 * time.Millisecond, IdleWindow: 10 * time.Second, OffloadCPU: 30 * time.Millisecond},
		{Providers: 5, Stretch: millis(240, 250, 260), Direct: millis(50), Peering: millis(1000, 2000, 4000), Watches: []int64{5, 6, 5}, RSS: 140 << 20, Goroutines: 460,
			IdleCPU: 170 * time.Millisecond, IdleWindow: 10 * time.Second, OffloadCPU: 150 * time.Millisecond},
	})
	g.Expect(table).To(ContainSubstring("its CPU at rest (over 10s with nothing offloaded"))
	g.Expect(table).To(ContainSubstring("| 1 | 2.00 | 100 | - | 5.0 | - | 20.0 | 300 | - | 5 | 100.0 | 0.67 | 0.50 |"))
	g.Expect(table).To(ContainSubstring("| 2 | 3.00 | 110 | 10.0 | 8.0 | 3.0 | 30.0 | 340 | 40 | 5 | 150.0 | 1.00 | 1.00 |"))
	g.Expect(table).To(ContainSubstring("| 5 | 2.00 | 140 | 10.0 | 17.0 | 3.0 | 50.0 | 460 | 40 | 5 | 250.0 | 1.67 | 2.50 |"))
	g.Expect(table).To(ContainSubstring("home manager idle CPU added by them: ×4.00 from 1 to 4 providers (×4.00)"))
	g.Expect(table).To(ContainSubstring("home manager CPU per offload, against the providers it writes to: ×2.50 from 1 to 5 providers (×5.00)"))
	// Rows measured before the CPU was: dashes, not zeros.
	g.Expect(providersTable([]latencyRow{{Providers: 1, Stretch: millis(100)}})).To(ContainSubstring("| 100.0 | - | - |"))
	g.Expect(providersTable([]latencyRow{{Providers: 1, Stretch: millis(100)}, {Providers: 2, Stretch: millis(100)}})).To(ContainSubstring("| 2 | 0.00 | 0 | 0.0 | - | - | - |"))
}

// The bulk cost table gives memory growth per namespace and each
// process's CPU, one column per process.
func TestBulkCostTable(t *testing.T) {
	g := NewWithT(t)
	g.Expect(bulkCostTable(nil)).To(BeEmpty())
	table := bulkCostTable([]bulkRow{{Namespaces: 100, RSSGrowth: 1000 << 10, CPUByProcess: map[string]time.Duration{
		"home kube-apiserver": 3 * time.Second, "home manager": 1500 * time.Millisecond}}})
	g.Expect(table).To(ContainSubstring("| N | RSS growth per namespace (KiB) | home kube-apiserver | home manager |"))
	g.Expect(table).To(ContainSubstring("| 100 | 10.0 | 3.0 | 1.5 |"))
}

// everyScenario is r as every scenario's section, all measured at the same
// moment: the whole report of a run that filled r.
func everyScenario(r *report) *results {
	res := &results{Format: resultsFormat, Sections: map[string]*section{}}
	for _, sc := range scenarios {
		res.Sections[sc.name] = &section{Stamp: testStamp("2026-11-26", "c6053ab"), Results: r}
	}
	return res
}

// testStamp is a stamp of day (2006-01-02) at commit, with flags.
func testStamp(day, commit string, flags ...string) stamp {
	at, err := time.Parse("2006-01-02", day)
	if err != nil {
		panic(err)
	}
	st := stamp{Measured: at.Add(13 * time.Hour), Commit: commit,
		Machine: host{Name: "vm", CPUs: 2, Go: "go1.26.8", Kubernetes: "v1.37.2"}}
	for i := 0; i+1 < len(flags); i += 2 {
		if st.Flags == nil {
			st.Flags = map[string]string{}
		}
		st.Flags[flags[i]] = flags[i+1]
	}
	return st
}

// fullReport is a report with every field set, those of its rows too, with
// figures scaled by k: k tells two reports apart.
func fullReport(k int) *report {
	d := func(ms int) time.Duration { return time.Duration(ms*k)*time.Millisecond + 123*time.Microsecond }
	ds := func(ms ...int) []time.Duration {
		out := make([]time.Duration, len(ms))
		for i, m := range ms {
			out[i] = d(m)
		}
		return out
	}
	writes := func(n int64) testenv.Writes {
		return testenv.Writes{"POST pods": n * int64(k), "PUT pods/status": 2 * n, "DELETE pods (404)": 1}
	}
	m := func(ready int) measurement {
		return measurement{Ready: d(ready), Deleted: d(ready / 2), HomeWrites: 6.23 * float64(k), ProviderWrites: 1.0 / 3,
			Writes: [2]testenv.Writes{writes(100), writes(120)}, WebhookCalls: 1.01, CPU: [2]time.Duration{d(ready), d(ready / 3)}}
	}
	r := &report{Counts: []int{100, 1000}, Reps: 2, Nodes: 11, Stuck: k, PinnedCPUs: [2]int{0, 1},
		BurstCPU: d(90000), BurstPeakRSS: rssPeak{Bytes: 231 << 20, Sampled: true}, KubeVersion: "v1.37.2", OffloadProviders: 20,
		Admission: admission{With: ds(3, 4, 5), Without: ds(2, 3), DryRunWith: ds(1, 2), DryRunWithout: ds(1), CPUWith: 3 * time.Millisecond, CPUWithout: time.Millisecond, BurstWith: ds(9, 10), BurstWithout: ds(4), BurstWith16: ds(20), BurstWithout16: ds(12), BurstPods: 1000},
		Latency: []latencyRow{
			{Providers: 1, Namespaces: 3, Stretch: ds(100, 120, 130), Direct: ds(10, 11, 12), Extended: 1, Extension: d(1500), Peering: ds(2000), Watches: []int64{5}, RSS: 100 << 20, Goroutines: 300, CPUBusy: 0.4, IdleCPU: d(50), IdleWindow: 10 * time.Second, OffloadCPU: d(300)},
			{Providers: 2, Namespaces: 3, Stretch: ds(150, 160, 170), Direct: ds(12, 13, 14), Extended: 3, Extension: d(2500), Peering: ds(3000), Watches: []int64{6}, RSS: 110 << 20, Goroutines: 340, CPUBusy: 0.9, IdleCPU: d(80), IdleWindow: 10 * time.Second, OffloadCPU: d(450)},
		},
		Bulk: []bulkRow{{Namespaces: 250, Stretch: d(20000), Direct: d(5000), CPU: d(12000), PeakRSS: rssPeak{Bytes: 95 << 20, Sampled: true}, FailedReconciles: 2,
			Writes: []testenv.Writes{writes(1000), writes(500), writes(500)}, DirectWrites: []testenv.Writes{writes(250), writes(250)},
			RSSGrowth: 5 << 20, CPUByProcess: map[string]time.Duration{"home manager": d(12000), "home kube-apiserver": d(30000)},
			Design: d(15000), DesignWrites: []testenv.Writes{writes(750), writes(500), writes(500)}}},
		Writers: []writersRow{{Scenario: "Stretch", Phase: "creation until Ready", Cluster: "home", Pods: 1000,
			Writes: map[string]map[string]int64{"POST pods": {"kube-controller-manager as system:serviceaccount:kube-system:replicaset-controller": 1000 * int64(k)}}}},
		Wide: []wideRow{{Pods: 10000, Providers: 5, Stretch: d(300000), StretchDeleted: d(200000), Dual: d(250000), DualDeleted: d(180000), CPU: d(60000), PeakRSS: rssPeak{Bytes: 300 << 20, Sampled: true}}},
	}
	for _, n := range r.Counts {
		for rep := range r.Reps {
			r.add(n, m(n*10+rep), m(n*20+rep), m(n*15+rep))
			r.addPinned(n, m(n*9+rep), m(n*11+rep))
		}
	}
	return r
}

// unset lists the fields of v, a struct, left at their zero value, in
// structs, slices' elements and arrays within it too, by path.
func unset(v reflect.Value, path string) []string {
	var out []string
	switch v.Kind() {
	case reflect.Pointer:
		return unset(v.Elem(), path)
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name := path + "." + f.Name
			if v.Field(i).IsZero() {
				out = append(out, name)
				continue
			}
			if f.IsExported() {
				out = append(out, unset(v.Field(i), name)...)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			out = append(out, unset(v.Index(i), fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return out
}

// A fully populated report comes back from BENCHMARKS.json as it was, its
// bursts by count included, and renders the same report.
func TestResultsRoundTrip(t *testing.T) {
	g := NewWithT(t)
	r := fullReport(1)
	g.Expect(unset(reflect.ValueOf(r), "report")).To(BeEmpty(), "the round trip must cover every field: set it in fullReport")
	res := everyScenario(r)
	data, err := res.encode()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).To(ContainSubstring(`"ByCount": {`))
	g.Expect(string(data)).To(ContainSubstring(`"commit": "c6053ab"`))

	path := filepath.Join(t.TempDir(), "BENCHMARKS.json")
	g.Expect(os.WriteFile(path, data, 0o644)).To(Succeed())
	back, err := loadResults(path)
	g.Expect(err).NotTo(HaveOccurred())
	for _, sc := range scenarios {
		g.Expect(back.Sections[sc.name].Results).To(Equal(r), sc.name)
		g.Expect(back.Sections[sc.name].Stamp).To(Equal(res.Sections[sc.name].Stamp), sc.name)
	}
	g.Expect(back.markdown()).To(Equal(res.markdown()))
	again, err := back.encode()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(again)).To(Equal(string(data)))

	// A section holds only what its scenario filled.
	data, err = (&results{Format: resultsFormat, Sections: map[string]*section{"pods over many providers": {Results: &report{Wide: r.Wide}}}}).encode()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).NotTo(ContainSubstring("Admission"))
	g.Expect(string(data)).NotTo(ContainSubstring("Counts"))

	// A file that cannot be read says which and how to recover.
	g.Expect(os.WriteFile(path, []byte("{"), 0o644)).To(Succeed())
	_, err = loadResults(path)
	g.Expect(err).To(MatchError(ContainSubstring("restore it from git")))
	// None yet: every section is to be measured.
	res, err = loadResults(filepath.Join(t.TempDir(), "BENCHMARKS.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Sections).To(BeEmpty())
}

// A run replaces the sections of the scenarios that succeeded and keeps the
// others byte for byte; a failed scenario keeps its previous section, or
// stays unmeasured.
func TestResultsMerge(t *testing.T) {
	g := NewWithT(t)
	old := everyScenario(fullReport(1))
	data, err := old.encode()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "BENCHMARKS.json")
	g.Expect(os.WriteFile(path, data, 0o644)).To(Succeed())
	before := old.markdown()

	res, err := loadResults(path)
	g.Expect(err).NotTo(HaveOccurred())
	offload := scenarios[slices.IndexFunc(scenarios, func(sc scenario) bool { return sc.name == "offload latency" })]
	fresh := &section{Stamp: testStamp("2026-12-10", "1a2b3c4-dirty", "providers", "1,2", "latency-namespaces", "200"), Results: fullReport(2)}
	log, replaced := res.merge([]outcome{{name: offload.name, section: fresh, ok: true}})
	g.Expect(replaced).To(Equal(1))
	g.Expect(log).To(ConsistOf("offload latency: measured again"))
	after := res.markdown()

	oldBlock, newBlock := offload.markdown(old.Sections[offload.name]), offload.markdown(fresh)
	g.Expect(newBlock).NotTo(Equal(oldBlock))
	g.Expect(strings.Count(before, oldBlock)).To(Equal(1))
	g.Expect(after).To(Equal(strings.Replace(before, oldBlock, newBlock, 1)), "only the offload latency's section changes")
	g.Expect(newBlock).To(ContainSubstring("\n## Offload latency\n\n_Measured on 2026-12-10 at commit 1a2b3c4-dirty, on vm (2 CPUs, Go go1.26.8, Kubernetes v1.37.2), with `-latency-namespaces 200 -providers 1,2`. Again: `make bench BENCH_RUN='offload latency' BENCH_FLAGS='-providers 1,2'`._\n"))
	g.Expect(oldBlock).To(ContainSubstring("_Measured on 2026-11-26 at commit c6053ab, on vm"))
	for _, sc := range scenarios {
		if sc.name != offload.name {
			g.Expect(res.Sections[sc.name]).To(Equal(old.Sections[sc.name]), sc.name)
		}
	}

	// The pod burst fails: its previous section is kept and the log says so.
	burst := scenarios[0]
	log, replaced = res.merge([]outcome{{name: burst.name, section: &section{Stamp: testStamp("2026-12-11", "5d6e7f8"), Results: fullReport(3)}}})
	g.Expect(replaced).To(BeZero())
	g.Expect(log).To(ConsistOf("pod burst: FAILED; its previous section (measured on 2026-11-26 at commit c6053ab) is kept"))
	g.Expect(res.markdown()).To(Equal(after))

	// A scenario never measured that fails stays unmeasured.
	res = &results{Format: resultsFormat, Sections: map[string]*section{}}
	log, replaced = res.merge([]outcome{{name: burst.name, section: &section{Results: fullReport(3)}}})
	g.Expect(replaced).To(BeZero())
	g.Expect(log).To(ConsistOf("pod burst: FAILED; it was never measured and stays so"))
	g.Expect(res.Sections).To(BeEmpty())
}

// A section never measured is one line saying how to measure it, and its
// plot panels say "not measured".
func TestResultsNotMeasured(t *testing.T) {
	g := NewWithT(t)
	res := &results{Format: resultsFormat, Sections: map[string]*section{
		"offload latency": {Stamp: testStamp("2026-12-10", "1a2b3c4"), Results: fullReport(1)},
	}}
	md := res.markdown()
	g.Expect(md).To(ContainSubstring("\n## Pod burst\n\nNot measured yet: `make bench BENCH_RUN='pod burst'` measures it.\n\n## Pod burst, each cluster on a CPU of its own\n\nNot measured yet: `make bench BENCH_RUN='pinned burst'` measures it.\n\n## Offload latency\n\n_Measured on 2026-12-10"))
	g.Expect(md).To(ContainSubstring("\n## Bulk offload\n\nNot measured yet: `make bench BENCH_RUN='bulk offload'` measures it.\n"))
	g.Expect(md).NotTo(ContainSubstring("design baseline (s)"), "the bulk rows of the offload latency's report are not rendered")
	g.Expect(md).To(ContainSubstring("\n## Who sends each write\n\nNot measured yet: `make bench BENCH_RUN='who sends each write'` measures it.\n"))
	g.Expect(md).To(ContainSubstring("\n## Pods over many providers\n\nNot measured yet: `make bench BENCH_RUN='pods over many providers'` measures it.\n\n## History"))
	g.Expect(md).NotTo(ContainSubstring("| N | vanilla ready (s)"))

	// colors are the line colors drawn in each panel.
	colors := func(data []byte) []map[color.RGBA]bool {
		img, err := png.Decode(bytes.NewReader(data))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(img.Bounds().Dx()).To(Equal(4 * panelW))
		panels := make([]map[color.RGBA]bool, 4)
		for i := range panels {
			panels[i] = map[color.RGBA]bool{}
			for x := i * panelW; x < (i+1)*panelW; x++ {
				for y := range panelH {
					r, gr, b, _ := img.At(x, y).RGBA()
					c := color.RGBA{uint8(r >> 8), uint8(gr >> 8), uint8(b >> 8), 255}
					if c == blue || c == orange || c == green {
						panels[i][c] = true
					}
				}
			}
		}
		return panels
	}
	data, err := res.png()
	g.Expect(err).NotTo(HaveOccurred())
	panels := colors(data)
	g.Expect(panels[0]).To(BeEmpty(), "the pod burst was not measured")
	g.Expect(panels[1]).To(HaveKey(green), "offload latency")
	g.Expect(panels[2]).To(BeEmpty(), "the bulk offload was not measured")
	g.Expect(panels[3]).To(HaveKey(green), "the home manager's memory, from the offload latency's section")
	// "Pod burst: all Ready: not measured" in the first panel: drawn in
	// black, and the same as a panel drawn alone with that text.
	want := image.NewRGBA(image.Rect(0, 0, panelW, panelH))
	draw.Draw(want, want.Bounds(), image.White, image.Point{}, draw.Src)
	text(want, marginL, marginT+20, "Pod burst: all Ready: not measured", black)
	got, err := png.Decode(bytes.NewReader(data))
	g.Expect(err).NotTo(HaveOccurred())
	for x := range panelW {
		for y := range panelH {
			r1, g1, b1, _ := got.At(x, y).RGBA()
			r2, g2, b2, _ := want.At(x, y).RGBA()
			g.Expect([3]uint32{r1, g1, b1}).To(Equal([3]uint32{r2, g2, b2}), "pixel %d,%d", x, y)
		}
	}

	data, err = (&results{Sections: map[string]*section{}}).png()
	g.Expect(err).NotTo(HaveOccurred())
	for _, p := range colors(data) {
		g.Expect(p).To(BeEmpty())
	}
}

// Each scenario that runs gets a section stamped with its flags' values,
// and each scenario's flags exist.
func TestRunScenarios(t *testing.T) {
	g := NewWithT(t)
	for _, sc := range scenarios {
		for _, name := range sc.flags {
			g.Expect(flag.Lookup(name)).NotTo(BeNil(), "flag -%s of %s", name, sc.name)
		}
	}
	shared := testStamp("2026-12-10", "1a2b3c4")
	run := runScenarios(t, []scenario{
		{name: "a", flags: []string{"counts", "reps"}, run: func(_ *testing.T, r *report) { r.Stuck = 7 }},
		{name: "b", run: func(_ *testing.T, r *report) { r.Nodes = 3 }},
	}, shared)
	g.Expect(run).To(HaveLen(2))
	g.Expect(run[0].name).To(Equal("a"))
	g.Expect(run[0].ok).To(BeTrue())
	g.Expect(run[0].section.Results.Stuck).To(Equal(7))
	g.Expect(run[0].section.Stamp.Flags).To(Equal(map[string]string{"counts": *counts, "reps": fmt.Sprint(*reps)}))
	g.Expect(run[0].section.Stamp.Commit).To(Equal("1a2b3c4"))
	g.Expect(run[0].section.Stamp.Measured).To(BeTemporally("~", time.Now(), time.Minute), "when the scenario started")
	g.Expect(run[1].section.Stamp.Flags).To(BeNil())
	g.Expect(run[1].section.Results.Nodes).To(Equal(3))
	g.Expect(scenarios[0].command(map[string]string{"counts": "100,1000,3000", "reps": "3"})).To(Equal("make bench BENCH_RUN='pod burst'"))

	// This run's commit: HEAD's, marked dirty or not, or unknown.
	g.Expect(commit("")).To(MatchRegexp(`^([0-9a-f]{4,}(-dirty)?|unknown)$`))
}

// A tree is dirty with any change, but those of the report, its
// measurements and its plot: scenarios measured one after the other
// rewrite them.
func TestCommitDirty(t *testing.T) {
	g := NewWithT(t)
	repo := t.TempDir()
	t.Chdir(repo)
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-c", "user.name=bench", "-c", "user.email=bench@example.invalid"}, args...)...).CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "git %v: %s", args, out)
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	for _, f := range []string{"BENCHMARKS.md", "BENCHMARKS.json", "BENCHMARKS.png", "code.go"} {
		g.Expect(os.WriteFile(f, []byte("old"), 0o644)).To(Succeed())
	}
	g.Expect(os.Mkdir("test", 0o755)).To(Succeed())
	git("add", ".")
	git("commit", "-q", "-m", "first")
	head := git("rev-parse", "--short", "HEAD")
	out := filepath.Join(repo, "BENCHMARKS.md")
	t.Chdir(filepath.Join(repo, "test")) // go test runs in the package's directory
	g.Expect(commit(out)).To(Equal(head))

	for _, f := range []string{"BENCHMARKS.md", "BENCHMARKS.json", "BENCHMARKS.png"} {
		g.Expect(os.WriteFile(filepath.Join(repo, f), []byte("new"), 0o644)).To(Succeed())
	}
	g.Expect(commit(out)).To(Equal(head), "the report's own files do not count")
	g.Expect(commit("")).To(Equal(head+"-dirty"), "without a report, every change counts")

	g.Expect(os.WriteFile(filepath.Join(repo, "untracked.go"), nil, 0o644)).To(Succeed())
	g.Expect(commit(out)).To(Equal(head+"-dirty"), "an untracked file")
	g.Expect(os.Remove(filepath.Join(repo, "untracked.go"))).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(repo, "code.go"), []byte("new"), 0o644)).To(Succeed())
	g.Expect(commit(out)).To(Equal(head+"-dirty"), "a change of the code, outside the working directory")
}

// The admission section gives the webhook's CPU per pod and its latency
// cost under the burst for one client and for 16 at a time.
func TestAdmissionSection(t *testing.T) {
	g := NewWithT(t)
	md := burstMarkdown(fullReport(1))
	g.Expect(md).To(ContainSubstring("| dry run during a burst of 1000 pods, one at a time | 4.1 | max (n=1) 4.1 | 9.1 | max (n=2) 10.1 |"))
	g.Expect(md).To(ContainSubstring("| dry run during a burst of 1000 pods, 16 at a time | 12.1 | max (n=1) 12.1 | 20.1 | max (n=1) 20.1 |"))
	g.Expect(md).To(ContainSubstring("1.00 ms without the webhook, 3.00 ms with it; **the webhook costs 2.00 ms of CPU per pod**"))
	g.Expect(md).To(ContainSubstring("**5.0 ms** for a client creating pods one at a time (target: at most 10 ms); 8.0 ms for one creating 16 at a time"))
}

// A cost is called linear when it grows within ×1.25 of its work.
func TestGrowth(t *testing.T) {
	tests := []struct {
		name   string
		points []growthPoint
		want   string
	}{
		{"linear", []growthPoint{{100, 1}, {1000, 10.5}}, "- t: ×10.50 from 100 to 1000 pods (×10.00), ×1.05 per pod: **linear**.\n"},
		{"worse", []growthPoint{{1000, 10}, {5000, 250}}, "- t: ×25.00 from 1000 to 5000 pods (×5.00), ×5.00 per pod: **worse than linear**.\n"},
		{"better", []growthPoint{{1, 10}, {19, 20}}, "- t: ×2.00 from 1 to 19 pods (×19.00), ×0.11 per pod: **better than linear**.\n"},
		{"middle sizes ignored", []growthPoint{{1, 1}, {2, 100}, {4, 4}}, "- t: ×4.00 from 1 to 4 pods (×4.00), ×1.00 per pod: **linear**.\n"},
		{"one size", []growthPoint{{1, 1}}, ""},
		{"zero cost dropped", []growthPoint{{1, 0}, {2, 2}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			NewWithT(t).Expect(growth("t", "pod", tt.points)).To(Equal(tt.want))
		})
	}
}

// The machine's CPUs are busy for a share between none and all of the time.
func TestBusyMeter(t *testing.T) {
	g := NewWithT(t)
	m := startBusy(t)
	for i := 0; i < 1e7; i++ {
		_ = i * i
	}
	busy := m.end(t)
	g.Expect(busy).To(And(BeNumerically(">=", 0), BeNumerically("<=", 1)))
	all := allCPUs(t)
	g.Expect(all.Busy).To(And(BeNumerically(">", 0), BeNumerically("<", all.Total)))
}
