package bench

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"stretch.dev/stretch/internal/testenv"
)

func TestPercentileAndSpread(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		in       []time.Duration
		p50, p99 float64
	}{
		{nil, 0, 0},
		{ms(7), 7, 7},
		{ms(5, 1, 3, 2, 4), 3, 5},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 5, 10},
	}
	for _, tt := range tests {
		g := NewWithT(t)
		g.Expect(percentile(tt.in, 50)).To(Equal(tt.p50), "%v", tt.in)
		g.Expect(percentile(tt.in, 99)).To(Equal(tt.p99), "%v", tt.in)
	}
	g := NewWithT(t)
	g.Expect(percentile(ms(5, 1, 3, 2, 4), 100)).To(Equal(5.0))
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
	data, err := r.png()
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
	md := r.markdown()
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
	md := r.markdown()
	g.Expect(md).To(ContainSubstring("| dry run | 25.0 | max (n=50) 50.0 | 25.0 | max (n=50) 50.0 |"))
	g.Expect(md).To(ContainSubstring("| 1 | 50 | 25.0 | max (n=50) 50.0 | 25.0 | max (n=50) 50.0 |"))
	g.Expect(md).NotTo(MatchRegexp(`\| p99 [0-9]`))
	g.Expect(md).To(ContainSubstring("| 0.0 | 95 | 0 |"))
	g.Expect(md).To(ContainSubstring("peak RSS (MiB) 231 (sampled)."))
	g.Expect(md).To(ContainSubstring("](BENCHMARKS-HISTORY.md)"))
	g.Expect(md).NotTo(ContainSubstring("What the suite found"))
}

// A failed or partial run leaves the last report and plot as they were; a
// complete one replaces both and leaves no temporary file.
func TestPublish(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	out, plot := filepath.Join(dir, "BENCHMARKS.md"), filepath.Join(dir, "BENCHMARKS.png")
	g.Expect(os.WriteFile(out, []byte("old report"), 0o644)).To(Succeed())
	g.Expect(os.WriteFile(plot, []byte("old plot"), 0o644)).To(Succeed())
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

	got, err := publish(out, []byte("new report"), []byte("new plot"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(plot))
	g.Expect(content(out)).To(Equal("new report"))
	g.Expect(content(plot)).To(Equal("new plot"))
	g.Expect(entries()).To(ConsistOf("BENCHMARKS.md", "BENCHMARKS.png"))
	info, err := os.Stat(out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o644)))

	// The plot cannot be replaced (a directory stands in its place): the
	// report stays the last one, and no temporary file is left.
	g.Expect(os.Remove(plot)).To(Succeed())
	g.Expect(os.Mkdir(plot, 0o755)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(plot, "keep"), nil, 0o644)).To(Succeed())
	_, err = publish(out, []byte("newer report"), []byte("newer plot"))
	g.Expect(err).To(MatchError(ContainSubstring("left as they were")))
	g.Expect(content(out)).To(Equal("new report"))
	g.Expect(entries()).To(ConsistOf("BENCHMARKS.md", "BENCHMARKS.png"))
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
	r := &report{Counts: []int{100}, PinnedCPUs: [2]int{0, 1}}
	g.Expect(r.pinnedTable()).To(BeEmpty())
	r.addPinned(100, measurement{Ready: 10 * time.Second, Deleted: 8 * time.Second}, measurement{Ready: 11 * time.Second, Deleted: 12 * time.Second})
	r.addPinned(100, measurement{Ready: 10 * time.Second, Deleted: 10 * time.Second}, measurement{Ready: 13 * time.Second, Deleted: 10 * time.Second})
	table := r.pinnedTable()
	g.Expect(table).To(ContainSubstring("pinned to CPU 0 and every process of the provider to CPU 1"))
	g.Expect(table).To(ContainSubstring("| 100 | 10.00 / 10.00 / 10.00 | 11.00 / 13.00 / 13.00 | 1.10 / 1.30 / 1.30 | 8.00 / 10.00 / 10.00 | 10.00 / 12.00 / 12.00 | 1.00 / 1.50 / 1.50 |"))
	g.Expect(r.markdown()).To(ContainSubstring("### Each cluster on a CPU of its own"))
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
	ms := func(ds ...int) []time.Duration {
		out := make([]time.Duration, len(ds))
		for i, d := range ds {
			out[i] = time.Duration(d) * time.Millisecond
		}
		return out
	}
	table := providersTable([]latencyRow{
		{Providers: 1, Stretch: ms(100), Peering: ms(2000), Watches: []int64{5}, RSS: 100 << 20, Goroutines: 300},
		{Providers: 2, Stretch: ms(150), Peering: ms(3000), Watches: []int64{5}, RSS: 110 << 20, Goroutines: 340},
		{Providers: 5, Stretch: ms(240, 250, 260), Peering: ms(1000, 2000, 4000), Watches: []int64{5, 6, 5}, RSS: 140 << 20, Goroutines: 460},
	})
	g.Expect(table).To(ContainSubstring("| 1 | 2.00 | 100 | - | 300 | - | 5 | 100.0 | 0.67 |"))
	g.Expect(table).To(ContainSubstring("| 2 | 3.00 | 110 | 10.0 | 340 | 40 | 5 | 150.0 | 1.00 |"))
	g.Expect(table).To(ContainSubstring("| 5 | 2.00 | 140 | 10.0 | 460 | 40 | 5 | 250.0 | 1.67 |"))
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
