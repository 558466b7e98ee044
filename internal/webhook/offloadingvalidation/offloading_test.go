package offloadingvalidation_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/webhook/certs"
	"stretch.dev/stretch/internal/webhook/offloadingvalidation"
	"stretch.dev/stretch/internal/webhook/webhooktest"
)

// selector is a cluster selector of one term: one requirement on a label.
func selector(key string, op corev1.NodeSelectorOperator, values ...string) *corev1.NodeSelector {
	return &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
		MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}}}
}

func TestNamespaceOffloadingValidation(t *testing.T) {
	webhooktest.Serve(t, home, certs.Options{})
	ctx := context.Background()
	homeID := webhooktest.Identity(t, home).ID
	wc := webhooktest.NewWarningClient(t, home)

	t.Run("only the name offloading", func(t *testing.T) {
		g := NewWithT(t)
		webhooktest.Namespace(t, home, "misnamed", false)
		err := wc.Create(ctx, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "misnamed", Name: "my-offloading"}})
		g.Expect(err).To(MatchError(And(ContainSubstring(`NamespaceOffloading misnamed/my-offloading: the name must be "offloading"`), ContainSubstring("metadata.name: offloading"))))
	})

	// What users get: the CRD's CEL rules refuse the change, since the API
	// server validates an object before it calls validating webhooks; the
	// webhook's own check (TestNamespaceOffloadingImmutableFields) is never
	// reached this way, and would only answer if the rules were gone.
	t.Run("mapping strategy and remote name are immutable", func(t *testing.T) {
		g := NewWithT(t)
		webhooktest.Namespace(t, home, "mapped", false)
		off := webhooktest.OffloadingIn(t, home, "mapped", offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping, RemoteNamespaceName: "chosen"}, "")
		for _, tt := range []struct {
			change func(*offloadingv1alpha1.NamespaceOffloading)
			want   string
		}{
			{func(o *offloadingv1alpha1.NamespaceOffloading) { o.Spec.RemoteNamespaceName = "other" },
				"spec.remoteNamespaceName is immutable: delete the NamespaceOffloading (unoffload) and create it again to change it"},
			{func(o *offloadingv1alpha1.NamespaceOffloading) {
				o.Spec.NamespaceMappingStrategy, o.Spec.RemoteNamespaceName = offloadingv1alpha1.EnforceSameNameMapping, ""
			}, "spec.namespaceMappingStrategy is immutable: delete the NamespaceOffloading (unoffload) and create it again to change it"},
		} {
			cur := &offloadingv1alpha1.NamespaceOffloading{}
			g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(off), cur)).To(Succeed())
			tt.change(cur)
			err := wc.Update(ctx, cur)
			g.Expect(err).To(MatchError(ContainSubstring(tt.want)))
			g.Expect(err).NotTo(MatchError(ContainSubstring("it names the twins")), "the webhook's wording: the CEL rules no longer answer first")
		}
	})

	t.Run("an invalid selector is admitted with a warning", func(t *testing.T) {
		g := NewWithT(t)
		webhooktest.Namespace(t, home, "badselector", false)
		wc.Take()
		off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "badselector", Name: "offloading"},
			Spec: offloadingv1alpha1.NamespaceOffloadingSpec{ClusterSelector: selector("region", "Near", "eu")}}
		g.Expect(wc.Create(ctx, off)).To(Succeed())
		g.Expect(wc.Take()).To(ContainElement(And(ContainSubstring("spec.clusterSelector cannot be parsed"), ContainSubstring("NoClusterSelected"), ContainSubstring(`"Near"`))))
	})

	t.Run("a DefaultName twin over 63 characters is admitted with a warning", func(t *testing.T) {
		g := NewWithT(t)
		long := "abcdefghijklmnopqrstuvwxyz0" // 27 characters
		webhooktest.Namespace(t, home, long, false)
		wc.Take()
		g.Expect(wc.Create(ctx, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: long, Name: "offloading"}})).To(Succeed())
		g.Expect(wc.Take()).To(ContainElement(And(ContainSubstring("NameTooLong"), ContainSubstring("at most 26 characters"), ContainSubstring(long+"-"+homeID))))

		// 26 characters fit: no warning.
		webhooktest.Namespace(t, home, long[:26], false)
		g.Expect(wc.Create(ctx, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: long[:26], Name: "offloading"}})).To(Succeed())
		g.Expect(wc.Take()).To(BeEmpty())
	})

	t.Run("a stricter strategy warns about the pods it leaves in place", func(t *testing.T) {
		g := NewWithT(t)
		webhooktest.Namespace(t, home, "tighten", false)
		virtual := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stretch-provider-x", Labels: map[string]string{
			wellknown.VirtualNodeTypeLabel: wellknown.VirtualNodeTypeValue}}}
		g.Expect(home.Client.Create(ctx, virtual)).To(Succeed())
		// Offloaded first: the pod webhook refuses pods of runtime class
		// stretch in a namespace that is not.
		off := webhooktest.OffloadingIn(t, home, "tighten", offloadingv1alpha1.NamespaceOffloadingSpec{}, offloadingv1alpha1.ReadyPhase)
		running := func(name, node string, runtimeClass *string) {
			p := webhooktest.Pod("tighten", nil)
			p.GenerateName, p.Name, p.Spec.NodeName, p.Spec.RuntimeClassName = "", name, node, runtimeClass
			g.Eventually(func() error { return home.Client.Create(ctx, p) }).WithTimeout(10 * time.Second).Should(Succeed())
			p.Status.Phase = corev1.PodRunning
			g.Expect(home.Client.Status().Update(ctx, p)).To(Succeed())
		}
		running("at-home", "home-node-1", nil)
		running("away", virtual.Name, nil)
		// Where runtime class stretch belongs under any strategy: never
		// named.
		running("forced-away", virtual.Name, ptr.To(wellknown.RuntimeClassName))
		wc.Take()

		for _, tt := range []struct {
			strategy offloadingv1alpha1.PodOffloadingStrategy
			want     string
		}{
			{offloadingv1alpha1.RemoteStrategy, "1 running pods of namespace tighten are on home nodes, where podOffloadingStrategy Remote would not place them (at-home)"},
			{offloadingv1alpha1.LocalStrategy, "1 running pods of namespace tighten are on virtual nodes, where podOffloadingStrategy Local would not place them (away)"},
		} {
			g.Eventually(func(g Gomega) {
				cur := &offloadingv1alpha1.NamespaceOffloading{}
				g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(off), cur)).To(Succeed())
				cur.Spec.PodOffloadingStrategy = tt.strategy
				g.Expect(wc.Update(ctx, cur)).To(Succeed())
				// The virtual node is read from the manager's cache.
				g.Expect(wc.Take()).To(ContainElement(ContainSubstring(tt.want)))
			}).WithTimeout(10 * time.Second).Should(Succeed())
		}
		// Loosening to LocalAndRemote leaves nothing in violation.
		webhooktest.Edit(t, home, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
			o.Spec.PodOffloadingStrategy = offloadingv1alpha1.LocalAndRemoteStrategy
		})
		cur := &offloadingv1alpha1.NamespaceOffloading{}
		g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(off), cur)).To(Succeed())
		cur.Spec.ClusterSelector = selector("region", corev1.NodeSelectorOpIn, "eu")
		wc.Take()
		g.Expect(wc.Update(ctx, cur)).To(Succeed())
		g.Expect(wc.Take()).To(BeEmpty())
	})
}

