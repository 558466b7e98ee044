package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/spf13/cobra"
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
		{name: "install --api-server-url not https", args: []string{"install", "--cluster-name", "a", "--kubeconfig", unreachable, "--api-server-url", "http://203.0.113.10:6443"},
			wantUsage: true, wantErr: `--api-server-url: "http://203.0.113.10:6443" is not of the form https://HOST[:PORT]`},
		{name: "install --api-server-url out of cluster", args: []string{"install", "--cluster-name", "a", "--out-of-cluster", "--api-server-url", "https://203.0.113.10:6443"},
			wantUsage: true, wantErr: "pass it to the stretch-controller-manager you run"},
		{name: "missing kubeconfig", args: []string{"install", "--cluster-name", "a", "--kubeconfig", filepath.Join(dir, "nope")}, wantErr: "pass an existing file with --kubeconfig"},
		{name: "unreachable cluster", args: []string{"install", "--cluster-name", "a", "--kubeconfig", unreachable}, wantErr: "cannot reach the cluster at https://127.0.0.1:1"},
		{name: "uninstall, unreachable cluster", args: []string{"uninstall", "--kubeconfig", unreachable}, wantErr: "check that the API server is running"},
		{name: "offload nothing", args: []string{"offload", "namespace", "--kubeconfig", unreachable}, wantUsage: true, wantErr: "name at least one namespace"},
		{name: "offload names and selector", args: []string{"offload", "namespace", "foo", "--ns-selector", "a=b"}, wantUsage: true, wantErr: "not both"},
		{name: "offload bad strategy", args: []string{"offload", "namespace", "foo", "--pod-offloading-strategy", "Anywhere"}, wantUsage: true, wantErr: "must be one of LocalAndRemote, Local, Remote"},
		{name: "offload bad selector", args: []string{"offload", "namespace", "foo", "--selector", "region in eu"}, wantUsage: true, wantErr: `--selector "region in eu"`},
		{name: "offload SelectedName without a name", args: []string{"offload", "namespace", "foo", "--namespace-mapping-strategy", "SelectedName"}, wantUsage: true, wantErr: "needs --remote-namespace-name"},
		{name: "offload bad output", args: []string{"offload", "namespace", "foo", "-o", "wide"}, wantUsage: true, wantErr: `output format "wide" is not supported: use -o yaml or -o json`},
		{name: "offload, unreachable cluster", args: []string{"offload", "namespace", "foo", "--kubeconfig", unreachable}, wantErr: "cannot reach the home cluster"},
		{name: "unoffload nothing", args: []string{"unoffload", "namespace"}, wantUsage: true, wantErr: "name at least one namespace (NAME... or -n NAME)"},
		{name: "offload NAME and another -n", args: []string{"offload", "namespace", "foo", "-n", "bar"}, wantUsage: true, wantErr: "stretchctl offload namespace got foo as NAME and bar with -n"},
		{name: "unoffload NAME and another -n", args: []string{"unoffload", "namespace", "foo", "--namespace", "bar"}, wantUsage: true, wantErr: "got foo as NAME and bar with -n"},
		{name: "unoffload NAMEs and -n", args: []string{"unoffload", "namespace", "foo", "bar", "-n", "foo"}, wantUsage: true, wantErr: "got foo, bar as NAME and foo with -n"},
		{name: "diagnose NAME and another -n", args: []string{"diagnose", "namespace", "foo", "-n", "bar"}, wantUsage: true, wantErr: "got foo as NAME and bar with -n"},
		{name: "diagnose two names", args: []string{"diagnose", "namespace", "foo", "bar"}, wantUsage: true, wantErr: "takes one namespace name, got 2"},
		{name: "diagnose bad output", args: []string{"diagnose", "namespace", "foo", "-o", "wide"}, wantUsage: true, wantErr: `output format "wide" is not supported`},
		{name: "offload -n, unreachable cluster", args: []string{"offload", "namespace", "-n", "foo", "--kubeconfig", unreachable}, wantErr: "cannot reach the home cluster"},
		{name: "offload the same NAME and -n, unreachable cluster", args: []string{"offload", "namespace", "foo", "-n", "foo", "--kubeconfig", unreachable}, wantErr: "cannot reach the home cluster"},
		{name: "unoffload -n, unreachable cluster", args: []string{"unoffload", "namespace", "-n", "foo", "--kubeconfig", unreachable}, wantErr: "cannot reach the home cluster"},
		{name: "diagnose -n, unreachable cluster", args: []string{"diagnose", "namespace", "-n", "foo", "--kubeconfig", unreachable}, wantErr: "cannot reach the home cluster"},
		{name: "offload zero timeout", args: []string{"offload", "namespace", "foo", "--wait", "--timeout", "0s", "--kubeconfig", unreachable}, wantUsage: true, wantErr: "--timeout must be positive, got 0s"},
		{name: "offload negative timeout", args: []string{"offload", "namespace", "foo", "--timeout", "-1m", "--kubeconfig", unreachable}, wantUsage: true, wantErr: "--timeout must be positive, got -1m0s"},
		{name: "unoffload zero timeout", args: []string{"unoffload", "namespace", "foo", "--timeout", "0s", "--kubeconfig", unreachable}, wantUsage: true, wantErr: "--timeout must be positive"},
		{name: "offload -o with --wait", args: []string{"offload", "namespace", "foo", "-o", "yaml", "--wait"}, wantUsage: true, wantErr: "nothing to --wait for"},
		{name: "offload -o, twin name not a DNS label", args: []string{"offload", "namespace", "foo", "--namespace-mapping-strategy", "SelectedName", "--remote-namespace-name", "Foo_Bar", "-o", "yaml"},
			wantUsage: true, wantErr: `namespace foo: InvalidName: twin namespace name "Foo_Bar" is not a valid namespace name`},
		{name: "offload -o, reserved twin name", args: []string{"offload", "namespace", "kube-system", "--namespace-mapping-strategy", "EnforceSameName", "-o", "json"},
			wantUsage: true, wantErr: `namespace kube-system: Forbidden: twin namespace name "kube-system" is reserved`},
		{name: "offload -o, twin name too long", args: []string{"offload", "namespace", "abcdefghijklmnopqrstuvwxyz0", "-o", "yaml"},
			wantUsage: true, wantErr: `twin namespace name "abcdefghijklmnopqrstuvwxyz0-<home cluster ID>" is 64 characters long`},
		{name: "offload, twin name too long, before the cluster", args: []string{"offload", "namespace", "abcdefghijklmnopqrstuvwxyz0", "--kubeconfig", unreachable},
			wantUsage: true, wantErr: "at most 26 characters"},
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

