package crash

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/peering"
)

// TestProviderGoneForGood stops a provider's API server for good while a
// namespace is offloaded to it, with pods running there: 'stretchctl
// unoffload --force' and 'stretchctl unpeer --force' finish, exit 0 and say
// what they left on the provider (the twin, its request, the remote pods,
// the tenant); the home cluster is clean afterwards: no NamespaceOffloading
// held by its finalizer, no RemoteCluster, no virtual node, no kubeconfig
// Secret, no pod on the virtual node, and the pods run at home.
func TestProviderGoneForGood(t *testing.T) {
	s := setUp(t)
	g := newG(t)
	const ns = "stranded"
	vnode := peeringv1alpha1.VirtualNodeName(providerName)
	ops := s.operations()
	offload, pods := ops[0], ops[1]
	for _, op := range []operation{offload, pods} {
		op.start(g, ns)
		g.Eventually(func(g Gomega) { op.done(g, ns, s.observe(g, ns)) }).Should(Succeed(), "%s of namespace %s", op.name, ns)
	}
	var onProvider []string
	for _, p := range s.observe(g, ns).livePods(vnode) {
		onProvider = append(onProvider, p.Name)
	}

	_, err := s.provider.KillAPIServer() // never started again
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		rc := &peeringv1alpha1.RemoteCluster{}
		g.Expect(s.home.Client.Get(ctx, client.ObjectKey{Name: providerName}, rc)).To(Succeed())
		g.Expect(meta.IsStatusConditionFalse(rc.Status.Conditions, peeringv1alpha1.APIReachableCondition)).To(BeTrue())
	}).Should(Succeed(), "home sees the provider gone")

	out, err := s.stretchctl("unoffload", "namespace", ns, "--force", "--yes", "--wait", "--timeout", "2m", "--kubeconfig", s.home.Kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("! --force: provider " + providerName + " does not answer"))
	g.Expect(out).To(ContainSubstring("twin namespace " + s.twinName(ns) + " with everything in it"))
	g.Expect(out).To(ContainSubstring("RemoteNamespace " + peeringv1alpha1.TenantNamespace(s.homeID) + "/" + ns))
	for _, p := range onProvider {
		g.Expect(out).To(ContainSubstring(p), "the remote pod of %s is named as left", p)
	}
	g.Expect(out).To(ContainSubstring("✓ namespace " + ns + " unoffloaded"))
	err = s.home.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: wellknown.NamespaceOffloadingName}, &offloadingv1alpha1.NamespaceOffloading{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "NamespaceOffloading gone, no finalizer stuck: %v", err)

	out, err = s.stretchctl("unpeer", providerName, "--force", "--kubeconfig", s.home.Kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("cannot list the twin namespace requests on \"" + providerName + "\""))
	g.Expect(out).To(ContainSubstring("still holds what it issued to this cluster"))
	g.Expect(out).To(ContainSubstring(peeringv1alpha1.TenantNamespace(s.homeID)))
	g.Expect(out).To(ContainSubstring("stretchctl peer revoke"))

	g.Eventually(func(g Gomega) {
		err := s.home.Client.Get(ctx, client.ObjectKey{Name: providerName}, &peeringv1alpha1.RemoteCluster{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "RemoteCluster gone: %v", err)
		err = s.home.Client.Get(ctx, client.ObjectKey{Name: vnode}, &corev1.Node{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "virtual node gone: %v", err)
		err = s.home.Client.Get(ctx, client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: peering.SecretName(providerName)}, &corev1.Secret{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "kubeconfig Secret gone: %v", err)
		offs := &offloadingv1alpha1.NamespaceOffloadingList{}
		g.Expect(s.home.Client.List(ctx, offs)).To(Succeed())
		g.Expect(offs.Items).To(BeEmpty())
		// The pods that ran on the provider go with its virtual node; their
		// Deployment runs them at home.
		list := &corev1.PodList{}
		g.Expect(s.home.Client.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(replicas))
		for _, p := range list.Items {
			g.Expect(p.Spec.NodeName).NotTo(Equal(vnode), "pod %s left on the virtual node", p.Name)
			g.Expect(podReady(&p)).To(BeTrue(), "pod %s Ready at home", p.Name)
		}
	}).WithTimeout(3*time.Minute).Should(Succeed(), "home clean after the provider is gone")
	home := &corev1.Namespace{}
	g.Expect(s.home.Client.Get(ctx, client.ObjectKey{Name: ns}, home)).To(Succeed())
	g.Expect(home.Labels).NotTo(HaveKey(wellknown.SchedulingEnabledLabel))
}
