package tenant

import (
	"context"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

// TestMalformedTwinNames: twin names the RemoteNamespace schema admits (1 to
// 253 characters, not otherwise checked, so that the answer comes per
// provider) but no provider may create. Each gets CreationFailed with a
// reason and a message naming the twin and the rule, and no namespace.
func TestMalformedTwinNames(t *testing.T) {
	startTenant(t)
	tests := []struct {
		name, twin, wantReason string
		wantMessage            []string
		notInMessage           []string
	}{
		{"reserved default", "default", peeringv1alpha1.ForbiddenReason, []string{`"default"`, "reserved on providers"}, nil},
		{"reserved kube-public", "kube-public", peeringv1alpha1.ForbiddenReason, []string{`"kube-public"`, "reserved on providers"}, nil},
		{"reserved kube- prefix", "kube-anything", peeringv1alpha1.ForbiddenReason, []string{"reserved on providers"}, nil},
		{"reserved stretch- prefix", "stretch-tenant-" + otherID, peeringv1alpha1.ForbiddenReason, []string{"reserved on providers"}, nil},
		{"upper case", "Shop", peeringv1alpha1.InvalidNameReason, []string{`"Shop"`, "not a valid namespace name"}, nil},
		{"dots, a subdomain but no label", "shop.eu", peeringv1alpha1.InvalidNameReason, []string{"not a valid namespace name"}, nil},
		{"leading dash", "-shop", peeringv1alpha1.InvalidNameReason, []string{"not a valid namespace name"}, nil},
		// A name that is not <home>-<homeClusterID> is a SelectedName: no
		// advice about the home namespace's length.
		{"64 characters", strings.Repeat("a", 64), peeringv1alpha1.NameTooLongReason, []string{"63", "spec.remoteNamespaceName"}, []string{"at most 26"}},
		{"253 characters, the schema's maximum", strings.Repeat("a", 253), peeringv1alpha1.NameTooLongReason, []string{"63"}, []string{"at most 26"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			rn := request(t, homeID, "shop", tt.twin)
			g.Eventually(func(g Gomega) {
				st := status(g, rn)
				g.Expect(st.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceCreationFailed))
				g.Expect(st.Reason).To(Equal(tt.wantReason))
				for _, m := range tt.wantMessage {
					g.Expect(st.Message).To(ContainSubstring(m))
				}
				for _, m := range tt.notInMessage {
					g.Expect(st.Message).NotTo(ContainSubstring(m))
				}
			}).Should(Succeed())
			if tt.twin != "default" && tt.twin != "kube-public" {
				err := provider.Client.Get(context.Background(), client.ObjectKey{Name: tt.twin}, &corev1.Namespace{})
				g.Expect(apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "no namespace %s: %v", tt.twin, err)
			}
			g.Expect(provider.Client.Delete(context.Background(), rn)).To(Succeed())
			expectGone(g, rn)
		})
	}
}
