package virtualkubelet

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
)

// Stages of a pod's offloading, measured from its binding to the virtual node.
const (
	stageCreated = "remote-created"
	stageRunning = "running"
)

// Metrics of the virtual kubelets, labelled by peering (the RemoteCluster's
// name).
type Metrics struct {
	offload   *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	twins     *prometheus.GaugeVec
	reflected *prometheus.GaugeVec
	refusals  *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		offload: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stretch_virtualkubelet_pod_offload_seconds",
			Help:    "Time from a pod's binding to a virtual node to its remote pod being created (stage remote-created) and to it being seen Running (stage running).",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300},
		}, []string{"peering", "stage"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stretch_virtualkubelet_errors_total",
			Help: "Failed requests to a provider or to the home cluster, by operation.",
		}, []string{"peering", "operation"}),
		twins: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stretch_virtualkubelet_twin_namespaces",
			Help: "Twin namespaces the virtual kubelet of a peering runs pods and reflects objects in.",
		}, []string{"peering"}),
		reflected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stretch_virtualkubelet_reflected_objects",
			Help: "Objects reflected into the twin namespaces of a peering, by kind (ConfigMap, Secret, Service, EndpointSlice, Ingress, PersistentVolumeClaim).",
		}, []string{"peering", "kind"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stretch_virtualkubelet_pod_refusals_total",
			Help: "Remote pod creations the provider refused for a cause the same pod meets again (its Pod Security level, quotas, limits, admission webhooks, validation), by the provider's status reason (Forbidden, Invalid, BadRequest, RequestEntityTooLarge); each attempt counts.",
		}, []string{"peering", "reason"}),
	}
	m.offload = register(reg, m.offload)
	m.errors = register(reg, m.errors)
	m.twins = register(reg, m.twins)
	m.reflected = register(reg, m.reflected)
	m.refusals = register(reg, m.refusals)
	return m
}

// register registers c with reg; when a manager runs again in the same
// process, the collector registered the first time is used.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("registering virtual kubelet metrics: %v", err))
	}
	return c
}

// observeStage records how long after its binding pod reached stage.
func (m *Metrics) observeStage(peering, stage string, pod *corev1.Pod, now time.Time) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() {
			m.offload.WithLabelValues(peering, stage).Observe(now.Sub(c.LastTransitionTime.Time).Seconds())
			return
		}
	}
}

// setReflected records the reflected objects of a peering.
func (m *Metrics) setReflected(peering string, counts map[string]int) {
	for kind, n := range counts {
		m.reflected.WithLabelValues(peering, kind).Set(float64(n))
	}
}

// forget removes the series of a peering that is gone.
func (m *Metrics) forget(peering string) {
	l := prometheus.Labels{"peering": peering}
	m.offload.DeletePartialMatch(l)
	m.errors.DeletePartialMatch(l)
	m.twins.DeletePartialMatch(l)
	m.reflected.DeletePartialMatch(l)
	m.refusals.DeletePartialMatch(l)
}

// countError counts err, when not nil, for operation.
func (k *Kubelet) countError(operation string, err error) {
	if err != nil {
		k.Metrics.errors.WithLabelValues(k.ProviderName, operation).Inc()
	}
}
