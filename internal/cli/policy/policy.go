package policy

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/cli/output"
	"stretch.dev/stretch/internal/tenancy"
)

// KnownHomes are the IDs of the home clusters that have a tenant namespace
// on the provider c reaches (peering creates it), sorted.
func KnownHomes(ctx context.Context, c client.Reader) ([]string, error) {
	list := &corev1.NamespaceList{}
	if err := c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing the tenant namespaces (%s<home cluster ID>): %w", wellknown.TenantNamespacePrefix, err)
	}
	var homes []string
	for _, ns := range list.Items {
		if id := tenancy.HomeOfTenant(ns.Name); id != "" {
			homes = append(homes, id)
		}
	}
	slices.Sort(homes)
	return homes, nil
}

// ResolveHome checks that home names a home cluster the provider knows. A
// provider records home clusters by ID only (the tenant namespace
// stretch-tenant-<ID>, labelled with it): their names live on the home side.
func ResolveHome(ctx context.Context, c client.Reader, home string) (string, error) {
	homes, err := KnownHomes(ctx, c)
	if err != nil {
		return "", err
	}
	if slices.Contains(homes, home) {
		return home, nil
	}
	known := "no home cluster has peered with this provider yet"
	if len(homes) > 0 {
		known = "the home clusters peered with this provider are " + strings.Join(homes, ", ")
	}
	if tenancy.HomeOfTenant(peeringv1alpha1.TenantNamespace(home)) == "" {
		return "", fmt.Errorf("home cluster %q is not a cluster ID: a provider knows its home clusters by ID only ('stretchctl status' on the home cluster shows it); %s", home, known)
	}
	return "", fmt.Errorf("home cluster %s has no tenant namespace %s on this provider: it has not peered with it; peer it first ('stretchctl peer', or 'stretchctl peer generate-credentials --home-cluster-id %s'), then set its policy; %s",
		home, peeringv1alpha1.TenantNamespace(home), home, known)
}

// Set creates or updates the TenantPolicy of home cluster home on the
// provider c reaches, making change and leaving every other field as it is,
// by server-side apply, and returns it as the API server stored it.
func Set(ctx context.Context, c client.Client, home string, change Change, out io.Writer) (*peeringv1alpha1.TenantPolicy, error) {
	home, err := ResolveHome(ctx, c, home)
	if err != nil {
		return nil, err
	}
	key := client.ObjectKey{Namespace: peeringv1alpha1.TenantNamespace(home), Name: wellknown.TenantPolicyName}
	current := &peeringv1alpha1.TenantPolicy{}
	if err := c.Get(ctx, key, current); err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading TenantPolicy %s: %w", key, err)
	}
	// Apply is declarative: fields stretchctl applied before and leaves out
	// now would be removed. So the applied spec is the whole current spec
	// with the change made, and only the given flags change anything.
	desired := &peeringv1alpha1.TenantPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: peeringv1alpha1.GroupVersion.String(), Kind: "TenantPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Spec:       change.ApplyTo(current.Spec),
	}
	if err := apply.Object(ctx, c, desired); err != nil {
		return nil, err
	}
	got := &peeringv1alpha1.TenantPolicy{}
	if err := c.Get(ctx, key, got); err != nil {
		return nil, fmt.Errorf("reading TenantPolicy %s back: %w", key, err)
	}
	fmt.Fprintf(out, "✓ TenantPolicy %s applied for home cluster %s: %s\n", key, home, summary(got.Spec))
	// Fields that another field manager (kubectl apply, an edit) also set
	// stay when stretchctl stops asking for them: say so, rather than
	// pretend they are gone.
	if want := defaulted(desired.Spec); !equality.Semantic.DeepEqual(want, got.Spec) {
		fmt.Fprintf(out, "Warning: TenantPolicy %s keeps values set by another field manager besides stretchctl (it has %s, stretchctl asked for %s): change them with the tool that set them, e.g. 'kubectl edit tenantpolicy -n %s %s'\n",
			key, summary(got.Spec), summary(want), key.Namespace, key.Name)
	}
	return got, nil
}

// defaulted is spec as the API server stores it: the CRD's defaults made.
func defaulted(spec peeringv1alpha1.TenantPolicySpec) peeringv1alpha1.TenantPolicySpec {
	if spec.PodSecurity == "" {
		spec.PodSecurity = peeringv1alpha1.PodSecurityBaseline
	}
	return spec
}

// summary is a spec in one line.
func summary(spec peeringv1alpha1.TenantPolicySpec) string {
	parts := []string{"pod security " + string(tenancy.PodSecurityLevel(&peeringv1alpha1.TenantPolicy{Spec: spec}))}
	parts = append(parts, "limits "+orNone(formatList(spec.Limits)))
	parts = append(parts, "priority classes "+orNone(strings.Join(spec.PriorityClasses, ",")))
	parts = append(parts, "twin namings "+allNamings(spec.TwinNamings))
	parts = append(parts, "twin name pattern "+orAll(spec.TwinNamePattern))
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return output.None
	}
	return s
}

func orAll(s string) string {
	if s == "" {
		return "<any>"
	}
	return s
}

// allNamings is the namings a policy allows, "<all>" when it names none.
func allNamings(n []peeringv1alpha1.TwinNaming) string {
	if len(n) == 0 {
		return "<all>"
	}
	return joinNamings(n)
}

