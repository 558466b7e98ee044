// Command stretchctl installs Stretch, peers clusters and offloads namespaces.
// Installed as kubectl-stretch it also runs as the kubectl plugin
// "kubectl stretch".
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Exit codes: 1 for a failed operation, 2 for a wrong command line.
const (
	exitFailed = 1
	exitUsage  = 2
)

// usageError is a command line that cannot be right whatever the cluster
// says; also twin names that no provider accepts for namespaces selected by
// label, whose fix is on the command line as well.
type usageError struct{ error }

func main() {
	// stretchctl reports through its own output; controller-runtime's
	// internal logging would only print a warning that no logger is set.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand(commandName(os.Args[0])).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is the exit code of a command that returned err.
func exitCode(err error) int {
	var usage usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage):
		return exitUsage
	default:
		return exitFailed
	}
}

// commandName is how the user typed us: "kubectl stretch" as a plugin.
func commandName(arg0 string) string {
	if strings.HasPrefix(filepath.Base(arg0), "kubectl-") {
		return "kubectl stretch"
	}
	return "stretchctl"
}

// env is what the commands take from their surroundings besides flags and
// arguments, so that tests can stand in for it.
type env struct {
	// isTerminal reports whether stdin is an interactive terminal, where
	// destructive commands ask before acting.
	isTerminal func(stdin any) bool
}

func newRootCommand(name string) *cobra.Command {
	return newRootCommandWith(name, env{isTerminal: isTerminal})
}

func newRootCommandWith(name string, e env) *cobra.Command {
	root := &cobra.Command{
		// Cobra names a command by the first word of Use: "kubectl stretch"
		// is its display name (see below), "stretch" its name.
		Use:   name[strings.LastIndex(name, " ")+1:],
		Short: "Extend Kubernetes namespaces onto other clusters",
		Long: `Stretch extends a namespace of a home cluster onto provider clusters, so that its
pods run there as if on local nodes. Each provider appears as a virtual node.`,
		Example: fmt.Sprintf(`  # On every cluster, then peer the home cluster with a provider
  %[1]s install --kubeconfig home.kubeconfig --cluster-name home
  %[1]s install --kubeconfig eu.kubeconfig --cluster-name provider-eu --cluster-labels region=eu
  %[1]s peer --kubeconfig home.kubeconfig --remote-kubeconfig eu.kubeconfig --wait

  # Extend namespace foo onto the providers in eu, see how it goes, and why not
  %[1]s offload namespace foo --selector region=eu --wait
  %[1]s status
  %[1]s diagnose namespace foo`, name),
		Args:          groupArgs,
		RunE:          runGroup,
		Annotations:   map[string]string{groupAnnotation: "true", cobra.CommandDisplayNameAnnotation: name},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(flagError)
	// Groups run only to report mistyped sub-commands: their usage shows
	// "<group> [command]", not a line of their own.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "Usage:{{if .Runnable}}",
		`Usage:{{if and .Runnable (ne (index .Annotations "`+groupAnnotation+`") "true")}}`, 1))
	root.AddCommand(newInstallCommand(name), newUninstallCommand(name))
	root.AddCommand(newPeerCommand(name), newUnpeerCommand(name), newStatusCommand(name))
	root.AddCommand(newPolicyCommand(name))
	root.AddCommand(
		group("offload", "Extend namespaces onto providers", fmt.Sprintf(`  %[1]s offload namespace foo --wait
  %[1]s offload namespaces --ns-selector team=web --selector region=eu`, name),
			newOffloadNamespaceCommand(name)),
		group("unoffload", "Stop extending namespaces onto providers", fmt.Sprintf(`  %[1]s unoffload namespace foo --wait
  %[1]s unoffload namespaces --ns-selector team=web --yes`, name),
			newUnoffloadNamespaceCommand(name, e)),
		group("diagnose", "Find out why an offloaded namespace does not work", fmt.Sprintf(`  %[1]s diagnose namespace foo
  %[1]s diagnose namespace -n foo -o json`, name),
			newDiagnoseNamespaceCommand(name)))
	addCobraCommands(root, name)
	return root
}

