package virtualkubelet

import (
	"cmp"
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/mux"
	dto "github.com/prometheus/client_model/go"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	"k8s.io/utils/ptr"
)

// The resource usage of offloaded pods (docs/design.md §4.24). A provider
// does not let a home cluster reach its kubelets, so the figures come from
// its metrics API (metrics.k8s.io PodMetrics in the twins, read with the
// peer's credentials), which gives, per container, a CPU rate averaged over
// a window and the memory working set. metrics-server, which scrapes
// /metrics/resource, wants a cumulative CPU counter and computes the rate
// itself between two scrapes: each container gets a counter here, advanced
// at every new sample of the provider by its rate times the time since the
// sample before, so that the rate metrics-server computes is the provider's.

// minCoreNanoSeconds seeds a counter whose first sample says no CPU was
// used: metrics-server drops a container whose counter is zero, and a
// started container has used some.
const minCoreNanoSeconds = 1

// cpuCounter is a cumulative CPU counter, in core-nanoseconds, as of at.
type cpuCounter struct {
	total uint64
	at    time.Time
}

// advance integrates a rate of nanoCores up to at. The first sample seeds
// the counter with what that rate used over its window.
func (c *cpuCounter) advance(nanoCores uint64, at time.Time, window time.Duration) {
	switch {
	case c.at.IsZero():
		c.total = max(uint64(float64(nanoCores)*window.Seconds()), minCoreNanoSeconds)
		c.at = at
	case at.After(c.at):
		c.total += uint64(float64(nanoCores) * at.Sub(c.at).Seconds())
		c.at = at
	}
}

// containerKey is a container of a home pod.
type containerKey struct {
	pod       types.UID
	container string
}

// usageCounters are the CPU counters of the containers of offloaded pods
// and of the virtual nodes. The zero value is ready.
type usageCounters struct {
	mu         sync.Mutex
	containers map[containerKey]*cpuCounter
	nodes      map[string]*cpuCounter
}

// container advances the counter of a container and returns it.
func (u *usageCounters) container(key containerKey, nanoCores uint64, at time.Time, window time.Duration) cpuCounter {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.containers == nil {
		u.containers = map[containerKey]*cpuCounter{}
	}
	c := u.containers[key]
	if c == nil {
		c = &cpuCounter{}
		u.containers[key] = c
	}
	c.advance(nanoCores, at, window)
	return *c
}

// node advances the counter of a virtual node whose pods use nanoCores at
// at, and whose pods' counters add up to seed, used as its first value.
func (u *usageCounters) node(name string, nanoCores, seed uint64, at time.Time) cpuCounter {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.nodes == nil {
		u.nodes = map[string]*cpuCounter{}
	}
	c := u.nodes[name]
	if c == nil {
		c = &cpuCounter{total: max(seed, minCoreNanoSeconds), at: at}
		u.nodes[name] = c
	}
	c.advance(nanoCores, at, 0)
	return *c
}

// forget drops the counters of pods not in keep and of nodes not in nodes.
func (u *usageCounters) forget(keep map[types.UID]bool, nodes []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k := range u.containers {
		if !keep[k.pod] {
			delete(u.containers, k)
		}
	}
	for n := range u.nodes {
		if !slices.Contains(nodes, n) {
			delete(u.nodes, n)
		}
	}
}

// containerUsage is one container's usage as served.
type containerUsage struct {
	name      string
	start     time.Time
	at        time.Time
	nanoCores uint64
	cpu       cpuCounter
	memory    uint64
}

// podUsage is one offloaded pod's usage as served.
type podUsage struct {
	pod        *corev1.Pod
	containers []containerUsage
}

// nodeUsage is a virtual node's usage: the sum of its pods'.
type nodeUsage struct {
	name      string
	start     time.Time
	at        time.Time
	nanoCores uint64
	cpu       cpuCounter
	memory    uint64
}

