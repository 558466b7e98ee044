package remotecluster

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilversion "k8s.io/apimachinery/pkg/util/version"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/version"
)

const (
	// LeaseDurationSeconds is the duration of the virtual node's heartbeat
	// Lease, as a kubelet's.
	LeaseDurationSeconds = 40

	defaultOS   = "linux"
	defaultArch = "amd64"

	// nodeStatusRefresh is how often the Ready condition's heartbeat is
	// refreshed when nothing changed; the Lease is the frequent heartbeat.
	nodeStatusRefresh = 5 * time.Minute
)

// platform is what a virtual node shows of the machines behind it: the
// operating system and architecture (labels and node info), and the OS
// image, kernel and container runtime versions (node info, which 'kubectl
// get nodes -o wide' prints).
type platform struct {
	os, arch                               string
	osImage, kernelVersion, runtimeVersion string
}

// platformOf returns, for each field, the most common value among the
// provider's usable nodes (ties go to the smaller value), or fallback's
// when none has one. The most common value, not "mixed": a provider mostly
// runs one node image, so it is where most pods land, and in the middle of
// a node upgrade it shows the side that has the most nodes.
func platformOf(nodes []corev1.Node, fallback platform) platform {
	os, arch, image, kernel, runtime := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	count := func(counts map[string]int, v string) {
		if v != "" {
			counts[v]++
		}
	}
	for i := range nodes {
		n := &nodes[i]
		if !usable(n) {
			continue
		}
		count(os, n.Labels[corev1.LabelOSStable])
		count(arch, n.Labels[corev1.LabelArchStable])
		count(image, n.Status.NodeInfo.OSImage)
		count(kernel, n.Status.NodeInfo.KernelVersion)
		count(runtime, n.Status.NodeInfo.ContainerRuntimeVersion)
	}
	return platform{
		os:             majority(os, fallback.os),
		arch:           majority(arch, fallback.arch),
		osImage:        majority(image, fallback.osImage),
		kernelVersion:  majority(kernel, fallback.kernelVersion),
		runtimeVersion: majority(runtime, fallback.runtimeVersion),
	}
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
	info := node.Status.NodeInfo
	return platform{
		os:             cmp.Or(node.Labels[corev1.LabelOSStable], defaultOS),
		arch:           cmp.Or(node.Labels[corev1.LabelArchStable], defaultArch),
		osImage:        info.OSImage,
		kernelVersion:  info.KernelVersion,
		runtimeVersion: info.ContainerRuntimeVersion,
	}
}

// KubeletVersion is the kubelet version a virtual node reports for the
// Stretch release stretchVersion: Stretch's own, marked as such, in a form
// that parses as a semantic version like a kubelet's, for the tools that
// parse it. A release keeps its number ("v0.3.1" gives "v0.3.1-stretch",
// "v0.4.0-rc.1" gives "v0.4.0-rc.1.stretch"); any other build ("dev", a
// commit such as "8e23b54-dirty") is v0.0.0 with the build as metadata
// ("v0.0.0-stretch+8e23b54-dirty").
func KubeletVersion(stretchVersion string) string {
	const mark = "stretch"
	if v, err := utilversion.ParseSemantic(stretchVersion); err == nil {
		pre := mark
		if v.PreRelease() != "" {
			pre = v.PreRelease() + "." + mark
		}
		s := fmt.Sprintf("v%d.%d.%d-%s", v.Major(), v.Minor(), v.Patch(), pre)
		if v.BuildMetadata() != "" {
			s += "+" + v.BuildMetadata()
		}
		return s
	}
	// Build metadata: dot-separated non-empty identifiers of [0-9A-Za-z-].
	var ids []string
	for id := range strings.SplitSeq(stretchVersion, ".") {
		id = strings.Map(func(r rune) rune {
			if r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				return r
			}
			return '-'
		}, id)
		if id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "v0.0.0-" + mark
	}
	return "v0.0.0-" + mark + "+" + strings.Join(ids, ".")
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
		wellknown.VirtualNodeTypeLabel:   wellknown.VirtualNodeTypeValue,
		wellknown.RemoteClusterIDLabel:   rc.Spec.ClusterID,
		wellknown.RemoteClusterNameLabel: rc.Name,
		corev1.LabelHostname:             name,
		corev1.LabelOSStable:             p.os,
		corev1.LabelArchStable:           p.arch,
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
	metav1.SetMetaDataAnnotation(&node.ObjectMeta, wellknown.VirtualNodeManagedLabelsAnnotation, strings.Join(slices.Sorted(maps.Keys(desired)), ","))
}

func managedLabels(node *corev1.Node) []string {
	v := node.Annotations[wellknown.VirtualNodeManagedLabelsAnnotation]
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// applyTaint puts the virtual-node taint on node, keeping others' taints.
func applyTaint(node *corev1.Node) {
	taint := corev1.Taint{Key: wellknown.VirtualNodeTaintKey, Value: wellknown.VirtualNodeTaintValue, Effect: corev1.TaintEffectNoExecute}
	taints := slices.DeleteFunc(slices.Clone(node.Spec.Taints), func(t corev1.Taint) bool {
		return t.Key == taint.Key && t != taint
	})
	if !slices.Contains(taints, taint) {
		taints = append(taints, taint)
	}
	node.Spec.Taints = taints
}

// applyMetricsPath names, on node, the path of its own resource metrics on
// the kubelet API, when that is served: every virtual node of a manager
// shares its address, and metrics-server would otherwise read all their
// pods from each (docs/design.md §4.24).
func applyMetricsPath(node *corev1.Node, served bool) {
	if !served {
		delete(node.Annotations, wellknown.ResourceMetricsPathAnnotation)
		return
	}
	metav1.SetMetaDataAnnotation(&node.ObjectMeta, wellknown.ResourceMetricsPathAnnotation, peeringv1alpha1.VirtualNodeMetricsPath(node.Name))
}

// kubeletEndpoint is where the API server reaches the kubelet API of the
// virtual node (logs, exec); a zero port means it is not served.
type kubeletEndpoint struct {
	address string
	port    int32
}

// applyNodeStatus sets what the virtual node reports: capacity, platform,
// kubelet version, addresses, kubelet endpoint and the Ready condition. The condition's heartbeat moves only when
// the condition changes or every nodeStatusRefresh, so that an unchanged
// node is not rewritten at every probe.
func applyNodeStatus(node *corev1.Node, capacity corev1.ResourceList, p platform, kubelet kubeletEndpoint, ready readiness, now time.Time) {
	s := &node.Status
	s.Capacity = capacity.DeepCopy()
	s.Allocatable = capacity.DeepCopy()
	s.NodeInfo.OperatingSystem = p.os
	s.NodeInfo.Architecture = p.arch
	s.NodeInfo.OSImage = p.osImage
	s.NodeInfo.KernelVersion = p.kernelVersion
	s.NodeInfo.ContainerRuntimeVersion = p.runtimeVersion
	// The "kubelet" of a virtual node is Stretch's virtual kubelet.
	s.NodeInfo.KubeletVersion = KubeletVersion(version.Version)
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
