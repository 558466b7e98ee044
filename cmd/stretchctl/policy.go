package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/cli/output"
	"stretch.dev/stretch/internal/cli/policy"
)

func newPolicyCommand(name string) *cobra.Command {
	return group("policy", "Set and show what a provider lets each home cluster run", fmt.Sprintf(`  %[1]s policy set 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a --limits cpu=8,memory=16Gi,pods=50 --kubeconfig provider.kubeconfig
  %[1]s policy show --kubeconfig provider.kubeconfig`, name),
		newPolicySetCommand(name), newPolicyShowCommand(name))
}

// policyFlags are the flags of 'policy set'.
type policyFlags struct {
	limits, podSecurity, priorityClasses, twinNamings, twinNamePattern string
}

func (f *policyFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.limits, "limits", "", `what the home cluster's pods may request across all its twins together, NAME=QUANTITY pairs: cpu, memory, ephemeral-storage, pods (a count), extended resources such as nvidia.com/gpu; "" removes every limit`)
	fs.StringVar(&f.podSecurity, "pod-security", "", "Pod Security Standard level of the home cluster's twins: baseline (the default) or restricted")
	fs.StringVar(&f.priorityClasses, "priority-classes", "", `PriorityClasses the home cluster's pods may name, comma-separated; "" allows none (the default)`)
	fs.StringVar(&f.twinNamings, "twin-namings", "", `twin namings the provider accepts, comma-separated: DefaultName (<namespace>-<home cluster ID>), EnforceSameName (<namespace>), SelectedName (any other name); "" accepts all three (the default)`)
	fs.StringVar(&f.twinNamePattern, "twin-name-pattern", "", `RE2 regular expression, anchored, that every new twin name must match; "" accepts any valid name (the default)`)
}

// change is what the flags given on the command line change; flags left
// out change nothing.
func (f *policyFlags) change(fs *pflag.FlagSet) (policy.Change, error) {
	var c policy.Change
	if fs.Changed("limits") {
		l, err := policy.ParseLimits(f.limits)
		if err != nil {
			return c, err
		}
		c.Limits = &l
	}
	if fs.Changed("pod-security") {
		l, err := policy.ParsePodSecurity(f.podSecurity)
		if err != nil {
			return c, err
		}
		c.PodSecurity = &l
	}
	if fs.Changed("priority-classes") {
		p, err := policy.ParsePriorityClasses(f.priorityClasses)
		if err != nil {
			return c, err
		}
		c.PriorityClasses = &p
	}
	if fs.Changed("twin-namings") {
		n, err := policy.ParseTwinNamings(f.twinNamings)
		if err != nil {
			return c, err
		}
		c.TwinNamings = &n
	}
	if fs.Changed("twin-name-pattern") {
		p, err := policy.ParseTwinNamePattern(f.twinNamePattern)
		if err != nil {
			return c, err
		}
		c.TwinNamePattern = &p
	}
	return c, nil
}

func newPolicySetCommand(name string) *cobra.Command {
	var (
		cluster factory.Cluster
		flags   policyFlags
	)
	cmd := &cobra.Command{
		Use:   "set HOME [--limits ...] [--pod-security ...] [--priority-classes ...] [--twin-namings ...] [--twin-name-pattern ...]",
		Short: "Set the policy of one home cluster on this provider",
		Long: `Set creates or updates, on the provider, the TenantPolicy of home cluster HOME
(its cluster ID: a provider knows home clusters by ID; 'policy show' lists them):
what its pods may request across all its twin namespaces together, the Pod
Security level of its twins, the priority classes its pods may name, and the
twin namings and names the provider accepts. Only the flags given change; the
others keep their values. Without a policy, a home cluster's twins are held to
Pod Security baseline, with no limit and no priority class.

A tighter policy never deletes a twin that exists: 'policy show' reports the
twins it no longer allows.`,
		Example: fmt.Sprintf(`  # Limits across every twin of the home cluster, and restricted pods
  %[1]s policy set 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a --limits cpu=8,memory=16Gi,pods=50,nvidia.com/gpu=2 --pod-security restricted

  # Only twins named <namespace>-<home cluster ID>, or team-*
  %[1]s policy set 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a --twin-namings DefaultName,SelectedName --twin-name-pattern 'team-.*|.*-0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a'

  # Remove every limit, leave the rest
  %[1]s policy set 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a --limits ""`, name),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("%s takes the home cluster's ID, e.g. '%s 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a --limits cpu=8' ('%s policy show' lists the home clusters)",
					cmd.CommandPath(), cmd.CommandPath(), name)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			change, err := flags.change(cmd.Flags())
			if err != nil {
				return usageError{err}
			}
			c, _, err := cluster.Client(cmd.Context())
			if err != nil {
				return err
			}
			_, err = policy.Set(cmd.Context(), c, args[0], change, cmd.OutOrStdout())
			return err
		},
	}
	cluster.BindFlags(cmd.Flags(), "", "provider cluster")
	flags.bind(cmd.Flags())
	return cmd
}

func newPolicyShowCommand(name string) *cobra.Command {
	var (
		cluster factory.Cluster
		format  string
	)
	cmd := &cobra.Command{
		Use:   "show [HOME] [-o yaml|json]",
		Short: "Show each home cluster's policy on this provider, and its usage against its limits",
		Long: `Show prints, for every home cluster peered with the provider (or HOME alone),
its policy: Pod Security level, what its pods request across its twins against
the limits, allowed priority classes, twin namings and name pattern, and whether
the policy holds on every twin, and why not (e.g. twins created before the
policy forbade them). A home cluster without a policy runs under the defaults,
and its usage is not tracked.`,
		Example: fmt.Sprintf(`  %[1]s policy show --kubeconfig provider.kubeconfig
  %[1]s policy show 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a -o yaml`, name),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("%s takes at most one home cluster ID, got %d (see '%s --help')", cmd.CommandPath(), len(args), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.ValidateFormat(format); err != nil {
				return usageError{err}
			}
			home := ""
			if len(args) == 1 {
				home = args[0]
			}
			c, _, err := cluster.Client(cmd.Context())
			if err != nil {
				return err
			}
			report, err := policy.Show(cmd.Context(), c, home)
			if err != nil {
				return err
			}
			if format == output.FormatTable {
				return report.Print(cmd.OutOrStdout())
			}
			return output.Print(cmd.OutOrStdout(), format, report)
		},
	}
	cluster.BindFlags(cmd.Flags(), "", "provider cluster")
	cmd.Flags().StringVarP(&format, "output", "o", "", "output format: yaml or json (default a table)")
	return cmd
}