// TestMistypedCommands: a mistyped command is a usage error (exit code 2)
// that names it and suggests the right one, as in kubectl; a group alone
// prints its help.
func TestMistypedCommands(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
		wantOut  string
	}{
		{args: []string{"offload", "namespce", "foo"}, wantCode: exitUsage, wantErr: `unknown command "namespce" for "stretchctl offload"; did you mean "namespace"? (see 'stretchctl offload --help')`},
		{args: []string{"diagnose", "nmespace", "foo"}, wantCode: exitUsage, wantErr: `unknown command "nmespace" for "stretchctl diagnose"; did you mean "namespace"?`},
		{args: []string{"unoffload", "namespce", "foo"}, wantCode: exitUsage, wantErr: `unknown command "namespce" for "stretchctl unoffload"; did you mean "namespace"?`},
		{args: []string{"bogus"}, wantCode: exitUsage, wantErr: `unknown command "bogus" for "stretchctl" (see 'stretchctl --help')`},
		{args: []string{"ofload", "namespace", "foo"}, wantCode: exitUsage, wantErr: `unknown command "ofload" for "stretchctl"; did you mean "offload"?`},
		{args: []string{"diagnose", "nmespace", "foo", "--kubeconfig", "x"}, wantCode: exitUsage, wantErr: `unknown command "nmespace" for "stretchctl diagnose"; did you mean "namespace"?`},
		{args: []string{"offload", "namespce", "foo", "--selector", "region=eu", "--wait"}, wantCode: exitUsage, wantErr: `did you mean "namespace"?`},
		{args: []string{"completion", "bsh"}, wantCode: exitUsage, wantErr: `unknown command "bsh" for "stretchctl completion"; did you mean "bash" or "fish" or "zsh"?`},
		{args: []string{"offload", "--bogus"}, wantCode: exitUsage, wantErr: "unknown flag: --bogus (see 'stretchctl offload --help')"},
		{args: []string{"offload"}, wantCode: 0, wantOut: "Usage:\n  stretchctl offload [command]\n"},
		{args: []string{}, wantCode: 0, wantOut: "Usage:\n  stretchctl [command]\n"},
		{args: []string{"diagnose", "--help"}, wantCode: 0, wantOut: "stretchctl diagnose namespace -n foo -o json"},
		{args: []string{"diagnose", "namespace", "--help"}, wantCode: 0, wantOut: "Usage:\n  stretchctl diagnose namespace [NAME | -n NAME] [flags]"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			g := NewWithT(t)
			out, err := run(tt.args...)
			g.Expect(exitCode(err)).To(Equal(tt.wantCode), "%v", err)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				g.Expect(out).To(BeEmpty(), "no help on a usage error, as in kubectl: the error says where it is")
			}
			g.Expect(out).To(ContainSubstring(tt.wantOut))
		})
	}
}

