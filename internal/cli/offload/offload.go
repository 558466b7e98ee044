package offload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/naming"
)

const (
	// pollInterval is how often --wait reads the status again.
	pollInterval = time.Second
	// unselectedSettle is how long --wait lets a valid selector match no
	// provider before it fails: virtual nodes of new peers take a probe to
	// appear.
	unselectedSettle = 10 * time.Second
)

// Resolve returns the namespaces the targets name, checking that they exist.
func Resolve(ctx context.Context, c client.Reader, t Targets) ([]string, error) {
	if t.NamespaceSelector != "" {
		sel, err := labels.Parse(t.NamespaceSelector)
		if err != nil {
			return nil, err
		}
		list := &corev1.NamespaceList{}
		if err := c.List(ctx, list, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, fmt.Errorf("listing namespaces with labels %s: %w", t.NamespaceSelector, err)
		}
		if len(list.Items) == 0 {
			return nil, fmt.Errorf("no namespace has labels %s: check them with 'kubectl get namespaces --show-labels'", t.NamespaceSelector)
		}
		names := make([]string, 0, len(list.Items))
		for _, ns := range list.Items {
			names = append(names, ns.Name)
		}
		sort.Strings(names)
		return names, nil
	}
	var missing []string
	for _, name := range t.Namespaces {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &corev1.Namespace{}); apierrors.IsNotFound(err) {
			missing = append(missing, name)
		} else if err != nil {
			return nil, fmt.Errorf("reading namespace %s: %w", name, err)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("namespaces %s do not exist on the home cluster: create them first (kubectl create namespace), nothing was changed", strings.Join(missing, ", "))
	}
	return t.Namespaces, nil
}

// Offload writes the NamespaceOffloading of each namespace; with waitReady, it
// then follows their status until each is Ready or failed, printing every
// provider's state as it changes. The caller checks the twin names first
// (CheckTwinNames), once, before it writes or prints anything.
func Offload(ctx context.Context, c client.Client, namespaces []string, spec offloadingv1alpha1.NamespaceOffloadingSpec, waitReady bool, timeout time.Duration, out io.Writer) error {
	home, err := identity.Load(ctx, c)
	if err != nil {
		return err
	}
	for _, ns := range namespaces {
		if err := apply.Object(ctx, c, Manifest(ns, spec)); err != nil {
			return err
		}
		fmt.Fprintf(out, "✓ namespace %s: NamespaceOffloading applied (pods %s, twins %s)\n", ns, spec.PodOffloadingStrategy, naming.TwinName(spec, ns, home.ID))
	}
	if !waitReady {
		return nil
	}
	return waitOffloaded(ctx, c, namespaces, timeout, out)
}

// settled phases end a --wait.
var failedPhases = map[offloadingv1alpha1.OffloadingPhase]bool{
	offloadingv1alpha1.AllFailedPhase:         true,
	offloadingv1alpha1.SomeFailedPhase:        true,
	offloadingv1alpha1.NoClusterSelectedPhase: true,
}

