package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// unreachableKubeconfig points at a port where nothing listens.
const unreachableKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`

func TestCommandErrors(t *testing.T) {
	dir := t.TempDir()
	unreachable := filepath.Join(dir, "unreachable")
	NewWithT(t).Expect(os.WriteFile(unreachable, []byte(unreachableKubeconfig), 0o600)).To(Succeed())

	tests := []struct {
		name      string
		args      []string
		wantUsage bool
		wantErr   string
	}{
		{name: "unknown flag", args: []string{"install", "--bogus"}, wantUsage: true, wantErr: "unknown flag: --bogus (see 'stretchctl install --help')"},
		{name: "positional argument", args: []string{"install", "extra", "--cluster-name", "a"}, wantUsage: true, wantErr: `takes no arguments, got "extra"`},
		{name: "missing cluster name", args: []string{"install", "--kubeconfig", unreachable}, wantUsage: true, wantErr: "pass --cluster-name"},
		{name: "bad labels", args: []string{"install", "--cluster-name", "a", "--cluster-labels", "region"}, wantUsage: true, wantErr: "not of the form key=value"},
		{name: "missing kubeconfig", args: []string{"install", "--cluster-name", "a", "--kubeconfig", filepath.Join(dir, "nope")}, wantErr: "pass an existing file with --kubeconfig"},
		{name: "unreachable cluster", args: []string{"install", "--cluster-name", "a", "--kubeconfig", unreachable}, wantErr: "cannot reach the cluster at https://127.0.0.1:1"},
		{name: "uninstall, unreachable cluster", args: []string{"uninstall", "--kubeconfig", unreachable}, wantErr: "check that the API server is running"},
		{name: "offload nothing", args: []string{"offload", "namespace", "--kubeconfig", unreachable}, wantUsage: true, wantErr: "name at least one namespace"},
		{name: "offload names and selector", args: []string{"offload", "namespace", "foo", "--ns-selector", "a=b"}, wantUsage: true, wantErr: "not both"},
		{name: "offload bad strategy", args: []string{"offload", "namespace", "foo", "--pod-offloading-strategy", "Anywhere"}, wantUsage: true, wantErr: "must be one of LocalAndRemote, Local, Remote"},
		{name: "offload bad selector", args: []string{"offload", "namespace", "foo", "--selector", "region in eu"}, wantUsage: true, wantErr: `--selector "region in eu"`},
		{name: "offload SelectedName without a name", args: []string{"offload", "namespace", "foo", "--namespace-mapping-strategy", "SelectedName"}, wantUsage: true, wantErr: "needs --remote-namespace-name"},
		{name: "offload bad output", args: []string{"offload", "namespace", "foo", "-o", "wide"}, wantUsage: true, wantErr: `--output "wide": use yaml or json`},
		{name: "offload, unreachable cluster", args: []string{"offload", "namespace", "foo", "--kubeconfig", unreachable}, wantErr: "cannot reach the home cluster"},
		{name: "unoffload nothing", args: []string{"unoffload", "namespace"}, wantUsage: true, wantErr: "name at least one namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			cmd := newRootCommand("stretchctl")
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(tt.args)
			err := cmd.ExecuteContext(context.Background())
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
			var usage usageError
			g.Expect(errors.As(err, &usage)).To(Equal(tt.wantUsage), "usage errors exit with code 2, others with 1")
			g.Expect(out.String()).NotTo(ContainSubstring("Installing"), "nothing is attempted on a cluster")
		})
	}
}

// -o prints what would be applied, without a cluster.
func TestOffloadPrintsManifest(t *testing.T) {
	g := NewWithT(t)
	cmd := newRootCommand("stretchctl")
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"offload", "namespace", "foo", "--selector", "region in (eu,us-west), !staging", "--selector", "tier=gold",
		"--pod-offloading-strategy", "Remote", "-o", "yaml", "--kubeconfig", filepath.Join(t.TempDir(), "none")})
	g.Expect(cmd.ExecuteContext(context.Background())).To(Succeed())
	g.Expect(out.String()).To(Equal(`apiVersion: offloading.stretch.dev/v1alpha1
kind: NamespaceOffloading
metadata:
  name: offloading
  namespace: foo
spec:
  clusterSelector:
    nodeSelectorTerms:
    - matchExpressions:
      - key: region
        operator: In
        values:
        - eu
        - us-west
      - key: staging
        operator: DoesNotExist
    - matchExpressions:
      - key: tier
        operator: In
        values:
        - gold
  namespaceMappingStrategy: DefaultName
  podOffloadingStrategy: Remote
`))
}

func TestUnoffloadConfirmation(t *testing.T) {
	g := NewWithT(t)
	for answer, ok := range map[string]bool{"y\n": true, "YES\n": true, "n\n": false, "\n": false, "": false, "maybe\n": false} {
		var out bytes.Buffer
		err := confirm(strings.NewReader(answer), &out, []string{"foo", "bar"})
		g.Expect(out.String()).To(Equal("Unoffload foo, bar? Their twin namespaces on the providers are deleted with everything in them. [y/N] "))
		if ok {
			g.Expect(err).NotTo(HaveOccurred(), "%q", answer)
		} else {
			g.Expect(err).To(MatchError("not confirmed, nothing was changed"), "%q", answer)
		}
	}
	g.Expect(isTerminal(strings.NewReader(""))).To(BeFalse(), "a pipe or a test is never asked")
}

func TestCommandName(t *testing.T) {
	g := NewWithT(t)
	g.Expect(commandName("/usr/local/bin/kubectl-stretch")).To(Equal("kubectl stretch"))
	g.Expect(commandName("bin/stretchctl")).To(Equal("stretchctl"))
}
