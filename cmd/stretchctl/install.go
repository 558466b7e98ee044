package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/cli/install"
	"stretch.dev/stretch/internal/identity"
)

func newInstallCommand(name string) *cobra.Command {
	var (
		cluster factory.Cluster
		opts    install.Options
		labels  string
	)
	cmd := &cobra.Command{
		Use:   "install --cluster-name NAME [--cluster-labels k=v,...]",
		Short: "Install Stretch on a cluster, or update its labels",
		Long: `Install applies Stretch's CRDs, the stretch-system namespace, the cluster identity
(a cluster ID generated once and never changed, the cluster name and labels),
the controller-manager's RBAC and the "stretch" RuntimeClass.

Running it again is safe: the cluster ID is kept and the labels are updated.
The cluster labels show on the virtual node that stands for this cluster in
every home cluster that peers with it: NamespaceOffloadings select on them.`,
		Example: fmt.Sprintf(`  # Install on a provider, with the labels home clusters will select on
  %[1]s install --kubeconfig provider-eu.kubeconfig --cluster-name provider-eu \
      --cluster-labels region=eu,provider=aws

  # Install on the home cluster of the current kubeconfig context
  %[1]s install --cluster-name home`, name),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Every input is checked before the cluster is contacted.
			var err error
			if opts.ClusterLabels, err = identity.ParseLabels(labels); err != nil {
				return usageError{err}
			}
			if err := identity.ValidateClusterName(opts.ClusterName); err != nil {
				return usageError{err}
			}
			c, cfg, err := cluster.Client(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Installing Stretch on %s as %q ...\n", cfg.Host, opts.ClusterName)
			id, err := install.Install(cmd.Context(), c, opts, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Stretch is installed on %q (cluster ID %s).\n", id.Name, id.ID)
			return nil
		},
	}
	cluster.BindFlags(cmd.Flags(), "", "cluster")
	cmd.Flags().StringVar(&opts.ClusterName, "cluster-name", "", "name of this cluster, unique among its peers (a DNS label)")
	cmd.Flags().StringVar(&labels, "cluster-labels", "", "labels of this cluster, as k=v,k2=v2")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", time.Minute, "how long to wait for the CRDs to be established")
	return cmd
}

func newUninstallCommand(name string) *cobra.Command {
	var cluster factory.Cluster
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove Stretch from a cluster",
		Long: `Uninstall removes what install created, the cluster identity included.

It refuses, changing nothing, while the cluster offloads namespaces, peers with
providers, or hosts twin namespaces for home clusters.`,
		Example: fmt.Sprintf(`  %s uninstall --kubeconfig provider-eu.kubeconfig`, name),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := cluster.Client(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Uninstalling Stretch from %s ...\n", cfg.Host)
			if err := install.Uninstall(cmd.Context(), c, out); err != nil {
				return err
			}
			fmt.Fprintln(out, "Stretch is uninstalled.")
			return nil
		},
	}
	cluster.BindFlags(cmd.Flags(), "", "cluster")
	return cmd
}
