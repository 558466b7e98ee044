package offloading

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// syncSchedulingLabel keeps the home namespace's scheduling label: present
// while pods may go to providers (strategy Remote or LocalAndRemote), absent
// with Local and from the start of an unoffload, so that the pod webhook
// leaves new pods alone.
func (r *Reconciler) syncSchedulingLabel(ctx context.Context, s *scope) error {
	off := s.off
	want := !s.deleting() && off.Spec.PodOffloadingStrategy != offloadingv1alpha1.LocalStrategy
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: off.Namespace}, ns); err != nil {
		return fmt.Errorf("reading namespace %s: %w", off.Namespace, err)
	}
	if _, has := ns.Labels[wellknown.SchedulingEnabledLabel]; has == want && (!want || ns.Labels[wellknown.SchedulingEnabledLabel] == "true") {
		return nil
	}
	patch := client.MergeFrom(ns.DeepCopy())
	if want {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[wellknown.SchedulingEnabledLabel] = "true"
	} else {
		delete(ns.Labels, wellknown.SchedulingEnabledLabel)
	}
	if err := r.Client.Patch(ctx, ns, patch); err != nil {
		return fmt.Errorf("labelling namespace %s %s=%t: %w", off.Namespace, wellknown.SchedulingEnabledLabel, want, client.IgnoreNotFound(err))
	}
	return nil
}

// deletePodsOnVirtualNodes deletes the namespace's pods bound to virtual
// nodes, so that their controllers recreate them at home. It does not wait
// for them: the virtual kubelet ends them on the providers, and the twins
// go with everything in them anyway.
func (r *Reconciler) deletePodsOnVirtualNodes(ctx context.Context, s *scope) error {
	namespace := s.off.Namespace
	nodes := &corev1.NodeList{}
	if err := r.Client.List(ctx, nodes, client.MatchingLabels{wellknown.VirtualNodeTypeLabel: wellknown.VirtualNodeTypeValue}); err != nil {
		return fmt.Errorf("listing virtual nodes: %w", err)
	}
	if len(nodes.Items) == 0 {
		return nil
	}
	virtual := make(map[string]bool, len(nodes.Items))
	for _, n := range nodes.Items {
		virtual[n.Name] = true
	}
	// Pods are not cached by this controller: they are read only here.
	pods := &corev1.PodList{}
	if err := r.APIReader.List(ctx, pods, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("listing the pods of namespace %s: %w", namespace, err)
	}
	deleted := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !virtual[pod.Spec.NodeName] || !pod.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.Client.Delete(ctx, pod, client.Preconditions{UID: &pod.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting pod %s/%s from virtual node %s: %w", namespace, pod.Name, pod.Spec.NodeName, err)
		}
		deleted++
	}
	if deleted > 0 {
		ctrl.LoggerFrom(ctx).Info("deleted pods on virtual nodes", "namespace", namespace, "count", deleted)
	}
	return nil
}

// isRemoteVolume reports whether o is a home PersistentVolume that stands
// for a claim on a provider (design §4.23).
func isRemoteVolume(o client.Object) bool {
	return o.GetAnnotations()[provisionedByAnnotation] == wellknown.VolumeProvisioner
}

// provisionedByAnnotation names the provisioner of a PersistentVolume.
const provisionedByAnnotation = "pv.kubernetes.io/provisioned-by"

// offloadingOfClaim maps a home PersistentVolume to the NamespaceOffloading
// of its claim's namespace.
func offloadingOfClaim(_ context.Context, o client.Object) []reconcile.Request {
	pv, ok := o.(*corev1.PersistentVolume)
	if !ok || pv.Spec.ClaimRef == nil {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: pv.Spec.ClaimRef.Namespace, Name: wellknown.NamespaceOffloadingName}}}
}

// findRemoteVolumes finds, for each provider, the claims of the namespace
// whose copies it holds: the home PersistentVolumes that stand for them
// (of Stretch's provisioner, labelled with the provider's cluster ID, not
// being deleted). Unless the unoffload is forced, their providers keep
// the twin: deleting it would delete the claims' data without the user's
// own delete.
func (r *Reconciler) findRemoteVolumes(ctx context.Context, s *scope) error {
	_, force := s.off.Annotations[wellknown.ForceUnoffloadAnnotation]
	pvs := &corev1.PersistentVolumeList{}
	if err := r.Client.List(ctx, pvs); err != nil {
		return fmt.Errorf("listing PersistentVolumes: %w", err)
	}
	byCluster := map[string][]string{}
	for _, pv := range pvs.Items {
		ref := pv.Spec.ClaimRef
		if !isRemoteVolume(&pv) || ref == nil || ref.Namespace != s.off.Namespace || !pv.DeletionTimestamp.IsZero() {
			continue
		}
		id := pv.Labels[wellknown.RemoteClusterIDLabel]
		held := fmt.Sprintf("%s (PersistentVolume %s", ref.Name, pv.Name)
		if pv.Status.Phase != "" {
			held += ", " + string(pv.Status.Phase)
		}
		byCluster[id] = append(byCluster[id], held+")")
	}
	for i := range s.states {
		st := &s.states[i]
		st.volumes = byCluster[st.clusterID]
		slices.Sort(st.volumes)
		st.keepTwin = len(st.volumes) > 0 && !force
	}
	return nil
}

// warnForcedVolumes records, for each provider whose twin request a forced
// unoffload just withdrew while it held copies of the namespace's claims,
// a Warning event that says their data goes with the twin: never silently.
func (r *Reconciler) warnForcedVolumes(ctx context.Context, s *scope) error {
	for _, st := range s.states {
		if len(st.volumes) == 0 || st.keepTwin || st.err != nil || st.request == nil || !st.request.DeletionTimestamp.IsZero() {
			continue
		}
		r.Recorder.Eventf(s.off, nil, corev1.EventTypeWarning, "ForcedUnoffload", "Unoffload", "%s",
			note(fmt.Sprintf("forced unoffload of namespace %s: provider %s deletes twin namespace %s with the copies of claims %s, and their data",
				s.off.Namespace, st.name, s.twin, strings.Join(st.volumes, ", "))))
	}
	return nil
}
