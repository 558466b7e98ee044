package remotecluster

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

const (
	// ManagedLabelsAnnotation lists, comma-separated, the label keys of a
	// virtual node that Stretch set: a key that leaves the provider's or the
	// admin's labels is removed from the node, labels others add are kept.
	ManagedLabelsAnnotation = "peering.stretch.dev/managed-labels"

	// LeaseDurationSeconds is the duration of the virtual node's heartbeat
	// Lease, as a kubelet's.
	LeaseDurationSeconds = 40

	defaultOS   = "linux"
	defaultArch = "amd64"

	// nodeStatusRefresh is how often the Ready condition's heartbeat is
	// refreshed when nothing changed; the Lease is the frequent heartbeat.
	nodeStatusRefresh = 5 * time.Minute
)

// platform is the operating system and architecture a virtual node shows.
type platform struct{ os, arch string }

// platformOf returns the majority OS and architecture of the provider's
// usable nodes (ties go to the smaller name), or fallback when it has none.
func platformOf(nodes []corev1.Node, fallback platform) platform {
	os, arch := map[string]int{}, map[string]int{}
	for i := range nodes {
		if !usable(&nodes[i]) {
			continue
		}
		if v := nodes[i].Labels[corev1.LabelOSStable]; v != "" {
			os[v]++
		}
		if v := nodes[i].Labels[corev1.LabelArchStable]; v != "" {
			arch[v]++
		}
	}
	return platform{os: majority(os, fallback.os), arch: majority(arch, fallback.arch)}
}

func majority(counts map[string]int, fallback string) string {
	best, n := fallback, 0
	for _, v := range slices.Sorted(maps.Keys(counts)) {
		if counts[v] > n {
			best, n = v, counts[v]
		}
	}
	return best
}

// platformFromNode is what a virtual node shows now, for when the provider
// cannot be asked.
func platformFromNode(node *corev1.Node) platform {
	return platform{
		os:   cmp.Or(node.Labels[corev1.LabelOSStable], defaultOS),
		arch: cmp.Or(node.Labels[corev1.LabelArchStable], defaultArch),
	}
}

// desiredLabels returns the labels Stretch puts on the virtual node of rc:
// the provider's cluster labels, then the admin's spec.labels (which win),
// then the virtual-node labels (which nobody overrides). Labels that are not
// valid Kubernetes labels are left out and returned as invalid.
func desiredLabels(rc *peeringv1alpha1.RemoteCluster, providerLabels map[string]string, p platform) (labels map[string]string, invalid []string) {
	labels = map[string]string{}
	for _, set := range []map[string]string{providerLabels, rc.Spec.Labels} {
		for k, v := range set {
			if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
				invalid = append(invalid, k+"="+v)
				continue
			}
			labels[k] = v
		}
	}
	name := peeringv1alpha1.VirtualNodeName(rc.Name)
	maps.Copy(labels, map[string]string{
		peeringv1alpha1.VirtualNodeTypeLabel:   peeringv1alpha1.VirtualNodeTypeValue,
		peeringv1alpha1.RemoteClusterIDLabel:   rc.Spec.ClusterID,
		peeringv1alpha1.RemoteClusterNameLabel: rc.Name,
		corev1.LabelHostname:                   name,
		corev1.LabelOSStable:                   p.os,
		corev1.LabelArchStable:                 p.arch,
	})
	slices.Sort(invalid)
	return labels, invalid
}

// applyLabels sets the desired labels on node, removes the labels it set
// before that are no longer desired, and records what it set.
func applyLabels(node *corev1.Node, desired map[string]string) {
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	for _, k := range managedLabels(node) {
		if _, ok := desired[k]; !ok {
			delete(node.Labels, k)
		}
	}
	maps.Copy(node.Labels, desired)
	metav1.SetMetaDataAnnotation(&node.ObjectMeta, ManagedLabelsAnnotation, strings.Join(slices.Sorted(maps.Keys(desired)), ","))
}

func managedLabels(node *corev1.Node) []string {
	v := node.Annotations[ManagedLabelsAnnotation]
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// applyTaint puts the virtual-node taint on node, keeping others' taints.
func applyTaint(node *corev1.Node) {
	taint := corev1.Taint{Key: peeringv1alpha1.VirtualNodeTaintKey, Value: peeringv1alpha1.VirtualNodeTaintValue, Effect: corev1.TaintEffectNoExecute}
	taints := slices.DeleteFunc(slices.Clone(node.Spec.Taints), func(t corev1.Taint) bool {
		return t.Key == taint.Key && t != taint
	})
	if !slices.Contains(taints, taint) {
		taints = append(taints, taint)
	}
	node.Spec.Taints = taints
}

// kubeletEndpoint is where the API server reaches the kubelet API of the
// virtual node (logs, exec); a zero port means it is not served.
type kubeletEndpoint struct {
	address string
	port    int32
}

// applyNodeStatus sets what the virtual node reports: capacity, platform,
// addresses, kubelet endpoint and the Ready condition. The condition's heartbeat moves only when
// the condition changes or every nodeStatusRefresh, so that an unchanged
// node is not rewritten at every probe.
func applyNodeStatus(node *corev1.Node, capacity corev1.ResourceList, p platform, kubelet kubeletEndpoint, ready readiness, now time.Time) {
	s := &node.Status
	s.Capacity = capacity.DeepCopy()
	s.Allocatable = capacity.DeepCopy()
	s.NodeInfo.OperatingSystem = p.os
	s.NodeInfo.Architecture = p.arch
	// The API server reaches a kubelet at its first address in
	// --kubelet-preferred-address-types, Hostname by default: a virtual node
	// whose kubelet API is served has its InternalIP only, since its name
	// resolves nowhere.
	s.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: node.Name}}
	s.DaemonEndpoints.KubeletEndpoint.Port = 0
	if kubelet.port != 0 {
		s.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: kubelet.address}}
		s.DaemonEndpoints.KubeletEndpoint.Port = kubelet.port
	}

	want := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionStatus(ready.status), Reason: ready.reason, Message: ready.message}
	i := slices.IndexFunc(s.Conditions, func(c corev1.NodeCondition) bool { return c.Type == corev1.NodeReady })
	if i < 0 {
		s.Conditions = append(s.Conditions, corev1.NodeCondition{Type: corev1.NodeReady})
		i = len(s.Conditions) - 1
	}
	cur := &s.Conditions[i]
	if cur.Status != want.Status {
		cur.LastTransitionTime = metav1.NewTime(now)
	}
	if cur.Status != want.Status || cur.Reason != want.Reason || cur.Message != want.Message || now.Sub(cur.LastHeartbeatTime.Time) >= nodeStatusRefresh {
		cur.LastHeartbeatTime = metav1.NewTime(now)
	}
	cur.Status, cur.Reason, cur.Message = want.Status, want.Reason, want.Message
}
