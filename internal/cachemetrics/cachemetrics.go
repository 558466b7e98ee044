// Package cachemetrics exports Prometheus series computed, at each scrape,
// from a list read from a manager's cache: the series then follow the
// objects (one deleted, its series go) with no record of what was exported
// before, which gauges set during reconciles would need.
package cachemetrics

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// scrapeTimeout bounds the list: a cache answers at once once synced.
const scrapeTimeout = 5 * time.Second

// Collector lists L when scraped and turns the list into metrics of its
// descriptions. It exports nothing until SetReader is called (before the
// manager that owns the cache is set up).
type Collector[L client.ObjectList] struct {
	descs   []*prometheus.Desc
	newList func() L
	collect func(L, chan<- prometheus.Metric)
	reader  atomic.Pointer[client.Reader]
}

// New returns a collector of descs: newList makes an empty list, collect
// sends the metrics of a list read.
func New[L client.ObjectList](newList func() L, collect func(L, chan<- prometheus.Metric), descs ...*prometheus.Desc) *Collector[L] {
	return &Collector[L]{descs: descs, newList: newList, collect: collect}
}

// SetReader sets where the list is read from, usually a manager's client.
func (c *Collector[L]) SetReader(r client.Reader) { c.reader.Store(&r) }

// Describe implements prometheus.Collector.
func (c *Collector[L]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector[L]) Collect(ch chan<- prometheus.Metric) {
	r := c.reader.Load()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	list := c.newList()
	if err := (*r).List(ctx, list); err != nil {
		for _, d := range c.descs {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	c.collect(list, ch)
}
