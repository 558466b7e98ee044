package tenantpolicy

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/tenancy"
)

// usageCollector exports each TenantPolicy's limits and last reported usage
// when scraped, from the manager's cache: the series follow the policies
// (a home cluster without a policy has none, a removed limit goes) with no
// bookkeeping of what was set before.
type usageCollector struct {
	reader atomic.Pointer[client.Reader]
}

var (
	usedDesc = prometheus.NewDesc("stretch_tenant_used",
		"What the pods of a home cluster request across its twins on this provider (status.used of its TenantPolicy), by resource: cpu in cores, memory and storage in bytes, pods a count.",
		[]string{"home_cluster_id", "resource"}, nil)
	limitDesc = prometheus.NewDesc("stretch_tenant_limit",
		"The limit the provider's TenantPolicy sets on what the pods of a home cluster request across its twins (spec.limits), by resource.",
		[]string{"home_cluster_id", "resource"}, nil)
	collector = &usageCollector{}
)

func init() {
	metrics.Registry.MustRegister(collector)
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- usedDesc
	ch <- limitDesc
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.reader.Load()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list := &peeringv1alpha1.TenantPolicyList{}
	if err := (*r).List(ctx, list); err != nil {
		ch <- prometheus.NewInvalidMetric(usedDesc, err)
		return
	}
	for _, p := range list.Items {
		home := tenancy.HomeOfTenant(p.Namespace)
		if home == "" || p.Name != peeringv1alpha1.TenantPolicyName {
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
