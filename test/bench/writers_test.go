package bench

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"stretch.dev/stretch/internal/testenv/kwok"
)

// writersRow is who sent the writes of one phase of a burst to one API
// server: by request, then by sender, per pod.
type writersRow struct {
	Scenario, Phase, Cluster string
	Pods                     int
	Writes                   map[string]map[string]int64
}

// writers runs one burst of vanilla on the provider and one of Stretch on
// clusters whose API servers log every write, and records who sent each:
// the writes tables count requests, this names their senders. The audit
// log costs the API servers a line per write, so these clusters time
// nothing.
func writers(t *testing.T, r *report) {
	n := 3
	if *full {
		n = 1000
	}
	b := setUpWith(t, kwok.Options{FakeNodes: n/100 + 1, DisableQPSLimits: true, AuditWrites: true})
	for _, sc := range []struct {
		name  string
		where []*kwok.Cluster
	}{{"vanilla", []*kwok.Cluster{b.provider}}, {"Stretch", []*kwok.Cluster{b.home, b.provider}}} {
		ns := vanilla
		if len(sc.where) == 2 {
			ns = offloaded
		}
		name := "writers-" + strings.ToLower(sc.name)
		start := time.Now()
		b.deploy(t, sc.where[0], ns, name, n)
		b.waitReady(t, sc.where[0], ns, name, n)
		ready := time.Now()
		if err := sc.where[0].Client.Delete(context.Background(), deployment(ns, name, n)); err != nil {
			t.Fatal(err)
		}
		if left := b.waitGone(t, 10*time.Minute, sc.where...); left > 0 {
			t.Fatalf("%d pods of %s left after 10 minutes", left, name)
		}
		gone := time.Now()
		for _, phase := range []struct {
			name     string
			from, to time.Time
		}{{"creation until Ready", start, ready}, {"deletion until gone", ready, gone}} {
			for _, c := range sc.where {
				w, err := c.AuditedWrites(phase.from, phase.to)
				if err != nil {
					t.Fatal(err)
				}
				role := map[*kwok.Cluster]string{b.home: "home", b.provider: "provider"}[c]
				r.Writers = append(r.Writers, writersRow{Scenario: sc.name, Phase: phase.name, Cluster: role, Pods: n, Writes: w})
				// A pod deleted twice was a second request for nothing.
				for sender, count := range w["DELETE pods (404)"] {
					if strings.HasPrefix(sender, "stretch-controller-manager ") {
						t.Errorf("%s, %s, %s: Stretch sent %d DELETE pods answered 404 for %d pods (as %s): it deletes pods already gone", sc.name, phase.name, role, count, n, sender)
					}
				}
			}
		}
	}
}

// writeReasons say, by request and sending program, why a write stays that
// the design does not ask for, or that is not one per pod as a reader of
// the table would expect.
var writeReasons = map[string]string{
	"POST events|stretch-controller-manager":               "two per pod by design (docs/design.md §4.15): the home pod's `Offloaded` event, and the events the provider records on its remote pod (here the scheduler's `Scheduled`) relayed to it; the recorder sends them in the background, so part of them is counted after the pods are Ready",
	"DELETE pods (404)|kwok-controller":                    "kwok, the simulated kubelet, deletes a pod once more after it is gone (a real kubelet deletes it once); vanilla pays it alike",
	"PUT deployments/status (409)|kube-controller-manager": "the deployment controller writes a status over a newer one and retries; vanilla pays it alike",
	"POST secrets (409)|stretch-controller-manager":        "the token Secret of a ServiceAccount is created by the first pod that needs it; the pods synced at the same moment try too, once per account and burst, not per pod",
}

// writersTable lists, per scenario, phase and cluster, every request and
// its senders per pod, with why it is sent when the design does not need it.
func writersTable(rows []writersRow) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nOne burst of %d pods, vanilla on the provider and Stretch, on clusters whose API servers log every write with its sender (user agent and user): the writes tables above count requests, this names who sends them. Per pod; senders below 0.01 per pod are left out.\n\n", rows[0].Pods)
	b.WriteString("| scenario | phase | cluster | request | sender | per pod | why |\n|---|---|---|---|---|---|---|\n")
	for _, row := range rows {
		type line struct {
			request, sender string
			n               int64
		}
		var lines []line
		for req, senders := range row.Writes {
			for s, n := range senders {
				lines = append(lines, line{req, s, n})
			}
		}
		slices.SortFunc(lines, func(a, b line) int {
			return cmp.Or(cmp.Compare(a.request, b.request), cmp.Compare(b.n, a.n), cmp.Compare(a.sender, b.sender))
		})
		for _, l := range lines {
			per := float64(l.n) / float64(row.Pods)
			if per < 0.01 {
				continue
			}
			program, _, _ := strings.Cut(l.sender, " as ")
			why := writeReasons[l.request+"|"+program]
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.2f | %s |\n", row.Scenario, row.Phase, row.Cluster, l.request, l.sender, per, why)
		}
	}
	return b.String()
}
