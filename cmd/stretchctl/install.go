package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v4/pkg/cli/values"
	"helm.sh/helm/v4/pkg/getter"

	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/cli/install"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
)

func newInstallCommand(name string) *cobra.Command {
	var (
		cluster      factory.Cluster
		opts         install.ChartOptions
		labels       string
		outOfCluster bool
		vals         values.Options
	)
	cmd := &cobra.Command{
		Use:   "install --cluster-name NAME [--cluster-labels k=v,...] [--image REF] [--api-server-url URL] [--set k=v] [--values FILE] [--wait]",
		Short: "Install or upgrade Stretch on a cluster",
		Long: `Install installs Stretch's Helm chart (embedded in this binary) as the release
stretch in namespace stretch-system, or upgrades that release: the CRDs, the
cluster identity (a cluster ID generated once and never changed, the cluster
name and labels), RBAC, the "stretch" RuntimeClass and stretch-controller-manager
as a Deployment of 2 leader-elected replicas with its webhook and metrics
Services. --set and --values take the chart's values as helm does; values given
to an earlier install stay unless given again.

Running it again is safe: the cluster ID is kept, and the labels are
replaced when --cluster-labels is given, kept otherwise.
The cluster labels show on the virtual node that stands for this cluster in
every home cluster that peers with it: NamespaceOffloadings select on them.

On a cluster that offloads pods, --api-server-url says where those pods reach
its API server: their in-cluster clients (KUBERNETES_SERVICE_HOST) then use
the token they mount against this cluster, not against the provider's API
server, which refuses it.

With --out-of-cluster, no manager is deployed and no Helm release is made:
run stretch-controller-manager yourself with --kubeconfig (the demo and the
tests do). A later install without the flag takes those objects over.`,
		Example: fmt.Sprintf(`  # Install on a provider, with the labels home clusters will select on
  %[1]s install --kubeconfig provider-eu.kubeconfig --cluster-name provider-eu \
      --cluster-labels region=eu,provider=aws --wait

  # From your own registry, with a chart value changed
  %[1]s install --cluster-name home --image registry.example.com/stretch/stretch-controller-manager:v0.2.0 \
      --set replicaCount=3 --wait

  # A home cluster whose offloaded pods reach its API server at api.home.example.com
  %[1]s install --cluster-name home --api-server-url https://api.home.example.com:6443 --wait

  # CRDs, identity and RBAC only, for a manager run outside the cluster
  %[1]s install --cluster-name home --out-of-cluster`, name),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Every input is checked before the cluster is contacted.
			var err error
			if opts.ClusterLabels, err = identity.ParseLabels(labels); err != nil {
				return usageError{err}
			}
			if !cmd.Flags().Changed("cluster-labels") {
				opts.ClusterLabels = nil // keep the labels the cluster has
			}
			if err := identity.ValidateClusterName(opts.ClusterName); err != nil {
				return usageError{err}
			}
			if outOfCluster && opts.APIServerURL != "" {
				return usageError{fmt.Errorf("--out-of-cluster deploys no manager: --api-server-url does not apply; pass it to the stretch-controller-manager you run, or leave out --out-of-cluster")}
			}
			if outOfCluster && (opts.Image != "" || opts.Wait || len(vals.Values) > 0 || len(vals.ValueFiles) > 0) {
				return usageError{fmt.Errorf("--out-of-cluster deploys no manager: --image, --set, --values and --wait do not apply; leave them out, or leave out --out-of-cluster")}
			}
			if opts.APIServerURL != "" {
				u, err := peering.ParseAPIServerURL(opts.APIServerURL)
				if err != nil {
					return usageError{fmt.Errorf("--api-server-url: %w; pass the URL at which pods offloaded from this cluster reach its API server", err)}
				}
				opts.APIServerURL = u
			}
			if opts.Image != "" {
				if _, _, _, err := install.ParseImage(opts.Image); err != nil {
					return usageError{err}
				}
			}
			if opts.Values, err = vals.MergeValues(getter.Providers{}); err != nil {
				return usageError{fmt.Errorf("reading --values and --set: %w", err)}
			}
			c, cfg, err := cluster.Client(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var id identity.Identity
			if outOfCluster {
				fmt.Fprintf(out, "Installing Stretch on %s as %q, for a manager outside the cluster ...\n", cfg.Host, opts.ClusterName)
				id, err = install.Install(cmd.Context(), c, opts.Options, out)
			} else {
				fmt.Fprintf(out, "Installing Stretch on %s as %q ...\n", cfg.Host, opts.ClusterName)
				id, err = install.InstallChart(cmd.Context(), cluster.RESTClientGetter(), c, opts, out)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Stretch is installed on %q (cluster ID %s).\n", id.Name, id.ID)
			return nil
		},
	}
	cluster.BindFlags(cmd.Flags(), "", "cluster")
	cmd.Flags().StringVar(&opts.ClusterName, "cluster-name", "", "name of this cluster, unique among its peers (a DNS label)")
	cmd.Flags().StringVar(&labels, "cluster-labels", "", "labels of this cluster, as k=v,k2=v2, replacing those it has (left out: kept; \"\": none)")
	cmd.Flags().StringVar(&opts.Image, "image", "", "image of stretch-controller-manager, REPOSITORY[:TAG][@sha256:DIGEST] (default: the chart's, for this release)")
	cmd.Flags().StringVar(&opts.APIServerURL, "api-server-url", "", "https://HOST[:PORT] of this cluster's API server as pods offloaded from this cluster, and other clusters, reach it (its certificate must be valid for that host); sets the chart value apiServerURL (left out: kept)")
	cmd.Flags().StringArrayVar(&vals.Values, "set", nil, "a chart value, as helm's --set: key=value, repeatable (see charts/stretch/values.yaml)")
	cmd.Flags().StringArrayVarP(&vals.ValueFiles, "values", "f", nil, "a YAML file of chart values, repeatable; later files win")
	cmd.Flags().BoolVar(&opts.Wait, "wait", false, "wait, showing progress, until the manager's Deployment has rolled out")
	cmd.Flags().BoolVar(&outOfCluster, "out-of-cluster", false, "install no manager and no Helm release: CRDs, identity, RBAC and RuntimeClass only, for a stretch-controller-manager run with --kubeconfig")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 5*time.Minute, "how long to wait for the CRDs to be established and, with --wait, for the rollout")
	return cmd
}

func newUninstallCommand(name string) *cobra.Command {
	var (
		cluster factory.Cluster
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove Stretch from a cluster",
		Long: `Uninstall removes what install created: the Helm release and the manager's
Deployment, the CRDs, RBAC and RuntimeClass, and the cluster identity.

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
			if err := install.Uninstall(cmd.Context(), cluster.RESTClientGetter(), c, timeout, out); err != nil {
				return err
			}
			fmt.Fprintln(out, "Stretch is uninstalled.")
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the Helm release's objects to be deleted")
	cluster.BindFlags(cmd.Flags(), "", "cluster")
	return cmd
}
