// Package offload is the logic of 'stretchctl offload' and 'stretchctl
// unoffload': it writes and deletes NamespaceOffloadings and follows what the
// controllers report until the namespaces are offloaded or gone.
package offload

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/naming"
	"stretch.dev/stretch/internal/placement"
)

// Targets names the namespaces a command acts on: by name, or by label
// selector, not both.
type Targets struct {
	Namespaces        []string
	NamespaceSelector string
}

// Validate checks the targets without a cluster.
func (t Targets) Validate() error {
	switch {
	case len(t.Namespaces) > 0 && t.NamespaceSelector != "":
		return fmt.Errorf("name namespaces or pass --ns-selector, not both")
	case len(t.Namespaces) == 0 && t.NamespaceSelector == "":
		return fmt.Errorf("name at least one namespace (NAME... or -n NAME), or select them with --ns-selector key=value")
	case t.NamespaceSelector != "":
		if _, err := labels.Parse(t.NamespaceSelector); err != nil {
			return fmt.Errorf("--ns-selector %q: %w", t.NamespaceSelector, err)
		}
	}
	return nil
}

// SpecOptions are the flags that make a NamespaceOffloading's spec.
type SpecOptions struct {
	PodOffloadingStrategy    string
	NamespaceMappingStrategy string
	RemoteNamespaceName      string
	// Selectors are label-selector expressions, e.g. "region in (eu,us),
	// !staging"; each is one term, and terms are ORed.
	Selectors []string
	// ReflectIngresses reflects every Ingress of the namespaces.
	ReflectIngresses bool
}

// Spec validates the options and builds the spec, without a cluster.
func (o SpecOptions) Spec() (offloadingv1alpha1.NamespaceOffloadingSpec, error) {
	spec := offloadingv1alpha1.NamespaceOffloadingSpec{
		PodOffloadingStrategy:    offloadingv1alpha1.PodOffloadingStrategy(o.PodOffloadingStrategy),
		NamespaceMappingStrategy: offloadingv1alpha1.NamespaceMappingStrategy(o.NamespaceMappingStrategy),
		RemoteNamespaceName:      o.RemoteNamespaceName,
		ReflectIngresses:         o.ReflectIngresses,
	}
	if spec.PodOffloadingStrategy == "" {
		spec.PodOffloadingStrategy = offloadingv1alpha1.LocalAndRemoteStrategy
	}
	if spec.NamespaceMappingStrategy == "" {
		spec.NamespaceMappingStrategy = offloadingv1alpha1.DefaultNameMapping
	}
	strategies := []offloadingv1alpha1.PodOffloadingStrategy{offloadingv1alpha1.LocalAndRemoteStrategy, offloadingv1alpha1.LocalStrategy, offloadingv1alpha1.RemoteStrategy}
	if !slices.Contains(strategies, spec.PodOffloadingStrategy) {
		return spec, fmt.Errorf("--pod-offloading-strategy %q: must be one of LocalAndRemote, Local, Remote", o.PodOffloadingStrategy)
	}
	mappings := []offloadingv1alpha1.NamespaceMappingStrategy{offloadingv1alpha1.DefaultNameMapping, offloadingv1alpha1.EnforceSameNameMapping, offloadingv1alpha1.SelectedNameMapping}
	if !slices.Contains(mappings, spec.NamespaceMappingStrategy) {
		return spec, fmt.Errorf("--namespace-mapping-strategy %q: must be one of DefaultName, EnforceSameName, SelectedName", o.NamespaceMappingStrategy)
	}
	switch {
	case spec.NamespaceMappingStrategy == offloadingv1alpha1.SelectedNameMapping && spec.RemoteNamespaceName == "":
		return spec, fmt.Errorf("--namespace-mapping-strategy SelectedName needs --remote-namespace-name, the name of the twins")
	case spec.NamespaceMappingStrategy != offloadingv1alpha1.SelectedNameMapping && spec.RemoteNamespaceName != "":
		return spec, fmt.Errorf("--remote-namespace-name only goes with --namespace-mapping-strategy SelectedName")
	}
	if len(o.Selectors) > 0 {
		spec.ClusterSelector = &corev1.NodeSelector{}
		for _, expr := range o.Selectors {
			t, err := ParseSelector(expr)
			if err != nil {
				return spec, err
			}
			spec.ClusterSelector.NodeSelectorTerms = append(spec.ClusterSelector.NodeSelectorTerms, t)
		}
		if _, err := placement.ParseClusterSelector(spec.ClusterSelector); err != nil {
			return spec, fmt.Errorf("--selector: %w", err)
		}
	}
	return spec, nil
}