// TestEveryCommandHasAnExample walks the whole command tree, cobra's own help
// and completion commands included, for both names stretchctl runs under.
func TestEveryCommandHasAnExample(t *testing.T) {
	g := NewWithT(t)
	for _, name := range []string{"stretchctl", "kubectl stretch"} {
		var walked, missing []string
		var walk func(*cobra.Command)
		walk = func(c *cobra.Command) {
			walked = append(walked, c.CommandPath())
			if !c.Hidden && strings.TrimSpace(c.Example) == "" {
				missing = append(missing, c.CommandPath())
			}
			for _, sub := range c.Commands() {
				walk(sub)
			}
		}
		walk(newRootCommand(name))
		g.Expect(missing).To(BeEmpty(), "commands without an Example")
		g.Expect(walked).To(ContainElements(name, name+" offload", name+" unoffload namespace", name+" diagnose namespace", name+" peer revoke",
			name+" help", name+" completion", name+" completion zsh"))
	}
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

// With neither NAME nor -n, diagnose takes the kubeconfig context's
// namespace, and says so before anything else.
func TestDiagnoseContextNamespace(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(path, []byte(strings.Replace(unreachableKubeconfig, "context: {cluster: c, user: u}", "context: {cluster: c, user: u, namespace: team-a}", 1)), 0o600)).To(Succeed())
	out, err := run("diagnose", "namespace", "--kubeconfig", path)
	g.Expect(err).To(MatchError(ContainSubstring("cannot reach the home cluster")))
	g.Expect(out).To(HavePrefix("Namespace team-a, of the kubeconfig context: pass NAME or -n NAME for another.\n"))

	// Without a namespace in the context: "default", as in kubectl.
	g.Expect(os.WriteFile(path, []byte(unreachableKubeconfig), 0o600)).To(Succeed())
	out, _ = run("diagnose", "ns", "--kubeconfig", path)
	g.Expect(out).To(HavePrefix("Namespace default, of the kubeconfig context"))
}

// run runs stretchctl with args, stdin not a terminal, and returns what it
// printed.
func run(args ...string) (string, error) {
	return runWith(env{isTerminal: isTerminal}, strings.NewReader(""), args...)
}

// runWith runs stretchctl with args in env e, reading stdin.
func runWith(e env, stdin io.Reader, args ...string) (string, error) {
	cmd := newRootCommandWith("stretchctl", e)
	var out bytes.Buffer
	cmd.SetIn(stdin)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}
