package offload_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/cli/offload"
	"stretch.dev/stretch/internal/controller/offloading"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
)

var (
	home, eu *testenv.APIServer
	homeID   = uuid.NewString()
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { home, eu = s[0], s[1] }, "home", "provider-eu")
}

func namespaces(t *testing.T, names ...string) {
	for _, n := range names {
		NewWithT(t).Expect(home.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"team": "web"}}})).To(Succeed())
	}
}

func spec(t *testing.T, o offload.SpecOptions) offloadingv1alpha1.NamespaceOffloadingSpec {
	s, err := o.Spec()
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return s
}

func TestOffloadAndUnoffload(t *testing.T) {
	g := NewWithT(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu, Labels: map[string]string{"region": "eu"}}})
	ctx := context.Background()
	namespaces(t, "shop", "blog")

	// By label, waiting: progress per provider, then done.
	targets, err := offload.Resolve(ctx, home.Client, offload.Targets{NamespaceSelector: "team=web"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(targets).To(Equal([]string{"blog", "shop"}))
	var out bytes.Buffer
	g.Expect(offload.Offload(ctx, home.Client, targets, spec(t, offload.SpecOptions{Selectors: []string{"region=eu"}}), true, time.Minute, &out)).To(Succeed())
	g.Expect(out.String()).To(ContainSubstring("✓ namespace shop: NamespaceOffloading applied (pods LocalAndRemote, twins shop-" + homeID + ")"))
	g.Expect(out.String()).To(ContainSubstring("namespace shop, provider provider-eu: NamespaceCreated"))
	g.Expect(out.String()).To(ContainSubstring("✓ namespace blog offloaded: twin blog-" + homeID + " ready on provider-eu"))
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: "shop-" + homeID}, &corev1.Namespace{})).To(Succeed())

	// Again: the same, nothing new.
	out.Reset()
	g.Expect(offload.Offload(ctx, home.Client, []string{"shop"}, spec(t, offload.SpecOptions{Selectors: []string{"region=eu"}}), true, time.Minute, &out)).To(Succeed())

	// Unoffload by name, waiting.
	out.Reset()
	g.Expect(offload.Unoffload(ctx, home.Client, []string{"shop", "blog", "never-offloaded"}, false, true, time.Minute, &out)).To(Succeed())
	g.Expect(out.String()).To(ContainSubstring("✓ namespace shop: unoffload started (twins on provider-eu are deleted with everything in them)"))
	g.Expect(out.String()).To(ContainSubstring("namespace never-offloaded is not offloaded"))
	g.Expect(out.String()).To(ContainSubstring("✓ namespace blog unoffloaded"))
	g.Expect(apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "offloading"}, &offloadingv1alpha1.NamespaceOffloading{}))).To(BeTrue())
}

func TestOffloadFailuresSayWhy(t *testing.T) {
	g := NewWithT(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu, Labels: map[string]string{"region": "eu"}}})
	ctx := context.Background()
	var out bytes.Buffer

	_, err := offload.Resolve(ctx, home.Client, offload.Targets{Namespaces: []string{"ghost"}})
	g.Expect(err).To(MatchError(ContainSubstring("namespaces ghost do not exist on the home cluster: create them first")))

	namespaces(t, "nowhere")
	err = offload.Offload(ctx, home.Client, []string{"nowhere"}, spec(t, offload.SpecOptions{Selectors: []string{"region=mars"}}), true, time.Minute, &out)
	g.Expect(err).To(MatchError(And(ContainSubstring("namespace nowhere: phase NoClusterSelected"), ContainSubstring("kubectl get nodes --show-labels"))))
	g.Expect(offload.Unoffload(ctx, home.Client, []string{"nowhere"}, false, true, time.Minute, &out)).To(Succeed())
}

func TestForcedUnoffloadOfAProviderThatIsGone(t *testing.T) {
	g := NewWithT(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu, Labels: map[string]string{"region": "eu"}}})
	ctx := context.Background()
	namespaces(t, "stranded")
	var out bytes.Buffer
	g.Expect(offload.Offload(ctx, home.Client, []string{"stranded"}, spec(t, offload.SpecOptions{}), true, time.Minute, &out)).To(Succeed())

	g.Expect(eu.StopAPIServerOnly()).To(Succeed())
	t.Cleanup(func() { _ = eu.RestartAPIServer() })
	out.Reset()
	err := offload.Unoffload(ctx, home.Client, []string{"stranded"}, false, true, 3*time.Second, &out)
	g.Expect(err).To(MatchError(And(ContainSubstring("namespace stranded is not unoffloaded after 3s: providers provider-eu still hold its twin"),
		ContainSubstring("stretchctl unoffload namespace stranded --force"))))

	out.Reset()
	g.Expect(offload.Unoffload(ctx, home.Client, []string{"stranded"}, true, true, time.Minute, &out)).To(Succeed())
	g.Expect(out.String()).To(ContainSubstring("✓ namespace stranded unoffloaded"))
	g.Expect(out.String()).To(ContainSubstring("! --force: provider provider-eu does not answer"))
	g.Expect(out.String()).To(ContainSubstring("twin namespace stranded-" + homeID + " with everything in it, its request RemoteNamespace stretch-tenant-" + homeID + "/stranded"))
	g.Expect(out.String()).To(ContainSubstring("left there until it answers again while still peered"))
	g.Expect(out.String()).To(ContainSubstring("'stretchctl peer revoke --force' on the provider"))
}

