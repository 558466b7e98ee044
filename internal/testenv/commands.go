package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"stretch.dev/stretch/internal/testenv/machine"
)

// Command returns a function that runs bin/<tool> with its arguments, logs
// the command line and output, and returns an error that includes the output.
func Command(t testing.TB, tool string) func(args ...string) error {
	return func(args ...string) error {
		t.Helper()
		bin, err := machine.Binary(tool)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		t.Logf("$ %s %s\n%s", tool, strings.Join(args, " "), out.String())
		if err != nil {
			return fmt.Errorf("%s %s: %w\n%s", tool, strings.Join(args, " "), err, out.String())
		}
		return nil
	}
}

// writeVerbs are the verbs of apiserver_request_total that change objects.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true, "APPLY": true, "DELETECOLLECTION": true}

// Writes counts write requests by "VERB resource[/subresource]", with
// " (<code>)" appended for those that failed.
type Writes map[string]int64

// Total is the number of write requests.
func (w Writes) Total() int64 {
	var n int64
	for _, v := range w {
		n += v
	}
	return n
}

// Since returns the writes made after before was read.
func (w Writes) Since(before Writes) Writes {
	d := Writes{}
	for k, v := range w {
		if n := v - before[k]; n > 0 {
			d[k] = n
		}
	}
	return d
}

// APIWrites returns the write requests the API server of cfg served since
// it started, from its apiserver_request_total metric.
func APIWrites(ctx context.Context, cfg *rest.Config) (Writes, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parsing the API server's metrics: %w", err)
	}
	w := Writes{}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if !writeVerbs[labels["verb"]] {
			continue
		}
		key := labels["verb"] + " " + labels["resource"]
		if sub := labels["subresource"]; sub != "" {
			key += "/" + sub
		}
		// A refused write (a 404 of a duplicate delete, a conflict) is
		// counted apart: it costs a round trip, yet changes nothing.
		if code := labels["code"]; !strings.HasPrefix(code, "2") {
			key += " (" + code + ")"
		}
		w[key] += int64(m.GetCounter().GetValue())
	}
	return w, nil
}

// sumCounter sums the series of counter or gauge name that keep accepts
// in the Prometheus text exposition in.
func sumCounter(in io.Reader, name string, keep func(*dto.Metric) bool) (int64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(in)
	if err != nil {
		return 0, fmt.Errorf("parsing metrics: %w", err)
	}
	var n float64
	for _, m := range families[name].GetMetric() {
		if keep(m) {
			n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return int64(n), nil
}

// APIWatches returns the watches the API server of cfg serves now, from
// its apiserver_longrunning_requests gauge.
func APIWatches(ctx context.Context, cfg *rest.Config) (int64, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	return sumCounter(bytes.NewReader(data), "apiserver_longrunning_requests", func(m *dto.Metric) bool {
		for _, l := range m.GetLabel() {
			if l.GetName() == "verb" {
				return l.GetValue() == "WATCH"
			}
		}
		return false
	})
}

// CounterSum returns the sum of every series of counter (or gauge) name at
// the Prometheus endpoint url.
func CounterSum(ctx context.Context, url, name string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", url, err)
	}
	defer resp.Body.Close()
	return sumCounter(resp.Body, name, func(*dto.Metric) bool { return true })
}
