package bench

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"stretch.dev/stretch/internal/testenv/machine"
)

// The report is composed of one section per scenario, each measured on its
// own (a full run takes longer than a working session): the measurements
// are kept in BENCHMARKS.json next to the report, a run replaces the
// sections of the scenarios it ran and that succeeded, and BENCHMARKS.md
// and .png are rendered from the whole file.

// scenario is one subtest of TestBenchmarks and its section of the report.
type scenario struct {
	// name is the subtest's name, which BENCH_RUN matches, and the
	// section's key in BENCHMARKS.json.
	name string
	// heading is the section's title in BENCHMARKS.md.
	heading string
	run     func(*testing.T, *report)
	// flags are the flags that shape its measurements, recorded with it.
	flags []string
	// body is the section's Markdown under its heading and stamp.
	body func(*report) string
}

// scenarios are run, and rendered, in this order.
var scenarios = []scenario{
	{name: "pod burst", heading: "Pod burst", run: podBurst, flags: []string{"counts", "reps"}, body: burstMarkdown},
	{name: "pinned burst", heading: "Pod burst, each cluster on a CPU of its own", run: pinnedBursts, flags: []string{"pinned-counts", "pinned-reps"}, body: func(r *report) string { return r.pinnedTable() }},
	{name: "offload latency", heading: "Offload latency", run: offloadLatency, flags: []string{"providers", "latency-namespaces"}, body: offloadMarkdown},
	{name: "bulk offload", heading: "Bulk offload", run: bulkOffloads, flags: []string{"bulk"}, body: bulkMarkdown},
	{name: "who sends each write", heading: "Who sends each write", run: writers, body: func(r *report) string { return writersTable(r.Writers) }},
	{name: "pods over many providers", heading: "Pods over many providers", run: wideBurst, flags: []string{"wide-pods", "wide-providers"}, body: func(r *report) string { return wideTable(r.Wide) }},
}

// resultsFormat is the version of the shape of BENCHMARKS.json.
const resultsFormat = 1

// results are the contents of BENCHMARKS.json.
type results struct {
	Format int `json:"format"`
	// Sections are by scenario name. A section whose scenario no longer
	// exists is kept as it was, and not rendered.
	Sections map[string]*section `json:"sections"`
}

// section is one scenario's measurements and where they come from.
type section struct {
	Stamp   stamp   `json:"stamp"`
	Results *report `json:"results"`
}

// stamp says when, where, how and from which code a section was measured.
type stamp struct {
	// Measured is when the scenario started, UTC.
	Measured time.Time `json:"measured"`
	Machine  host      `json:"machine"`
	// Flags are the values of the scenario's flags, by name.
	Flags map[string]string `json:"flags,omitempty"`
	// Commit is `git rev-parse --short HEAD`, with "-dirty" when the tree
	// had changes, or "unknown" where git failed.
	Commit string `json:"commit"`
}

// host is the machine a section was measured on.
type host struct {
	Name       string `json:"name"`
	CPUs       int    `json:"cpus"`
	Go         string `json:"go"`
	Kubernetes string `json:"kubernetes"`
}

// seriesJSON is the persisted shape of a series.
type seriesJSON struct {
	Vanilla, Dual, Stretch []measurement `json:",omitempty"`
}

// reportFields is report without its methods: its exported fields, which
// encoding/json writes as they are.
type reportFields report

// reportJSON is the persisted shape of a report: its exported fields and
// the bursts by count, which the report keeps unexported.
type reportJSON struct {
	reportFields
	ByCount map[int]seriesJSON `json:",omitempty"`
	Pinned  map[int]seriesJSON `json:",omitempty"`
}

// MarshalJSON writes r as reportJSON.
func (r *report) MarshalJSON() ([]byte, error) {
	return json.Marshal(reportJSON{reportFields: reportFields(*r), ByCount: seriesToJSON(r.byCount), Pinned: seriesToJSON(r.pinned)})
}

// UnmarshalJSON reads r from reportJSON.
func (r *report) UnmarshalJSON(data []byte) error {
	var v reportJSON
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*r = report(v.reportFields)
	r.byCount, r.pinned = seriesFromJSON(v.ByCount), seriesFromJSON(v.Pinned)
	return nil
}

func seriesToJSON(m map[int]*series) map[int]seriesJSON {
	if m == nil {
		return nil
	}
	out := make(map[int]seriesJSON, len(m))
	for n, s := range m {
		out[n] = seriesJSON{Vanilla: s.vanilla, Dual: s.dual, Stretch: s.stretch}
	}
	return out
}