// addCobraCommands adds cobra's own help and completion commands now rather
// than at Execute, so that they get examples like every other command.
func addCobraCommands(root *cobra.Command, name string) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Example = fmt.Sprintf("  %[1]s help offload namespace", name)
		case "completion":
			c.Args, c.RunE = groupArgs, runGroup // 'completion bsh' is a usage error too
			c.Annotations = map[string]string{groupAnnotation: "true"}
			c.Example = fmt.Sprintf("  # Completion in the current bash shell\n  source <(%[1]s completion bash)", name)
			for _, shell := range c.Commands() {
				shell.Example = fmt.Sprintf("  %[1]s completion %[2]s > %[3]s-completion.%[2]s", name, shell.Name(), strings.ReplaceAll(name, " ", "-"))
			}
		}
	}
}

// group is a command that only holds sub-commands, such as "offload" for
// "offload namespace".
func group(use, short, example string, children ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Example: example, Args: groupArgs, RunE: runGroup,
		Annotations: map[string]string{groupAnnotation: "true"}}
	cmd.AddCommand(children...)
	return cmd
}

// groupAnnotation marks the commands that only hold sub-commands (the root
// among them).
const groupAnnotation = "stretchctl/group"

// groupArgs accepts anything: runGroup judges it. Without it, cobra would let
// the root alone report unknown sub-commands, and as a failure, not a usage
// error.
func groupArgs(*cobra.Command, []string) error { return nil }

// runGroup runs a command that only holds sub-commands, which cobra reaches
// with what it could not match: nothing prints the help, as in kubectl; a
// mistyped sub-command is a usage error with cobra's suggestions. (A group
// without RunE would print its help and exit 0 on a typo.)
func runGroup(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	return unknownCommand(cmd, args[0])
}

// unknownCommand is the usage error of a sub-command cmd does not have.
func unknownCommand(cmd *cobra.Command, typed string) error {
	msg := fmt.Sprintf("unknown command %q for %q", typed, cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
	}
	if s := cmd.SuggestionsFor(typed); len(s) > 0 {
		q := make([]string, len(s))
		for i, name := range s {
			q[i] = strconv.Quote(name)
		}
		msg += "; did you mean " + strings.Join(q, " or ") + "?"
	}
	return usageError{fmt.Errorf("%s (see '%s --help')", msg, cmd.CommandPath())}
}

// flagError makes every flag error a usage error. On a group, a flag of the
// mistyped sub-command ('diagnose nmespace foo --kubeconfig x') is unknown
// to the group: the mistyped sub-command is then what to report.
func flagError(cmd *cobra.Command, err error) error {
	if cmd.Annotations[groupAnnotation] != "" && len(cmd.Flags().Args()) > 0 {
		return unknownCommand(cmd, cmd.Flags().Args()[0])
	}
	return usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q (see '%s --help')", cmd.CommandPath(), strings.Join(args, " "), cmd.CommandPath())}
	}
	return nil
}

// bindNamespaceFlag adds kubectl's -n/--namespace.
func bindNamespaceFlag(f *pflag.FlagSet, namespace *string, usage string) {
	f.StringVarP(namespace, "namespace", "n", "", usage)
}

// namespaceArgs merges -n into the positional names: either names the
// namespace; both, unless they agree, is a usage error.
func namespaceArgs(cmd *cobra.Command, args []string, flag string) ([]string, error) {
	switch {
	case flag == "":
		return args, nil
	case len(args) == 0 || len(args) == 1 && args[0] == flag:
		return []string{flag}, nil
	}
	return nil, usageError{fmt.Errorf("%s got %s as NAME and %s with -n: name the namespaces one way, as NAME or with -n (see '%s --help')",
		cmd.CommandPath(), strings.Join(args, ", "), flag, cmd.CommandPath())}
}
