package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"stretch.dev/stretch/internal/testenv"
)

// report gathers the measurements of a scenario, its section of the
// report; results_test.go persists it (reportJSON). Fields a scenario does
// not fill are left out of BENCHMARKS.json (omitzero).
type report struct {
	Counts []int `json:",omitzero"`
	Reps   int   `json:",omitzero"`
	Nodes  int   `json:",omitzero"`
	// Stuck is the number of pods left after a home manager restart in the
	// middle of a deletion.
	Stuck int `json:",omitzero"`

	byCount map[int]*series
	// pinned are the bursts with each cluster on a CPU of its own, by
	// count; PinnedCPUs says which (home's, the provider's).
	pinned     map[int]*series
	PinnedCPUs [2]int `json:",omitzero"`

	// BurstCPU and BurstPeakRSS are the home manager's CPU time over the
	// bursts and its peak resident memory during them.
	BurstCPU     time.Duration `json:",omitzero"`
	BurstPeakRSS rssPeak       `json:",omitzero"`
	// KubeVersion is the home API server's version, as it reports it.
	KubeVersion string `json:",omitzero"`
	// OffloadProviders is the number of providers of the offload runs.
	OffloadProviders int `json:",omitzero"`
	// Admission is pod creation latency with and without the webhook.
	Admission admission `json:",omitzero"`

	// Latency is NamespaceOffloading created → Ready, per provider count.
	Latency []latencyRow `json:",omitzero"`
	// Bulk are many namespaces offloaded at once to 2 providers, by size.
	Bulk []bulkRow `json:",omitzero"`
	// Writers name the senders of every write of a burst.
	Writers []writersRow `json:",omitzero"`
	// Wide are the bursts over many providers.
	Wide []wideRow `json:",omitzero"`
}

// latencyRow is one provider count of the offload latency.
type latencyRow struct {
	Providers, Namespaces int
	// Stretch: created → Ready; Direct: the same twins created directly.
	Stretch, Direct []time.Duration
	// Extended namespaces, offloaded before the last peerings, got their
	// twins on the new providers in Extension (after the peerings, before
	// the namespaces above).
	Extended  int
	Extension time.Duration
	// Peering is how long each provider peered at this step took, until
	// its virtual node was Ready; Watches are the watches the home
	// manager opened on each then.
	Peering []time.Duration
	Watches []int64
	// RSS and Goroutines are the home manager's after the extension.
	RSS, Goroutines int64
	// IdleCPU is the home manager's CPU time over IdleWindow after the
	// extension, with nothing being offloaded: what its peers cost it at
	// rest (probes, leases, watches). OffloadCPU is its CPU time over the
	// namespaces offloaded one at a time.
	IdleCPU, IdleWindow, OffloadCPU time.Duration `json:",omitzero"`
	// CPUBusy is the share of the machine's CPU time spent busy while
	// the namespaces were offloaded one at a time.
	CPUBusy float64
}

// admission is the duration of pod creations.
type admission struct {
	With, Without []time.Duration
	// DryRunWith and DryRunWithout are dry-run creations: admission only.
	DryRunWith, DryRunWithout []time.Duration
	// CPUWith and CPUWithout are the CPU time the home API server and
	// manager spent per dry run above.
	CPUWith, CPUWithout time.Duration
	// BurstWith and BurstWithout are dry runs made one at a time,
	// interleaved, while a burst of BurstPods pods is offloaded: the
	// webhook's cost under load. BurstWith16 and BurstWithout16: the same,
	// 16 at a time, during a second burst.
	BurstWith, BurstWithout     []time.Duration
	BurstWith16, BurstWithout16 []time.Duration
	BurstPods                   int
}

// bulkRow is the bulk offload against the same twins created directly.
type bulkRow struct {
	Namespaces      int
	Stretch, Direct time.Duration
	// CPU and PeakRSS are the home manager's during the bulk offload.
	CPU     time.Duration
	PeakRSS rssPeak
	// FailedReconciles are the reconciles of the three managers that
	// returned an error (and were retried) during the bulk offload.
	FailedReconciles int64
	// Writes and DirectWrites are the writes each API server (home, then
	// the providers) served during the offload and the direct creation.
	Writes, DirectWrites []testenv.Writes
	// RSSGrowth is how much the home manager's resident memory grew over
	// the offload; CPUByProcess is the CPU each process used during it.
	RSSGrowth    int64
	CPUByProcess map[string]time.Duration
	// Design and DesignWrites are the same offloads written by a client
	// that writes exactly the objects the design needs (designBaseline).
	Design       time.Duration
	DesignWrites []testenv.Writes
}

