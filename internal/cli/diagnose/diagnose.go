// Package diagnose is the logic of 'stretchctl diagnose namespace': it reads
// what the FAQ's checks need from the home cluster, runs them
// (internal/diagnose) and prints the verdicts with their fixes.
package diagnose

import (
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	checks "stretch.dev/stretch/internal/diagnose"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/objects"
)

// Collect reads the namespace's offloading, pods and events, the virtual
// nodes and the cluster identity.
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
	if err := objects.List(ctx, c, offs, client.InNamespace(namespace)); err != nil {
		return o, err
	}
	o.Offloadings = offs.Items
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes, client.MatchingLabels{peeringv1alpha1.VirtualNodeTypeLabel: peeringv1alpha1.VirtualNodeTypeValue}); err != nil {
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
	return o, nil
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
