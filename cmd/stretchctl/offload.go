package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/cli/offload"
	"stretch.dev/stretch/internal/cli/output"
)

// defaultWaitTimeout bounds --wait.
const defaultWaitTimeout = 2 * time.Minute

func newOffloadNamespaceCommand(name string) *cobra.Command {
	var (
		cluster   factory.Cluster
		targets   offload.Targets
		namespace string
		spec      offload.SpecOptions
		format    string
		wait      bool
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:     "namespace (NAME... | -n NAME | --ns-selector KEY=VALUE)",
		Aliases: []string{"namespaces", "ns"},
		Short:   "Offload namespaces: twins on the selected providers, pods placed on them",
		Long: `Offload writes the NamespaceOffloading (named offloading) of each namespace: every
provider its cluster selector picks gets a twin namespace, and pods are placed on
the providers' virtual nodes as the pod offloading strategy says.

Name the namespaces as arguments, one with -n/--namespace as in kubectl, or
select them by label with --ns-selector. The kubeconfig context's namespace is
never used: name it.

--selector takes kubectl's label-selector syntax, matched against the labels of
the virtual nodes (see 'kubectl get nodes --show-labels'); several --selector
flags are ORed. Without it, every provider is selected.`,
		Example: fmt.Sprintf(`  # Offload foo to every provider, and wait until its twins are ready
  %[1]s offload namespace foo --wait
  %[1]s offload namespace -n foo --wait

  # Only to providers in eu or us-west that are not staging; pods only there
  %[1]s offload namespace foo --selector 'region in (eu,us-west), !staging' --pod-offloading-strategy Remote

  # Every namespace labelled team=web, with twins named like the namespaces
  %[1]s offload namespaces --ns-selector team=web --namespace-mapping-strategy EnforceSameName

  # Print the resource instead of applying it, for GitOps
  %[1]s offload namespace foo --selector region=eu -o yaml`, name),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if targets.Namespaces, err = namespaceArgs(cmd, args, namespace); err != nil {
				return err
			}
			if err := targets.Validate(); err != nil {
				return usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
			}
			s, err := spec.Spec()
			if err != nil {
				return usageError{err}
			}
			if err := checkWaitFlags(wait, timeout, format); err != nil {
				return err
			}
			// Named namespaces are checked before the cluster is asked, also
			// when only printed: a manifest that every provider refuses is
			// of no use. Selected ones are checked once listed. Either way a
			// twin name that fits no provider is a usage error: the namespaces
			// or the mapping strategy given must change.
			resolve := func() (client.Client, []string, error) {
				c, _, err := cluster.Client(cmd.Context())
				if err != nil {
					return nil, nil, err
				}
				namespaces, err := offload.Resolve(cmd.Context(), c, targets)
				return c, namespaces, err
			}
			var c client.Client
			namespaces := targets.Namespaces
			if targets.NamespaceSelector != "" {
				if c, namespaces, err = resolve(); err != nil {
					return err
				}
			}
			if err := offload.CheckTwinNames(namespaces, s, ""); err != nil {
				return usageError{err}
			}
			if format != "" {
				v, err := offload.Printable(namespaces, s)
				if err != nil {
					return err
				}
				return output.Print(cmd.OutOrStdout(), format, v)
			}
			if c == nil {
				// Named namespaces must exist.
				if c, namespaces, err = resolve(); err != nil {
					return err
				}
			}
			return offload.Offload(cmd.Context(), c, namespaces, s, wait, timeout, cmd.OutOrStdout())
		},
	}
	cluster.BindFlags(cmd.Flags(), "", "home cluster")
	f := cmd.Flags()
	bindNamespaceFlag(f, &namespace, "the namespace to offload, instead of NAME")
	f.StringVar(&targets.NamespaceSelector, "ns-selector", "", "offload the namespaces with these labels (kubectl -l syntax) instead of named ones")
	f.StringVar(&spec.PodOffloadingStrategy, "pod-offloading-strategy", "LocalAndRemote", "where pods run: LocalAndRemote, Local or Remote")
	f.StringVar(&spec.NamespaceMappingStrategy, "namespace-mapping-strategy", "DefaultName", "how twins are named: DefaultName (<namespace>-<home cluster ID>), EnforceSameName or SelectedName")
	f.StringVar(&spec.RemoteNamespaceName, "remote-namespace-name", "", "the twins' name, with --namespace-mapping-strategy SelectedName")
	f.BoolVar(&spec.ReflectIngresses, "reflect-ingresses", false, "reflect every Ingress of the namespaces into their twins, where the providers' ingress controllers serve them (one Ingress opts in alone with the annotation stretch.dev/reflect=true)")
	f.StringArrayVar(&spec.Selectors, "selector", nil, "providers to select, as a label selector on virtual nodes, e.g. 'region in (eu,us), !staging' (repeat to OR)")
	f.StringVarP(&format, "output", "o", "", "print the NamespaceOffloadings as yaml or json instead of applying them (not with --wait)")
	f.BoolVar(&wait, "wait", false, "wait until every namespace is offloaded, showing each provider's progress; fail with the reasons if one fails")
	f.DurationVar(&timeout, "timeout", defaultWaitTimeout, "how long --wait waits")
	return cmd
}

