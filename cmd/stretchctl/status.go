package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/cli/output"
	"stretch.dev/stretch/internal/cli/status"
)

func newStatusCommand(name string) *cobra.Command {
	var (
		cluster factory.Cluster
		format  string
	)
	cmd := &cobra.Command{
		Use:   "status [-o wide|yaml|json]",
		Short: "Show this cluster's identity, peers, virtual nodes and offloaded namespaces",
		Long: `Status shows what Stretch sees on one cluster: its identity (the cluster ID that
providers issue credentials for), its peers and their health, their virtual
nodes, the namespaces it offloads with each provider's state, and the twin
namespaces it hosts for home clusters.`,
		Example: fmt.Sprintf(`  %[1]s status --kubeconfig home.kubeconfig

  # More columns: strategies, the providers' messages, every node label
  %[1]s status -o wide

  # Everything, for scripts
  %[1]s status -o json`, name),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			wide := format == "wide"
			if wide {
				format = output.FormatTable
			}
			if err := output.ValidateFormat(format); err != nil {
				return usageError{fmt.Errorf("%w, or -o wide", err)}
			}
			c, _, err := cluster.Client(cmd.Context())
			if err != nil {
				return err
			}
			report, err := status.Collect(cmd.Context(), c)
			if err != nil {
				return err
			}
			if format == output.FormatTable {
				return report.Print(cmd.OutOrStdout(), time.Now(), wide)
			}
			return output.Print(cmd.OutOrStdout(), format, report)
		},
	}
	cluster.BindFlags(cmd.Flags(), "", "cluster")
	cmd.Flags().StringVarP(&format, "output", "o", "", "output format: wide (more columns), yaml or json (default tables)")
	return cmd
}