func waitOffloaded(ctx context.Context, c client.Client, namespaces []string, timeout time.Duration, out io.Writer) error {
	p := newProgress(out)
	pending := map[string]bool{}
	for _, ns := range namespaces {
		pending[ns] = true
	}
	var failures []string
	last := map[string]*offloadingv1alpha1.NamespaceOffloading{}
	unselectedSince := map[string]time.Time{}
	// Requests use ctx, not the poll's deadline, so that the last poll
	// before the deadline fails as a timeout, with its message.
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(context.Context) (bool, error) {
		for ns := range pending {
			off := &offloadingv1alpha1.NamespaceOffloading{}
			if err := c.Get(ctx, key(ns), off); err != nil {
				return false, fmt.Errorf("reading NamespaceOffloading %s/offloading: %w", ns, err)
			}
			if off.Status.ObservedGeneration != off.Generation {
				continue // not yet judged by the controller
			}
			last[ns] = off
			p.report(off)
			phase := off.Status.OffloadingPhase
			if phase != offloadingv1alpha1.NoClusterSelectedPhase {
				delete(unselectedSince, ns)
			} else if _, ok := unselectedSince[ns]; !ok {
				unselectedSince[ns] = time.Now()
			}
			switch {
			case phase == offloadingv1alpha1.ReadyPhase:
				fmt.Fprintf(out, "✓ namespace %s offloaded: twin %s ready on %s\n", ns, off.Status.RemoteNamespaceName, strings.Join(off.Status.Providers(), ", "))
				delete(pending, ns)
			case phase == offloadingv1alpha1.NoClusterSelectedPhase && off.Annotations[wellknown.ClusterSelectorErrorAnnotation] == "" &&
				time.Since(unselectedSince[ns]) < unselectedSettle:
				// A provider just peered may not have its virtual node yet.
			case phase == offloadingv1alpha1.SomeFailedPhase && len(creating(off)) > 0:
				// The others may still fail or succeed: say all at once.
			case failedPhases[phase]:
				failures = append(failures, failure(off))
				delete(pending, ns)
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if len(pending) > 0 {
		names := slices.Sorted(maps.Keys(pending))
		msg := fmt.Sprintf("namespaces %s are not offloaded after %s: see 'kubectl get namespaceoffloadings offloading -n NAMESPACE -o yaml' and 'stretchctl diagnose namespace NAMESPACE'", strings.Join(names, ", "), timeout)
		for _, ns := range names {
			if off := last[ns]; off != nil {
				msg += "\n" + failure(off)
			}
		}
		failures = append(failures, msg)
	}
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "\n"))
	}
	return nil
}

// failure says why a namespace's offloading failed, provider by provider.
func failure(off *offloadingv1alpha1.NamespaceOffloading) string {
	msg := fmt.Sprintf("namespace %s: phase %s", off.Namespace, off.Status.OffloadingPhase)
	if off.Status.OffloadingPhase == offloadingv1alpha1.NoClusterSelectedPhase {
		if e := off.Annotations[wellknown.ClusterSelectorErrorAnnotation]; e != "" {
			return msg + ": the cluster selector is invalid: " + e
		}
		return msg + ": no provider's virtual node matches the cluster selector; compare it with 'kubectl get nodes --show-labels'"
	}
	for _, name := range off.Status.Providers() {
		if c := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition); c != nil && c.Status != "True" {
			msg += fmt.Sprintf("\n  %s: %s: %s", name, c.Reason, c.Message)
		}
	}
	return msg
}

// creating names the selected providers still creating the twin.
func creating(off *offloadingv1alpha1.NamespaceOffloading) []string {
	var names []string
	for _, name := range off.Status.SelectedProviders() {
		if r := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition); r == nil || r.Status != metav1.ConditionTrue && r.Reason == offloadingv1alpha1.CreatingReason {
			names = append(names, name)
		}
	}
	return names
}

