package virtualkubelet

import (
	"context"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// What Kubernetes' scheduler and PersistentVolume controller write on
// claims and volumes (k8s.io/component-helpers/storage/volume; not imported
// for four strings).
const (
	// annSelectedNode: the node the scheduler chose for a claim of a
	// WaitForFirstConsumer class.
	annSelectedNode = "volume.kubernetes.io/selected-node"
	// annStorageProvisioner (and its beta twin): the provisioner the
	// PersistentVolume controller asks to provision a claim.
	annStorageProvisioner     = "volume.kubernetes.io/storage-provisioner"
	annBetaStorageProvisioner = "volume.beta.kubernetes.io/storage-provisioner"
	// annProvisionedBy: the provisioner that made a PersistentVolume, and
	// deletes it (the PersistentVolume controller leaves it alone).
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
)

// Reasons of the events recorded on home claims and pods about volumes.
const (
	// RemoteClaimCreatedReason, on a home claim: its copy was created on
	// the provider.
	RemoteClaimCreatedReason = "RemoteClaimCreated"
	// RemoteClaimBoundReason, RemoteClaimPendingReason, RemoteClaimLostReason,
	// on a home claim: the phase of its copy on the provider.
	RemoteClaimBoundReason   = "RemoteClaimBound"
	RemoteClaimPendingReason = "RemoteClaimPending"
	RemoteClaimLostReason    = "RemoteClaimLost"
	// RemoteClaimKeptReason, on a home PersistentVolume of reclaim policy
	// Retain whose claim was deleted: the copy on the provider is kept.
	RemoteClaimKeptReason = "RemoteClaimKept"
	// RemoteClaimDeletedReason, on a home PersistentVolume: the claim it
	// stood for was deleted at home, and its copy on the provider with it.
	RemoteClaimDeletedReason = "RemoteClaimDeleted"
	// RemoteClaimReplacedReason, on a home claim: its copy was deleted on
	// the provider (not by Stretch) and created again, without its volume.
	RemoteClaimReplacedReason = "RemoteClaimReplaced"
	// VolumeNotOnProviderReason, on a home pod: it mounts a claim whose
	// volume is at home, which the provider does not have.
	VolumeNotOnProviderReason = "VolumeNotOnProvider"
)

// KindPersistentVolumeClaim is the kind of reflected claims.
const KindPersistentVolumeClaim = "PersistentVolumeClaim"

// claimReflector reflects PersistentVolumeClaims of Stretch's provisioner
// (storage class stretch): it is the provisioner of those claims. When the
// scheduler chose a virtual node for a claim's first pod (annSelectedNode),
// that node's kubelet creates the claim in the twin, with the provider's
// class (RemoteCluster.spec.storageClasses), and at home a
// PersistentVolume bound to the claim, with node affinity to the provider:
// the home claim binds, the pod binds to the virtual node, and later pods
// of the claim go to the same provider. It never waits for the copy to
// bind: with a WaitForFirstConsumer class on the provider, the copy binds
// only once the remote pod exists, which needs the home pod bound first.
// What the provider does with the copy (Pending, Bound, Lost, capacity)
// comes home on the PersistentVolume (annotations) and the claim (events).
// See docs/design.md §4.23.
type claimReflector struct{ standalone }

func (claimReflector) kind() string { return KindPersistentVolumeClaim }

func (claimReflector) object() client.Object { return &corev1.PersistentVolumeClaim{} }

func (claimReflector) informer(f informers.SharedInformerFactory) cache.SharedIndexInformer {
	return f.Core().V1().PersistentVolumeClaims().Informer()
}

// reflected: claims the PersistentVolume controller asks Stretch to
// provision, once the scheduler chose a node for them.
func (claimReflector) reflected(obj client.Object) bool {
	a := obj.GetAnnotations()
	return a[annSelectedNode] != "" && (a[annStorageProvisioner] == wellknown.VolumeProvisioner || a[annBetaStorageProvisioner] == wellknown.VolumeProvisioner)
}

// neededBy: the claims a pod mounts, its generic ephemeral volumes'
// included (named <pod>-<volume>).
func (claimReflector) neededBy(pod *corev1.Pod) []string {
	var names []string
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			names = append(names, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			names = append(names, pod.Name+"-"+v.Name)
		}
	}
	return names
}

