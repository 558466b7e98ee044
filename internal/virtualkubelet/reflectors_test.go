package virtualkubelet

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestImmutable(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"k": "v"}, Immutable: ptr.To(true)}
	cmLabelled := cm.DeepCopy()
	cmLabelled.Labels = map[string]string{"team": "a"}
	cmData := cm.DeepCopy()
	cmData.Data["k"] = "w"
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"k": []byte("v")}}
	secretTLS := secret.DeepCopy()
	secretTLS.Type = corev1.SecretTypeTLS
	secretImmutable := secret.DeepCopy()
	secretImmutable.Immutable = ptr.To(true)
	secretData := secretImmutable.DeepCopy()
	secretData.Data["k"] = []byte("w")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}
	svcHeadless := svc.DeepCopy()
	svcHeadless.Spec.ClusterIP = corev1.ClusterIPNone
	svcPorts := svc.DeepCopy()
	svcPorts.Spec.Ports = []corev1.ServicePort{{Port: 80}}

	tests := []struct {
		name      string
		cur, want client.Object
		immutable bool
	}{
		{"an immutable ConfigMap's metadata changes in place", cm, cmLabelled, false},
		{"an immutable ConfigMap's data does not", cm, cmData, true},
		{"a mutable Secret changes in place", secret, secretData, false},
		{"an immutable Secret's data does not", secretImmutable, secretData, true},
		{"a Secret's type does not", secret, secretTLS, true},
		{"a Service's ports change in place", svc, svcPorts, false},
		{"a Service does not become headless in place", svc, svcHeadless, true},
		{"nor stops being headless", svcHeadless, svc, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(reflectorOf(tt.cur).immutable(tt.cur, tt.want)).To(Equal(tt.immutable))
		})
	}
}