// growthTolerance is how far a cost may grow faster or slower than its
// work and still be called linear: runs of the same size on this machine
// vary by about that much.
const growthTolerance = 1.25

// growthPoint is a cost measured at a size of work.
type growthPoint struct{ size, cost float64 }

// growth states, as one list item, how cost grew with the work from the
// smallest size to the largest: linear, better or worse than linear. unit
// names one step of work ("pod", "namespace"). It says nothing with fewer
// than two sizes or a first cost of zero.
func growth(cost, unit string, points []growthPoint) string {
	points = slices.DeleteFunc(slices.Clone(points), func(p growthPoint) bool { return p.size <= 0 || p.cost <= 0 })
	if len(points) < 2 {
		return ""
	}
	first, last := points[0], points[len(points)-1]
	work, grew := last.size/first.size, last.cost/first.cost
	per := grew / work
	verdict := "linear"
	switch {
	case per > growthTolerance:
		verdict = "worse than linear"
	case per < 1/growthTolerance:
		verdict = "better than linear"
	}
	return fmt.Sprintf("- %s: ×%.2f from %g to %g %ss (×%.2f), ×%.2f per %s: **%s**.\n", cost, grew, first.size, last.size, unit, work, per, unit, verdict)
}

// growthNote says what the growth lines mean.
const growthNote = "Growth: each cost at the largest size against the smallest, divided by the growth of the work; within ×%.2f either way it is called linear.\n\n"

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// total is the writes of ws together.
func total(ws []testenv.Writes) int64 {
	var n int64
	for _, w := range ws {
		n += w.Total()
	}
	return n
}

// percentile returns the p-th percentile (nearest rank) of ds, in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	v := slices.Clone(ds)
	slices.Sort(v)
	i := int(float64(len(v))*p/100+0.5) - 1
	i = max(0, min(i, len(v)-1))
	return float64(v[i].Microseconds()) / 1000
}

// minTailSamples is the fewest samples a p99 is printed for. The nearest
// rank p99 of fewer than 100 samples is their maximum, and of fewer than
// 200 the next to it: the report prints the maximum, labelled so, instead.
const minTailSamples = 200

// tail is the p99 of ds in milliseconds, labelled "p99", or, with fewer
// than minTailSamples samples, their maximum labelled "max (n=…)".
func tail(ds []time.Duration) string {
	switch {
	case len(ds) == 0:
		return "no samples"
	case len(ds) < minTailSamples:
		return fmt.Sprintf("max (n=%d) %.1f", len(ds), percentile(ds, 100))
	default:
		return fmt.Sprintf("p99 %.1f", percentile(ds, 99))
	}
}

// tailNote explains the tail columns under a table.
const tailNote = "Tails: the 99th percentile (p99) of a cell of 200 samples or more; of fewer, their largest, printed as max (n=…).\n"

// rssNote explains the peak RSS figures.
const rssNote = "Peak RSS: the home manager's resident memory high-water mark (VmHWM), reset at the start of the phase (/proc/<pid>/clear_refs), so it is the peak of that phase alone; a figure marked (sampled) is the largest VmRSS read every 50 ms during the phase instead, where the reset was refused.\n"

// historyFile is the hand-written account of what the suite found during
// development, next to the report.
const historyFile = "BENCHMARKS-HISTORY.md"

// series are the repetitions of one pod count.
type series struct {
	vanilla, dual, stretch []measurement
}

// addPinned records one repetition of the bursts on pinned CPUs.
func (r *report) addPinned(n int, vanilla, stretch measurement) {
	if r.pinned == nil {
		r.pinned = map[int]*series{}
	}
	s := r.pinned[n]
	if s == nil {
		s = &series{}
		r.pinned[n] = s
	}
	s.vanilla = append(s.vanilla, vanilla)
	s.stretch = append(s.stretch, stretch)
}

func (r *report) add(n int, vanilla, dual, stretch measurement) {
	if r.byCount == nil {
		r.byCount = map[int]*series{}
	}
	s := r.byCount[n]
	if s == nil {
		s = &series{}
		r.byCount[n] = s
	}
	s.vanilla = append(s.vanilla, vanilla)
	s.dual = append(s.dual, dual)
	s.stretch = append(s.stretch, stretch)
}

