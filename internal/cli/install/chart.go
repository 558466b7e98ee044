package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/charts"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/identity"
)

// ChartOptions are the options of InstallChart besides those of Install.
type ChartOptions struct {
	Options
	// Image overrides the chart's image: "repository", "repository:tag" or
	// "repository@sha256:...".
	Image string
	// APIServerURL, when set, is the chart value apiServerURL: the URL at
	// which pods offloaded from this cluster, and other clusters, reach its
	// API server.
	APIServerURL string
	// Values are merged over the chart's defaults and, on an upgrade, over
	// the values of the installed release; ClusterName, ClusterLabels,
	// Image and APIServerURL win over them.
	Values map[string]any
	// Wait waits, printing progress, until the manager's Deployment has
	// rolled out, for at most Timeout.
	Wait bool
}

// InstallChart installs Stretch with its manager as the Helm release
// charts.ReleaseName, or upgrades that release. Before anything is written it
// checks the cluster name against the identity and renders the chart with
// the values the release will have, so that a refused value or a name the
// cluster is not known by changes nothing. Objects that an out-of-cluster
// install (Install) created are taken over by the release; once it is
// installed, what earlier releases issued to home clusters is renamed
// (migrateTenants).
func InstallChart(ctx context.Context, getter genericclioptions.RESTClientGetter, c client.Client, opts ChartOptions, out io.Writer) (identity.Identity, error) {
	values, err := chartValues(opts)
	if err != nil {
		return identity.Identity{}, err
	}
	chrt, err := charts.Load()
	if err != nil {
		return identity.Identity{}, err
	}
	if err := identity.Check(ctx, c, opts.ClusterName); err != nil {
		return identity.Identity{}, err
	}
	cfg, err := helmConfiguration(getter)
	if err != nil {
		return identity.Identity{}, err
	}
	previous, err := lastRelease(cfg)
	if err != nil {
		return identity.Identity{}, err
	}
	// What the release's values will be: an upgrade reuses those given before.
	check := values
	if previous != nil {
		check = mergeValues(previous.Config, values)
	}
	if _, err := charts.Render(check, wellknown.SystemNamespace); err != nil {
		return identity.Identity{}, fmt.Errorf("nothing was changed: %w", err)
	}

	if err := ensureNamespace(ctx, c); err != nil {
		return identity.Identity{}, err
	}
	id, created, err := identity.Ensure(ctx, c, opts.ClusterName, opts.ClusterLabels)
	if err != nil {
		return identity.Identity{}, err
	}
	fmt.Fprintf(out, "✓ cluster identity %s: name %s, ID %s (%s), labels [%s]\n", identity.Key, id.Name, id.ID, map[bool]string{true: "created", false: "kept"}[created], identity.FormatLabels(id.Labels))
	// The identity's labels, those just given or those kept, so that the
	// manager's --cluster-labels never removes what an install left out.
	labels := map[string]any{}
	for k, v := range id.Labels {
		labels[k] = v
	}
	values["clusterLabels"] = labels

	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	version := chrt.Metadata.Version
	var rel *releasev1.Release
	if previous == nil {
		fmt.Fprintf(out, "Installing chart %s %s as Helm release %s/%s ...\n", chrt.Name(), version, wellknown.SystemNamespace, charts.ReleaseName)
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace = charts.ReleaseName, wellknown.SystemNamespace
		in.Timeout, in.WaitStrategy = timeout, kube.HookOnlyStrategy
		// What an out-of-cluster install applied carries no Helm ownership.
		in.TakeOwnership = true
		// Fields that install applied before, under its own field manager.
		in.ForceConflicts = true
		r, err := in.RunWithContext(ctx, chrt, values)
		if err != nil {
			return id, fmt.Errorf("installing the Helm release %s/%s: %w: fix the cause, then run install again (it upgrades a failed release)", wellknown.SystemNamespace, charts.ReleaseName, err)
		}
		rel, _ = r.(*releasev1.Release)
	} else {
		fmt.Fprintf(out, "Upgrading Helm release %s/%s from revision %d (chart %s, %s) to chart %s ...\n", wellknown.SystemNamespace, charts.ReleaseName, previous.Version, chartVersion(previous), previous.Info.Status, version)
		up := action.NewUpgrade(cfg)
		up.Namespace = wellknown.SystemNamespace
		up.Timeout, up.WaitStrategy = timeout, kube.HookOnlyStrategy
		// Values given to an earlier install stay unless given again.
		up.ResetThenReuseValues = true
		up.TakeOwnership = true
		up.ForceConflicts = true
		up.MaxHistory = 10
		r, err := up.RunWithContext(ctx, charts.ReleaseName, chrt, values)
		if err != nil {
			return id, fmt.Errorf("upgrading the Helm release %s/%s: %w: fix the cause, then run install again", wellknown.SystemNamespace, charts.ReleaseName, err)
		}
		rel, _ = r.(*releasev1.Release)
	}
	if rel != nil {
		fmt.Fprintf(out, "✓ Helm release %s/%s revision %d: %s\n", wellknown.SystemNamespace, charts.ReleaseName, rel.Version, rel.Info.Status)
	}
	if err := migrateTenants(ctx, c, out); err != nil {
		return id, err
	}
	if opts.Wait {
		if err := waitRollout(ctx, c, timeout, out); err != nil {
			return id, err
		}
	}
	return id, nil
}

