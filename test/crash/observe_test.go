package crash

import (
	"fmt"
	"strings"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
)

// snapshot is what home and the provider hold for one home namespace.
type snapshot struct {
	// off is the NamespaceOffloading, nil once gone.
	off *offloadingv1alpha1.NamespaceOffloading
	// requests are the RemoteNamespaces for the namespace on the provider,
	// twins the provider namespaces labelled with it.
	requests []peeringv1alpha1.RemoteNamespace
	twins    []corev1.Namespace
	homePods []corev1.Pod
	// remote are the remote pods of the namespace, in every provider
	// namespace, by the UID of their home pod.
	remote map[types.UID][]corev1.Pod
	// configMap is the reflected ConfigMap "settings" in the twin, nil
	// when absent.
	configMap *corev1.ConfigMap
}

func (s *stretch) twinName(ns string) string { return ns + "-" + s.homeID }

// observe reads a snapshot of namespace ns. Called in an Eventually, it
// stops it with a failure at once if the snapshot holds a duplicate: two
// requests, two twins or two remote pods of one home pod must never exist,
// not even for a moment, and none is made twice (s.remember).
func (s *stretch) observe(g Gomega, ns string) snapshot {
	var snap snapshot
	off := &offloadingv1alpha1.NamespaceOffloading{}
	switch err := s.home.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: wellknown.NamespaceOffloadingName}, off); {
	case apierrors.IsNotFound(err):
	default:
		g.Expect(err).NotTo(HaveOccurred())
		snap.off = off
	}
	rns := &peeringv1alpha1.RemoteNamespaceList{}
	g.Expect(s.provider.Client.List(ctx, rns, client.InNamespace(peeringv1alpha1.TenantNamespace(s.homeID)))).To(Succeed())
	for _, r := range rns.Items {
		if r.Spec.HomeNamespace == ns {
			snap.requests = append(snap.requests, r)
		}
	}
	nss := &corev1.NamespaceList{}
	g.Expect(s.provider.Client.List(ctx, nss, client.MatchingLabels{wellknown.OriginNamespaceLabel: ns})).To(Succeed())
	snap.twins = nss.Items
	pods := &corev1.PodList{}
	g.Expect(s.home.Client.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
	snap.homePods = pods.Items
	remote := &corev1.PodList{}
	g.Expect(s.provider.Client.List(ctx, remote, client.MatchingLabels{wellknown.OriginNamespaceLabel: ns})).To(Succeed())
	snap.remote = map[types.UID][]corev1.Pod{}
	for _, p := range remote.Items {
		uid := types.UID(p.Annotations[wellknown.OriginPodUIDAnnotation])
		snap.remote[uid] = append(snap.remote[uid], p)
	}
	cm := &corev1.ConfigMap{}
	switch err := s.provider.Client.Get(ctx, client.ObjectKey{Namespace: s.twinName(ns), Name: "settings"}, cm); {
	case apierrors.IsNotFound(err):
	default:
		g.Expect(err).NotTo(HaveOccurred())
		snap.configMap = cm
	}

	dups := s.remember.madeTwice(snap)
	if len(snap.requests) > 1 {
		dups = append(dups, fmt.Sprintf("%d RemoteNamespaces for namespace %s", len(snap.requests), ns))
	}
	if len(snap.twins) > 1 {
		dups = append(dups, fmt.Sprintf("%d twins of namespace %s", len(snap.twins), ns))
	}
	for uid, pods := range snap.remote {
		if len(pods) > 1 {
			dups = append(dups, fmt.Sprintf("%d remote pods of home pod %s (%s)", len(pods), pods[0].Name, uid))
		}
	}
	if len(dups) > 0 {
		StopTrying("duplicates on the provider: " + strings.Join(dups, "; ")).Now()
	}
	return snap
}

// remembered are the UIDs of what was observed on the provider for one
// namespace: what is made again gets another UID.
type remembered struct {
	request, twin types.UID
	// remote are the remote pods' UIDs by the UID of their home pod.
	remote map[types.UID]types.UID
}

// madeTwice remembers the UIDs of snap and names what has another UID than
// before: made twice.
func (r *remembered) madeTwice(snap snapshot) []string {
	var twice []string
	once := func(what string, seen *types.UID, uid types.UID) {
		if *seen == "" {
			*seen = uid
		} else if *seen != uid {
			twice = append(twice, what+" made twice")
		}
	}
	if len(snap.requests) == 1 {
		once("RemoteNamespace "+snap.requests[0].Name, &r.request, snap.requests[0].UID)
	}
	if len(snap.twins) == 1 {
		once("twin "+snap.twins[0].Name, &r.twin, snap.twins[0].UID)
	}
	if r.remote == nil {
		r.remote = map[types.UID]types.UID{}
	}
	for home, pods := range snap.remote {
		if len(pods) == 1 {
			seen := r.remote[home]
			once("remote pod "+pods[0].Name, &seen, pods[0].UID)
			r.remote[home] = seen
		}
	}
	return twice
}

// remoteCount is the number of remote pods.
func (snap snapshot) remoteCount() int {
	n := 0
	for _, pods := range snap.remote {
		n += len(pods)
	}
	return n
}

// livePods are the home pods not being deleted, on node (any node when
// node is "").
func (snap snapshot) livePods(node string) []corev1.Pod {
	var live []corev1.Pod
	for _, p := range snap.homePods {
		if p.DeletionTimestamp == nil && (node == "" || p.Spec.NodeName == node) {
			live = append(live, p)
		}
	}
	return live
}

// String is a short account of the snapshot, for the log of kills.
func (snap snapshot) String() string {
	phase := "gone"
	if snap.off != nil {
		phase = string(snap.off.Status.OffloadingPhase)
		if snap.off.DeletionTimestamp != nil {
			phase += " (deleting)"
		}
	}
	terminating := 0
	for _, p := range snap.homePods {
		if p.DeletionTimestamp != nil {
			terminating++
		}
	}
	ready := 0
	for _, p := range snap.homePods {
		if podReady(&p) {
			ready++
		}
	}
	twin := "none"
	if len(snap.twins) > 0 {
		twin = "Active"
		if snap.twins[0].DeletionTimestamp != nil {
			twin = "Terminating"
		}
	}
	request := "none"
	if len(snap.requests) > 0 {
		request = string(snap.requests[0].Status.Phase)
		if snap.requests[0].DeletionTimestamp != nil {
			request += " (deleting)"
		}
	}
	return fmt.Sprintf("offloading %s, request %s, twin %s, ConfigMap reflected %t, home pods %d (%d ready, %d terminating), remote pods %d",
		phase, request, twin, snap.configMap != nil, len(snap.homePods), ready, terminating, snap.remoteCount())
}

// expectOneRemotePodEach checks that every live home pod on the virtual
// node has exactly one remote pod, that there are n of them, and that no
// other remote pod exists (no orphan).
func (s *stretch) expectOneRemotePodEach(g Gomega, snap snapshot, n int) {
	vnode := peeringv1alpha1.VirtualNodeName(providerName)
	live := snap.livePods(vnode)
	g.Expect(live).To(HaveLen(n), "live home pods on %s", vnode)
	g.Expect(snap.homePods).To(HaveLen(n), "home pods (none left Terminating)")
	for _, p := range live {
		g.Expect(snap.remote[p.UID]).To(HaveLen(1), "remote pods of home pod %s", p.Name)
		g.Expect(podReady(&p)).To(BeTrue(), "home pod %s Ready", p.Name)
	}
	g.Expect(snap.remoteCount()).To(Equal(n), "remote pods: one per home pod, no orphan")
}