// toRemote keeps what the claim asks for (size, access modes, volume
// mode). Its class is the home class until forProvider maps it; the
// selector and data source name home objects and go; so do the annotations
// of the home scheduler and volume controllers.
func (claimReflector) toRemote(obj client.Object, meta metav1.ObjectMeta, _ peeringView) client.Object {
	c := obj.(*corev1.PersistentVolumeClaim)
	meta.Annotations = maps.Clone(meta.Annotations)
	maps.DeleteFunc(meta.Annotations, func(k, _ string) bool {
		return volumeControllerKey(k) || k == wellknown.RemotePodManagedLabelsAnnotation || k == wellknown.RemotePodManagedAnnotationsAnnotation
	})
	metav1.SetMetaDataAnnotation(&meta, originClaimUIDAnnotation, string(c.UID))
	setManagedKeys(&meta)
	return &corev1.PersistentVolumeClaim{ObjectMeta: meta, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes:      c.Spec.AccessModes,
		Resources:        *c.Spec.Resources.DeepCopy(),
		VolumeMode:       c.Spec.VolumeMode,
		StorageClassName: c.Spec.StorageClassName,
	}}
}

// originClaimUIDAnnotation, on a claim's copy, is the UID of the home claim
// it stands for: a claim deleted and created again at home under the same
// name is another claim, with other data.
const originClaimUIDAnnotation = "stretch.dev/origin-claim-uid"

// volumeControllerKey reports whether annotation key k is one the home
// cluster's scheduler and volume controllers set on claims.
func volumeControllerKey(k string) bool {
	return strings.HasPrefix(k, "volume.kubernetes.io/") || strings.HasPrefix(k, "volume.beta.kubernetes.io/") || strings.HasPrefix(k, "pv.kubernetes.io/")
}

// keepAllocated keeps the copy's whole spec: it is immutable once created
// but for its size, and a resize is not carried over (docs/design.md
// §4.23).
func (claimReflector) keepAllocated(want, cur client.Object) {
	want.(*corev1.PersistentVolumeClaim).Spec = *cur.(*corev1.PersistentVolumeClaim).Spec.DeepCopy()
}

func (claimReflector) equal(cur, want client.Object) bool {
	return equality.Semantic.DeepEqual(cur.(*corev1.PersistentVolumeClaim).Spec, want.(*corev1.PersistentVolumeClaim).Spec)
}

// immutable: never; a claim is never replaced, which would lose its data.
func (claimReflector) immutable(_, _ client.Object) bool { return false }

// reflectedBy: a claim goes to the provider whose virtual node the
// scheduler chose for it, and to no other.
func (claimReflector) reflectedBy(k *Kubelet, obj client.Object) bool {
	return obj.GetAnnotations()[annSelectedNode] == k.NodeName
}

// forProvider gives the copy the provider's class for its home class.
func (claimReflector) forProvider(ctx context.Context, k *Kubelet, want client.Object) error {
	c := want.(*corev1.PersistentVolumeClaim)
	homeClass := ptr.Deref(c.Spec.StorageClassName, "")
	rc := &peeringv1alpha1.RemoteCluster{}
	if err := k.Offloadings.Get(ctx, client.ObjectKey{Name: k.ProviderName}, rc); err != nil {
		return fmt.Errorf("reading RemoteCluster %s for its storage class mapping: %w", k.ProviderName, err)
	}
	c.Spec.StorageClassName = rc.Spec.ProviderClass(homeClass)
	return nil
}

// copyOf reports whether cur is the copy of home claim home, and not of an
// earlier claim of its name, deleted since: that one's data is not home's.
func (claimReflector) copyOf(home, cur client.Object) bool {
	return cur.GetAnnotations()[originClaimUIDAnnotation] == string(home.GetUID())
}