// spread is the min, median and max of values.
type spread struct{ min, median, max float64 }

func spreadOf(values []float64) spread {
	v := slices.Clone(values)
	slices.Sort(v)
	if len(v) == 0 {
		return spread{}
	}
	return spread{v[0], v[len(v)/2], v[len(v)-1]}
}

func (s spread) String() string {
	return fmt.Sprintf("%.2f / %.2f / %.2f", s.min, s.median, s.max)
}

func seconds(ms []measurement, f func(measurement) time.Duration) []float64 {
	out := make([]float64, len(ms))
	for i, m := range ms {
		out[i] = f(m).Seconds()
	}
	return out
}

func values(ms []measurement, f func(measurement) float64) []float64 {
	out := make([]float64, len(ms))
	for i, m := range ms {
		out[i] = f(m)
	}
	return out
}

// ratios divides each repetition of a by the same repetition of b.
func ratios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		if b[i] > 0 {
			out[i] = a[i] / b[i]
		}
	}
	return out
}

// burstMarkdown is the pod burst's section: the bursts on shared CPUs, the
// restart mid-deletion and pod admission.
func burstMarkdown(r *report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nA home and a provider, %d kwok nodes each; %d repetitions per count.\n\n", r.Nodes, r.Reps)
	b.WriteString("A Deployment of N pause pods. **vanilla**: created on the provider directly, until all Ready. **dual vanilla**: one on the home cluster's own nodes and one on the provider at once. **Stretch**: created at home in a namespace offloaded to the provider with strategy Remote, until all Ready at home. Deletion: until no pod is left on either cluster.\n\n")
	b.WriteString("| N | vanilla ready (s) | dual vanilla ready (s) | Stretch ready (s) | Stretch / vanilla | Stretch / dual | vanilla deletion (s) | dual vanilla deletion (s) | Stretch deletion (s) | deletion Stretch / vanilla | deletion Stretch / dual | writes per pod, home | writes per pod, provider |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range r.Counts {
		s := r.byCount[n]
		if s == nil {
			continue
		}
		ready := func(m measurement) time.Duration { return m.Ready }
		deleted := func(m measurement) time.Duration { return m.Deleted }
		v, d, st := seconds(s.vanilla, ready), seconds(s.dual, ready), seconds(s.stretch, ready)
		vd, dd, sd := seconds(s.vanilla, deleted), seconds(s.dual, deleted), seconds(s.stretch, deleted)
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n,
			spreadOf(v), spreadOf(d), spreadOf(st), spreadOf(ratios(st, v)), spreadOf(ratios(st, d)),
			spreadOf(vd), spreadOf(dd), spreadOf(sd), spreadOf(ratios(sd, vd)), spreadOf(ratios(sd, dd)),
			spreadOf(values(s.stretch, func(m measurement) float64 { return m.HomeWrites })),
			spreadOf(values(s.stretch, func(m measurement) float64 { return m.ProviderWrites })))
	}
	var burstGrowth []string
	for _, c := range []struct {
		name string
		f    func(*series) []measurement
		d    func(measurement) time.Duration
	}{
		{"vanilla ready", func(s *series) []measurement { return s.vanilla }, func(m measurement) time.Duration { return m.Ready }},
		{"Stretch ready", func(s *series) []measurement { return s.stretch }, func(m measurement) time.Duration { return m.Ready }},
		{"vanilla deletion", func(s *series) []measurement { return s.vanilla }, func(m measurement) time.Duration { return m.Deleted }},
		{"Stretch deletion", func(s *series) []measurement { return s.stretch }, func(m measurement) time.Duration { return m.Deleted }},
	} {
		var points []growthPoint
		for _, n := range r.Counts {
			if s := r.byCount[n]; s != nil {
				points = append(points, growthPoint{float64(n), spreadOf(seconds(c.f(s), c.d)).median})
			}
		}
		if line := growth(c.name+" (median)", "pod", points); line != "" {
			burstGrowth = append(burstGrowth, line)
		}
	}
	if len(burstGrowth) > 0 {
		fmt.Fprintf(&b, "\n"+growthNote+"%s", growthTolerance, strings.Join(burstGrowth, ""))
	}
	b.WriteString("\nWrites per pod count every write request each API server served during the burst (kube-controller-manager, scheduler, kwok and Stretch together), divided by N.\n")
	b.WriteString(writesTable(r))
	fmt.Fprintf(&b, "\nPods left 2 minutes after a home manager restart in the middle of a deletion: **%d**.\n", r.Stuck)
	for _, n := range r.Counts {
		if s := r.byCount[n]; s != nil {
			fmt.Fprintf(&b, "Webhook calls per pod at N=%d: %s.\n", n, spreadOf(values(s.stretch, func(m measurement) float64 { return m.WebhookCalls })))
		}
	}
	fmt.Fprintf(&b, "\nHome manager over all the bursts: %.1f CPU seconds, peak RSS (MiB) %s.\n", r.BurstCPU.Seconds(), r.BurstPeakRSS)
	if len(r.Admission.With) > 0 {
		a := r.Admission
		fmt.Fprintf(&b, "\n### Pod admission\n\n%d bare pods created at home, %d at a time, without Stretch's webhook (a namespace that is not offloaded) and with it (the offloaded namespace). Dry runs pass admission, the webhook included, but store nothing and start nothing: the cost of admission alone. Real creations also start the pods (at home, or offloaded to the provider), which share the CPUs.\n\n", len(a.With), bulkWorkers)
		b.WriteString("| creation | without webhook p50 (ms) | tail (ms) | with webhook p50 (ms) | tail (ms) |\n|---|---|---|---|---|\n")
		fmt.Fprintf(&b, "| dry run | %.1f | %s | %.1f | %s |\n", percentile(a.DryRunWithout, 50), tail(a.DryRunWithout), percentile(a.DryRunWith, 50), tail(a.DryRunWith))
		fmt.Fprintf(&b, "| real | %.1f | %s | %.1f | %s |\n", percentile(a.Without, 50), tail(a.Without), percentile(a.With, 50), tail(a.With))
		if len(a.BurstWith) > 0 {
			fmt.Fprintf(&b, "| dry run during a burst of %d pods, one at a time | %.1f | %s | %.1f | %s |\n", a.BurstPods, percentile(a.BurstWithout, 50), tail(a.BurstWithout), percentile(a.BurstWith, 50), tail(a.BurstWith))
		}
		if len(a.BurstWith16) > 0 {
			fmt.Fprintf(&b, "| dry run during a burst of %d pods, %d at a time | %.1f | %s | %.1f | %s |\n", a.BurstPods, bulkWorkers, percentile(a.BurstWithout16, 50), tail(a.BurstWithout16), percentile(a.BurstWith16, 50), tail(a.BurstWith16))
		}
		if a.CPUWith > 0 {
			fmt.Fprintf(&b, "\nCPU per dry run, home API server and manager together: %.2f ms without the webhook, %.2f ms with it; **the webhook costs %.2f ms of CPU per pod**.\n",
				ms(a.CPUWithout), ms(a.CPUWith), ms(a.CPUWith-a.CPUWithout))
		}
		if len(a.BurstWith) > 0 {
			fmt.Fprintf(&b, "\nThe webhook's cost under the burst, p50 with it minus p50 without: **%.1f ms** for a client creating pods one at a time (target: at most 10 ms)", percentile(a.BurstWith, 50)-percentile(a.BurstWithout, 50))
			if len(a.BurstWith16) > 0 {
				fmt.Fprintf(&b, "; %.1f ms for one creating %d at a time, which adds its own load to the burst's: each request then waits for the CPU work of the requests queued before it, the webhook's included", percentile(a.BurstWith16, 50)-percentile(a.BurstWithout16, 50), bulkWorkers)
			}
			b.WriteString(".\n")
		}
		b.WriteString("\n" + tailNote)
	}
	return b.String()
}

