package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"stretch.dev/stretch/internal/cli/diagnose"
	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/cli/output"
	checks "stretch.dev/stretch/internal/diagnose"
)

func newDiagnoseNamespaceCommand(name string) *cobra.Command {
	var (
		cluster factory.Cluster
		format  string
	)
	cmd := &cobra.Command{
		Use:     "namespace NAME",
		Aliases: []string{"ns"},
		Short:   "Run every check of the offloading FAQ on a namespace",
		Long: `Diagnose runs the checks of the namespace offloading FAQ on the home cluster: the
NamespaceOffloading is there and named offloading; its phase and what it means;
the cluster selector parses; which virtual nodes it selects and, for the others,
which requirement fails; the twin name fits in 63 characters; no provider
reports a conflicting namespace; the pod offloading strategy; and for every
Pending pod, whether its node-affinity terms contradict, whether it was created
before the namespace was offloaded, and what the scheduler said. Each check
prints passed, warning or failed, with the fix. The exit code is 0 only when
every check passed.`,
		Example: fmt.Sprintf(`  %[1]s diagnose namespace foo

  # For scripts
  %[1]s diagnose namespace foo -o json`, name),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("%s takes one namespace name (see '%s --help')", cmd.CommandPath(), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.ValidateFormat(format); err != nil {
				return usageError{err}
			}
			c, _, err := cluster.Client(cmd.Context())
			if err != nil {
				return err
			}
			observed, err := diagnose.Collect(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			results := checks.Run(observed)
			if format == output.FormatTable {
				err = diagnose.Print(cmd.OutOrStdout(), args[0], results)
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
	cmd.Flags().StringVarP(&format, "output", "o", "", "output format: json or yaml (default a line per check)")
	return cmd
}
