package podplacement

import (
	"encoding/json"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"stretch.dev/stretch/internal/placement"
)

// The webhook decodes only what placement needs, and its patch, applied to
// the pod as sent, gives the pod placement made: the fields it changed, and
// every other field as it was.
func TestPlacedPodPatch(t *testing.T) {
	remote := placement.Policy{Strategy: "Remote"}
	tests := []struct {
		name, pod string
		policy    placement.Policy
		// want is the patched pod's spec (JSON); "" when no patch.
		want    string
		wantErr bool
	}{
		{name: "no spec gets one", pod: `{"apiVersion":"v1","kind":"Pod"}`, policy: remote,
			want: `{"tolerations":[{"key":"virtual-node.stretch.dev/not-allowed","operator":"Equal","value":"true","effect":"NoExecute"}],"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"stretch.dev/type","operator":"In","values":["virtual-node"]}]}]}}}}`},
		{name: "other fields kept", pod: `{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","image":"b"}],"affinity":{"podAffinity":{}}}}`, policy: remote,
			want: `{"containers":[{"name":"a","image":"b"}],"tolerations":[{"key":"virtual-node.stretch.dev/not-allowed","operator":"Equal","value":"true","effect":"NoExecute"}],"affinity":{"podAffinity":{},"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"stretch.dev/type","operator":"In","values":["virtual-node"]}]}]}}}}`},
		{name: "only the affinity when the toleration is there", pod: `{"apiVersion":"v1","kind":"Pod","spec":{"tolerations":[{"operator":"Exists"}]}}`, policy: remote,
			want: `{"tolerations":[{"operator":"Exists"}],"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"stretch.dev/type","operator":"In","values":["virtual-node"]}]}]}}}}`},
		{name: "nothing to change", pod: `{"apiVersion":"v1","kind":"Pod","spec":{"containers":[]}}`, policy: placement.Policy{Strategy: "Local"}},
		{name: "not a pod", pod: `{"apiVersion":"v1","kind":"ConfigMap"}`, wantErr: true},
		{name: "no kind", pod: `{}`, wantErr: true},
		{name: "not JSON", pod: "apiVersion: v1\nkind: Pod\n", wantErr: true},
		{name: "spec not an object", pod: `{"apiVersion":"v1","kind":"Pod","spec":"x"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			in, err := decodePlaced([]byte(tt.pod))
			if tt.wantErr {
				g.Expect(err).To(HaveOccurred())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			pod := in.pod()
			before := pod.Spec.DeepCopy()
			placement.Apply(pod, tt.policy)
			ops := in.patch(before, &pod.Spec)
			if tt.want == "" {
				g.Expect(ops).To(BeEmpty())
				return
			}
			raw, err := json.Marshal(ops)
			g.Expect(err).NotTo(HaveOccurred())
			p, err := jsonpatch.DecodePatch(raw)
			g.Expect(err).NotTo(HaveOccurred())
			out, err := p.Apply([]byte(tt.pod))
			g.Expect(err).NotTo(HaveOccurred())
			var got struct{ Spec corev1.PodSpec }
			var want corev1.PodSpec
			g.Expect(json.Unmarshal(out, &got)).To(Succeed())
			g.Expect(json.Unmarshal([]byte(tt.want), &want)).To(Succeed())
			g.Expect(got.Spec).To(Equal(want))
		})
	}
}
