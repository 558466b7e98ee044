package bench

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
)

var (
	widePods      = flag.Int("wide-pods", 10000, "Pods of the full run's burst over many providers.")
	wideProviders = flag.Int("wide-providers", 5, "Providers of the full run's burst over many providers.")
)

// wideRow is one burst over many providers.
type wideRow struct {
	Pods, Providers int
	// Stretch: the pods created at home in a namespace offloaded with
	// Remote to every provider, until all Ready at home, then deleted
	// until none is left anywhere.
	Stretch, StretchDeleted time.Duration
	// Dual: the same number at home on its own nodes and, at once, each
	// provider's share on its own nodes.
	Dual, DualDeleted time.Duration
	// CPU and PeakRSS are the home manager's during the Stretch burst.
	CPU     time.Duration
	PeakRSS rssPeak
}

// wideBurst runs a burst of pods over many providers, against the same
// work without Stretch (docs: BENCHMARKS.md, "Pods over many providers").
func wideBurst(t *testing.T, r *report) {
	g := NewWithT(t)
	n, k := 10, 2
	if *full {
		n, k = *widePods, *wideProviders
	}
	names := []string{"home"}
	for i := range k {
		names = append(names, fmt.Sprintf("provider-%d", i+1))
	}
	// Nodes for the whole burst at home; each provider gets as many
	// (more than its share), as clusters do not differ by role here.
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: n/100 + 1, DisableQPSLimits: true}, names...)
	home, providers := clusters[0], clusters[1:]
	managers := installStretch(t, clusters, names)
	for _, p := range providers {
		peer(t, home, p)
	}
	g.Expect(home.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: offloaded}})).To(Succeed())
	g.Expect(testenv.Command(t, "stretchctl")("offload", "namespace", offloaded, "--kubeconfig", home.Kubeconfig, "--pod-offloading-strategy", "Remote", "--wait")).To(Succeed())
	for _, c := range clusters {
		g.Expect(c.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: vanilla}})).To(Succeed())
	}
	b := &bench{home: home}
	row := wideRow{Pods: n, Providers: k}

	before, err := testenv.UsageOf(managers[0].PID)
	g.Expect(err).NotTo(HaveOccurred())
	rss := startRSS(managers[0].PID, false)
	start := time.Now()
	b.deploy(t, home, offloaded, "wide", n)
	b.waitReady(t, home, offloaded, "wide", n)
	row.Stretch = time.Since(start)
	after, err := testenv.UsageOf(managers[0].PID)
	g.Expect(err).NotTo(HaveOccurred())
	row.CPU = after.CPU - before.CPU
	row.PeakRSS, err = rss.end()
	g.Expect(err).NotTo(HaveOccurred())
	start = time.Now()
	g.Expect(home.Client.Delete(context.Background(), deployment(offloaded, "wide", n))).To(Succeed())
	if left := b.waitGone(t, 20*time.Minute, clusters...); left > 0 {
		t.Fatalf("%d pods left 20 minutes after deleting the burst over %d providers", left, k)
	}
	row.StretchDeleted = time.Since(start)
	t.Logf("burst of %d pods over %d providers: Ready in %v, gone in %v", n, k, row.Stretch.Round(time.Millisecond), row.StretchDeleted.Round(time.Millisecond))

	// Without Stretch: home's own n, and each provider's share, at once.
	share := (n + k - 1) / k
	var wg sync.WaitGroup
	ready := make([]time.Duration, len(clusters))
	start = time.Now()
	for i, c := range clusters {
		count := n
		if i > 0 {
			count = share
		}
		wg.Go(func() {
			b.deploy(t, c, vanilla, "wide", count)
			b.waitReady(t, c, vanilla, "wide", count)
			ready[i] = time.Since(start)
		})
	}
	wg.Wait()
	row.Dual = slicesMax(ready)
	start = time.Now()
	for i, c := range clusters {
		count := n
		if i > 0 {
			count = share
		}
		g.Expect(c.Client.Delete(context.Background(), deployment(vanilla, "wide", count))).To(Succeed())
	}
	if left := b.waitGone(t, 20*time.Minute, clusters...); left > 0 {
		t.Fatalf("%d pods left 20 minutes after deleting the dual vanilla bursts", left)
	}
	row.DualDeleted = time.Since(start)
	r.Wide = append(r.Wide, row)
}

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