// release decides whether cur, the copy of a claim that is not (or no
// more) reflected here, stays. Only the user's own delete of the home
// claim deletes it: a claim that still exists at home (kept at home, or
// chosen for another node since) keeps its copy. Once the home claim is
// gone, its PersistentVolume's reclaim policy decides, as for any volume:
// Retain keeps the copy as long as the PersistentVolume; Delete deletes
// the copy, then (cur nil) the PersistentVolume.
func (r claimReflector) release(ctx context.Context, k *Kubelet, key objectKey, home, cur client.Object) (bool, error) {
	if home != nil && keptAtHome(home) && r.reflected(home) && r.reflectedBy(k, home) && k.said.add(key.String(), "kept-at-home/"+string(home.GetUID())) {
		k.recorder.Eventf(home, corev1.EventTypeWarning, KeptAtHomeReason,
			"Claim %s/%s is to be provisioned on provider %s, but its annotation %s=true keeps it at home: it is not provisioned there (a copy made before is kept), and its pods wait until the annotation goes",
			key.Namespace, key.Name, k.ProviderName, wellknown.SkipReflectionAnnotation)
	}
	if cur == nil {
		return false, k.releaseHomeVolumes(ctx, key)
	}
	uid := cur.GetAnnotations()[originClaimUIDAnnotation]
	if home != nil && r.copyOf(home, cur) {
		return true, nil
	}
	// The cache may be behind: only the API server says a claim is gone.
	live, err := k.Home.CoreV1().PersistentVolumeClaims(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
	switch {
	case err == nil && string(live.UID) == uid:
		return true, nil
	case err != nil && !apierrors.IsNotFound(err):
		return true, fmt.Errorf("reading home claim %s/%s: %w", key.Namespace, key.Name, err)
	}
	pv, err := k.Home.CoreV1().PersistentVolumes().Get(ctx, homeVolumeName(uid), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || uid == "":
		return false, nil // its PersistentVolume was deleted: the copy goes
	case err != nil:
		return true, fmt.Errorf("reading home PersistentVolume %s: %w", homeVolumeName(uid), err)
	case !ours(pv, k):
		return true, nil
	case pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRetain:
		if k.said.add("pv/"+pv.Name, "kept/"+string(pv.UID)) {
			k.recorder.Eventf(pv, corev1.EventTypeNormal, RemoteClaimKeptReason,
				"Claim %s/%s was deleted at home; with reclaim policy Retain its copy %s/%s on provider %s is kept, with its data, as long as this PersistentVolume: delete the PersistentVolume to delete the copy",
				key.Namespace, key.Name, cur.GetNamespace(), cur.GetName(), k.ProviderName)
		}
		return true, nil
	}
	return false, nil
}

// releaseHomeVolumes deletes the home PersistentVolumes of reclaim policy
// Delete that stood for claim key on this provider, once that claim is
// gone and (the caller knows) its copy too.
func (k *Kubelet) releaseHomeVolumes(ctx context.Context, key objectKey) error {
	pvs, err := k.Objects.factory.Core().V1().PersistentVolumes().Lister().List(everything)
	if err != nil {
		return err
	}
	for _, pv := range pvs {
		ref := pv.Spec.ClaimRef
		if !ours(pv, k) || ref == nil || ref.Namespace != key.Namespace || ref.Name != key.Name ||
			pv.DeletionTimestamp != nil || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
			continue
		}
		live, err := k.Home.CoreV1().PersistentVolumeClaims(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
		if err == nil && live.UID == ref.UID {
			continue // the claim is there: its volume stays
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading home claim %s/%s: %w", key.Namespace, key.Name, err)
		}
		k.recorder.Eventf(pv, corev1.EventTypeNormal, RemoteClaimDeletedReason,
			"Claim %s/%s was deleted at home, and its copy on provider %s with it (reclaim policy Delete): this PersistentVolume goes too", key.Namespace, key.Name, k.ProviderName)
		err = k.Home.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pv.UID))})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			k.countError("delete-volume", err)
			return fmt.Errorf("deleting home PersistentVolume %s: %w", pv.Name, err)
		}
	}
	return nil
}

// homeVolumeName is the home PersistentVolume that stands for the claim of
// UID uid, named as provisioners name theirs.
func homeVolumeName(uid string) string { return "pvc-" + uid }

// ours reports whether home PersistentVolume pv stands for a claim on k's
// provider.
func ours(pv *corev1.PersistentVolume, k *Kubelet) bool {
	return pv.Annotations[annProvisionedBy] == wellknown.VolumeProvisioner && pv.Labels[wellknown.RemoteClusterIDLabel] == k.Peer.ClusterID
}

