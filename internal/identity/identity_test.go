package identity

import (
	"errors"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
)

func TestParseLabels(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{in: "", want: map[string]string{}},
		{in: "region=eu", want: map[string]string{"region": "eu"}},
		{in: "region=eu, provider=aws", want: map[string]string{"region": "eu", "provider": "aws"}},
		{in: "topology.kubernetes.io/zone=eu-1a", want: map[string]string{"topology.kubernetes.io/zone": "eu-1a"}},
		{in: "empty=", want: map[string]string{"empty": ""}},
		{in: "region", wantErr: "not of the form key=value"},
		{in: "=eu", wantErr: "not of the form key=value"},
		{in: "bad key=eu", wantErr: `key "bad key" is not valid`},
		{in: "region=not valid", wantErr: `value "not valid" is not valid`},
		{in: "region=" + strings.Repeat("a", 64), wantErr: "is not valid"},
		{in: "region=eu,region=us", wantErr: "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseLabels(tt.in)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
			g.Expect(ParseLabels(FormatLabels(got))).To(Equal(tt.want))
		})
	}
}

func TestValidateClusterName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{name: "provider-eu"},
		{name: strings.Repeat("a", 55)},
		{name: "", wantErr: "pass --cluster-name"},
		{name: "Provider", wantErr: "not valid"},
		{name: "a.b", wantErr: "not valid"},
		{name: strings.Repeat("a", 56), wantErr: "at most 55 fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := ValidateClusterName(tt.name)
			if tt.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
			} else {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
			}
		})
	}
}

func TestValidateClusterID(t *testing.T) {
	g := NewWithT(t)
	g.Expect(ValidateClusterID("0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a")).To(Succeed())
	g.Expect(ValidateClusterID("0B8E9A5C-3D1F-4C2E-9A7B-5F6D4E3C2B1A")).NotTo(Succeed())
	g.Expect(ValidateClusterID("{0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a}")).NotTo(Succeed())
	g.Expect(ValidateClusterID("")).NotTo(Succeed())
}

func TestResolve(t *testing.T) {
	g := NewWithT(t)
	labels := map[string]string{"region": "eu"}

	fresh, err := Resolve(nil, "home", labels)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ValidateClusterID(fresh.ID)).To(Succeed())
	g.Expect(fresh.Labels).To(Equal(labels))
	labels["region"] = "changed"
	g.Expect(fresh.Labels).To(HaveKeyWithValue("region", "eu"), "the identity keeps its own copy of the labels")

	// A re-install keeps the ID and takes the new labels.
	again, err := Resolve(fresh.ConfigMap(), "home", map[string]string{"region": "us"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again.ID).To(Equal(fresh.ID))
	g.Expect(again.Labels).To(Equal(map[string]string{"region": "us"}))

	_, err = Resolve(fresh.ConfigMap(), "other", nil)
	g.Expect(err).To(MatchError(ContainSubstring(`already installed as "home"`)))
	var mismatch *NameMismatchError
	g.Expect(errors.As(err, &mismatch)).To(BeTrue())
	g.Expect(mismatch.Existing.ID).To(Equal(fresh.ID))
	g.Expect(mismatch.Wanted).To(Equal("other"))

	broken := fresh.ConfigMap()
	broken.Data[clusterIDKey] = "not-a-uuid"
	_, err = Resolve(broken, "home", nil)
	g.Expect(err).To(MatchError(ContainSubstring("not a lower-case UUID")))
}

func TestConfigMapRoundTrip(t *testing.T) {
	g := NewWithT(t)
	id := Identity{ID: "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a", Name: "provider-eu", Labels: map[string]string{"region": "eu", "stretch.dev/tier": "gold"}}
	got, err := FromConfigMap(id.ConfigMap())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(id))

	_, err = FromConfigMap(&corev1.ConfigMap{Data: map[string]string{clusterIDKey: id.ID, clusterLabelsKey: "- not a map"}})
	g.Expect(err).To(MatchError(ContainSubstring("not a map of labels")))
}