// offloadMarkdown is the offload latency's section: namespaces offloaded
// one at a time by provider count, and what each provider costs.
func offloadMarkdown(r *report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nA home and %d providers of their own (an API server and etcd each: namespaces only, no pod).\n", r.OffloadProviders)
	if len(r.Latency) > 0 {
		b.WriteString("\nNamespaceOffloading created → phase Ready with a twin on every peered provider, one namespace at a time (the empty selector selects every provider). Baseline: a client creating the same twin namespaces on those providers directly (in parallel). Before each provider count, the new providers were peered, and the namespaces offloaded at the previous counts got their twins there (the last two columns, measured from the end of the peering): the measured namespaces start on a quiet system.\n\n")
		b.WriteString("| providers | namespaces | Stretch p50 (ms) | Stretch tail (ms) | direct p50 (ms) | direct tail (ms) | p50 ratio | namespaces extended to the new providers | in (s) | machine CPU busy (%) |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, l := range r.Latency {
			s50, d50 := percentile(l.Stretch, 50), percentile(l.Direct, 50)
			ratio := 0.0
			if d50 > 0 {
				ratio = s50 / d50
			}
			fmt.Fprintf(&b, "| %d | %d | %.1f | %s | %.1f | %s | %.1f | %d | %.2f | %.0f |\n", l.Providers, l.Namespaces, s50, tail(l.Stretch), d50, tail(l.Direct), ratio, l.Extended, l.Extension.Seconds(), 100*l.CPUBusy)
		}
		b.WriteString("\n" + tailNote)
		b.WriteString(providersTable(r.Latency))
	}
	return b.String()
}

