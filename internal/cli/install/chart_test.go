package install

import (
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestParseImage(t *testing.T) {
	digest := "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		ref                     string
		repository, tag, digest string
		wantErr                 string
	}{
		{ref: "stretch-controller-manager", repository: "stretch-controller-manager"},
		{ref: "registry.example.com/stretch/stretch-controller-manager:v0.2.0", repository: "registry.example.com/stretch/stretch-controller-manager", tag: "v0.2.0"},
		{ref: "127.0.0.1:5000/stretch/manager", repository: "127.0.0.1:5000/stretch/manager"},
		{ref: "127.0.0.1:5000/stretch/manager:dev", repository: "127.0.0.1:5000/stretch/manager", tag: "dev"},
		{ref: "r.example/m@" + digest, repository: "r.example/m", digest: digest},
		{ref: "r.example/m:v1@" + digest, repository: "r.example/m", tag: "v1", digest: digest},
		{ref: "r.example/m@sha256:abc", wantErr: "64 hex digits"},
		{ref: "r.example/m:", wantErr: "empty tag"},
		{ref: "Registry/Stretch", wantErr: "lower-case repository"},
		{ref: "", wantErr: "expected REPOSITORY[:TAG][@sha256:DIGEST]"},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			g := NewWithT(t)
			repo, tag, digest, err := ParseImage(tc.ref)
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect([]string{repo, tag, digest}).To(Equal([]string{tc.repository, tc.tag, tc.digest}))
		})
	}
}

// TestChartValues: the flags win over --set and --values, and an image in
// the values keeps the fields --image does not set.
func TestChartValues(t *testing.T) {
	g := NewWithT(t)
	values, err := chartValues(ChartOptions{
		Options: Options{ClusterName: "home", ClusterLabels: map[string]string{"region": "eu"}},
		Image:   "r.example/m:v2",
		Values: map[string]any{
			"clusterName":  "other",
			"replicaCount": 3,
			"image":        map[string]any{"repository": "x", "pullPolicy": "Always"},
		},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(values).To(Equal(map[string]any{
		"clusterName":  "home",
		"replicaCount": 3,
		"image":        map[string]any{"repository": "r.example/m", "tag": "v2", "digest": "", "pullPolicy": "Always"},
	}))
}

// TestChartValuesAPIServerURL: --api-server-url sets the value apiServerURL
// over --set; left out, the value given with --set (or before) stays.
func TestChartValuesAPIServerURL(t *testing.T) {
	tests := []struct {
		name   string
		flag   string
		values map[string]any
		want   any // nil: no apiServerURL value
	}{
		{name: "neither", want: nil},
		{name: "flag", flag: "https://api.home.example.com:6443", want: "https://api.home.example.com:6443"},
		{name: "flag over --set", flag: "https://api.home.example.com:6443", values: map[string]any{"apiServerURL": "https://old.example.com"}, want: "https://api.home.example.com:6443"},
		{name: "--set alone", values: map[string]any{"apiServerURL": "https://old.example.com"}, want: "https://old.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			values, err := chartValues(ChartOptions{Options: Options{ClusterName: "home"}, APIServerURL: tt.flag, Values: tt.values})
			g.Expect(err).NotTo(HaveOccurred())
			if tt.want == nil {
				g.Expect(values).NotTo(HaveKey("apiServerURL"))
				return
			}
			g.Expect(values).To(HaveKeyWithValue("apiServerURL", tt.want))
		})
	}
}

func TestRolloutProgress(t *testing.T) {
	deployment := func(generation, observed int64, replicas, updated, available int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: generation},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated, ReadyReplicas: available, AvailableReplicas: available},
		}
	}
	tests := []struct {
		name     string
		d        *appsv1.Deployment
		done     bool
		progress string
	}{
		{"new spec not seen", deployment(2, 1, 2, 2, 2), false, "waiting for the deployment controller to see the new spec"},
		{"starting", deployment(1, 1, 1, 1, 0), false, "1/2 replicas updated, 0 ready, 0 available"},
		{"an old replica left", deployment(2, 2, 3, 2, 2), false, "2/2 replicas updated, 2 ready, 2 available, 1 old replicas terminating"},
		{"rolled out", deployment(2, 2, 2, 2, 2), true, "2/2 replicas updated, 2 ready, 2 available"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done, progress := rolloutProgress(tc.d)
			NewWithT(t).Expect([]any{done, progress}).To(Equal([]any{tc.done, tc.progress}))
		})
	}
}

func TestMergeValues(t *testing.T) {
	g := NewWithT(t)
	base := map[string]any{"replicaCount": 3, "image": map[string]any{"repository": "r.example/m", "tag": "v1"}, "clusterLabels": map[string]any{"region": "eu"}}
	merged := mergeValues(base, map[string]any{"image": map[string]any{"tag": "v2"}, "logLevel": "debug"})
	g.Expect(merged).To(Equal(map[string]any{
		"replicaCount":  3,
		"image":         map[string]any{"repository": "r.example/m", "tag": "v2"},
		"clusterLabels": map[string]any{"region": "eu"},
		"logLevel":      "debug",
	}))
	g.Expect(base["image"]).To(HaveKeyWithValue("tag", "v1"), "the release's values are not changed")
	g.Expect(mergeValues(nil, map[string]any{"a": 1})).To(Equal(map[string]any{"a": 1}))
}
