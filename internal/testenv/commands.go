package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Command returns a function that runs bin/<tool> with its arguments, logs
// the command line and output, and returns an error that includes the output.
func Command(t testing.TB, tool string) func(args ...string) error {
	return func(args ...string) error {
		t.Helper()
		bin, err := Binary(tool)
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

// APIWrites returns how many write requests the API server of cfg served
// since it started, from its apiserver_request_total metric.
func APIWrites(ctx context.Context, cfg *rest.Config) (int64, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("parsing the API server's metrics: %w", err)
	}
	var n float64
	for _, m := range families["apiserver_request_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "verb" && writeVerbs[l.GetValue()] {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int64(n), nil
}