func seriesFromJSON(m map[int]seriesJSON) map[int]*series {
	if m == nil {
		return nil
	}
	out := make(map[int]*series, len(m))
	for n, s := range m {
		out[n] = &series{vanilla: s.Vanilla, dual: s.Dual, stretch: s.Stretch}
	}
	return out
}

// resultsPath is where the measurements behind the report out are kept:
// out with .json.
func resultsPath(out string) string {
	return strings.TrimSuffix(out, filepath.Ext(out)) + ".json"
}

// plotPath is where the plot of the report out is kept: out with .png.
func plotPath(out string) string {
	return strings.TrimSuffix(out, filepath.Ext(out)) + ".png"
}

// loadResults reads the measurements at path; none when it does not exist.
func loadResults(path string) (*results, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &results{Format: resultsFormat, Sections: map[string]*section{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the benchmark measurements %s: %w", path, err)
	}
	res := &results{}
	if err := json.Unmarshal(data, res); err != nil {
		return nil, fmt.Errorf("benchmark measurements %s: %w; restore it from git (git checkout -- %s) or remove it, which drops every section not measured again", path, err, filepath.Base(path))
	}
	if res.Format != resultsFormat {
		return nil, fmt.Errorf("benchmark measurements %s: format %d, this code reads format %d; restore it from git or remove it, which drops every section not measured again", path, res.Format, resultsFormat)
	}
	if res.Sections == nil {
		res.Sections = map[string]*section{}
	}
	return res, nil
}

// encode is res as BENCHMARKS.json holds it: indented, sections by name.
func (res *results) encode() ([]byte, error) {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the benchmark measurements: %w", err)
	}
	return append(data, '\n'), nil
}

// outcome is a scenario that ran in this run.
type outcome struct {
	name    string
	section *section
	// ok: it succeeded.
	ok bool
}

// runScenarios runs each of scs as a subtest of t, each into a report of
// its own stamped from shared, and returns those that ran.
func runScenarios(t *testing.T, scs []scenario, shared stamp) []outcome {
	var run []outcome
	for _, sc := range scs {
		// t.Run returns true for a subtest -run filters out: only one
		// that started ran.
		var ran bool
		s := &section{Results: &report{}}
		ok := t.Run(sc.name, func(t *testing.T) {
			ran = true
			s.Stamp = newStamp(shared, sc.flags)
			sc.run(t, s.Results)
		})
		if ran {
			run = append(run, outcome{name: sc.name, section: s, ok: ok})
		}
	}
	return run
}

// merge replaces res's section of each scenario of run that succeeded and
// keeps the previous one of each that failed (or none, if it was never
// measured). It returns what it did, a line per scenario, for the log, and
// the number of sections replaced.
func (res *results) merge(run []outcome) (log []string, replaced int) {
	for _, o := range run {
		old := res.Sections[o.name]
		switch {
		case o.ok:
			res.Sections[o.name] = o.section
			replaced++
			log = append(log, fmt.Sprintf("%s: measured again", o.name))
		case old != nil:
			log = append(log, fmt.Sprintf("%s: FAILED; its previous section (measured on %s at commit %s) is kept", o.name, old.Stamp.date(), old.Stamp.Commit))
		default:
			log = append(log, fmt.Sprintf("%s: FAILED; it was never measured and stays so", o.name))
		}
	}
	return log, replaced
}

// reportOf is the measurements of scenario name, nil if never measured.
func (res *results) reportOf(name string) *report {
	if s := res.Sections[name]; s != nil {
		return s.Results
	}
	return nil
}

// png draws the scale curves of the sections measured.
func (res *results) png() ([]byte, error) {
	return drawPlot(res.reportOf("pod burst"), res.reportOf("offload latency"), res.reportOf("bulk offload"))
}

// markdown is the whole report: every scenario's section, measured or not.
func (res *results) markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\nGenerated by `make bench` (test/bench) from the measurements kept in [BENCHMARKS.json](BENCHMARKS.json). Each section below is one scenario, measured on its own on a quiet machine: it says when, on which machine and at which commit, and how to measure it again; a run of some scenarios replaces their sections and keeps the others as they are. Values given as three figures are min / median / max of the repetitions.\n\n")
	b.WriteString("Clusters: kwokctl clusters (binary runtime) on the same machine, every component's client QPS limits lifted (`--disable-qps-limits`) for every compared run.\n\n")
	b.WriteString("![Scale curves: pod burst, offload latency, bulk offload](BENCHMARKS.png)\n\n")
	b.WriteString(rssNote)
	for _, sc := range scenarios {
		b.WriteString(sc.markdown(res.Sections[sc.name]))
	}
	fmt.Fprintf(&b, "\n## History\n\nWhat this suite found during development, and what was changed, is told in [%s](%s): hand-written, from single development runs, not regenerated by `make bench`; only the figures above are measured.\n", historyFile, historyFile)
	b.WriteString("\n## Reproduce\n\n```sh\nmake bench                              # every scenario\nmake bench BENCH_RUN='offload latency'  # one scenario (a -run pattern); the other sections are kept\nmake bench BENCH_FLAGS=\"-counts 100,1000 -reps 3\"  # other counts\n```\n")
	return b.String()
}