// usage is what the stats and metrics endpoints serve.
type usage struct {
	pods []podUsage
	// node is nil unless the usage is of one virtual node: its own path
	// (NodeMetricsPath), or the shared endpoints of a manager that runs
	// one virtual node only (a request there does not say which node it is
	// for).
	node *nodeUsage
	// failed tells that a provider's metrics could not be read.
	failed bool
}

// collectUsage reads the usage of every offloaded pod of the virtual node
// only (every virtual node of this manager when only is "") from the
// providers' metrics APIs, and advances the counters. The counters of the
// pods of the nodes not read are kept.
func (s *Set) collectUsage(ctx context.Context, only string) usage {
	s.mu.Lock()
	kubelets := make([]*Kubelet, 0, len(s.kubelets))
	for _, r := range s.kubelets {
		kubelets = append(kubelets, r.kubelet)
	}
	s.mu.Unlock()
	slices.SortFunc(kubelets, func(a, b *Kubelet) int { return cmp.Compare(a.NodeName, b.NodeName) })

	var out usage
	keep := map[types.UID]bool{}
	var nodes []string
	now := time.Now()
	read := 0
	for _, k := range kubelets {
		if only == "" || k.NodeName == only {
			read++
		}
	}
	for _, k := range kubelets {
		nodes = append(nodes, k.NodeName)
		if only != "" && k.NodeName != only {
			k.keepPods(keep)
			continue
		}
		pods, failed := k.podUsage(ctx, &s.usage, keep)
		out.pods = append(out.pods, pods...)
		out.failed = out.failed || failed
		if read != 1 {
			continue
		}
		n := &nodeUsage{name: k.NodeName, start: k.started, at: now}
		var seed uint64
		for _, p := range pods {
			for _, c := range p.containers {
				n.nanoCores += c.nanoCores
				n.memory += c.memory
				seed += c.cpu.total
			}
		}
		n.cpu = s.usage.node(k.NodeName, n.nanoCores, seed, now)
		out.node = n
	}
	s.usage.forget(keep, nodes)
	return out
}

// keepPods adds to keep the UIDs of the pods of k's node.
func (k *Kubelet) keepPods(keep map[types.UID]bool) {
	pods, _ := k.homePods.List(labels.Everything())
	for _, p := range pods {
		if p.Spec.NodeName == k.NodeName {
			keep[p.UID] = true
		}
	}
}

// podUsage returns the usage of the pods of k's node that the provider has
// metrics of, and whether a twin's metrics could not be read. keep gets the
// UIDs of k's pods.
func (k *Kubelet) podUsage(ctx context.Context, counters *usageCounters, keep map[types.UID]bool) ([]podUsage, bool) {
	pods, err := k.homePods.List(labels.Everything())
	if err != nil {
		return nil, true
	}
	byNamespace := map[string][]*corev1.Pod{}
	for _, p := range pods {
		if p.Spec.NodeName != k.NodeName {
			continue
		}
		keep[p.UID] = true
		byNamespace[p.Namespace] = append(byNamespace[p.Namespace], p)
	}
	var out []podUsage
	failed := false
	for _, ns := range slices.Sorted(maps.Keys(byNamespace)) {
		t := k.twins.get(ns)
		if t == nil {
			continue
		}
		list, err := k.podMetrics.PodMetricses(t.name).List(ctx, metav1.ListOptions{})
		k.countError("pod-metrics", err)
		if err != nil {
			failed = true
			if k.metricsFailing.CompareAndSwap(false, true) {
				k.Log.Info("the provider's pod metrics cannot be read: the kubelet API serves no CPU or memory figures for its pods until they can; "+
					"the provider needs a metrics API (e.g. metrics-server) serving metrics.k8s.io, and the home cluster the right to list pods of metrics.k8s.io in its twins (ClusterRole stretch-remote-workloads)",
					"twin", t.name, "error", err.Error())
			}
			continue
		}
		if k.metricsFailing.CompareAndSwap(true, false) {
			k.Log.Info("the provider's pod metrics can be read again", "twin", t.name)
		}
		byName := make(map[string]*metricsv1beta1.PodMetrics, len(list.Items))
		for i := range list.Items {
			byName[list.Items[i].Name] = &list.Items[i]
		}
		for _, p := range byNamespace[ns] {
			if m := byName[p.Name]; m != nil {
				out = append(out, podUsageOf(p, m, counters))
			}
		}
	}
	return out, failed
}