func joinNamings(n []peeringv1alpha1.TwinNaming) string {
	s := make([]string, len(n))
	for i, x := range n {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}

// formatList is a resource list as name=quantity pairs, in resourceOrder.
func formatList(l corev1.ResourceList) string {
	var parts []string
	for _, name := range resourceOrder(l) {
		q := l[name]
		parts = append(parts, string(name)+"="+q.String())
	}
	return strings.Join(parts, ",")
}

// resourceOrder sorts the names of lists: pods, cpu, memory first, then
// the others by name.
func resourceOrder(lists ...corev1.ResourceList) []corev1.ResourceName {
	first := []corev1.ResourceName{corev1.ResourcePods, corev1.ResourceCPU, corev1.ResourceMemory}
	var names, rest []corev1.ResourceName
	seen := map[corev1.ResourceName]bool{}
	for _, l := range lists {
		for name := range l {
			if !seen[name] {
				seen[name] = true
				if !slices.Contains(first, name) {
					rest = append(rest, name)
				}
			}
		}
	}
	for _, name := range first {
		if seen[name] {
			names = append(names, name)
		}
	}
	slices.Sort(rest)
	return append(names, rest...)
}

// Report is what 'policy show' prints; -o yaml|json prints it as is.
type Report struct {
	Homes []Home `json:"homes"`
}

// Home is one home cluster's policy on the provider and where it stands.
type Home struct {
	HomeClusterID string `json:"homeClusterID"`
	// Policy is false when the home cluster has no TenantPolicy: the
	// defaults apply and nothing is tracked.
	Policy          bool                             `json:"policy"`
	PodSecurity     peeringv1alpha1.PodSecurityLevel `json:"podSecurity"`
	Limits          corev1.ResourceList              `json:"limits,omitempty"`
	Used            corev1.ResourceList              `json:"used,omitempty"`
	PriorityClasses []string                         `json:"priorityClasses,omitempty"`
	TwinNamings     []peeringv1alpha1.TwinNaming     `json:"twinNamings,omitempty"`
	TwinNamePattern string                           `json:"twinNamePattern,omitempty"`
	// Enforced, Reason and Message are the policy's Enforced condition.
	Enforced metav1.ConditionStatus `json:"enforced,omitempty"`
	Reason   string                 `json:"reason,omitempty"`
	Message  string                 `json:"message,omitempty"`
}

// Show reads the policies of every home cluster the provider c reaches
// knows, or of home alone when it is not "".
func Show(ctx context.Context, c client.Reader, home string) (*Report, error) {
	homes, err := KnownHomes(ctx, c)
	if err != nil {
		return nil, err
	}
	if home != "" {
		if home, err = ResolveHome(ctx, c, home); err != nil {
			return nil, err
		}
		homes = []string{home}
	}
	r := &Report{Homes: []Home{}}
	for _, id := range homes {
		h := Home{HomeClusterID: id, PodSecurity: peeringv1alpha1.PodSecurityBaseline}
		p := &peeringv1alpha1.TenantPolicy{}
		err := c.Get(ctx, client.ObjectKey{Namespace: peeringv1alpha1.TenantNamespace(id), Name: wellknown.TenantPolicyName}, p)
		switch {
		case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		case err != nil:
			return nil, fmt.Errorf("reading the TenantPolicy of home cluster %s: %w", id, err)
		default:
			h.Policy = true
			h.PodSecurity = tenancy.PodSecurityLevel(p)
			h.Limits, h.Used = p.Spec.Limits, p.Status.Used
			h.PriorityClasses, h.TwinNamings, h.TwinNamePattern = p.Spec.PriorityClasses, p.Spec.TwinNamings, p.Spec.TwinNamePattern
			if c := meta.FindStatusCondition(p.Status.Conditions, tenancy.EnforcedCondition); c != nil {
				h.Enforced, h.Reason, h.Message = c.Status, c.Reason, c.Message
			}
		}
		r.Homes = append(r.Homes, h)
	}
	return r, nil
}

// Print writes the report as a table, then why each policy that does not
// hold does not.
func (r *Report) Print(w io.Writer) error {
	if len(r.Homes) == 0 {
		_, err := fmt.Fprintln(w, "No home cluster has peered with this provider: 'stretchctl peer' makes one, then 'stretchctl policy set HOME' sets its policy.")
		return err
	}
	t := output.NewTable("home cluster id", "pod security", "used/limit", "priority classes", "twin namings", "twin name pattern", "enforced")
	var notes []string
	for _, h := range r.Homes {
		if !h.Policy {
			t.AddRow(h.HomeClusterID, string(h.PodSecurity)+" (default)", "not tracked: no policy", "", "<all>", "<any>", "no policy: defaults apply")
			continue
		}
		enforced := string(h.Enforced)
		if h.Reason != "" && h.Enforced != metav1.ConditionTrue {
			enforced += ": " + h.Reason
			notes = append(notes, h.HomeClusterID+": "+h.Message)
		}
		t.AddRow(h.HomeClusterID, string(h.PodSecurity), usage(h.Used, h.Limits), strings.Join(h.PriorityClasses, ","),
			allNamings(h.TwinNamings), orAll(h.TwinNamePattern), enforced)
	}
	if err := t.Write(w); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

// usage is "name used/limit" per resource, "name used" where there is no
// limit.
func usage(used, limits corev1.ResourceList) string {
	var parts []string
	for _, name := range resourceOrder(used, limits) {
		u := used[name]
		s := string(name) + " " + u.String()
		if l, ok := limits[name]; ok {
			s += "/" + l.String()
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}
