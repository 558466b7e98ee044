package virtualkubelet_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv/fleet"
	"stretch.dev/stretch/internal/virtualkubelet"
)

// Annotations Kubernetes' scheduler and PersistentVolume controller set on
// a claim of a WaitForFirstConsumer class once its first pod's node is
// chosen; envtest runs neither, so the tests set them as they would.
const (
	selectedNode       = "volume.kubernetes.io/selected-node"
	storageProvisioner = "volume.kubernetes.io/storage-provisioner"
)

// claim is a home claim of class, 1Gi, as the scheduler left it after
// choosing node for its first pod.
func claim(ns, name, class, node string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "db"},
			Annotations: map[string]string{selectedNode: node, storageProvisioner: wellknown.VolumeProvisioner, "team": "data"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(class),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

// deleteFinalized deletes obj and removes its finalizers, as the
// protection controllers that envtest lacks do once nothing uses it, until
// obj is gone. An object of that name with another UID is not obj: Stretch
// may have made a copy again by then. obj itself is left as it was.
func deleteFinalized(g Gomega, c client.Client, obj client.Object) {
	uid := obj.GetUID()
	g.Expect(client.IgnoreNotFound(c.Delete(ctx, obj))).To(Succeed())
	// gone reads the object of obj's name into cur: true once it is not obj.
	cur := obj.DeepCopyObject().(client.Object)
	gone := func(g Gomega) bool {
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), cur)
		if apierrors.IsNotFound(err) {
			return true
		}
		g.Expect(err).NotTo(HaveOccurred())
		return cur.GetUID() != uid
	}
	g.Eventually(func(g Gomega) {
		if gone(g) {
			return
		}
		cur.SetFinalizers(nil)
		g.Expect(client.IgnoreNotFound(c.Update(ctx, cur))).To(Succeed())
		g.Expect(gone(g)).To(BeTrue())
	}).Should(Succeed())
}

// goneFromTwin reports whether the twin no longer holds claim name; a copy
// being deleted loses its finalizers, as the provider's pvc-protection
// controller (which envtest lacks) removes them once no pod uses it.
func goneFromTwin(g Gomega, twin, name string) bool {
	c := &corev1.PersistentVolumeClaim{}
	if !inTwin(g, twin, name, c) {
		return true
	}
	if c.DeletionTimestamp != nil {
		c.Finalizers = nil
		g.Expect(client.IgnoreNotFound(eu.Client.Update(ctx, c))).To(Succeed())
	}
	return false
}

