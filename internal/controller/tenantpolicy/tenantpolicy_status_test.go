package tenantpolicy

import (
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/tenancy"
)

func TestEnforced(t *testing.T) {
	const home = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"
	twinNS := func(name, homeNamespace string, level peeringv1alpha1.PodSecurityLevel) corev1.Namespace {
		labels := map[string]string{wellknown.OriginClusterIDLabel: home, wellknown.OriginNamespaceLabel: homeNamespace}
		if level != "" {
			for k, v := range tenancy.PodSecurityLabels(level) {
				labels[k] = v
			}
		}
		return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels,
			Annotations: map[string]string{wellknown.RemoteNamespaceOriginAnnotation: home}}}
	}
	deleting := twinNS("going", "going", "")
	deleting.DeletionTimestamp = ptr.To(metav1.Now())
	var many []corev1.Namespace
	for i := range 12 {
		many = append(many, twinNS(fmt.Sprintf("t%02d", i), fmt.Sprintf("t%02d", i), ""))
	}
	baseline := twinNS("shop-"+home, "shop", peeringv1alpha1.PodSecurityBaseline)
	selected := twinNS("web", "shop", peeringv1alpha1.PodSecurityBaseline)
	defaultOnly := peeringv1alpha1.TenantPolicySpec{TwinNamings: []peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin}}

	tests := []struct {
		name       string
		namespace  string
		spec       peeringv1alpha1.TenantPolicySpec
		twins      []corev1.Namespace
		wantStatus metav1.ConditionStatus
		wantReason string
		wantMsg    []string
	}{
		{name: "no twin yet", spec: peeringv1alpha1.TenantPolicySpec{PodSecurity: peeringv1alpha1.PodSecurityRestricted},
			wantStatus: metav1.ConditionTrue, wantReason: tenancy.EnforcedReason, wantMsg: []string{"no twin yet; its twins get Pod Security level restricted"}},
		{name: "all labelled and allowed", twins: []corev1.Namespace{baseline, selected, deleting},
			wantStatus: metav1.ConditionTrue, wantReason: tenancy.EnforcedReason, wantMsg: []string{"all 2 twins", "baseline"}},
		{name: "a level not applied yet", spec: peeringv1alpha1.TenantPolicySpec{PodSecurity: peeringv1alpha1.PodSecurityRestricted}, twins: []corev1.Namespace{baseline},
			wantStatus: metav1.ConditionFalse, wantReason: tenancy.PodSecurityLabelsMissingReason,
			wantMsg: []string{"1 of 1 twins lack the Pod Security labels of level restricted: shop-" + home + " (pod-security.kubernetes.io/audit, ", "if this lasts"}},
		{name: "outside the namings", spec: defaultOnly, twins: []corev1.Namespace{baseline, selected},
			wantStatus: metav1.ConditionFalse, wantReason: tenancy.TwinsOutsidePolicyReason,
			wantMsg: []string{"1 of 2 twins were created before the policy forbade them", "web (its naming is SelectedName", "not deleted"}},
		{name: "outside the pattern", spec: peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "shop-.*"}, twins: []corev1.Namespace{baseline, selected},
			wantStatus: metav1.ConditionFalse, wantReason: tenancy.TwinsOutsidePolicyReason, wantMsg: []string{`web (it does not match the policy's twinNamePattern "shop-.*")`}},
		{name: "invalid pattern first, then labels", spec: peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "("}, twins: []corev1.Namespace{baseline, twinNS("bare", "bare", "")},
			wantStatus: metav1.ConditionFalse, wantReason: tenancy.InvalidTwinNamePatternReason,
			wantMsg: []string{`twinNamePattern "(" is not a valid RE2`, "existing twins are kept; 1 of 2 twins lack"}},
		{name: "long lists are cut", spec: defaultOnly, twins: many,
			wantStatus: metav1.ConditionFalse, wantReason: tenancy.PodSecurityLabelsMissingReason, wantMsg: []string{"12 of 12 twins lack", "t09 (", "and 2 more", "12 of 12 twins were created"}},
		{name: "not in a tenant namespace", namespace: "default",
			wantStatus: metav1.ConditionFalse, wantReason: tenancy.NotInTenantNamespaceReason, wantMsg: []string{"TenantPolicy default/policy applies to no home cluster"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ns, h := peeringv1alpha1.TenantNamespace(home), home
			if tt.namespace != "" {
				ns, h = tt.namespace, ""
			}
			p := &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.TenantPolicyName, Generation: 3}, Spec: tt.spec}
			setEnforced(p, h, tt.twins)
			g.Expect(p.Status.Conditions).To(HaveLen(1))
			c := p.Status.Conditions[0]
			g.Expect(c.Type).To(Equal(tenancy.EnforcedCondition))
			g.Expect(c.Status).To(Equal(tt.wantStatus), c.Message)
			g.Expect(c.Reason).To(Equal(tt.wantReason), c.Message)
			g.Expect(c.ObservedGeneration).To(Equal(int64(3)))
			for _, m := range tt.wantMsg {
				g.Expect(c.Message).To(ContainSubstring(m))
			}
			g.Expect(c.Message).NotTo(ContainSubstring("t10"), "at most 10 twins named")
		})
	}
}