// TestNamespaceOffloadingImmutableFields calls the validating webhook's
// handler directly with updates: through the API server, the CRD's CEL
// rules refuse these first (see TestNamespaceOffloadingValidation), so only
// here is the webhook's own wording checked.
func TestNamespaceOffloadingImmutableFields(t *testing.T) {
	ctx := context.Background()
	webhooktest.Identity(t, home)
	h := &offloadingvalidation.Handler{Client: home.Client, APIReader: home.Client, Decoder: admission.NewDecoder(home.Scheme),
		Home: &identity.IDCache{Reader: home.Client}}
	selected := func(name string) offloadingv1alpha1.NamespaceOffloadingSpec {
		return offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping, RemoteNamespaceName: name}
	}
	tests := []struct {
		name     string
		old, cur offloadingv1alpha1.NamespaceOffloadingSpec
		wantDeny string // empty: admitted
	}{
		{name: "remote name changed", old: selected("chosen"), cur: selected("other"),
			wantDeny: `NamespaceOffloading mapped/offloading: spec.remoteNamespaceName is immutable ("chosen" to "other"): it names the twins, which hold the offloaded pods; delete the NamespaceOffloading (unoffload) and create it again to change it`},
		{name: "mapping strategy changed", old: selected("chosen"), cur: offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.EnforceSameNameMapping},
			wantDeny: "NamespaceOffloading mapped/offloading: spec.namespaceMappingStrategy is immutable (SelectedName to EnforceSameName): it names the twins, which hold the offloaded pods; delete the NamespaceOffloading (unoffload) and create it again to change it"},
		{name: "mapping strategy set where it defaulted", old: offloadingv1alpha1.NamespaceOffloadingSpec{}, cur: selected("chosen"),
			wantDeny: "spec.namespaceMappingStrategy is immutable (DefaultName to SelectedName)"},
		{name: "the default written out is no change", old: offloadingv1alpha1.NamespaceOffloadingSpec{},
			cur: offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.DefaultNameMapping}},
		{name: "strategy and selector may change", old: selected("chosen"),
			cur: offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping, RemoteNamespaceName: "chosen",
				PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy, ClusterSelector: selector("region", corev1.NodeSelectorOpIn, "eu")}},
	}
	raw := func(g Gomega, spec offloadingv1alpha1.NamespaceOffloadingSpec) runtime.RawExtension {
		data, err := json.Marshal(&offloadingv1alpha1.NamespaceOffloading{TypeMeta: metav1.TypeMeta{APIVersion: offloadingv1alpha1.GroupVersion.String(), Kind: "NamespaceOffloading"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "mapped", Name: wellknown.NamespaceOffloadingName}, Spec: spec})
		g.Expect(err).NotTo(HaveOccurred())
		return runtime.RawExtension{Raw: data}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			resp := h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "update", Operation: admissionv1.Update,
				Namespace: "mapped", Name: wellknown.NamespaceOffloadingName, Object: raw(g, tt.cur), OldObject: raw(g, tt.old)}})
			if tt.wantDeny == "" {
				g.Expect(resp.Allowed).To(BeTrue(), "%+v", resp.Result)
				return
			}
			g.Expect(resp.Allowed).To(BeFalse())
			g.Expect(resp.Result.Message).To(ContainSubstring(tt.wantDeny))
		})
	}
}
