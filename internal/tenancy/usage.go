package tenancy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
)

// alwaysTracked are the resources a TenantPolicy's status reports whatever
// its limits name.
var alwaysTracked = []corev1.ResourceName{corev1.ResourcePods, corev1.ResourceCPU, corev1.ResourceMemory}

// Counts reports whether a pod counts against its home cluster's policy: as
// for a ResourceQuota, every pod that has not terminated (Succeeded or
// Failed) does, including one that is being deleted, which still holds what
// it requested until it is gone.
func Counts(pod *corev1.Pod) bool {
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// PodRequests is what one pod requests, counted as the scheduler and
// ResourceQuota count it: per resource, the larger of the sum of its
// containers (sidecars included) and its largest init container, or its
// pod-level requests when set, plus its overhead; during an in-place resize,
// the larger of what the spec asks and what the kubelet has allocated.
func PodRequests(pod *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{UseStatusResources: true})
}

// Usage is what pods use together: the sum of the requests of those that
// count (see Counts), and their number under "pods".
func Usage(pods []corev1.Pod) corev1.ResourceList {
	usage := corev1.ResourceList{}
	n := int64(0)
	for i := range pods {
		if !Counts(&pods[i]) {
			continue
		}
		n++
		for name, q := range PodRequests(&pods[i]) {
			sum := usage[name]
			sum.Add(q)
			usage[name] = sum
		}
	}
	usage[corev1.ResourcePods] = *resource.NewQuantity(n, resource.DecimalSI)
	return usage
}

// Used is what a TenantPolicy's status reports of usage: the resources its
// limits name, and pods, cpu and memory always; zero when nothing uses them.
func Used(usage, limits corev1.ResourceList) corev1.ResourceList {
	names := slices.Clone(alwaysTracked)
	for name := range limits {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	used := make(corev1.ResourceList, len(names))
	for _, name := range names {
		q, ok := usage[name]
		if !ok {
			format := resource.DecimalSI
			if name == corev1.ResourceMemory || name == corev1.ResourceEphemeralStorage {
				format = resource.BinarySI
			}
			q = *resource.NewQuantity(0, format)
		}
		used[name] = q
	}
	return used
}
