package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/cli/peer"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
)

func newPeerCommand(name string) *cobra.Command {
	var (
		home, provider factory.Cluster
		fromFile       string
		apiServerURL   string
		wait           bool
		timeout        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "peer (--remote-kubeconfig PROVIDER [--api-server-url URL] | --from-file FILE) [--wait]",
		Short: "Peer this (home) cluster with a provider cluster",
		Long: `Peer lets the home cluster run workloads on a provider cluster, which then
appears in the home cluster as the virtual node stretch-<provider name>.

On the provider it creates the tenant namespace stretch-tenant-<home cluster ID>,
a ServiceAccount with least-privilege RBAC, and a token for it (the credentials).
On the home cluster it stores them as a kubeconfig Secret in stretch-system and
creates the RemoteCluster named after the provider.

With access to both clusters, give both kubeconfigs. Otherwise the provider's
admin runs 'peer generate-credentials' and hands over the file, which the home
cluster's admin consumes with --from-file.

The kubeconfig the home cluster is given points at the server of the provider's
kubeconfig, unless --api-server-url names another address: use it when that
server is only reachable from where you run this (127.0.0.1, a private IP).

Peering again is safe: it renews the token and changes nothing else; the
RemoteCluster's labels, resources and cordoned, set by an admin, are kept.`,
		Example: fmt.Sprintf(`  # Peer directly, with a kubeconfig for each cluster, and wait for the virtual node
  %[1]s peer --kubeconfig home.kubeconfig --remote-kubeconfig provider-eu.kubeconfig --wait

  # Both clusters in one kubeconfig, as two contexts
  %[1]s peer --context home --remote-context provider-eu

  # The provider's kubeconfig says https://127.0.0.1:6443: give the home cluster an address it reaches
  %[1]s peer --kubeconfig home.kubeconfig --remote-kubeconfig provider-eu.kubeconfig \
      --api-server-url https://203.0.113.10:6443

  # Out of band: on the provider ...
  %[1]s peer generate-credentials --kubeconfig provider-eu.kubeconfig \
      --home-cluster-id 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a -o provider-eu.credentials
  # ... then on the home cluster
  %[1]s peer --kubeconfig home.kubeconfig --from-file provider-eu.credentials`, name),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			direct := provider.Kubeconfig != "" || provider.Context != ""
			switch {
			case direct && fromFile != "":
				return usageError{errors.New("pass either --remote-kubeconfig/--remote-context (direct peering) or --from-file (out-of-band peering), not both")}
			case !direct && fromFile == "":
				return usageError{fmt.Errorf("say which provider to peer with: --remote-kubeconfig PROVIDER to peer directly, or --from-file FILE with credentials from '%s peer generate-credentials' (see '%s --help')", name, cmd.CommandPath())}
			case timeout <= 0:
				return usageError{fmt.Errorf("--timeout must be positive, got %s", timeout)}
			case fromFile != "" && apiServerURL != "":
				return usageError{fmt.Errorf("--api-server-url applies to credentials issued now, by direct peering; with --from-file, the provider's admin passes it to '%s peer generate-credentials'", name)}
			}
			if err := checkAPIServerURL(&apiServerURL); err != nil {
				return err
			}
			var creds *peering.Credentials
			if fromFile != "" {
				var err error
				if creds, err = readCredentials(fromFile); err != nil {
					return err
				}
				warnLoopback(cmd.ErrOrStderr(), creds.Provider.Server, fmt.Sprintf("ask the provider's admin for credentials made with '%s peer generate-credentials --api-server-url https://HOST:PORT'", name))
			}
			ctx := cmd.Context()
			homeClient, homeConfig, err := home.Client(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var rc *peeringv1alpha1.RemoteCluster
			if direct {
				providerClient, providerConfig, err := provider.Client(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "Peering the home cluster at %s with the provider at %s ...\n", homeConfig.Host, providerConfig.Host)
				handed := peer.WithAPIServerURL(providerConfig, apiServerURL)
				warnLoopback(cmd.ErrOrStderr(), peer.Server(handed), apiServerURLFix)
				rc, err = peer.Peer(ctx, homeClient, providerClient, handed, out)
				if err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "Peering the home cluster at %s with provider %q, from %s ...\n", homeConfig.Host, creds.Provider.ClusterName, fromFile)
				if rc, err = peer.Consume(ctx, homeClient, creds, out); err != nil {
					return err
				}
			}
			if wait {
				if err := peer.WaitReady(ctx, homeClient, rc.Name, timeout, out); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "Peered with %q: '%s status' shows it and its virtual node %s.\n", rc.Name, name, peeringv1alpha1.VirtualNodeName(rc.Name))
			return nil
		},
	}
	home.BindFlags(cmd.Flags(), "", "home cluster")
	provider.BindFlags(cmd.Flags(), "remote-", "provider cluster")
	cmd.Flags().StringVar(&fromFile, "from-file", "", "credentials file written by 'peer generate-credentials' on the provider")
	cmd.Flags().StringVar(&apiServerURL, "api-server-url", "", apiServerURLUsage)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the provider's virtual node is Ready")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long --wait waits")
	cmd.AddCommand(newGenerateCredentialsCommand(name), newRevokeCommand(name))
	return cmd
}