// helmConfiguration sets Helm's actions up for the release in
// wellknown.SystemNamespace, its records kept in Secrets as helm keeps them.
func helmConfiguration(getter genericclioptions.RESTClientGetter) (*action.Configuration, error) {
	cfg := action.NewConfiguration()
	// Helm logs every step at info level; a failure comes back as an error.
	cfg.SetLogger(slog.DiscardHandler)
	if err := cfg.Init(getter, wellknown.SystemNamespace, "secret"); err != nil {
		return nil, fmt.Errorf("setting up Helm for namespace %s: %w", wellknown.SystemNamespace, err)
	}
	return cfg, nil
}

// uninstallRelease uninstalls the Helm release, if there is one, and waits
// until its objects are gone; the CRDs stay (resource policy keep).
func uninstallRelease(getter genericclioptions.RESTClientGetter, timeout time.Duration, out io.Writer) error {
	cfg, err := helmConfiguration(getter)
	if err != nil {
		return err
	}
	rel, err := lastRelease(cfg)
	if err != nil || rel == nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.WaitStrategy, un.Timeout = kube.StatusWatcherStrategy, timeout
	if _, err := un.Run(charts.ReleaseName); err != nil {
		return fmt.Errorf("uninstalling the Helm release %s/%s: %w: see 'helm -n %[1]s status %[2]s', then run uninstall again", wellknown.SystemNamespace, charts.ReleaseName, err)
	}
	fmt.Fprintf(out, "✓ Helm release %s/%s (revision %d) uninstalled: the manager's Deployment and Services are gone\n", wellknown.SystemNamespace, charts.ReleaseName, rel.Version)
	return nil
}

// mergeValues lays over on base, merging maps key by key, as Helm merges the
// values of an upgrade over those of the release.
func mergeValues(base, over map[string]any) map[string]any {
	merged := maps.Clone(base)
	if merged == nil {
		merged = map[string]any{}
	}
	for k, v := range over {
		if vm, ok := v.(map[string]any); ok {
			if bm, ok := merged[k].(map[string]any); ok {
				merged[k] = mergeValues(bm, vm)
				continue
			}
		}
		merged[k] = v
	}
	return merged
}

// lastRelease is the newest revision of charts.ReleaseName, nil when there is none.
func lastRelease(cfg *action.Configuration) (*releasev1.Release, error) {
	h := action.NewHistory(cfg)
	h.Max = 1
	rels, err := h.Run(charts.ReleaseName)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the history of the Helm release %s/%s: %w", wellknown.SystemNamespace, charts.ReleaseName, err)
	}
	var last *releasev1.Release
	for _, r := range rels {
		if rel, ok := r.(*releasev1.Release); ok && (last == nil || rel.Version > last.Version) {
			last = rel
		}
	}
	return last, nil
}

func chartVersion(r *releasev1.Release) string {
	if r.Chart == nil || r.Chart.Metadata == nil {
		return "unknown"
	}
	return r.Chart.Metadata.Version
}

// chartValues are opts.Values with the options that have flags of their own
// set over them; InstallChart sets clusterLabels from the identity.
func chartValues(opts ChartOptions) (map[string]any, error) {
	values := maps.Clone(opts.Values)
	if values == nil {
		values = map[string]any{}
	}
	values["clusterName"] = opts.ClusterName
	if opts.APIServerURL != "" {
		values["apiServerURL"] = opts.APIServerURL
	}
	if opts.Image != "" {
		repo, tag, digest, err := ParseImage(opts.Image)
		if err != nil {
			return nil, err
		}
		image, _ := values["image"].(map[string]any)
		image = maps.Clone(image)
		if image == nil {
			image = map[string]any{}
		}
		image["repository"], image["tag"], image["digest"] = repo, tag, digest
		values["image"] = image
	}
	return values, nil
}

