// Package diagnose is the logic of 'stretchctl diagnose namespace': it reads
// what the FAQ's checks need from the home cluster, runs them
// (internal/diagnose) and prints the verdicts with their fixes.
package diagnose

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/cli/factory"
	"stretch.dev/stretch/internal/diagnose/checks"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
)

// Collect reads the namespace's offloading, pods and events, the virtual
// nodes and the cluster identity, and what each provider the offloading
// concerns reports of its twin.
func Collect(ctx context.Context, c client.Reader, namespace string) (checks.Observed, error) {
	o := checks.Observed{Namespace: namespace}
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return o, fmt.Errorf("namespace %s does not exist on the home cluster: check the name (kubectl get namespaces)", namespace)
		}
		return o, fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	o.NamespaceLabels = ns.Labels
	home, err := identity.Load(ctx, c)
	if err != nil {
		return o, err
	}
	o.HomeClusterID = home.ID
	offs := &offloadingv1alpha1.NamespaceOffloadingList{}
	if err := apply.List(ctx, c, offs, client.InNamespace(namespace)); err != nil {
		return o, err
	}
	o.Offloadings = offs.Items
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes, client.MatchingLabels{wellknown.VirtualNodeTypeLabel: wellknown.VirtualNodeTypeValue}); err != nil {
		return o, fmt.Errorf("listing virtual nodes: %w", err)
	}
	o.VirtualNodes = nodes.Items
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(namespace)); err != nil {
		return o, fmt.Errorf("listing the pods of namespace %s: %w", namespace, err)
	}
	o.Pods = pods.Items
	events := &eventsv1.EventList{}
	if err := c.List(ctx, events, client.InNamespace(namespace)); err != nil {
		return o, fmt.Errorf("listing the events of namespace %s: %w", namespace, err)
	}
	o.Events = events.Items
	if off := checks.Offloading(o); off != nil {
		o.Providers = collectProviders(ctx, c, off, home.ID, o.VirtualNodes)
	}
	return o, nil
}

// askTimeout bounds the read of one provider, so that one that does not
// answer cannot hold the diagnosis up.
const askTimeout = 5 * time.Second

// collectProviders looks at every provider the offloading concerns (those
// its status says are selected, and those whose virtual node its selector
// picks): the home cluster's view of it, and the provider's own report of the
// twin. What cannot be read is said in the result, not failed: diagnose
// still runs the other checks.
func collectProviders(ctx context.Context, c client.Reader, off *offloadingv1alpha1.NamespaceOffloading, homeID string, nodes []corev1.Node) map[string]checks.Provider {
	providers := map[string]checks.Provider{}
	for _, name := range checks.Concerned(off, checks.SelectorPicks(off, nodes)...) {
		providers[name] = collectProvider(ctx, c, name, homeID, off.Namespace)
	}
	return providers
}

func collectProvider(ctx context.Context, c client.Reader, name, homeID, namespace string) checks.Provider {
	p := checks.Provider{Peered: true}
	rc := &peeringv1alpha1.RemoteCluster{}
	switch err := c.Get(ctx, client.ObjectKey{Name: name}, rc); {
	case apierrors.IsNotFound(err):
		p.Peered = false
		return p
	case err != nil:
		p.AskError = fmt.Sprintf("reading RemoteCluster %s: %v", name, err)
		return p
	}
	if cond := meta.FindStatusCondition(rc.Status.Conditions, peeringv1alpha1.PodCIDRsDistinctCondition); cond != nil && cond.Status == metav1.ConditionFalse {
		p.PodCIDROverlap = cond.Message
	}
	for _, t := range []string{peeringv1alpha1.APIReachableCondition, peeringv1alpha1.AuthenticatedCondition} {
		if cond := meta.FindStatusCondition(rc.Status.Conditions, t); cond != nil && cond.Status == metav1.ConditionFalse {
			// Asking would only wait for the timeout.
			p.Unreachable = fmt.Sprintf("%s %s: %s", t, cond.Reason, cond.Message)
			return p
		}
	}
	status, err := ask(ctx, c, rc, homeID, namespace)
	if err != nil {
		p.AskError = err.Error()
		return p
	}
	p.Asked, p.Request = true, status
	return p
}

// ask reads the provider's RemoteNamespace for the namespace with the
// credentials the provider issued to the home cluster, which may read the
// requests in the home cluster's tenant namespace there. It returns nil when
// there is none.
func ask(ctx context.Context, c client.Reader, rc *peeringv1alpha1.RemoteCluster, homeID, namespace string) (*peeringv1alpha1.RemoteNamespaceStatus, error) {
	ref := rc.Spec.KubeconfigSecretRef
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		return nil, fmt.Errorf("reading the peer credentials, Secret %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	pc, err := factory.IssuedClient(secret, peering.KubeconfigKeyOf(ref))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	rn := &peeringv1alpha1.RemoteNamespace{}
	request := client.ObjectKey{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: namespace}
	if err := pc.Get(ctx, request, rn); apierrors.IsNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading RemoteNamespace %s there: %w", request, err)
	}
	if !rn.DeletionTimestamp.IsZero() {
		// Withdrawn: the provider deletes the twin whatever its phase says.
		rn.Status.Phase = peeringv1alpha1.RemoteNamespaceTerminating
	}
	return &rn.Status, nil
}

var marks = map[checks.Result]string{checks.Passed: "✓", checks.Warning: "!", checks.Failed: "✗"}

// Print writes one line per check, and the fix under each that did not pass.
func Print(w io.Writer, namespace string, results []checks.Check) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Diagnosing the offloading of namespace %s\n", namespace)
	for _, c := range results {
		fmt.Fprintf(&b, "%s %-8s %s: %s\n", marks[c.Result], c.Result, c.Name, c.Detail)
		if c.Result != checks.Passed && c.Fix != "" {
			fmt.Fprintf(&b, "           fix: %s\n", c.Fix)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Failures is the error of a diagnosis whose checks did not all pass.
func Failures(results []checks.Check) error {
	n := 0
	for _, c := range results {
		if c.Result != checks.Passed {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d checks did not pass: apply the fixes above, then run diagnose again", n, len(results))
}
