package kwok

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// ContainersCRDs are the kwok CRDs that Containers needs: give them as
// Options.EnableCRDs.
var ContainersCRDs = []string{"ClusterLogs", "ClusterExec"}

// Containers says what kwok's fake kubelet answers for the containers of
// the pods it runs, which have no process: the log 'kubectl logs' shows,
// read from a file, and where 'kubectl exec' runs its command — on this
// machine, in a folder, with kwok's environment and ExecEnv. Its Objects
// (a ClusterLogs and a ClusterExec) take effect once created in a cluster
// started with ContainersCRDs enabled.
type Containers struct {
	// Name names the ClusterLogs and the ClusterExec.
	Name string
	// Namespaces are the namespaces whose pods are covered; none: every
	// namespace.
	Namespaces []string
	// LogsFile is the absolute path of the file 'kubectl logs' serves (and
	// follows with -f). Its lines must be in CRI log format (CRILog), or the
	// API server answers BadRequest.
	LogsFile string
	// PreviousLogsFile is the absolute path of the file 'kubectl logs
	// --previous' serves; empty: none.
	PreviousLogsFile string
	// ExecDir is the absolute path of the working directory of the commands
	// 'kubectl exec' runs.
	ExecDir string
	// ExecEnv are environment variables those commands get on top of kwok's
	// own.
	ExecEnv map[string]string
}

// Objects returns the ClusterLogs and the ClusterExec. The paths must be
// absolute: kwok would resolve relative ones against its own working
// directory.
func (c Containers) Objects() ([]*unstructured.Unstructured, error) {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("kwok containers: Name is empty: give a name to the ClusterLogs and ClusterExec"))
	}
	for _, f := range []struct {
		name, path string
		optional   bool
	}{{"LogsFile", c.LogsFile, false}, {"PreviousLogsFile", c.PreviousLogsFile, true}, {"ExecDir", c.ExecDir, false}} {
		if (f.path != "" || !f.optional) && !filepath.IsAbs(f.path) {
			errs = append(errs, fmt.Errorf("kwok containers %s: %s %q is not an absolute path, which kwok needs", c.Name, f.name, f.path))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	selector := map[string]any{}
	if len(c.Namespaces) > 0 {
		selector["matchNamespaces"] = toAny(c.Namespaces)
	}
	logs := map[string]any{"logsFile": c.LogsFile, "follow": true}
	if c.PreviousLogsFile != "" {
		logs["previousLogsFile"] = c.PreviousLogsFile
	}
	var env []any
	for _, k := range slices.Sorted(maps.Keys(c.ExecEnv)) {
		env = append(env, map[string]any{"name": k, "value": c.ExecEnv[k]})
	}
	local := map[string]any{"workDir": c.ExecDir}
	if len(env) > 0 {
		local["envs"] = env
	}
	object := func(kind string, spec map[string]any) *unstructured.Unstructured {
		spec["selector"] = selector
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": kwokGroup + "/v1alpha1",
			"kind":       kind,
			"metadata":   map[string]any{"name": c.Name},
			"spec":       spec,
		}}
	}
	return []*unstructured.Unstructured{
		// No container names: the entry serves every container.
		object("ClusterLogs", map[string]any{"logs": []any{logs}}),
		object("ClusterExec", map[string]any{"execs": []any{map[string]any{"local": local}}}),
	}, nil
}

// Manifest returns Objects as a YAML stream, for 'kubectl apply -f'.
func (c Containers) Manifest() ([]byte, error) {
	objects, err := c.Objects()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for i, o := range objects {
		if i > 0 {
			b.WriteString("---\n")
		}
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, err
		}
		b.Write(data)
	}
	return b.Bytes(), nil
}

// CRILog returns lines as a container log file in CRI format, each written
// to stdout at the time at, as a container runtime writes them.
func CRILog(at time.Time, lines ...string) string {
	var b strings.Builder
	for _, line := range lines {
		fmt.Fprintf(&b, "%s stdout F %s\n", at.UTC().Format(time.RFC3339Nano), line)
	}
	return b.String()
}

// toAny converts s for an unstructured object, whose deep copy handles
// []any but panics on []string.
func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