// Unoffload deletes the NamespaceOffloading of each namespace; force lets the
// unoffload finish without the providers that do not answer. With waitGone,
// it follows each until gone.
func Unoffload(ctx context.Context, c client.Client, namespaces []string, force, waitGone bool, timeout time.Duration, out io.Writer) error {
	var deleting []string
	for _, ns := range namespaces {
		off := &offloadingv1alpha1.NamespaceOffloading{}
		if err := c.Get(ctx, key(ns), off); apierrors.IsNotFound(err) {
			fmt.Fprintf(out, "namespace %s is not offloaded\n", ns)
			continue
		} else if err != nil {
			return fmt.Errorf("reading NamespaceOffloading %s/offloading: %w", ns, err)
		}
		var left map[string]string // by provider
		if force {
			var err error
			if left, err = leftBehind(ctx, c, off); err != nil {
				return err
			}
			patch := client.MergeFrom(off.DeepCopy())
			if off.Annotations == nil {
				off.Annotations = map[string]string{}
			}
			off.Annotations[wellknown.ForceUnoffloadAnnotation] = "true"
			if err := c.Patch(ctx, off, patch); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("marking NamespaceOffloading %s/offloading for a forced unoffload: %w", ns, err)
			}
		}
		if _, err := apply.Delete(ctx, c, off); err != nil {
			return err
		}
		claims, err := claimsOnProviders(ctx, c, ns)
		if err != nil {
			return err
		}
		answering := slices.DeleteFunc(off.Status.Providers(), func(p string) bool { return left[p] != "" || !force && claims[p] != "" })
		fmt.Fprintf(out, "✓ namespace %s: unoffload started (twins on %s are deleted with everything in them)\n", ns, orNone(answering))
		for _, p := range slices.Sorted(maps.Keys(left)) {
			fmt.Fprintf(out, "! --force: %s\n", left[p])
		}
		for _, p := range slices.Sorted(maps.Keys(claims)) {
			if force {
				fmt.Fprintf(out, "! --force: provider %s deletes the copies of claims %s with the twin, and their data\n", p, claims[p])
				continue
			}
			fmt.Fprintf(out, "! provider %s keeps the twin while it holds the copies of claims %s (their data): delete them at home (kubectl delete pvc -n %s %s, once no pod uses them) to let the unoffload finish, or run 'stretchctl unoffload namespace %s --force' to delete them with the twin\n",
				p, claims[p], ns, strings.ReplaceAll(claims[p], ",", ""), ns)
		}
		deleting = append(deleting, ns)
	}
	if !waitGone || len(deleting) == 0 {
		return nil
	}
	p := newProgress(out)
	pending := map[string]*offloadingv1alpha1.NamespaceOffloading{}
	for _, ns := range deleting {
		pending[ns] = nil
	}
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(context.Context) (bool, error) {
		for ns := range pending {
			off := &offloadingv1alpha1.NamespaceOffloading{}
			err := c.Get(ctx, key(ns), off)
			if apierrors.IsNotFound(err) {
				fmt.Fprintf(out, "✓ namespace %s unoffloaded\n", ns)
				delete(pending, ns)
				continue
			}
			if err != nil {
				return false, fmt.Errorf("reading NamespaceOffloading %s/offloading: %w", ns, err)
			}
			p.report(off)
			pending[ns] = off
		}
		return len(pending) == 0, nil
	})
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if len(pending) == 0 {
		return nil
	}
	var msgs []string
	for _, ns := range slices.Sorted(maps.Keys(pending)) {
		msg := fmt.Sprintf("namespace %s is not unoffloaded after %s", ns, timeout)
		if off := pending[ns]; off != nil && len(off.Status.Providers()) > 0 {
			msg += fmt.Sprintf(": providers %s still hold its twin", strings.Join(off.Status.Providers(), ", "))
		}
		if !force {
			msg += fmt.Sprintf("; if they are gone for good, run 'stretchctl unoffload namespace %s --force'", ns)
		}
		msgs = append(msgs, msg)
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// claimsOnProviders returns, by provider, the claims of namespace ns
// whose copies it holds (design §4.23), comma-separated: an unoffload keeps
// their twins until the claims are deleted at home, and a forced one
// deletes the copies with their data.
func claimsOnProviders(ctx context.Context, c client.Reader, ns string) (map[string]string, error) {
	pvs := &corev1.PersistentVolumeList{}
	if err := apply.List(ctx, c, pvs); err != nil {
		return nil, err
	}
	byProvider := map[string][]string{}
	for _, pv := range pvs.Items {
		if ref := pv.Spec.ClaimRef; ref != nil && ref.Namespace == ns && pv.Annotations["pv.kubernetes.io/provisioned-by"] == wellknown.VolumeProvisioner {
			p := pv.Labels[wellknown.RemoteClusterNameLabel]
			byProvider[p] = append(byProvider[p], ref.Name)
		}
	}
	out := map[string]string{}
	for p, claims := range byProvider {
		slices.Sort(claims)
		out[p] = strings.Join(claims, ", ")
	}
	return out, nil
}

// leftBehind says, by provider, what a forced unoffload of off leaves on
// each provider that does not answer (its RemoteCluster gone, or not
// APIReachable) or that kept its twin past the unoffload timeout: the twin
// with everything in it, its request, and the remote pods of the
// namespace's pods on that provider's virtual node; and how to clear them.
func leftBehind(ctx context.Context, c client.Reader, off *offloadingv1alpha1.NamespaceOffloading) (map[string]string, error) {
	left := map[string]string{}
	var (
		pods         *corev1.PodList
		twin, tenant string
	)
	for _, name := range off.Status.Providers() {
		rc := &peeringv1alpha1.RemoteCluster{}
		why, kept := "", false
		switch err := c.Get(ctx, client.ObjectKey{Name: name}, rc); {
		case apierrors.IsNotFound(err):
			why = "is no longer peered"
		case err != nil:
			return nil, fmt.Errorf("reading RemoteCluster %s: %w", name, err)
		default:
			cond := meta.FindStatusCondition(rc.Status.Conditions, peeringv1alpha1.APIReachableCondition)
			ready := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition)
			switch {
			case cond != nil && cond.Status != metav1.ConditionTrue:
				why = "does not answer (" + cond.Message + ")"
			case ready != nil && ready.Reason == offloadingv1alpha1.TwinNotDeletedReason:
				// The controller lets it go too, the unoffload having timed out.
				why, kept = "answers but has not deleted its twin after the unoffload timeout (is Stretch running there, or is the twin stuck Terminating?)", true
			default:
				continue
			}
		}
		if pods == nil {
			self, err := identity.Load(ctx, c)
			if err != nil {
				return nil, fmt.Errorf("home cluster: %w", err)
			}
			twin, tenant = naming.TwinName(off.Spec, off.Namespace, self.ID), peeringv1alpha1.TenantNamespace(self.ID)
			pods = &corev1.PodList{}
			if err := apply.List(ctx, c, pods, client.InNamespace(off.Namespace)); err != nil {
				return nil, err
			}
		}
		what := fmt.Sprintf("twin namespace %s with everything in it, its request RemoteNamespace %s/%s", twin, tenant, off.Namespace)
		var remote []string
		for _, p := range pods.Items {
			if p.Spec.NodeName == peeringv1alpha1.VirtualNodeName(name) {
				remote = append(remote, p.Name)
			}
		}
		if len(remote) > 0 {
			sort.Strings(remote)
			what += ", the remote pods " + strings.Join(remote, ", ")
		}
		if kept {
			left[name] = fmt.Sprintf("provider %s %s: %s stay on provider %s until Stretch deletes them there: start its stretch-controller-manager there "+
				"('kubectl get namespace %s -o yaml' there shows what holds a twin stuck Terminating), or, by hand on the provider, delete namespace %s and remove finalizer %s from the request",
				name, why, what, name, twin, twin, wellknown.RemoteNamespaceFinalizer)
			continue
		}
		left[name] = fmt.Sprintf("provider %s %s: left there until it answers again while still peered: %s; if it is gone for good, delete them there ('stretchctl peer revoke --force' on the provider)",
			name, why, what)
	}
	return left, nil
}

func key(ns string) client.ObjectKey {
	return client.ObjectKey{Namespace: ns, Name: wellknown.NamespaceOffloadingName}
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "no provider"
	}
	return strings.Join(names, ", ")
}

// progress prints each provider's Ready condition of each namespace when it
// changes.
type progress struct {
	out  io.Writer
	seen map[string]string
}

func newProgress(out io.Writer) *progress { return &progress{out: out, seen: map[string]string{}} }

func (p *progress) report(off *offloadingv1alpha1.NamespaceOffloading) {
	for _, name := range off.Status.Providers() {
		c := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[name], offloadingv1alpha1.RemoteNamespaceReadyCondition)
		if c == nil {
			continue
		}
		line := fmt.Sprintf("  namespace %s, provider %s: %s", off.Namespace, name, c.Reason)
		if c.Status != "True" && c.Message != "" {
			line += ": " + c.Message
		}
		if p.seen[off.Namespace+"/"+name] != line {
			p.seen[off.Namespace+"/"+name] = line
			fmt.Fprintln(p.out, line)
		}
	}
}