// markdown is sc's section: its heading, then where and when s was
// measured and its body, or a line saying it was never measured.
func (sc scenario) markdown(s *section) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## %s\n\n", sc.heading)
	if s == nil || s.Results == nil {
		fmt.Fprintf(&b, "Not measured yet: `%s` measures it.\n", sc.command(nil))
		return b.String()
	}
	st := s.Stamp
	fmt.Fprintf(&b, "_Measured on %s at commit %s, on %s (%d CPUs, Go %s, Kubernetes %s)", st.date(), st.Commit, st.Machine.Name, st.Machine.CPUs, st.Machine.Go, st.Machine.Kubernetes)
	if len(st.Flags) > 0 {
		fmt.Fprintf(&b, ", with `%s`", flagLine(st.Flags))
	}
	fmt.Fprintf(&b, ". Again: `%s`._\n", sc.command(st.Flags))
	b.WriteString(sc.body(s.Results))
	return b.String()
}

// command is the make command that measures sc again, with BENCH_FLAGS for
// the flags of flags that differ from their defaults.
func (sc scenario) command(flags map[string]string) string {
	c := fmt.Sprintf("make bench BENCH_RUN='%s'", sc.name)
	changed := map[string]string{}
	for name, v := range flags {
		if f := flag.Lookup(name); f == nil || f.DefValue != v {
			changed[name] = v
		}
	}
	if len(changed) > 0 {
		c += fmt.Sprintf(" BENCH_FLAGS='%s'", flagLine(changed))
	}
	return c
}

// flagLine is flags as command-line arguments, by name.
func flagLine(flags map[string]string) string {
	var args []string
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		args = append(args, "-"+name+" "+flags[name])
	}
	return strings.Join(args, " ")
}

// date is the day st was measured, UTC.
func (st stamp) date() string {
	return st.Measured.UTC().Format("2006-01-02")
}

// newStamp stamps a scenario starting now on this machine: the flags of
// names, the commit and machine of the run (here).
func newStamp(run stamp, names []string) stamp {
	st := run
	st.Measured = time.Now().UTC().Truncate(time.Second)
	st.Flags = nil
	for _, name := range names {
		if st.Flags == nil {
			st.Flags = map[string]string{}
		}
		v := "undefined"
		if f := flag.Lookup(name); f != nil {
			v = f.Value.String()
		}
		st.Flags[name] = v
	}
	return st
}

// runStamp is what every section of this run shares: the machine and the
// commit, taken before any scenario starts.
func runStamp() stamp {
	name, err := os.Hostname()
	if err != nil {
		name = "unknown"
	}
	return stamp{
		Machine: host{Name: name, CPUs: runtime.NumCPU(), Go: runtime.Version(), Kubernetes: kubernetesVersion()},
		Commit:  commit(*out),
	}
}

// kubernetesVersion is the version of the pinned kube-apiserver the
// clusters run (bin/), "unknown" if it cannot be asked.
func kubernetesVersion() string {
	path, err := machine.Binary("kube-apiserver")
	if err != nil {
		return "unknown"
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "unknown"
	}
	// "Kubernetes v1.37.2"
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "Kubernetes ")
}

// commit is the commit measured: HEAD, "-dirty" when the tree has changes
// (untracked files included), "unknown" where git fails. The report out
// and its measurements and plot do not count: a scenario measured after
// another, before they are committed, measures the same code.
func commit(out string) string {
	head, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	args := []string{"status", "--porcelain", "--", ":(top)"}
	if out != "" {
		abs, err := filepath.Abs(out)
		if err != nil {
			return "unknown"
		}
		for _, p := range []string{abs, resultsPath(abs), plotPath(abs)} {
			args = append(args, ":(exclude)"+p)
		}
	}
	status, err := exec.Command("git", args...).Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(head))
	if len(strings.TrimSpace(string(status))) > 0 {
		c += "-dirty"
	}
	return c
}