// ParseImage splits an image reference into repository, tag and digest; the
// tag and the digest may be empty.
func ParseImage(ref string) (repository, tag, digest string, err error) {
	rest := ref
	if before, after, ok := strings.Cut(rest, "@"); ok {
		rest, digest = before, after
		if !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
			return "", "", "", fmt.Errorf("--image %q: the digest must be sha256: and 64 hex digits", ref)
		}
	}
	// A colon after the last slash starts the tag; one before it is a
	// registry's port.
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		rest, tag = rest[:i], rest[i+1:]
		if tag == "" {
			return "", "", "", fmt.Errorf("--image %q: empty tag after ':'", ref)
		}
	}
	if rest == "" || strings.ContainsAny(rest, " \t") || rest != strings.ToLower(rest) {
		return "", "", "", fmt.Errorf("--image %q: expected REPOSITORY[:TAG][@sha256:DIGEST] with a lower-case repository, e.g. registry.example.com/stretch/stretch-controller-manager:v0.2.0", ref)
	}
	return rest, tag, digest, nil
}

// waitRollout waits until the manager's Deployment has rolled out, printing
// each change of its progress, and on timeout says what its pods wait for.
func waitRollout(ctx context.Context, c client.Client, timeout time.Duration, out io.Writer) error {
	key := client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: wellknown.ManagerName}
	last := ""
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, key, d); err != nil {
			if apierrors.IsNotFound(err) {
				return false, fmt.Errorf("deployment %s is not in the cluster: was the chart installed with manager.enabled=false?", key)
			}
			return false, nil // retried until the timeout; a lasting error is reported below
		}
		done, progress := rolloutProgress(d)
		if progress != last {
			fmt.Fprintf(out, "  deployment %s: %s\n", key, progress)
			last = progress
		}
		return done, nil
	})
	if err == nil {
		fmt.Fprintf(out, "✓ deployment %s rolled out\n", key)
		return nil
	}
	if !wait.Interrupted(err) {
		return err
	}
	return fmt.Errorf("deployment %s did not roll out within %s (%s)%s: check 'kubectl -n %s describe deployment %s' and the pods' events, then run install again with --wait",
		key, timeout, last, podProblems(ctx, c), wellknown.SystemNamespace, wellknown.ManagerName)
}

// rolloutProgress says whether d has rolled out, as 'kubectl rollout
// status' decides it, and how far it is.
func rolloutProgress(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	progress := fmt.Sprintf("%d/%d replicas updated, %d ready, %d available", s.UpdatedReplicas, want, s.ReadyReplicas, s.AvailableReplicas)
	if s.ObservedGeneration < d.Generation {
		return false, "waiting for the deployment controller to see the new spec"
	}
	if s.Replicas > s.UpdatedReplicas {
		progress += fmt.Sprintf(", %d old replicas terminating", s.Replicas-s.UpdatedReplicas)
	}
	return s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want, progress
}

// podProblems lists why the manager's pods are not ready, e.g. an image that
// cannot be pulled or no node to schedule on.
func podProblems(ctx context.Context, c client.Client) string {
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(wellknown.SystemNamespace), client.MatchingLabels{"app.kubernetes.io/name": "stretch-controller-manager"}); err != nil {
		return ""
	}
	var problems []string
	for _, p := range pods.Items {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
				problems = append(problems, fmt.Sprintf("pod %s unschedulable: %s", p.Name, cond.Message))
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" {
				problems = append(problems, fmt.Sprintf("pod %s: %s %s", p.Name, w.Reason, w.Message))
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				problems = append(problems, fmt.Sprintf("pod %s restarted %d times, last exit %d (%s): see 'kubectl -n %s logs %s --previous'", p.Name, cs.RestartCount, t.ExitCode, t.Reason, wellknown.SystemNamespace, p.Name))
			}
		}
	}
	if len(problems) == 0 {
		return ""
	}
	slices.Sort(problems)
	return "; " + strings.Join(problems, "; ")
}

// ensureNamespace creates wellknown.SystemNamespace unless it exists: the
// identity lives there before the release does.
func ensureNamespace(ctx context.Context, c client.Client) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wellknown.SystemNamespace, Labels: apply.Labels()}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", wellknown.SystemNamespace, err)
	}
	return nil
}