func newGenerateCredentialsCommand(name string) *cobra.Command {
	var (
		provider     factory.Cluster
		homeID       string
		output       string
		apiServerURL string
	)
	cmd := &cobra.Command{
		Use:   "generate-credentials --home-cluster-id ID -o FILE [--api-server-url URL]",
		Short: "On a provider: issue credentials for a home cluster, into a file",
		Long: `Generate-credentials runs on the provider. It creates the tenant namespace of the
home cluster, its ServiceAccount and least-privilege RBAC, issues a token, and
writes everything the home cluster needs into FILE (mode 0600).

The home cluster ID is printed by 'stretchctl install' and shown by
'stretchctl status' on the home cluster. Hand the file over privately: it grants
access to this cluster. Running it again issues a new token.

The credentials point at the server of the provider's kubeconfig, unless
--api-server-url names another address: use it when that server is only
reachable from where you run this (127.0.0.1, a private IP).`,
		Example: fmt.Sprintf(`  %[1]s peer generate-credentials --kubeconfig provider-eu.kubeconfig \
      --home-cluster-id 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a -o provider-eu.credentials

  # With the address the home cluster reaches the provider's API server at
  %[1]s peer generate-credentials --kubeconfig provider-eu.kubeconfig --api-server-url https://203.0.113.10:6443 \
      --home-cluster-id 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a -o provider-eu.credentials`, name),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateHomeClusterID(name, homeID); err != nil {
				return err
			}
			if output == "" {
				return usageError{errors.New("pass -o FILE: where to write the credentials")}
			}
			if err := checkAPIServerURL(&apiServerURL); err != nil {
				return err
			}
			if info, err := os.Stat(filepath.Dir(output)); err != nil || !info.IsDir() {
				return fmt.Errorf("cannot write %s: its folder %s does not exist", output, filepath.Dir(output))
			}
			c, cfg, err := provider.Client(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Issuing credentials on the provider at %s for home cluster %s ...\n", cfg.Host, homeID)
			handed := peer.WithAPIServerURL(cfg, apiServerURL)
			warnLoopback(cmd.ErrOrStderr(), peer.Server(handed), apiServerURLFix)
			creds, err := peer.IssueCredentials(cmd.Context(), c, handed, homeID, out)
			if err != nil {
				return err
			}
			data, err := creds.Marshal()
			if err != nil {
				return err
			}
			if err := writePrivate(output, data); err != nil {
				return err
			}
			fmt.Fprintf(out, "Credentials of %q written to %s (mode 0600). Hand them over privately: they grant access to this cluster.\nOn the home cluster, run:\n  %s peer --kubeconfig HOME --from-file %s\n",
				creds.Provider.ClusterName, output, name, output)
			return nil
		},
	}
	provider.BindFlags(cmd.Flags(), "", "provider cluster")
	cmd.Flags().StringVar(&homeID, "home-cluster-id", "", "cluster ID of the home cluster the credentials are for")
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write the credentials to")
	cmd.Flags().StringVar(&apiServerURL, "api-server-url", "", apiServerURLUsage)
	return cmd
}

func newRevokeCommand(name string) *cobra.Command {
	var (
		provider factory.Cluster
		homeID   string
		force    bool
	)
	cmd := &cobra.Command{
		Use:   "revoke --home-cluster-id ID [--force]",
		Short: "On a provider: revoke what was issued to a home cluster",
		Long: `Revoke runs on the provider. It deletes what peering issued to one home cluster:
its ClusterRoleBinding, its Role and RoleBinding in stretch-system, its
ServiceAccount (the token stops working) and its tenant namespace.

It is the provider half of 'stretchctl unpeer', for when the home cluster's admin
has no access to the provider. It refuses, changing nothing, while the home
cluster still has twin namespaces here, unless --force deletes their requests
(the twins then go with everything in them).`,
		Example: fmt.Sprintf(`  %s peer revoke --kubeconfig provider-eu.kubeconfig --home-cluster-id 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a`, name),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateHomeClusterID(name, homeID); err != nil {
				return err
			}
			c, cfg, err := provider.Client(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Revoking, on the provider at %s, what was issued to home cluster %s ...\n", cfg.Host, homeID)
			return peer.Revoke(cmd.Context(), c, homeID, force, out)
		},
	}
	provider.BindFlags(cmd.Flags(), "", "provider cluster")
	cmd.Flags().StringVar(&homeID, "home-cluster-id", "", "cluster ID of the home cluster to revoke")
	cmd.Flags().BoolVar(&force, "force", false, "also delete the home cluster's twin namespace requests")
	return cmd
}

