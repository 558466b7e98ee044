package webhook_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/webhook/certs"
)

func TestNamespaceOffloadingValidation(t *testing.T) {
	serve(t, certs.Options{})
	ctx := context.Background()
	wc := newWarningClient(t)

	t.Run("only the name offloading", func(t *testing.T) {
		g := NewWithT(t)
		namespace(t, "misnamed", false)
		err := wc.Create(ctx, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "misnamed", Name: "my-offloading"}})
		g.Expect(err).To(MatchError(And(ContainSubstring(`NamespaceOffloading misnamed/my-offloading: the name must be "offloading"`), ContainSubstring("metadata.name: offloading"))))
	})

	t.Run("mapping strategy and remote name are immutable", func(t *testing.T) {
		g := NewWithT(t)
		namespace(t, "mapped", false)
		off := offloadingIn(t, "mapped", offloadingv1alpha1.NamespaceOffloadingSpec{NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping, RemoteNamespaceName: "chosen"}, "")
		for _, change := range []func(*offloadingv1alpha1.NamespaceOffloading){
			func(o *offloadingv1alpha1.NamespaceOffloading) { o.Spec.RemoteNamespaceName = "other" },
			func(o *offloadingv1alpha1.NamespaceOffloading) {
				o.Spec.NamespaceMappingStrategy, o.Spec.RemoteNamespaceName = offloadingv1alpha1.EnforceSameNameMapping, ""
			},
		} {
			cur := &offloadingv1alpha1.NamespaceOffloading{}
			g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(off), cur)).To(Succeed())
			change(cur)
			g.Expect(wc.Update(ctx, cur)).To(MatchError(And(ContainSubstring("immutable"), ContainSubstring("delete the NamespaceOffloading (unoffload) and create it again"))))
		}
	})

	t.Run("an invalid selector is admitted with a warning", func(t *testing.T) {
		g := NewWithT(t)
		namespace(t, "badselector", false)
		wc.take()
		off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "badselector", Name: "offloading"},
			Spec: offloadingv1alpha1.NamespaceOffloadingSpec{ClusterSelector: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
				term(list(req("region", "Near", "eu")))}}}}
		g.Expect(wc.Create(ctx, off)).To(Succeed())
		g.Expect(wc.take()).To(ContainElement(And(ContainSubstring("spec.clusterSelector cannot be parsed"), ContainSubstring("NoClusterSelected"), ContainSubstring(`"Near"`))))
	})

	t.Run("a DefaultName twin over 63 characters is admitted with a warning", func(t *testing.T) {
		g := NewWithT(t)
		long := "abcdefghijklmnopqrstuvwxyz0" // 27 characters
		namespace(t, long, false)
		wc.take()
		g.Expect(wc.Create(ctx, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: long, Name: "offloading"}})).To(Succeed())
		g.Expect(wc.take()).To(ContainElement(And(ContainSubstring("NameTooLong"), ContainSubstring("at most 26 characters"), ContainSubstring(long+"-"+homeID))))

		// 26 characters fit: no warning.
		namespace(t, long[:26], false)
		g.Expect(wc.Create(ctx, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: long[:26], Name: "offloading"}})).To(Succeed())
		g.Expect(wc.take()).To(BeEmpty())
	})

	t.Run("a stricter strategy warns about the pods it leaves in place", func(t *testing.T) {
		g := NewWithT(t)
		namespace(t, "tighten", false)
		virtual := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stretch-provider-x", Labels: map[string]string{
			peeringv1alpha1.VirtualNodeTypeLabel: peeringv1alpha1.VirtualNodeTypeValue}}}
		g.Expect(home.Client.Create(ctx, virtual)).To(Succeed())
		running := func(name, node string) {
			p := pod("tighten", nil)
			p.GenerateName, p.Name, p.Spec.NodeName = "", name, node
			g.Expect(home.Client.Create(ctx, p)).To(Succeed())
			p.Status.Phase = corev1.PodRunning
			g.Expect(home.Client.Status().Update(ctx, p)).To(Succeed())
		}
		running("at-home", "home-node-1")
		running("away", virtual.Name)
		off := offloadingIn(t, "tighten", offloadingv1alpha1.NamespaceOffloadingSpec{}, "")
		wc.take()

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
				g.Expect(wc.take()).To(ContainElement(ContainSubstring(tt.want)))
			}).WithTimeout(10 * time.Second).Should(Succeed())
		}
		// Loosening to LocalAndRemote leaves nothing in violation.
		edit(t, off, func(o *offloadingv1alpha1.NamespaceOffloading) {
			o.Spec.PodOffloadingStrategy = offloadingv1alpha1.LocalAndRemoteStrategy
		})
		cur := &offloadingv1alpha1.NamespaceOffloading{}
		g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(off), cur)).To(Succeed())
		cur.Spec.ClusterSelector = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(list(regionEU))}}
		wc.take()
		g.Expect(wc.Update(ctx, cur)).To(Succeed())
		g.Expect(wc.take()).To(BeEmpty())
	})
}
