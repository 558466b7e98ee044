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
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Exit codes: 1 for a failed operation, 2 for a wrong command line.
const (
	exitFailed = 1
	exitUsage  = 2
)

// usageError is a command line that cannot be right whatever the cluster says.
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
		var usage usageError
		if errors.As(err, &usage) {
			os.Exit(exitUsage)
		}
		os.Exit(exitFailed)
	}
}

// commandName is how the user typed us: "kubectl stretch" as a plugin.
func commandName(arg0 string) string {
	if strings.HasPrefix(filepath.Base(arg0), "kubectl-") {
		return "kubectl stretch"
	}
	return "stretchctl"
}

func newRootCommand(name string) *cobra.Command {
	root := &cobra.Command{
		Use:   name,
		Short: "Extend Kubernetes namespaces onto other clusters",
		Long: `Stretch extends a namespace of a home cluster onto provider clusters, so that its
pods run there as if on local nodes. Each provider appears as a virtual node.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
	})
	root.AddCommand(newInstallCommand(name), newUninstallCommand(name))
	root.AddCommand(newPeerCommand(name), newUnpeerCommand(name), newStatusCommand(name))
	root.AddCommand(
		group("offload", "Extend namespaces onto providers", newOffloadNamespaceCommand(name)),
		group("unoffload", "Stop extending namespaces onto providers", newUnoffloadNamespaceCommand(name)),
		group("diagnose", "Find out why an offloaded namespace does not work", newDiagnoseNamespaceCommand(name)))
	return root
}

// group is a command that only holds sub-commands, such as "offload" for
// "offload namespace".
func group(use, short string, children ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short}
	cmd.AddCommand(children...)
	return cmd
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q (see '%s --help')", cmd.CommandPath(), strings.Join(args, " "), cmd.CommandPath())}
	}
	return nil
}