// podUsageOf turns the provider's metrics of home pod p into its usage.
func podUsageOf(p *corev1.Pod, m *metricsv1beta1.PodMetrics, counters *usageCounters) podUsage {
	started := map[string]time.Time{}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil {
			started[cs.Name] = cs.State.Running.StartedAt.Time
		}
	}
	u := podUsage{pod: p}
	for _, c := range m.Containers {
		nanoCores := uint64(max(c.Usage.Cpu().ScaledValue(-9), 0))
		u.containers = append(u.containers, containerUsage{
			name:      c.Name,
			start:     started[c.Name],
			at:        m.Timestamp.Time,
			nanoCores: nanoCores,
			cpu:       counters.container(containerKey{p.UID, c.Name}, nanoCores, m.Timestamp.Time, m.Window.Duration),
			memory:    uint64(max(c.Usage.Memory().Value(), 0)),
		})
	}
	slices.SortFunc(u.containers, func(a, b containerUsage) int { return cmp.Compare(a.name, b.name) })
	return u
}

// statsSummary serves /stats/summary from the providers' pod metrics.
func (s *Set) statsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	return summaryOf(s.collectUsage(ctx, "")), nil
}

// summaryOf is u as the kubelet's /stats/summary.
func summaryOf(u usage) *statsv1alpha1.Summary {
	sum := &statsv1alpha1.Summary{Pods: []statsv1alpha1.PodStats{}}
	if n := u.node; n != nil {
		at := metav1.NewTime(n.at)
		sum.Node = statsv1alpha1.NodeStats{
			NodeName:  n.name,
			StartTime: metav1.NewTime(n.start),
			CPU:       &statsv1alpha1.CPUStats{Time: at, UsageNanoCores: ptr.To(n.nanoCores), UsageCoreNanoSeconds: ptr.To(n.cpu.total)},
			Memory:    &statsv1alpha1.MemoryStats{Time: at, WorkingSetBytes: ptr.To(n.memory), UsageBytes: ptr.To(n.memory)},
		}
	}
	for _, p := range u.pods {
		ps := statsv1alpha1.PodStats{
			PodRef: statsv1alpha1.PodReference{Name: p.pod.Name, Namespace: p.pod.Namespace, UID: string(p.pod.UID)},
		}
		if p.pod.Status.StartTime != nil {
			ps.StartTime = *p.pod.Status.StartTime
		}
		var nanoCores, total, memory uint64
		var at time.Time
		for _, c := range p.containers {
			t := metav1.NewTime(c.at)
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
				Name:      c.name,
				StartTime: metav1.NewTime(c.start),
				CPU:       &statsv1alpha1.CPUStats{Time: t, UsageNanoCores: ptr.To(c.nanoCores), UsageCoreNanoSeconds: ptr.To(c.cpu.total)},
				Memory:    &statsv1alpha1.MemoryStats{Time: t, WorkingSetBytes: ptr.To(c.memory), UsageBytes: ptr.To(c.memory)},
			})
			nanoCores, total, memory, at = nanoCores+c.nanoCores, total+c.cpu.total, memory+c.memory, c.at
		}
		if len(p.containers) > 0 {
			t := metav1.NewTime(at)
			ps.CPU = &statsv1alpha1.CPUStats{Time: t, UsageNanoCores: ptr.To(nanoCores), UsageCoreNanoSeconds: ptr.To(total)}
			ps.Memory = &statsv1alpha1.MemoryStats{Time: t, WorkingSetBytes: ptr.To(memory), UsageBytes: ptr.To(memory)}
		}
		sum.Pods = append(sum.Pods, ps)
	}
	return sum
}

// metricsResource serves /metrics/resource from the providers' pod
// metrics.
func (s *Set) metricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	return familiesOf(s.collectUsage(ctx, "")), nil
}