// bulkMarkdown is the bulk offload's section: N namespaces offloaded at
// once, against the design baseline and direct creation.
func bulkMarkdown(r *report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nA home and 2 providers of their own (an API server and etcd each: namespaces only, no pod). N namespaces offloaded at once to the 2 providers (%d creations at a time), until all Ready. Baseline: the same 2×N twin namespaces created directly with client-go, %d at a time. Home manager CPU and peak RSS during the offload alone; failed reconciles (an error, then a retry) of the three managers.\n\n", bulkWorkers, bulkWorkers)
	b.WriteString("**design baseline**: the same offloads written, Stretch stopped, by one client that writes exactly the objects the design needs, at the same concurrency: the user's NamespaceOffloading, and per namespace its finalizer, the scheduling label and one status at home, and per provider the request, the twin namespace, its RoleBinding and the request's status (target: Stretch ≤ 1.5× it).\n\n")
	b.WriteString("| N | Stretch (s) | design baseline (s) | Stretch / design | direct (s) | Stretch / direct | writes per namespace, Stretch | design | direct | home manager CPU (s) | peak RSS (MiB) | failed reconciles |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Bulk {
		n := float64(row.Namespaces)
		fmt.Fprintf(&b, "| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %s | %d |\n", row.Namespaces, row.Stretch.Seconds(), row.Design.Seconds(),
			row.Stretch.Seconds()/max(row.Design.Seconds(), 1e-9), row.Direct.Seconds(), row.Stretch.Seconds()/max(row.Direct.Seconds(), 1e-9),
			float64(total(row.Writes))/n, float64(total(row.DesignWrites))/n, float64(total(row.DirectWrites))/n, row.CPU.Seconds(), row.PeakRSS, row.FailedReconciles)
	}
	b.WriteString(bulkGrowth(r.Bulk))
	b.WriteString(bulkCostTable(r.Bulk))
	b.WriteString(bulkWritesTable(r))
	return b.String()
}

// pinnedTable is the bursts with each cluster's processes (its API server,
// etcd, controllers, kwok and its Stretch manager) on a CPU of its own, as
// on machines of their own: vanilla on the provider's CPU alone, Stretch
// with home on its CPU and the provider on its. The CPU each side spent
// says which of them held the burst back.
func (r *report) pinnedTable() string {
	if len(r.pinned) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nA home and a provider, %d kwok nodes each; %d repetitions per count. Every process of the home cluster (API server, etcd, kube-controller-manager, scheduler, kwok, Stretch's manager) is pinned to CPU %d and every process of the provider to CPU %d (`sched_setaffinity` on each of their threads), as two machines would run them. **vanilla**: the Deployment on the provider alone, its CPU only. **Stretch**: created at home in the offloaded namespace, home and provider on their CPUs. Vanilla and Stretch take turns at going first, and each burst starts once both CPUs have been under %.0f%% busy for %d s. Target: Stretch / vanilla ≤ 1.2 for ready and deletion.\n\n",
		r.Nodes, r.Reps, r.PinnedCPUs[0], r.PinnedCPUs[1], quietBusy*100, quietSeconds)
	b.WriteString("| N | vanilla ready (s) | Stretch ready (s) | Stretch / vanilla | vanilla deletion (s) | Stretch deletion (s) | deletion Stretch / vanilla | CPU s, vanilla's provider | CPU s, Stretch's home | CPU s, Stretch's provider |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range r.Counts {
		s := r.pinned[n]
		if s == nil {
			continue
		}
		v, st := seconds(s.vanilla, func(m measurement) time.Duration { return m.Ready }), seconds(s.stretch, func(m measurement) time.Duration { return m.Ready })
		vd, sd := seconds(s.vanilla, func(m measurement) time.Duration { return m.Deleted }), seconds(s.stretch, func(m measurement) time.Duration { return m.Deleted })
		cpu := func(ms []measurement, side int) spread {
			return spreadOf(seconds(ms, func(m measurement) time.Duration { return m.CPU[side] }))
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, spreadOf(v), spreadOf(st), spreadOf(ratios(st, v)), spreadOf(vd), spreadOf(sd), spreadOf(ratios(sd, vd)),
			cpu(s.vanilla, 1), cpu(s.stretch, 0), cpu(s.stretch, 1))
	}
	b.WriteString("\nCPU seconds: of every process of that side, from creation until the last pod is gone. A side whose CPU time is close to the burst's duration had its CPU busy all along: it set the pace.\n")
	return b.String()
}

