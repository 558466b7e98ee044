package tenantpolicy

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/cachemetrics"
	"stretch.dev/stretch/internal/tenancy"
)

// The usage collector exports each TenantPolicy's limits and last reported
// usage when scraped: the series follow the policies (a home cluster without
// a policy has none, a removed limit goes).
var (
	usedDesc = prometheus.NewDesc("stretch_tenant_used",
		"What the pods of a home cluster request across its twins on this provider (status.used of its TenantPolicy), by resource: cpu in cores, memory and storage in bytes, pods a count.",
		[]string{"home_cluster_id", "resource"}, nil)
	limitDesc = prometheus.NewDesc("stretch_tenant_limit",
		"The limit the provider's TenantPolicy sets on what the pods of a home cluster request across its twins (spec.limits), by resource.",
		[]string{"home_cluster_id", "resource"}, nil)
	collector = cachemetrics.New(func() *peeringv1alpha1.TenantPolicyList { return &peeringv1alpha1.TenantPolicyList{} }, collectUsage, usedDesc, limitDesc)
)

func init() {
	metrics.Registry.MustRegister(collector)
}

func collectUsage(list *peeringv1alpha1.TenantPolicyList, ch chan<- prometheus.Metric) {
	for _, p := range list.Items {
		home := tenancy.HomeOfTenant(p.Namespace)
		if home == "" || p.Name != wellknown.TenantPolicyName {
			continue
		}
		for name, q := range p.Status.Used {
			ch <- prometheus.MustNewConstMetric(usedDesc, prometheus.GaugeValue, q.AsApproximateFloat64(), home, string(name))
		}
		for name, q := range p.Spec.Limits {
			ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, q.AsApproximateFloat64(), home, string(name))
		}
	}
}
