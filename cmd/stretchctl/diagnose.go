package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"stretch.dev/stretch/internal/cli/diagnose"
	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/cli/output"
	"stretch.dev/stretch/internal/diagnose/checks"
)

func newDiagnoseNamespaceCommand(name string) *cobra.Command {
	var (
		cluster   factory.Cluster
		format    string
		namespace string
	)
	cmd := &cobra.Command{
		Use:     "namespace [NAME | -n NAME]",
		Aliases: []string{"ns"},
		Short:   "Run every check of the offloading FAQ on a namespace",
		Long: `Diagnose runs the checks of the namespace offloading FAQ on the home cluster: the
NamespaceOffloading is there and named offloading; its phase and what it means;
the cluster selector parses; which virtual nodes it selects and, for the others,
which requirement fails; the twin name fits in 63 characters; what each selected
provider reports about its twin namespace (a conflicting namespace and who
created it, a refused name, a provider that does not answer), read from the
provider itself with the home cluster's peer credentials when they can be read;
the pod offloading strategy; and for every Pending pod, whether its
node-affinity terms contradict, whether it was created before the offloading
was Ready, and what the scheduler said. Each check prints passed, warning or
failed, with the fix. The exit code is 0 only when every check passed.

The namespace is NAME, or -n NAME as in kubectl; with neither, it is the
kubeconfig context's namespace, as in kubectl, and diagnose says so on stderr.`,
		Example: fmt.Sprintf(`  %[1]s diagnose namespace foo
  %[1]s diagnose namespace -n foo

  # The namespace of the current kubeconfig context
  %[1]s diagnose namespace

  # For scripts
  %[1]s diagnose namespace foo -o json`, name),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("%s takes one namespace name, got %d (see '%s --help')", cmd.CommandPath(), len(args), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.ValidateFormat(format); err != nil {
				return usageError{err}
			}
			names, err := namespaceArgs(cmd, args, namespace)
			if err != nil {
				return err
			}
			ns := ""
			if len(names) == 1 {
				ns = names[0]
			} else {
				if ns, err = cluster.Namespace(); err != nil {
					return err
				}
				// On stderr: -o json|yaml stays parsable.
				fmt.Fprintf(cmd.ErrOrStderr(), "Namespace %s, of the kubeconfig context: pass NAME or -n NAME for another.\n", ns)
			}
			c, _, err := cluster.Client(cmd.Context())
			if err != nil {
				return err
			}
			observed, err := diagnose.Collect(cmd.Context(), c, ns)
			if err != nil {
				return err
			}
			results := checks.Run(observed)
			if format == output.FormatTable {
				err = diagnose.Print(cmd.OutOrStdout(), ns, results)
			} else {
				err = output.Print(cmd.OutOrStdout(), format, results)
			}
			if err != nil {
				return err
			}
			return diagnose.Failures(results)
		},
	}
	cluster.BindFlags(cmd.Flags(), "", "home cluster")
	bindNamespaceFlag(cmd.Flags(), &namespace, "the namespace to diagnose, instead of NAME (default the kubeconfig context's)")
	cmd.Flags().StringVarP(&format, "output", "o", "", "output format: json or yaml (default a line per check)")
	return cmd
}