// writesTable breaks down the writes per pod of the largest burst's last
// repetition by request: vanilla on the provider, Stretch on each side.
func writesTable(r *report) string {
	if len(r.Counts) == 0 || r.byCount[r.Counts[len(r.Counts)-1]] == nil {
		return ""
	}
	n := r.Counts[len(r.Counts)-1]
	s := r.byCount[n]
	vanilla, stretch := s.vanilla[len(s.vanilla)-1], s.stretch[len(s.stretch)-1]
	cols := []testenv.Writes{vanilla.Writes[1], stretch.Writes[0], stretch.Writes[1]}
	keys := requests(cols)
	var b strings.Builder
	fmt.Fprintf(&b, "\nWrites per pod at N=%d by request (last repetition, from creation until all Ready):\n\n| request | vanilla, provider | Stretch, home | Stretch, provider |\n|---|---|---|---|\n", n)
	per := func(w testenv.Writes, k string) string { return fmt.Sprintf("%.2f", float64(w[k])/float64(n)) }
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", k, per(cols[0], k), per(cols[1], k), per(cols[2], k))
	}
	fmt.Fprintf(&b, "| **total** | %.2f | %.2f | %.2f |\n", float64(cols[0].Total())/float64(n), float64(cols[1].Total())/float64(n), float64(cols[2].Total())/float64(n))
	return b.String()
}

// bulkWritesTable breaks down the writes per namespace of the largest bulk
// offload by request and cluster, against the direct creation's.
func bulkWritesTable(r *report) string {
	if len(r.Bulk) == 0 || len(r.Bulk[len(r.Bulk)-1].Writes) == 0 {
		return ""
	}
	row := r.Bulk[len(r.Bulk)-1]
	n := float64(row.Namespaces)
	sum := func(ws []testenv.Writes) testenv.Writes {
		all := testenv.Writes{}
		for _, w := range ws {
			for k, v := range w {
				all[k] += v
			}
		}
		return all
	}
	design := []testenv.Writes{{}, {}}
	if len(row.DesignWrites) > 0 {
		design = []testenv.Writes{row.DesignWrites[0], sum(row.DesignWrites[1:])}
	}
	cols := []testenv.Writes{row.Writes[0], sum(row.Writes[1:]), design[0], design[1], sum(row.DirectWrites)}
	keys := requests(cols)
	var b strings.Builder
	fmt.Fprintf(&b, "\nWrites per namespace at N=%d by request (every write each API server served, a kube-controller-manager's included when the cluster runs one):\n\n| request | Stretch, home | Stretch, providers | design, home | design, providers | direct, providers |\n|---|---|---|---|---|---|\n", row.Namespaces)
	line := func(name string, v func(testenv.Writes) int64) {
		fmt.Fprintf(&b, "| %s |", name)
		for _, c := range cols {
			fmt.Fprintf(&b, " %.2f |", float64(v(c))/n)
		}
		b.WriteString("\n")
	}
	for _, k := range keys {
		line(k, func(w testenv.Writes) int64 { return w[k] })
	}
	line("**total**", testenv.Writes.Total)
	return b.String()
}

