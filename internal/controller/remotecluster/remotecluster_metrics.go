package remotecluster

import (
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	readyGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stretch_remote_cluster_ready",
		Help: "1 while the virtual node of the RemoteCluster is Ready, else 0.",
	}, []string{"remote_cluster"})
	probeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stretch_remote_cluster_probe_errors_total",
		Help: "Failed probes of a provider, by RemoteCluster and condition reason (Unreachable, Unauthorized, ...).",
	}, []string{"remote_cluster", "reason"})
)

func init() {
	metrics.Registry.MustRegister(readyGauge, probeErrors)
}

// observeProbe records the outcome of one probe of the provider of a RemoteCluster.
func observeProbe(remoteCluster string, ready readiness, f *failure) {
	v := 0.0
	if ready.status == metav1.ConditionTrue {
		v = 1
	}
	readyGauge.WithLabelValues(remoteCluster).Set(v)
	if f != nil {
		probeErrors.WithLabelValues(remoteCluster, f.reason).Inc()
	}
}

// forgetMetrics drops the series of a deleted RemoteCluster.
func forgetMetrics(remoteCluster string) {
	readyGauge.DeleteLabelValues(remoteCluster)
	probeErrors.DeletePartialMatch(prometheus.Labels{"remote_cluster": remoteCluster})
}
