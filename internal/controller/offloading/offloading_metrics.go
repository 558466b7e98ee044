package offloading

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/cachemetrics"
)

// The phase collector counts NamespaceOffloadings by phase when scraped: a
// gauge set by reconciles would need every object's last phase remembered
// to move counts between phases.
var (
	phasesDesc = prometheus.NewDesc("stretch_namespace_offloadings",
		"NamespaceOffloadings named offloading on this home cluster, by status.offloadingPhase (empty before the first reconcile).",
		[]string{"phase"}, nil)
	phases = cachemetrics.New(func() *offloadingv1alpha1.NamespaceOffloadingList {
		return &offloadingv1alpha1.NamespaceOffloadingList{}
	}, collectPhases, phasesDesc)
)

func init() {
	metrics.Registry.MustRegister(phases)
}

func collectPhases(list *offloadingv1alpha1.NamespaceOffloadingList, ch chan<- prometheus.Metric) {
	counts := map[offloadingv1alpha1.OffloadingPhase]int{}
	for _, phase := range []offloadingv1alpha1.OffloadingPhase{offloadingv1alpha1.ReadyPhase, offloadingv1alpha1.NoClusterSelectedPhase,
		offloadingv1alpha1.InProgressPhase, offloadingv1alpha1.SomeFailedPhase, offloadingv1alpha1.AllFailedPhase, offloadingv1alpha1.TerminatingPhase} {
		counts[phase] = 0 // every phase is always exported, so that alerts on it work
	}
	for _, o := range list.Items {
		if o.Name == wellknown.NamespaceOffloadingName {
			counts[o.Status.OffloadingPhase]++
		}
	}
	for phase, n := range counts {
		ch <- prometheus.MustNewConstMetric(phasesDesc, prometheus.GaugeValue, float64(n), string(phase))
	}
}
