// Package policy is the logic of 'stretchctl policy', run against a
// provider: 'set' writes the TenantPolicy of one home cluster (server-side
// apply, only the given fields change), 'show' prints each home cluster's
// policy and what it uses against its limits.
package policy

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/tenancy"
)

// Change is what 'policy set' changes in a TenantPolicy's spec: each field
// that is not nil replaces the spec's field (an empty value clears it); nil
// fields are left as they are.
type Change struct {
	Limits          *corev1.ResourceList
	PodSecurity     *peeringv1alpha1.PodSecurityLevel
	PriorityClasses *[]string
	TwinNamings     *[]peeringv1alpha1.TwinNaming
	TwinNamePattern *string
}

// ApplyTo returns spec with the change made.
func (c Change) ApplyTo(spec peeringv1alpha1.TenantPolicySpec) peeringv1alpha1.TenantPolicySpec {
	spec = *spec.DeepCopy()
	if c.Limits != nil {
		spec.Limits = *c.Limits
	}
	if c.PodSecurity != nil {
		spec.PodSecurity = *c.PodSecurity
	}
	if c.PriorityClasses != nil {
		spec.PriorityClasses = *c.PriorityClasses
	}
	if c.TwinNamings != nil {
		spec.TwinNamings = *c.TwinNamings
	}
	if c.TwinNamePattern != nil {
		spec.TwinNamePattern = *c.TwinNamePattern
	}
	return spec
}

// ParseLimits parses --limits: name=quantity pairs separated by commas, e.g.
// cpu=8,memory=16Gi,pods=50,nvidia.com/gpu=2; "" means no limit.
func ParseLimits(s string) (corev1.ResourceList, error) {
	limits := corev1.ResourceList{}
	for _, pair := range split(s) {
		name, value, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("--limits %q: %q is not NAME=QUANTITY, e.g. cpu=8,memory=16Gi,pods=50,nvidia.com/gpu=2", s, pair)
		}
		rn := corev1.ResourceName(strings.TrimSpace(name))
		if err := validateResourceName(rn); err != nil {
			return nil, fmt.Errorf("--limits %q: %w", s, err)
		}
		if _, dup := limits[rn]; dup {
			return nil, fmt.Errorf("--limits %q names %s twice: give each resource once", s, rn)
		}
		q, err := resource.ParseQuantity(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("--limits %q: %s=%s is not a quantity (such as 500m, 8, 16Gi): %w", s, rn, value, err)
		}
		if q.Sign() < 0 {
			return nil, fmt.Errorf("--limits %q: %s=%s is negative: a limit is 0 or more", s, rn, value)
		}
		if (rn == corev1.ResourcePods || isExtended(rn)) && q.MilliValue()%1000 != 0 {
			return nil, fmt.Errorf("--limits %q: %s=%s must be a whole number: %s is counted in units", s, rn, value, rn)
		}
		limits[rn] = q
	}
	return limits, nil
}

// standardResources are the resources a limit may name besides extended
// resources (DOMAIN/NAME) and hugepages-<size>.
var standardResources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, corev1.ResourcePods}

func validateResourceName(rn corev1.ResourceName) error {
	switch {
	case slices.Contains(standardResources, rn), strings.HasPrefix(string(rn), corev1.ResourceHugePagesPrefix):
		return nil
	case isExtended(rn):
		if errs := validation.IsQualifiedName(string(rn)); len(errs) > 0 {
			return fmt.Errorf("%q is not a resource name: %s", rn, strings.Join(errs, "; "))
		}
		return nil
	}
	return fmt.Errorf("%q is not a resource a limit can name: use cpu, memory, ephemeral-storage, pods, hugepages-<size>, or an extended resource DOMAIN/NAME such as nvidia.com/gpu", rn)
}

func isExtended(rn corev1.ResourceName) bool {
	return strings.Contains(string(rn), "/") && !strings.HasPrefix(string(rn), corev1.ResourceDefaultNamespacePrefix)
}

// ParsePodSecurity parses --pod-security.
func ParsePodSecurity(s string) (peeringv1alpha1.PodSecurityLevel, error) {
	switch l := peeringv1alpha1.PodSecurityLevel(s); l {
	case peeringv1alpha1.PodSecurityBaseline, peeringv1alpha1.PodSecurityRestricted:
		return l, nil
	}
	return "", fmt.Errorf("--pod-security %q: must be baseline (the default) or restricted", s)
}

// ParsePriorityClasses parses --priority-classes: PriorityClass names
// separated by commas; "" allows none.
func ParsePriorityClasses(s string) ([]string, error) {
	var names []string
	for _, n := range split(s) {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return nil, fmt.Errorf("--priority-classes %q: %q is not a PriorityClass name: %s", s, n, strings.Join(errs, "; "))
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}

// namings are the values of --twin-namings.
var namings = []peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin, peeringv1alpha1.EnforceSameNameTwin, peeringv1alpha1.SelectedNameTwin}

// ParseTwinNamings parses --twin-namings; "" allows all three.
func ParseTwinNamings(s string) ([]peeringv1alpha1.TwinNaming, error) {
	var out []peeringv1alpha1.TwinNaming
	for _, n := range split(s) {
		naming := peeringv1alpha1.TwinNaming(n)
		if !slices.Contains(namings, naming) {
			return nil, fmt.Errorf("--twin-namings %q: %q must be one of DefaultName, EnforceSameName, SelectedName", s, n)
		}
		if !slices.Contains(out, naming) {
			out = append(out, naming)
		}
	}
	return out, nil
}

// ParseTwinNamePattern checks --twin-name-pattern as the controllers will
// read it (RE2, anchored); "" allows any name.
func ParseTwinNamePattern(s string) (string, error) {
	if _, err := tenancy.TwinNamePattern(s); err != nil {
		return "", fmt.Errorf("--twin-name-pattern: %w", err)
	}
	if len(s) > 1024 {
		return "", fmt.Errorf("--twin-name-pattern is %d characters long: at most 1024", len(s))
	}
	return s, nil
}

// split splits a comma-separated flag value, dropping blanks.
func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