// reportBack makes sure home claim home has its PersistentVolume, bound to
// it and pinned to the provider, and writes on it what the provider did
// with cur, the claim's copy: its phase, capacity and volume. Each change
// of phase is an event on the home claim.
func (claimReflector) reportBack(ctx context.Context, k *Kubelet, home, cur client.Object) error {
	claim, remote := home.(*corev1.PersistentVolumeClaim), cur.(*corev1.PersistentVolumeClaim)
	name := homeVolumeName(string(claim.UID))
	if claim.Spec.VolumeName != "" && claim.Spec.VolumeName != name {
		return nil // bound to another volume (by hand): not ours to provision
	}
	pvs := k.Home.CoreV1().PersistentVolumes()
	// The cache, at each sync; the API server before a creation.
	pv, err := k.Objects.factory.Core().V1().PersistentVolumes().Lister().Get(name)
	if apierrors.IsNotFound(err) {
		pv, err = pvs.Get(ctx, name, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		want, werr := k.homeVolume(claim, remote)
		if werr != nil {
			return werr
		}
		pv, err = pvs.Create(ctx, want, metav1.CreateOptions{FieldManager: wellknown.VirtualKubeletComponent})
		if err == nil {
			k.recorder.Eventf(claim, corev1.EventTypeNormal, RemoteClaimCreatedReason,
				"Provisioned on provider %s as claim %s/%s (class %s); PersistentVolume %s binds this claim, and its pods run on virtual node %s",
				k.ProviderName, remote.Namespace, remote.Name, ptr.Deref(remote.Spec.StorageClassName, "the provider's default"), name, k.NodeName)
		}
	}
	if err != nil {
		k.countError("provision-volume", err)
		return fmt.Errorf("home PersistentVolume %s of claim %s/%s: %w", name, claim.Namespace, claim.Name, err)
	}
	if !ours(pv, k) {
		return nil
	}
	phase, capacity := string(remote.Status.Phase), ""
	if q, ok := remote.Status.Capacity[corev1.ResourceStorage]; ok {
		capacity = q.String()
	}
	if phase == "" {
		phase = string(corev1.ClaimPending)
	}
	if old := pv.Annotations[wellknown.RemoteVolumeAnnotation]; old != "" && old != remote.Spec.VolumeName &&
		k.said.add("pv/"+pv.Name, "replaced/"+old) {
		// The copy was deleted on the provider, by someone else than
		// Stretch, and made again: never silently.
		k.recorder.Eventf(claim, corev1.EventTypeWarning, RemoteClaimReplacedReason,
			"Claim %s/%s on provider %s was deleted there while this claim exists, and created again: it no longer has volume %s, nor its data",
			remote.Namespace, remote.Name, k.ProviderName, old)
	}
	was := pv.Annotations[wellknown.RemoteClaimPhaseAnnotation]
	if was == phase && pv.Annotations[wellknown.RemoteClaimCapacityAnnotation] == capacity && pv.Annotations[wellknown.RemoteVolumeAnnotation] == remote.Spec.VolumeName {
		return nil
	}
	upd := pv.DeepCopy()
	metav1.SetMetaDataAnnotation(&upd.ObjectMeta, wellknown.RemoteClaimPhaseAnnotation, phase)
	metav1.SetMetaDataAnnotation(&upd.ObjectMeta, wellknown.RemoteClaimCapacityAnnotation, capacity)
	metav1.SetMetaDataAnnotation(&upd.ObjectMeta, wellknown.RemoteVolumeAnnotation, remote.Spec.VolumeName)
	if _, err := pvs.Update(ctx, upd, metav1.UpdateOptions{FieldManager: wellknown.VirtualKubeletComponent}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // its event syncs the claim again
		}
		k.countError("update-volume", err)
		return fmt.Errorf("writing the remote state on home PersistentVolume %s: %w", name, err)
	}
	if was != phase {
		k.claimPhaseEvent(claim, remote, phase, capacity)
	}
	return nil
}

// claimPhaseEvent records on home claim claim the phase its copy remote
// reached on the provider.
func (k *Kubelet) claimPhaseEvent(claim, remote *corev1.PersistentVolumeClaim, phase, capacity string) {
	switch corev1.PersistentVolumeClaimPhase(phase) {
	case corev1.ClaimBound:
		k.recorder.Eventf(claim, corev1.EventTypeNormal, RemoteClaimBoundReason, "Claim %s/%s on provider %s is Bound to volume %s (%s)",
			remote.Namespace, remote.Name, k.ProviderName, remote.Spec.VolumeName, capacity)
	case corev1.ClaimLost:
		k.recorder.Eventf(claim, corev1.EventTypeWarning, RemoteClaimLostReason, "Claim %s/%s on provider %s is Lost: its volume %s is gone there, and with it this claim's data; 'kubectl get pvc %s -n %s' on provider %s says more",
			remote.Namespace, remote.Name, k.ProviderName, remote.Spec.VolumeName, remote.Name, remote.Namespace, k.ProviderName)
	default:
		k.recorder.Eventf(claim, corev1.EventTypeNormal, RemoteClaimPendingReason, "Claim %s/%s on provider %s is Pending: the provider binds it when it provisions a volume (with a WaitForFirstConsumer class there, once the pod runs there)",
			remote.Namespace, remote.Name, k.ProviderName)
	}
}