// nodeMetricsResource serves the resource metrics of one virtual node, at
// peeringv1alpha1.VirtualNodeMetricsPath: its annotation
// wellknown.ResourceMetricsPathAnnotation names that path, so that
// metrics-server, which reaches every virtual node of a manager at the same
// address, reads each node's pods once, and gets node figures.
func (s *Set) nodeMetricsResource(w http.ResponseWriter, r *http.Request) {
	node := mux.Vars(r)["node"]
	vkapi.HandlePodMetricsResource(func(ctx context.Context) ([]*dto.MetricFamily, error) {
		return familiesOf(s.collectUsage(ctx, node)), nil
	})(w, r)
}

// familiesOf is u as the kubelet's /metrics/resource, the families and
// labels metrics-server reads, each sample with its time.
func familiesOf(u usage) []*dto.MetricFamily {
	family := func(name, help string, t dto.MetricType) *dto.MetricFamily {
		return &dto.MetricFamily{Name: ptr.To(name), Help: ptr.To(help), Type: ptr.To(t)}
	}
	sample := func(f *dto.MetricFamily, v float64, at time.Time, labels ...string) {
		m := &dto.Metric{TimestampMs: ptr.To(at.UnixMilli())}
		for i := 0; i+1 < len(labels); i += 2 {
			m.Label = append(m.Label, &dto.LabelPair{Name: ptr.To(labels[i]), Value: ptr.To(labels[i+1])})
		}
		if f.GetType() == dto.MetricType_COUNTER {
			m.Counter = &dto.Counter{Value: ptr.To(v)}
		} else {
			m.Gauge = &dto.Gauge{Value: ptr.To(v)}
		}
		f.Metric = append(f.Metric, m)
	}
	nodeCPU := family("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", dto.MetricType_COUNTER)
	nodeMemory := family("node_memory_working_set_bytes", "Current working set of the node in bytes", dto.MetricType_GAUGE)
	podCPU := family("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", dto.MetricType_COUNTER)
	podMemory := family("pod_memory_working_set_bytes", "Current working set of the pod in bytes", dto.MetricType_GAUGE)
	containerCPU := family("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", dto.MetricType_COUNTER)
	containerMemory := family("container_memory_working_set_bytes", "Current working set of the container in bytes", dto.MetricType_GAUGE)
	containerStart := family("container_start_time_seconds", "Start time of the container since unix epoch in seconds", dto.MetricType_GAUGE)
	scrapeError := family("scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", dto.MetricType_GAUGE)

	if n := u.node; n != nil {
		sample(nodeCPU, float64(n.cpu.total)/1e9, n.at)
		sample(nodeMemory, float64(n.memory), n.at)
	}
	for _, p := range u.pods {
		var total, memory uint64
		var at time.Time
		for _, c := range p.containers {
			l := []string{"container", c.name, "namespace", p.pod.Namespace, "pod", p.pod.Name}
			sample(containerCPU, float64(c.cpu.total)/1e9, c.at, l...)
			sample(containerMemory, float64(c.memory), c.at, l...)
			if !c.start.IsZero() {
				sample(containerStart, float64(c.start.UnixNano())/1e9, c.start, l...)
			}
			total, memory, at = total+c.cpu.total, memory+c.memory, c.at
		}
		if len(p.containers) > 0 {
			sample(podCPU, float64(total)/1e9, at, "namespace", p.pod.Namespace, "pod", p.pod.Name)
			sample(podMemory, float64(memory), at, "namespace", p.pod.Namespace, "pod", p.pod.Name)
		}
	}
	failed := 0.0
	if u.failed {
		failed = 1
	}
	scrapeError.Metric = []*dto.Metric{{Gauge: &dto.Gauge{Value: ptr.To(failed)}}}
	var out []*dto.MetricFamily
	for _, f := range []*dto.MetricFamily{containerCPU, containerMemory, containerStart, nodeCPU, nodeMemory, podCPU, podMemory, scrapeError} {
		if len(f.Metric) > 0 {
			out = append(out, f)
		}
	}
	return out
}