func newUnpeerCommand(name string) *cobra.Command {
	var (
		home, provider factory.Cluster
		opts           peer.UnpeerOptions
	)
	cmd := &cobra.Command{
		Use:   "unpeer NAME [--remote-kubeconfig PROVIDER] [--force]",
		Short: "Remove the peering with a provider",
		Long: `Unpeer removes the peering with provider NAME (as 'stretchctl status' lists it):
on the home cluster the RemoteCluster, once the home controller has removed its
virtual node, and the kubeconfig Secret; on the provider, given
--remote-kubeconfig, what peering created there. Without it, unpeer prints the
'stretchctl peer revoke' command that the provider's admin runs.

It refuses, changing nothing, while namespaces are offloaded to NAME. --force
deletes their twin namespace requests on the provider instead (the twins go with
everything in them), and removes the RemoteCluster's finalizer if no home
controller does within --timeout.`,
		Example: fmt.Sprintf(`  # Both sides at once
  %[1]s unpeer provider-eu --kubeconfig home.kubeconfig --remote-kubeconfig provider-eu.kubeconfig

  # The home side only; prints the command for the provider's admin
  %[1]s unpeer provider-eu --kubeconfig home.kubeconfig`, name),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("%s takes the provider's name, e.g. '%s provider-eu' ('%s status' lists the peers)", cmd.CommandPath(), cmd.CommandPath(), name)}
			}
			if err := identity.ValidateClusterName(args[0]); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Timeout <= 0 {
				return usageError{fmt.Errorf("--timeout must be positive, got %s", opts.Timeout)}
			}
			opts.Name = args[0]
			ctx := cmd.Context()
			homeClient, homeConfig, err := home.Client(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if provider.Kubeconfig != "" || provider.Context != "" {
				providerClient, providerConfig, err := provider.Client(ctx)
				if err != nil {
					return fmt.Errorf("%w; to unpeer the home side only, leave --remote-kubeconfig out", err)
				}
				opts.Provider = providerClient
				fmt.Fprintf(out, "Unpeering the home cluster at %s from %q at %s ...\n", homeConfig.Host, opts.Name, providerConfig.Host)
			} else {
				fmt.Fprintf(out, "Unpeering the home cluster at %s from %q ...\n", homeConfig.Host, opts.Name)
			}
			if err := peer.Unpeer(ctx, homeClient, opts, out); err != nil {
				return err
			}
			fmt.Fprintf(out, "Unpeered from %q.\n", opts.Name)
			return nil
		},
	}
	home.BindFlags(cmd.Flags(), "", "home cluster")
	provider.BindFlags(cmd.Flags(), "remote-", "provider cluster")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "unpeer even while namespaces are offloaded to the provider, deleting their twin namespace requests")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", time.Minute, "how long to wait for the home controller to release the RemoteCluster")
	return cmd
}

const (
	apiServerURLUsage = "https://HOST[:PORT] of the provider's API server as the home cluster reaches it, put in the issued kubeconfig instead of the server of the provider's kubeconfig (its certificate must be valid for that host)"
	apiServerURLFix   = "pass --api-server-url https://HOST:PORT with an address of the provider's API server that the home cluster reaches"
)

// checkAPIServerURL checks --api-server-url, when given, and normalizes it.
func checkAPIServerURL(apiServerURL *string) error {
	if *apiServerURL == "" {
		return nil
	}
	u, err := peering.ParseAPIServerURL(*apiServerURL)
	if err != nil {
		return usageError{fmt.Errorf("--api-server-url: %w", err)}
	}
	*apiServerURL = u
	return nil
}

// warnLoopback warns, in one line, when the kubeconfig issued to the home
// cluster points at a loopback address: it works only when the home
// cluster's manager runs on the provider's machine, outside a pod.
func warnLoopback(w io.Writer, server, fix string) {
	if peering.IsLoopback(server) {
		fmt.Fprintf(w, "Warning: the provider's API server is given to the home cluster as %s, a loopback address that a home cluster on another machine (or in a pod) cannot reach: %s.\n", server, fix)
	}
}

// validateHomeClusterID checks --home-cluster-id.
func validateHomeClusterID(name, id string) error {
	if id == "" {
		return usageError{fmt.Errorf("pass --home-cluster-id ID: '%s status --kubeconfig HOME' shows the home cluster's ID", name)}
	}
	if err := identity.ValidateClusterID(id); err != nil {
		return usageError{fmt.Errorf("--home-cluster-id: %w", err)}
	}
	return nil
}

// readCredentials reads and checks a credentials file before any cluster is
// contacted.
func readCredentials(path string) (*peering.Credentials, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("credentials file: %w: pass the file written by 'peer generate-credentials' with --from-file", err)
	}
	if !info.Mode().IsRegular() || info.Size() > peering.MaxCredentialsSize {
		return nil, fmt.Errorf("credentials file %s is not a regular file of at most %d bytes: pass the file written by 'peer generate-credentials'", path, peering.MaxCredentialsSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading credentials file: %w", err)
	}
	creds, err := peering.ParseCredentials(data)
	if err != nil {
		return nil, fmt.Errorf("credentials file %s: %w", path, err)
	}
	return creds, nil
}

// writePrivate writes data to path readable by its owner only, also when
// path existed with a wider mode.
func writePrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing credentials: %w", err)
	}
	_, werr := f.Write(data)
	if err := errors.Join(f.Chmod(0o600), werr, f.Close()); err != nil {
		return fmt.Errorf("writing credentials to %s: %w", path, err)
	}
	return nil
}