// requests returns the requests written in any of cols, sorted.
func requests(cols []testenv.Writes) []string {
	var keys []string
	for _, w := range cols {
		for k := range w {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// providersTable is what each provider count costs the home manager: the
// peering of each new provider until its virtual node is Ready, its
// memory and goroutines once the existing namespaces reached the new
// providers, and the watches it opened on each. Per provider: the growth
// from the first count, divided by the providers added.
func providersTable(rows []latencyRow) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n### What each provider costs the home manager\n\nAt each count, after the new providers were peered (peering: `stretchctl peer --wait` until the virtual node is Ready, median of the new ones) and the namespaces offloaded before reached them: the home manager's resident memory (VmRSS), its CPU at rest (over %s with nothing offloaded, in thousandths of a CPU) and goroutines, and the watches opened on each new provider's API server (`apiserver_longrunning_requests{verb=\"WATCH\"}` before and after its peering, each read once the count stopped changing: the watches the peering opened there, the home manager's and any the provider's manager opens for the new tenant). Per provider: the growth from the first count, divided by the providers added. CPU per offload: the home manager's CPU time while the namespaces of the count were offloaded, divided by them. Target: at most 25 MiB per idle provider; offload p50 at 20 providers at most 2× the p50 at 2. Every provider of a count does its share of each offload (its twin, RoleBinding and request status) on the same CPUs as the others: the last column is the same growth for a client creating the twin namespaces directly, the part of the growth that is this machine's.\n\n", rows[0].IdleWindow)
	b.WriteString("| providers | peering (s) | RSS (MiB) | RSS per added provider (MiB) | idle CPU (millicores) | idle CPU per added provider (millicores) | CPU per offload (ms) | goroutines | goroutines per added provider | watches per provider | offload p50 (ms) | p50 / p50 at 2 | direct p50 / direct p50 at 2 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	first := rows[0]
	var at2, directAt2 float64
	for _, l := range rows {
		if l.Providers == 2 {
			at2, directAt2 = percentile(l.Stretch, 50), percentile(l.Direct, 50)
		}
	}
	for _, l := range rows {
		peering := make([]float64, len(l.Peering))
		for i, d := range l.Peering {
			peering[i] = d.Seconds()
		}
		watches := make([]float64, len(l.Watches))
		for i, w := range l.Watches {
			watches[i] = float64(w)
		}
		added := l.Providers - first.Providers
		perRSS, perG := "-", "-"
		if added > 0 {
			perRSS = fmt.Sprintf("%.1f", float64(l.RSS-first.RSS)/float64(added)/(1<<20))
			perG = fmt.Sprintf("%.0f", float64(l.Goroutines-first.Goroutines)/float64(added))
		}
		// Rows measured before the CPU was: dashes, not zeros.
		idle, perIdle, perOffload := "-", "-", "-"
		if l.IdleWindow > 0 {
			idle = fmt.Sprintf("%.1f", millicores(l))
			if added > 0 {
				perIdle = fmt.Sprintf("%.1f", (millicores(l)-millicores(first))/float64(added))
			}
			if len(l.Stretch) > 0 {
				perOffload = fmt.Sprintf("%.1f", float64(l.OffloadCPU.Microseconds())/1000/float64(len(l.Stretch)))
			}
		}
		p50, vs2, directVs2 := percentile(l.Stretch, 50), "-", "-"
		if at2 > 0 {
			vs2 = fmt.Sprintf("%.2f", p50/at2)
		}
		if directAt2 > 0 {
			directVs2 = fmt.Sprintf("%.2f", percentile(l.Direct, 50)/directAt2)
		}
		fmt.Fprintf(&b, "| %d | %.2f | %.0f | %s | %s | %s | %s | %d | %s | %.0f | %.1f | %s | %s |\n", l.Providers, spreadOf(peering).median, float64(l.RSS)/(1<<20), perRSS,
			idle, perIdle, perOffload, l.Goroutines, perG, spreadOf(watches).median, p50, vs2, directVs2)
	}
	// What the providers added to the first count's, against the providers
	// added; the extensions, against the twins they created.
	var rss, idle, perOffloadCPU, goroutines, extension []growthPoint
	prev := 0
	for _, l := range rows {
		if l.IdleWindow > 0 && len(l.Stretch) > 0 {
			perOffloadCPU = append(perOffloadCPU, growthPoint{float64(l.Providers), l.OffloadCPU.Seconds() / float64(len(l.Stretch))})
		}
		if added := float64(l.Providers - first.Providers); added > 0 {
			rss = append(rss, growthPoint{added, float64(l.RSS - first.RSS)})
			if l.IdleWindow > 0 {
				idle = append(idle, growthPoint{added, millicores(l) - millicores(first)})
			}
			goroutines = append(goroutines, growthPoint{added, float64(l.Goroutines - first.Goroutines)})
		}
		if twins := float64(l.Extended * (l.Providers - prev)); twins > 0 {
			extension = append(extension, growthPoint{twins, l.Extension.Seconds()})
		}
		prev = l.Providers
	}
	lines := growth("home manager RSS added by the providers peered after the first", "provider", rss) +
		growth("home manager idle CPU added by them", "provider", idle) +
		growth("home manager CPU per offload, against the providers it writes to", "provider", perOffloadCPU) +
		growth("home manager goroutines added by them", "provider", goroutines) +
		growth("time to extend the namespaces already offloaded to the new providers", "twin", extension)
	if lines != "" {
		fmt.Fprintf(&b, "\n"+growthNote+"%s", growthTolerance, lines)
	}
	return b.String()
}

// millicores is the home manager's CPU at rest in row l, in thousandths of
// a CPU; 0 when it was not measured.
func millicores(l latencyRow) float64 {
	if l.IdleWindow <= 0 {
		return 0
	}
	return 1000 * l.IdleCPU.Seconds() / l.IdleWindow.Seconds()
}

// bulkGrowth states how the bulk offloads' costs grew with N.
func bulkGrowth(rows []bulkRow) string {
	var lines []string
	for _, c := range []struct {
		name string
		v    func(bulkRow) float64
	}{
		{"Stretch", func(r bulkRow) float64 { return r.Stretch.Seconds() }},
		{"design baseline", func(r bulkRow) float64 { return r.Design.Seconds() }},
		{"direct", func(r bulkRow) float64 { return r.Direct.Seconds() }},
		{"home manager CPU", func(r bulkRow) float64 { return r.CPU.Seconds() }},
	} {
		points := make([]growthPoint, len(rows))
		for i, r := range rows {
			points[i] = growthPoint{float64(r.Namespaces), c.v(r)}
		}
		if line := growth(c.name, "namespace", points); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return fmt.Sprintf("\n"+growthNote+"%s", growthTolerance, strings.Join(lines, ""))
}

// bulkCostTable is, per bulk offload, the home manager's memory growth per
// namespace and where the CPU went, per process.
func bulkCostTable(rows []bulkRow) string {
	if len(rows) == 0 || rows[0].CPUByProcess == nil {
		return ""
	}
	names := slices.Sorted(maps.Keys(rows[0].CPUByProcess))
	var b strings.Builder
	b.WriteString("\nThe home manager's resident memory growth per offloaded namespace (VmRSS after minus before, divided by N; the Go heap's collections make it noisy; target at most 20 KiB), and the CPU seconds each process used during the offload:\n\n| N | RSS growth per namespace (KiB) |")
	for _, n := range names {
		fmt.Fprintf(&b, " %s |", n)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(names)) + "\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %d | %.1f |", row.Namespaces, float64(row.RSSGrowth)/float64(row.Namespaces)/1024)
		for _, n := range names {
			fmt.Fprintf(&b, " %.1f |", row.CPUByProcess[n].Seconds())
		}
		b.WriteString("\n")
	}
	return b.String()
}

// wideTable is the bursts over many providers against dual vanilla.
func wideTable(rows []wideRow) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nA Deployment of N pause pods created at home in a namespace offloaded with strategy Remote to every provider, until all Ready at home, then deleted until no pod is left anywhere. **dual vanilla**: the same N on the home cluster's own nodes and, at once, each provider's share (N / providers) on its own nodes, without Stretch: the API work offloading cannot avoid. Target: Stretch ≤ 1.2× dual vanilla. Home manager CPU and peak RSS during the Stretch burst.\n\n")
	b.WriteString("| N | providers | Stretch ready (s) | dual vanilla ready (s) | ratio | Stretch deletion (s) | dual vanilla deletion (s) | ratio | home manager CPU (s) | peak RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range rows {
		fmt.Fprintf(&b, "| %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %s |\n", w.Pods, w.Providers,
			w.Stretch.Seconds(), w.Dual.Seconds(), w.Stretch.Seconds()/max(w.Dual.Seconds(), 1e-9),
			w.StretchDeleted.Seconds(), w.DualDeleted.Seconds(), w.StretchDeleted.Seconds()/max(w.DualDeleted.Seconds(), 1e-9),
			w.CPU.Seconds(), w.PeakRSS)
	}
	return b.String()
}
