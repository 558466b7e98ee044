package factory

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: p
  cluster:
    server: https://127.0.0.1:1
contexts:
- name: p
  context:
    cluster: p
    user: u
current-context: p
users:
- name: u
  user:
    token: t
`

// TestIssuedClient: the kubeconfig is read under the key given; an error
// names the Secret and the key.
func TestIssuedClient(t *testing.T) {
	tests := []struct {
		name    string
		data    map[string][]byte
		key     string
		wantErr string
	}{
		{name: "the default key", data: map[string][]byte{"kubeconfig": []byte(kubeconfig)}, key: "kubeconfig"},
		{name: "a key of its own", data: map[string][]byte{"config": []byte(kubeconfig)}, key: "config"},
		{name: "nothing under the key", data: map[string][]byte{"config": []byte(kubeconfig)}, key: "kubeconfig",
			wantErr: "Secret stretch-system/stretch-peer-p holds no usable kubeconfig under key kubeconfig"},
		{name: "not a kubeconfig", data: map[string][]byte{"kubeconfig": []byte("{")}, key: "kubeconfig",
			wantErr: "Secret stretch-system/stretch-peer-p holds no usable kubeconfig under key kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "stretch-system", Name: "stretch-peer-p"}, Data: tt.data}
			c, err := IssuedClient(secret, tt.key)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(c).NotTo(BeNil())
		})
	}
}