func TestForcedUnoffloadOfAProviderThatKeepsItsTwin(t *testing.T) {
	g := NewWithT(t)
	s := fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu, Labels: map[string]string{"region": "eu"}}},
		func(r *offloading.Reconciler) { r.UnoffloadTimeout = 3 * time.Second })
	ctx := context.Background()
	namespaces(t, "kept")
	var out bytes.Buffer
	g.Expect(offload.Offload(ctx, home.Client, []string{"kept"}, spec(t, offload.SpecOptions{}), true, time.Minute, &out)).To(Succeed())

	// The provider answers, but nothing there deletes the twin.
	s.StopTenant(eu)
	out.Reset()
	err := offload.Unoffload(ctx, home.Client, []string{"kept"}, false, true, 2*time.Second, &out)
	g.Expect(err).To(MatchError(ContainSubstring("providers provider-eu still hold its twin")))
	g.Eventually(func(g Gomega) {
		off := &offloadingv1alpha1.NamespaceOffloading{}
		g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: "kept", Name: "offloading"}, off)).To(Succeed())
		g.Expect(off.Status.RemoteNamespacesConditions["provider-eu"]).To(ContainElement(
			HaveField("Reason", offloadingv1alpha1.TwinNotDeletedReason)))
	}).WithTimeout(time.Minute).Should(Succeed())

	out.Reset()
	g.Expect(offload.Unoffload(ctx, home.Client, []string{"kept"}, true, true, time.Minute, &out)).To(Succeed())
	g.Expect(out.String()).To(ContainSubstring("✓ namespace kept unoffloaded"))
	g.Expect(out.String()).To(ContainSubstring("! --force: provider provider-eu answers but has not deleted its twin after the unoffload timeout"))
	g.Expect(out.String()).To(ContainSubstring("twin namespace kept-" + homeID + " with everything in it, its request RemoteNamespace stretch-tenant-" + homeID + "/kept stay on provider provider-eu until Stretch deletes them there"))
	g.Expect(out.String()).To(ContainSubstring("start its stretch-controller-manager there"))
	g.Expect(out.String()).To(ContainSubstring("by hand on the provider, delete namespace kept-" + homeID + " and remove finalizer peering.stretch.dev/twin-namespace from the request"))
	g.Expect(out.String()).NotTo(ContainSubstring("answers again"), "it answers already")
	g.Expect(out.String()).NotTo(ContainSubstring("peer revoke"), "it is not gone")
}

// An unoffload keeps the twin of a provider that holds copies of the
// namespace's claims, and says so; --force deletes them with the twin, and
// says so too (design §4.23).
func TestUnoffloadWithClaimsOnAProvider(t *testing.T) {
	g := NewWithT(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ctx := context.Background()
	namespaces(t, "ledger")
	var out bytes.Buffer
	g.Expect(offload.Offload(ctx, home.Client, []string{"ledger"}, spec(t, offload.SpecOptions{}), true, time.Minute, &out)).To(Succeed())
	rc := &peeringv1alpha1.RemoteCluster{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: "provider-eu"}, rc)).To(Succeed())
	// The volume that stands at home for claim ledger/books on provider-eu,
	// as the virtual kubelet made it (Retain: it stays without its claim).
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pvc-books", Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": wellknown.VolumeProvisioner},
			Labels: map[string]string{wellknown.RemoteClusterIDLabel: rc.Spec.ClusterID, wellknown.RemoteClusterNameLabel: rc.Name}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "ledger", Name: "books", UID: "0b2c3d4e"},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: wellknown.VolumeProvisioner, VolumeHandle: "h"}},
		},
	}
	g.Expect(home.Client.Create(ctx, pv)).To(Succeed())

	out.Reset()
	err := offload.Unoffload(ctx, home.Client, []string{"ledger"}, false, true, 3*time.Second, &out)
	g.Expect(err).To(MatchError(ContainSubstring("namespace ledger is not unoffloaded after 3s")))
	g.Expect(out.String()).To(ContainSubstring("✓ namespace ledger: unoffload started (twins on no provider are deleted with everything in them)"))
	g.Expect(out.String()).To(ContainSubstring("! provider provider-eu keeps the twin while it holds the copies of claims books (their data): delete them at home (kubectl delete pvc -n ledger books, once no pod uses them) to let the unoffload finish, or run 'stretchctl unoffload namespace ledger --force' to delete them with the twin"))
	g.Expect(out.String()).To(ContainSubstring("namespace ledger, provider provider-eu: RemoteVolumesHeld: provider provider-eu keeps twin namespace ledger-" + homeID + ": it holds the copies of claims books (PersistentVolume pvc-books"))
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: "ledger-" + homeID}, &corev1.Namespace{})).To(Succeed())

	out.Reset()
	g.Expect(offload.Unoffload(ctx, home.Client, []string{"ledger"}, true, true, time.Minute, &out)).To(Succeed())
	g.Expect(out.String()).To(ContainSubstring("! --force: provider provider-eu deletes the copies of claims books with the twin, and their data"))
	g.Expect(out.String()).To(ContainSubstring("✓ namespace ledger unoffloaded"))
	g.Eventually(func() bool {
		return apierrors.IsNotFound(eu.Client.Get(ctx, client.ObjectKey{Name: "ledger-" + homeID}, &corev1.Namespace{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	// The controller says it too, on the NamespaceOffloading (gone now).
	g.Eventually(func(g Gomega) []string {
		list := &eventsv1.EventList{}
		g.Expect(home.Client.List(ctx, list, client.InNamespace("ledger"))).To(Succeed())
		var notes []string
		for _, e := range list.Items {
			if e.Reason == "ForcedUnoffload" {
				notes = append(notes, e.Note)
			}
		}
		return notes
	}).Should(ContainElement("forced unoffload of namespace ledger: provider provider-eu deletes twin namespace ledger-" + homeID + " with the copies of claims books (PersistentVolume pvc-books, Pending), and their data"))
}
