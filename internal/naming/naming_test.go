package naming

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

const homeID = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"

func TestTwinName(t *testing.T) {
	tests := []struct {
		spec offloadingv1alpha1.NamespaceOffloadingSpec
		want string
	}{
		{offloadingv1alpha1.NamespaceOffloadingSpec{}, "foo-" + homeID},
		{offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.DefaultNameMapping}, "foo-" + homeID},
		{offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.EnforceSameNameMapping}, "foo"},
		{offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping, RemoteNamespaceName: "bar"}, "bar"},
	}
	for _, tt := range tests {
		t.Run(string(tt.spec.NamespaceMappingStrategy), func(t *testing.T) {
			NewWithT(t).Expect(TwinName(tt.spec, "foo", homeID)).To(Equal(tt.want))
		})
	}
}

func TestCheckTwinName(t *testing.T) {
	ns26, ns27 := strings.Repeat("a", 26), strings.Repeat("a", 27)
	tests := []struct {
		name, twin, home string
		strategy         offloadingv1alpha1.NamespaceMappingStrategy
		wantReason       string
		wantMessage      []string
		notInMessage     []string
	}{
		{name: "26-character home namespace fits", twin: ns26 + "-" + homeID, home: ns26, strategy: offloadingv1alpha1.DefaultNameMapping},
		{name: "27-character home namespace is too long", twin: ns27 + "-" + homeID, home: ns27, strategy: offloadingv1alpha1.DefaultNameMapping,
			wantReason: peeringv1alpha1.NameTooLongReason, wantMessage: []string{"is 64 characters long", "limit of 63", "at most 26 characters", "has 27"}},
		{name: "too long selected name", twin: strings.Repeat("b", 64), home: "foo", strategy: offloadingv1alpha1.SelectedNameMapping,
			wantReason: peeringv1alpha1.NameTooLongReason, wantMessage: []string{"at most 63 characters", "spec.remoteNamespaceName"}, notInMessage: []string{"at most 26"}},
		{name: "not a DNS label", twin: "Foo_Bar", home: "foo", strategy: offloadingv1alpha1.SelectedNameMapping,
			wantReason: peeringv1alpha1.InvalidNameReason, wantMessage: []string{`"Foo_Bar" is not a valid namespace name`}},
		{name: "kube-system", twin: "kube-system", home: "kube-system", strategy: offloadingv1alpha1.EnforceSameNameMapping,
			wantReason: peeringv1alpha1.ForbiddenReason, wantMessage: []string{"reserved"}},
		{name: "default", twin: "default", home: "default", strategy: offloadingv1alpha1.EnforceSameNameMapping, wantReason: peeringv1alpha1.ForbiddenReason},
		{name: "stretch-system", twin: "stretch-system", home: "foo", strategy: offloadingv1alpha1.SelectedNameMapping, wantReason: peeringv1alpha1.ForbiddenReason},
		{name: "kubeflow is not reserved", twin: "kubeflow", home: "kubeflow", strategy: offloadingv1alpha1.EnforceSameNameMapping},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			p := CheckTwinName(tt.twin, tt.home, tt.strategy)
			if tt.wantReason == "" {
				g.Expect(p).To(BeNil())
				return
			}
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.Reason).To(Equal(tt.wantReason))
			for _, m := range tt.wantMessage {
				g.Expect(p.Message).To(ContainSubstring(m))
			}
			for _, m := range tt.notInMessage {
				g.Expect(p.Message).NotTo(ContainSubstring(m))
			}
		})
	}
}
