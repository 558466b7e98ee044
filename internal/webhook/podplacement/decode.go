package podplacement

import (
	"fmt"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/json"
)

// placedPod is the part of a pod that placement reads and writes. The
// webhook decodes only this part and answers with patches of only these
// fields: decoding the whole pod through the scheme, encoding it again and
// diffing both documents cost the webhook three quarters of its CPU, which
// a burst of pod creations pays on every pod (docs/design.md §4.12).
type placedPod struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        struct {
		Name         string `json:"name,omitempty"`
		GenerateName string `json:"generateName,omitempty"`
		Namespace    string `json:"namespace,omitempty"`
	} `json:"metadata"`
	// Spec is nil when the object has none; placement then adds one.
	Spec *placedSpec `json:"spec"`
}

type placedSpec struct {
	RuntimeClassName *string             `json:"runtimeClassName,omitempty"`
	Tolerations      []corev1.Toleration `json:"tolerations,omitempty"`
	Affinity         *corev1.Affinity    `json:"affinity,omitempty"`
}

// decodePlaced reads the placed part of a v1 Pod sent for admission.
func decodePlaced(raw []byte) (*placedPod, error) {
	p := &placedPod{}
	// Case-sensitive, as the API server reads objects: "speC" is not the
	// spec, and the patch must apply to the fields the API server knows.
	if err := json.UnmarshalCaseSensitivePreserveInts(raw, p); err != nil {
		return nil, fmt.Errorf("the admitted object is not a JSON pod: %w", err)
	}
	if p.APIVersion != "v1" || p.Kind != "Pod" {
		return nil, fmt.Errorf("the admitted object is apiVersion %q kind %q, not a v1 Pod: the webhook configuration sends only pods", p.APIVersion, p.Kind)
	}
	return p, nil
}

// pod is the decoded part as a Pod, for placement.
func (p *placedPod) pod() *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Metadata.Name, GenerateName: p.Metadata.GenerateName, Namespace: p.Metadata.Namespace}}
	if p.Spec != nil {
		pod.Spec.RuntimeClassName, pod.Spec.Tolerations, pod.Spec.Affinity = p.Spec.RuntimeClassName, p.Spec.Tolerations, p.Spec.Affinity
	}
	return pod
}

// patch returns the JSON patch from the spec as decoded (before placement)
// to after: each changed field replaced whole ("add" replaces a member that
// exists), or the spec added when the object had none.
func (p *placedPod) patch(before, after *corev1.PodSpec) []jsonpatch.JsonPatchOperation {
	tolerations := !equality.Semantic.DeepEqual(before.Tolerations, after.Tolerations)
	affinity := !equality.Semantic.DeepEqual(before.Affinity, after.Affinity)
	if !tolerations && !affinity {
		return nil
	}
	if p.Spec == nil {
		return []jsonpatch.JsonPatchOperation{{Operation: "add", Path: "/spec", Value: placedSpec{Tolerations: after.Tolerations, Affinity: after.Affinity}}}
	}
	var ops []jsonpatch.JsonPatchOperation
	if tolerations {
		ops = append(ops, jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec/tolerations", Value: after.Tolerations})
	}
	if affinity {
		ops = append(ops, jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec/affinity", Value: after.Affinity})
	}
	return ops
}