func newUnoffloadNamespaceCommand(name string, e env) *cobra.Command {
	var (
		cluster   factory.Cluster
		targets   offload.Targets
		namespace string
		wait      bool
		force     bool
		yes       bool
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:     "namespace (NAME... | -n NAME | --ns-selector KEY=VALUE)",
		Aliases: []string{"namespaces", "ns"},
		Short:   "Unoffload namespaces: their pods come home, their twins are deleted",
		Long: `Unoffload deletes the NamespaceOffloading of each namespace. Its pods on virtual
nodes are deleted (their controllers recreate them at home) and every provider
deletes the twin namespace with everything in it: on a terminal you are asked
to confirm, unless --yes.

Name the namespaces as arguments, one with -n/--namespace as in kubectl, or
select them by label with --ns-selector. The kubeconfig context's namespace is
never used: since twins are deleted, name it.

A provider that does not answer holds the unoffload; --force finishes it
without such providers (their twins are deleted if they answer again while
still peered).`,
		Example: fmt.Sprintf(`  %[1]s unoffload namespace foo --wait
  %[1]s unoffload namespace -n foo --wait

  # Every namespace labelled team=web, without asking
  %[1]s unoffload namespaces --ns-selector team=web --yes

  # A provider is gone for good
  %[1]s unoffload namespace foo --force --yes`, name),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if targets.Namespaces, err = namespaceArgs(cmd, args, namespace); err != nil {
				return err
			}
			if err := targets.Validate(); err != nil {
				return usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
			}
			if err := checkWaitFlags(wait, timeout, ""); err != nil {
				return err
			}
			c, _, err := cluster.Client(cmd.Context())
			if err != nil {
				return err
			}
			namespaces, err := offload.Resolve(cmd.Context(), c, targets)
			if err != nil {
				return err
			}
			if !yes && e.isTerminal(cmd.InOrStdin()) {
				if err := confirm(cmd.InOrStdin(), cmd.OutOrStdout(), namespaces); err != nil {
					return err
				}
			}
			return offload.Unoffload(cmd.Context(), c, namespaces, force, wait, timeout, cmd.OutOrStdout())
		},
	}
	cluster.BindFlags(cmd.Flags(), "", "home cluster")
	f := cmd.Flags()
	bindNamespaceFlag(f, &namespace, "the namespace to unoffload, instead of NAME")
	f.StringVar(&targets.NamespaceSelector, "ns-selector", "", "unoffload the namespaces with these labels (kubectl -l syntax) instead of named ones")
	f.BoolVar(&wait, "wait", false, "wait until every namespace is unoffloaded, showing each provider's progress")
	f.BoolVar(&force, "force", false, "finish without the providers that do not answer")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	f.DurationVar(&timeout, "timeout", defaultWaitTimeout, "how long --wait waits")
	return cmd
}

// checkWaitFlags rejects an -o format that cannot be printed, --timeout
// values that cannot be waited for, and -o with --wait: printing applies
// nothing, so there is nothing to wait for.
func checkWaitFlags(wait bool, timeout time.Duration, format string) error {
	if err := output.ValidateFormat(format); err != nil {
		return usageError{err}
	}
	switch {
	case timeout <= 0:
		return usageError{fmt.Errorf("--timeout must be positive, got %s", timeout)}
	case format != "" && wait:
		return usageError{fmt.Errorf("--output %s prints the NamespaceOffloadings without applying them, so there is nothing to --wait for: leave out one of them", format)}
	}
	return nil
}

// confirm asks whether to unoffload the namespaces; anything but y or yes
// is a no.
func confirm(in io.Reader, out io.Writer, namespaces []string) error {
	fmt.Fprintf(out, "Unoffload %s? Their twin namespaces on the providers are deleted with everything in them. [y/N] ", strings.Join(namespaces, ", "))
	answer, _ := bufio.NewReader(in).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return fmt.Errorf("not confirmed, nothing was changed")
	}
	return nil
}

// isTerminal reports whether r is an interactive terminal.
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