var operators = map[selection.Operator]corev1.NodeSelectorOperator{
	selection.In:           corev1.NodeSelectorOpIn,
	selection.Equals:       corev1.NodeSelectorOpIn,
	selection.DoubleEquals: corev1.NodeSelectorOpIn,
	selection.NotIn:        corev1.NodeSelectorOpNotIn,
	selection.NotEquals:    corev1.NodeSelectorOpNotIn,
	selection.Exists:       corev1.NodeSelectorOpExists,
	selection.DoesNotExist: corev1.NodeSelectorOpDoesNotExist,
	selection.GreaterThan:  corev1.NodeSelectorOpGt,
	selection.LessThan:     corev1.NodeSelectorOpLt,
}

// ParseSelector turns one label-selector expression (kubectl's -l syntax,
// e.g. "region in (eu,us-west), !staging, tier=gold") into one term of a
// cluster selector.
func ParseSelector(expr string) (corev1.NodeSelectorTerm, error) {
	if strings.TrimSpace(expr) == "" {
		return corev1.NodeSelectorTerm{}, fmt.Errorf("--selector is empty: give requirements such as \"region in (eu,us)\", or leave it out to select every provider")
	}
	sel, err := labels.Parse(expr)
	if err != nil {
		return corev1.NodeSelectorTerm{}, fmt.Errorf("--selector %q: %w", expr, err)
	}
	reqs, _ := sel.Requirements()
	term := corev1.NodeSelectorTerm{}
	for _, r := range reqs {
		op, ok := operators[r.Operator()]
		if !ok {
			return term, fmt.Errorf("--selector %q: operator %q is not supported", expr, r.Operator())
		}
		values := r.Values().List() // sorted, for a stable spec
		if op == corev1.NodeSelectorOpExists || op == corev1.NodeSelectorOpDoesNotExist {
			values = nil
		}
		term.MatchExpressions = append(term.MatchExpressions, corev1.NodeSelectorRequirement{Key: r.Key(), Operator: op, Values: values})
	}
	return term, nil
}

// placeholderClusterID stands for the home cluster's ID when the cluster is
// not asked: whether a twin name fits does not depend on the ID's value, only
// on its length (a UUID's).
const placeholderClusterID = "00000000-0000-0000-0000-000000000000"

// CheckTwinNames checks the twin name of each namespace as every provider
// will check it, so that nothing is written (or printed) that all of them
// would refuse. An empty homeClusterID means that it is not known.
func CheckTwinNames(namespaces []string, spec offloadingv1alpha1.NamespaceOffloadingSpec, homeClusterID string) error {
	id := homeClusterID
	if id == "" {
		id = placeholderClusterID
	}
	var problems []string
	for _, ns := range namespaces {
		if p := naming.CheckTwinName(naming.TwinName(spec, ns, id), ns, spec.NamespaceMappingStrategy); p != nil {
			msg := p.Message
			if homeClusterID == "" {
				msg = strings.ReplaceAll(msg, placeholderClusterID, "<home cluster ID>")
			}
			problems = append(problems, fmt.Sprintf("namespace %s: %s: %s", ns, p.Reason, msg))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("every provider would refuse the twin namespaces, nothing was changed:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

// Manifest is the NamespaceOffloading of a namespace, ready to apply or print.
func Manifest(namespace string, spec offloadingv1alpha1.NamespaceOffloadingSpec) *offloadingv1alpha1.NamespaceOffloading {
	return &offloadingv1alpha1.NamespaceOffloading{
		TypeMeta:   metav1.TypeMeta{APIVersion: offloadingv1alpha1.GroupVersion.String(), Kind: "NamespaceOffloading"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: wellknown.NamespaceOffloadingName},
		Spec:       spec,
	}
}

// Printable is the manifests of the namespaces' NamespaceOffloadings as
// 'kubectl apply' takes them: without status or server-set fields; one
// object, or a v1 List of several.
func Printable(namespaces []string, spec offloadingv1alpha1.NamespaceOffloadingSpec) (any, error) {
	items := make([]any, 0, len(namespaces))
	for _, ns := range namespaces {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(Manifest(ns, spec))
		if err != nil {
			return nil, err
		}
		delete(u, "status")
		unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
		items = append(items, u)
	}
	if len(items) == 1 {
		return items[0], nil
	}
	return map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, nil
}