// Claims of Stretch's provisioner are provisioned on the provider of the
// virtual node the scheduler chose: the copy has the provider's class from
// the RemoteCluster's mapping, a home PersistentVolume binds the claim and
// pins it to that provider, and the copy's phase and capacity come home.
// Only the user's delete of the home claim deletes the copy, as its
// reclaim policy says; an unoffload keeps a twin that holds copies until
// then (design §4.23).
func TestClaimsOnProviders(t *testing.T) {
	g := newG(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ns := "volumes"
	twin := offload(t, g, ns)
	node := peeringv1alpha1.VirtualNodeName(eu.Name)
	rc := &peeringv1alpha1.RemoteCluster{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: eu.Name}, rc)).To(Succeed())
	providerID := rc.Spec.ClusterID
	edit(t, home.Client, rc, func(rc *peeringv1alpha1.RemoteCluster) {
		rc.Spec.StorageClasses = []peeringv1alpha1.StorageClassMapping{{HomeClass: wellknown.StorageClassName, ProviderClass: "fast"}}
	})
	retain := corev1.PersistentVolumeReclaimRetain
	g.Expect(client.IgnoreAlreadyExists(home.Client.Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "stretch-retain"},
		Provisioner: wellknown.VolumeProvisioner, ReclaimPolicy: &retain, VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)}))).To(Succeed())

	homeVolume := func(g Gomega, c *corev1.PersistentVolumeClaim) *corev1.PersistentVolume {
		pv := &corev1.PersistentVolume{}
		g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: "pvc-" + string(c.UID)}, pv)).To(Succeed())
		return pv
	}
	data := claim(ns, "data", wellknown.StorageClassName, node)

	t.Run("a claim the scheduler placed on the virtual node is created on the provider, with the mapped class", func(t *testing.T) {
		g := newG(t)
		g.Expect(home.Client.Create(ctx, data)).To(Succeed())
		remote := &corev1.PersistentVolumeClaim{}
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "data", remote) }).Should(BeTrue())
		g.Expect(remote.Spec.StorageClassName).To(Equal(ptr.To("fast")))
		g.Expect(remote.Spec.Resources.Requests.Storage().String()).To(Equal("1Gi"))
		g.Expect(remote.Spec.AccessModes).To(ConsistOf(corev1.ReadWriteOnce))
		g.Expect(remote.Labels).To(HaveKeyWithValue("app", "db"))
		g.Expect(remote.Labels).To(HaveKeyWithValue(wellknown.OriginClusterIDLabel, homeID))
		g.Expect(remote.Annotations).To(HaveKeyWithValue("team", "data"))
		g.Expect(remote.Annotations).NotTo(HaveKey(selectedNode), "the home scheduler's node means nothing on the provider")
		g.Expect(remote.Annotations).NotTo(HaveKey(storageProvisioner))

		g.Eventually(func(g Gomega) {
			pv := homeVolume(g, data)
			g.Expect(pv.Spec.ClaimRef).NotTo(BeNil())
			g.Expect(pv.Spec.ClaimRef.UID).To(Equal(data.UID))
			g.Expect(pv.Spec.StorageClassName).To(Equal(wellknown.StorageClassName))
			g.Expect(pv.Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimDelete))
			g.Expect(pv.Spec.Capacity.Storage().String()).To(Equal("1Gi"))
			g.Expect(pv.Spec.NodeAffinity.Required.NodeSelectorTerms).To(Equal([]corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: wellknown.RemoteClusterIDLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{providerID}}}}}))
			g.Expect(pv.Annotations).To(HaveKeyWithValue(wellknown.RemoteClaimPhaseAnnotation, "Pending"))
		}).Should(Succeed())
		g.Eventually(func(g Gomega) []string { return reasons(g, ns, "data") }).Should(ContainElements(
			virtualkubelet.RemoteClaimCreatedReason, virtualkubelet.RemoteClaimPendingReason))
	})

	t.Run("the provider binding the copy shows at home", func(t *testing.T) {
		g := newG(t)
		// As the provider's PersistentVolume controller binds it.
		remote := &corev1.PersistentVolumeClaim{}
		g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "data"}, remote)).To(Succeed())
		remote.Spec.VolumeName = "pv-on-eu"
		g.Expect(eu.Client.Update(ctx, remote)).To(Succeed())
		remote.Status.Phase = corev1.ClaimBound
		remote.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}
		g.Expect(eu.Client.Status().Update(ctx, remote)).To(Succeed())
		g.Eventually(func(g Gomega) map[string]string { return homeVolume(g, data).Annotations }).Should(And(
			HaveKeyWithValue(wellknown.RemoteClaimPhaseAnnotation, "Bound"),
			HaveKeyWithValue(wellknown.RemoteClaimCapacityAnnotation, "2Gi"),
			HaveKeyWithValue(wellknown.RemoteVolumeAnnotation, "pv-on-eu")))
		g.Eventually(func(g Gomega) []string { return notes(g, ns, "data", virtualkubelet.RemoteClaimBoundReason) }).Should(ConsistOf(
			"Claim " + twin + "/data on provider eu is Bound to volume pv-on-eu (2Gi)"))
		// The provider's own events on the copy reach the home claim.
		g.Expect(eu.Client.Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: twin, Name: "data.provisioned"},
			InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: twin, Name: "data", UID: remote.UID},
			Reason:         "ProvisioningSucceeded", Message: "Successfully provisioned volume pv-on-eu", Type: corev1.EventTypeNormal,
			FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1, Source: corev1.EventSource{Component: "fast-provisioner"},
		})).To(Succeed())
		g.Eventually(func(g Gomega) []string { return notes(g, ns, "data", "ProvisioningSucceeded") }).Should(ConsistOf(
			"Successfully provisioned volume pv-on-eu (on provider eu)"))
	})

	t.Run("a copy deleted on the provider is made again, and the home claim says its data is gone", func(t *testing.T) {
		g := newG(t)
		remote := &corev1.PersistentVolumeClaim{}
		g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "data"}, remote)).To(Succeed())
		deleteFinalized(g, eu.Client, remote)
		g.Eventually(func(g Gomega) bool {
			again := &corev1.PersistentVolumeClaim{}
			return inTwin(g, twin, "data", again) && again.UID != remote.UID
		}).Should(BeTrue())
		g.Eventually(func(g Gomega) []string { return notes(g, ns, "data", virtualkubelet.RemoteClaimReplacedReason) }).Should(ConsistOf(
			"Claim " + twin + "/data on provider eu was deleted there while this claim exists, and created again: it no longer has volume pv-on-eu, nor its data"))
	})

	t.Run("claims of other nodes or provisioners are not reflected; a pod on the virtual node that mounts one says why", func(t *testing.T) {
		g := newG(t)
		elsewhere := claim(ns, "elsewhere", wellknown.StorageClassName, "stretch-other")
		atHome := claim(ns, "at-home", "standard", "")
		atHome.Annotations = nil
		g.Expect(home.Client.Create(ctx, elsewhere)).To(Succeed())
		g.Expect(home.Client.Create(ctx, atHome)).To(Succeed())
		pod := boundPod(ns, "uses-home-volume")
		pod.Spec.ServiceAccountName, pod.Spec.Volumes = "", []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "at-home"}}}}
		g.Expect(home.Client.Create(ctx, pod)).To(Succeed())
		g.Eventually(func(g Gomega) []string {
			return notes(g, ns, "uses-home-volume", virtualkubelet.VolumeNotOnProviderReason)
		}).Should(ConsistOf(
			HavePrefix(`Claim volumes/at-home (storage class "standard") has its volume in this cluster, which provider eu cannot reach`)))
		g.Consistently(func(g Gomega) {
			g.Expect(inTwin(g, twin, "elsewhere", &corev1.PersistentVolumeClaim{})).To(BeFalse())
			g.Expect(inTwin(g, twin, "at-home", &corev1.PersistentVolumeClaim{})).To(BeFalse())
		}).WithTimeout(2 * time.Second).Should(Succeed())
	})

	t.Run("keeping a claim at home does not delete its copy", func(t *testing.T) {
		g := newG(t)
		edit(t, home.Client, data, func(c *corev1.PersistentVolumeClaim) {
			metav1.SetMetaDataAnnotation(&c.ObjectMeta, wellknown.SkipReflectionAnnotation, "true")
		})
		g.Consistently(func(g Gomega) bool { return inTwin(g, twin, "data", &corev1.PersistentVolumeClaim{}) }).
			WithTimeout(2 * time.Second).Should(BeTrue())
		g.Expect(notes(g, ns, "data", virtualkubelet.KeptAtHomeReason)).To(ConsistOf(
			"Claim volumes/data is to be provisioned on provider eu, but its annotation stretch.dev/skip-reflection=true keeps it at home: it is not provisioned there (a copy made before is kept), and its pods wait until the annotation goes"))
	})

	t.Run("deleting the home claim deletes its copy, then its PersistentVolume (reclaim policy Delete)", func(t *testing.T) {
		g := newG(t)
		pv := &corev1.PersistentVolume{}
		g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: "pvc-" + string(data.UID)}, pv)).To(Succeed())
		deleteFinalized(g, home.Client, data)
		g.Eventually(func(g Gomega) bool { return goneFromTwin(g, twin, "data") }).Should(BeTrue())
		g.Eventually(func(g Gomega) bool {
			err := home.Client.Get(ctx, client.ObjectKeyFromObject(pv), pv)
			return apierrors.IsNotFound(err) || pv.DeletionTimestamp != nil
		}).Should(BeTrue())
		g.Eventually(func(g Gomega) []string { return reasons(g, "default", pv.Name) }).Should(ContainElement(virtualkubelet.RemoteClaimDeletedReason))
	})

	t.Run("with reclaim policy Retain the copy stays as long as the PersistentVolume", func(t *testing.T) {
		g := newG(t)
		kept := claim(ns, "kept", "stretch-retain", node)
		g.Expect(home.Client.Create(ctx, kept)).To(Succeed())
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "kept", &corev1.PersistentVolumeClaim{}) }).Should(BeTrue())
		var pv *corev1.PersistentVolume
		g.Eventually(func(g Gomega) { pv = homeVolume(g, kept) }).Should(Succeed())
		g.Expect(pv.Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimRetain))
		deleteFinalized(g, home.Client, kept)
		g.Eventually(func(g Gomega) []string { return reasons(g, "default", pv.Name) }).Should(ContainElement(virtualkubelet.RemoteClaimKeptReason))
		g.Consistently(func(g Gomega) bool { return inTwin(g, twin, "kept", &corev1.PersistentVolumeClaim{}) }).
			WithTimeout(2 * time.Second).Should(BeTrue())
		deleteFinalized(g, home.Client, pv)
		g.Eventually(func(g Gomega) bool { return goneFromTwin(g, twin, "kept") }).Should(BeTrue())
	})

	t.Run("an unoffload keeps the twin while it holds copies, says which and how to finish", func(t *testing.T) {
		g := newG(t)
		last := claim(ns, "last", wellknown.StorageClassName, node)
		g.Expect(home.Client.Create(ctx, last)).To(Succeed())
		g.Eventually(func(g Gomega) bool { return inTwin(g, twin, "last", &corev1.PersistentVolumeClaim{}) }).Should(BeTrue())
		var pv *corev1.PersistentVolume
		g.Eventually(func(g Gomega) { pv = homeVolume(g, last) }).Should(Succeed())
		off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.NamespaceOffloadingName}}
		g.Expect(home.Client.Delete(ctx, off)).To(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(off), off)).To(Succeed())
			ready := meta.FindStatusCondition(off.Status.RemoteNamespacesConditions[eu.Name], offloadingv1alpha1.RemoteNamespaceReadyCondition)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Reason).To(Equal(offloadingv1alpha1.RemoteVolumesHeldReason))
			g.Expect(ready.Message).To(ContainSubstring("claims last (PersistentVolume " + pv.Name))
			g.Expect(ready.Message).To(ContainSubstring("stretchctl unoffload namespace volumes --force"))
		}).Should(Succeed())
		g.Eventually(func(g Gomega) []string { return reasons(g, ns, wellknown.NamespaceOffloadingName) }).Should(ContainElement("UnoffloadBlocked"))
		g.Consistently(func(g Gomega) {
			g.Expect(inTwin(g, twin, "last", &corev1.PersistentVolumeClaim{})).To(BeTrue())
			g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: twin}, &corev1.Namespace{})).To(Succeed())
		}).WithTimeout(2 * time.Second).Should(Succeed())

		// The user's own delete of the claim lets the unoffload finish.
		deleteFinalized(g, home.Client, last)
		g.Eventually(func(g Gomega) bool { return goneFromTwin(g, twin, "last") }).Should(BeTrue())
		g.Eventually(func(g Gomega) {
			err := home.Client.Get(ctx, client.ObjectKeyFromObject(pv), pv)
			if err == nil {
				pv.Finalizers = nil // the pv-protection controller's part
				g.Expect(client.IgnoreNotFound(home.Client.Update(ctx, pv))).To(Succeed())
			}
			g.Expect(apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(pv), pv))).To(BeTrue())
		}).Should(Succeed())
		g.Eventually(func() bool { return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(off), off)) }).Should(BeTrue())
	})
}
