package virtualkubelet

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A counter integrates the provider's rates so that the rate between two
// of its values is the provider's rate at the later one.
func TestCPUCounter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type sample struct {
		nanoCores uint64
		at        time.Time
		window    time.Duration
	}
	for _, tc := range []struct {
		name    string
		samples []sample
		want    cpuCounter
	}{
		{"the first sample: its rate over its window", []sample{{250e6, t0, 30 * time.Second}}, cpuCounter{7.5e9, t0}},
		{"a first sample at zero still counts a nanosecond", []sample{{0, t0, 30 * time.Second}}, cpuCounter{1, t0}},
		{"the next sample: its rate since the one before", []sample{{250e6, t0, 30 * time.Second}, {500e6, t0.Add(15 * time.Second), 30 * time.Second}}, cpuCounter{7.5e9 + 7.5e9, t0.Add(15 * time.Second)}},
		{"the same sample again: unchanged", []sample{{250e6, t0, 30 * time.Second}, {250e6, t0, 30 * time.Second}}, cpuCounter{7.5e9, t0}},
		{"an older sample: ignored", []sample{{250e6, t0, 30 * time.Second}, {900e6, t0.Add(-time.Minute), 30 * time.Second}}, cpuCounter{7.5e9, t0}},
		{"a missed sample: the later rate over the whole gap", []sample{{1e9, t0, time.Second}, {2e9, t0.Add(time.Minute), time.Second}}, cpuCounter{1e9 + 120e9, t0.Add(time.Minute)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var c cpuCounter
			for _, s := range tc.samples {
				c.advance(s.nanoCores, s.at, s.window)
			}
			g.Expect(c).To(Equal(tc.want))
		})
	}
}

// The counters of a virtual node start at the sum of its pods' and never go
// down when a pod leaves; counters of pods that left are dropped.
func TestUsageCounters(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var u usageCounters
	a, b := containerKey{"a", "app"}, containerKey{"b", "app"}
	u.container(a, 1e9, t0, 10*time.Second)
	u.container(b, 1e9, t0, 10*time.Second)
	n := u.node("node", 2e9, 20e9, t0)
	g.Expect(n.total).To(BeEquivalentTo(20e9))
	n = u.node("node", 1e9, 0, t0.Add(10*time.Second))
	g.Expect(n.total).To(BeEquivalentTo(30e9), "pod b left: the node's counter goes on")
	u.forget(map[types.UID]bool{"a": true}, []string{"node"})
	g.Expect(u.containers).To(HaveKey(a))
	g.Expect(u.containers).NotTo(HaveKey(b))
	u.forget(nil, nil)
	g.Expect(u.containers).To(BeEmpty())
	g.Expect(u.nodes).To(BeEmpty())
}

// /metrics/resource carries the node figures only when they are one node's,
// and every pod's with its labels and times.
func TestFamiliesOf(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "u"}}
	pods := []podUsage{{pod: pod, containers: []containerUsage{
		{name: "app", start: t0.Add(-time.Hour), at: t0, nanoCores: 5e8, cpu: cpuCounter{total: 15e9, at: t0}, memory: 1 << 20},
		{name: "side", at: t0, nanoCores: 1e8, cpu: cpuCounter{total: 1e9, at: t0}, memory: 2 << 20},
	}}}
	node := &nodeUsage{name: "stretch-eu", at: t0.Add(time.Second), nanoCores: 6e8, cpu: cpuCounter{total: 16e9}, memory: 3 << 20}
	for _, tc := range []struct {
		name  string
		u     usage
		lines []string
		not   []string
	}{
		{"one virtual node", usage{pods: pods, node: node}, []string{
			`container_cpu_usage_seconds_total{container="app",namespace="ns",pod="web"} 15 1767225600000`,
			`container_cpu_usage_seconds_total{container="side",namespace="ns",pod="web"} 1 1767225600000`,
			`container_memory_working_set_bytes{container="app",namespace="ns",pod="web"} 1.048576e+06 1767225600000`,
			`container_start_time_seconds{container="app",namespace="ns",pod="web"} 1.767222e+09 1767222000000`,
			`node_cpu_usage_seconds_total 16 1767225601000`,
			`node_memory_working_set_bytes 3.145728e+06 1767225601000`,
			`pod_cpu_usage_seconds_total{namespace="ns",pod="web"} 16 1767225600000`,
			`scrape_error 0`,
		}, []string{`container_start_time_seconds{container="side"`}},
		{"several virtual nodes: no node figures", usage{pods: pods, failed: true}, []string{
			`container_cpu_usage_seconds_total{container="app",namespace="ns",pod="web"} 15 1767225600000`,
			`scrape_error 1`,
		}, []string{"node_cpu_usage_seconds_total", "node_memory_working_set_bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			out := promText(t, familiesOf(tc.u))
			for _, l := range tc.lines {
				g.Expect(out).To(ContainSubstring(l + "\n"))
			}
			for _, l := range tc.not {
				g.Expect(out).NotTo(ContainSubstring(l))
			}
		})
	}
}

// promText is families in the text format the kubelet API serves.
func promText(t *testing.T, families []*dto.MetricFamily) string {
	t.Helper()
	var out strings.Builder
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&out, f); err != nil {
			t.Fatal(err)
		}
	}
	return out.String()
}