// homeVolume is the PersistentVolume that stands at home for claim's copy
// remote: bound to claim, of its class, size and modes, with the reclaim
// policy of its class, pinned by node affinity to the provider's virtual
// node, and made by Stretch's provisioner (so that the PersistentVolume
// controller leaves its deletion to Stretch). Its CSI source names a
// driver no home node runs: nothing mounts it at home.
func (k *Kubelet) homeVolume(claim, remote *corev1.PersistentVolumeClaim) (*corev1.PersistentVolume, error) {
	class := ptr.Deref(claim.Spec.StorageClassName, "")
	policy := corev1.PersistentVolumeReclaimDelete
	if sc, err := k.Objects.factory.Storage().V1().StorageClasses().Lister().Get(class); err == nil && sc.ReclaimPolicy != nil {
		policy = *sc.ReclaimPolicy
	}
	size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return nil, fmt.Errorf("claim %s/%s requests no storage", claim.Namespace, claim.Name)
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name: homeVolumeName(string(claim.UID)),
			Labels: map[string]string{
				wellknown.RemoteClusterIDLabel:   k.Peer.ClusterID,
				wellknown.RemoteClusterNameLabel: k.ProviderName,
			},
			Annotations: map[string]string{annProvisionedBy: wellknown.VolumeProvisioner},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    claim.Spec.VolumeMode,
			StorageClassName:              class,
			PersistentVolumeReclaimPolicy: policy,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: wellknown.RemoteClusterIDLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{k.Peer.ClusterID}}},
			}}}},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver:       wellknown.VolumeProvisioner,
				VolumeHandle: k.Peer.ClusterID + "/" + remote.Namespace + "/" + remote.Name,
			}},
		},
	}, nil
}

// homeVolumeHandler maps changes of home PersistentVolumes of this
// provider to their claims: a volume released or deleted may let the
// claim's copy go.
func (k *Kubelet) homeVolumeHandler() cache.ResourceEventHandler {
	enqueue := func(o any) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		pv, ok := o.(*corev1.PersistentVolume)
		if !ok || !ours(pv, k) || pv.Spec.ClaimRef == nil {
			return
		}
		k.objects.Add(objectKey{Kind: KindPersistentVolumeClaim, Namespace: pv.Spec.ClaimRef.Namespace, Name: pv.Spec.ClaimRef.Name})
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue}
}

// warnVolumesAtHome records on home pod p, once per pod and claim, a
// Warning event for each claim it mounts whose volume is at home (a class
// of another provisioner, or bound by hand) and of which the twin has no
// claim of that name: the remote pod waits on the provider until it has.
func (k *Kubelet) warnVolumesAtHome(p *corev1.Pod, t *twin) {
	r := claimReflector{}
	for _, name := range r.neededBy(p) {
		obj, err := k.homeObjects.get(KindPersistentVolumeClaim, p.Namespace, name)
		if err != nil || obj == nil || (r.reflected(obj) && r.reflectedBy(k, obj)) {
			continue
		}
		if remote, _ := t.objects.get(KindPersistentVolumeClaim, t.name, name); remote != nil {
			continue // the provider's admin made one: the pod uses it
		}
		claim := obj.(*corev1.PersistentVolumeClaim)
		if k.said.add(p.Namespace+"/"+p.Name, "volume-at-home/"+string(p.UID)+"/"+name) {
			k.recorder.Eventf(p, corev1.EventTypeWarning, VolumeNotOnProviderReason,
				"Claim %s/%s (storage class %q) has its volume in this cluster, which provider %s cannot reach: the remote pod waits there until twin %s holds a claim of that name. Use a claim of storage class %s (provisioned on the provider the pod runs on), or keep the pod at home",
				p.Namespace, name, ptr.Deref(claim.Spec.StorageClassName, ""), k.ProviderName, t.name, wellknown.StorageClassName)
		}
	}
}

// ensure claimReflector is a peeringReflector.
var _ peeringReflector = claimReflector{}
