package kwok

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeOSImage is the OS image the Nodes of NewNode report. kwok fills in
// the rest of their node info (kubelet, kernel and container runtime
// versions: "kwok-<its version>") but leaves the OS image empty.
const NodeOSImage = "kwok simulated node"

// resourceMetricsPathAnnotation tells metrics-server where a node serves
// its resource metrics, instead of the kubelet's /metrics/resource: one kwok
// controller serves every node of a cluster, on one address, under a path
// that names the node (kwokctl's default Metric).
const resourceMetricsPathAnnotation = "metrics.k8s.io/resource-metrics-path"

// NewNode returns a Node that the kwok controller of a Cluster
// manages: annotated NodeAnnotation, labelled like a Linux node, 32 CPUs,
// 256Gi of memory and 110 pods, no taints, OS image NodeOSImage. Its
// resource metrics are found where kwok serves them (Options.MetricsServer).
func NewNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				NodeAnnotation:                NodeAnnotationValue,
				resourceMetricsPathAnnotation: "/metrics/nodes/" + name + "/metrics/resource",
			},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			NodeInfo:    corev1.NodeSystemInfo{OSImage: NodeOSImage},
		},
	}
}

// NodeReady reports whether node has the condition Ready=True.
func NodeReady(node *corev1.Node) bool {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
