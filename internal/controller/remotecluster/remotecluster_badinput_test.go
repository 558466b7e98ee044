package remotecluster_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/controller/remotecluster"
	"stretch.dev/stretch/internal/peering"
)

// TestMalformedKubeconfigSecrets: RemoteClusters the schema admits whose
// kubeconfig Secret cannot give a client. Each gets APIReachable False with
// a reason, and a message naming the Secret, the cause and the fix ('stretchctl
// peer'); the virtual node says the same; no peer is registered.
func TestMalformedKubeconfigSecrets(t *testing.T) {
	edit := func(change func(*clientcmdapi.Config)) []byte {
		cfg, err := clientcmd.Load(adminKubeconfig(t, us))
		if err != nil {
			t.Fatal(err)
		}
		change(cfg)
		data, err := clientcmd.Write(*cfg)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name string
		// data is the Secret's data; nil: no Secret.
		data   map[string][]byte
		mutate func(*peeringv1alpha1.RemoteCluster)
		reason string
		want   string
	}{
		{name: "kubeconfig under another key", data: map[string][]byte{"config": adminKubeconfig(t, us)},
			reason: remotecluster.ReasonKubeconfigInvalid, want: `key "kubeconfig" is missing or empty`},
		{name: "spec names a key the Secret lacks", data: map[string][]byte{peering.KubeconfigKey: adminKubeconfig(t, us)},
			mutate: func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.KubeconfigSecretRef.Key = "value" },
			reason: remotecluster.ReasonKubeconfigInvalid, want: `key "value" is missing or empty`},
		{name: "empty kubeconfig", data: map[string][]byte{peering.KubeconfigKey: {}},
			reason: remotecluster.ReasonKubeconfigInvalid, want: `key "kubeconfig" is missing or empty`},
		{name: "binary garbage", data: map[string][]byte{peering.KubeconfigKey: {0xff, 0x00, 0x9c, '{'}},
			reason: remotecluster.ReasonKubeconfigInvalid, want: "is not a usable kubeconfig"},
		{name: "no current context", data: map[string][]byte{peering.KubeconfigKey: edit(func(c *clientcmdapi.Config) { c.CurrentContext = "" })},
			reason: remotecluster.ReasonKubeconfigInvalid, want: "is not a usable kubeconfig"},
		{name: "current context that does not exist", data: map[string][]byte{peering.KubeconfigKey: edit(func(c *clientcmdapi.Config) { c.CurrentContext = "gone" })},
			reason: remotecluster.ReasonKubeconfigInvalid, want: "is not a usable kubeconfig"},
		{name: "context naming a missing cluster", data: map[string][]byte{peering.KubeconfigKey: edit(func(c *clientcmdapi.Config) {
			c.Contexts[c.CurrentContext].Cluster = "gone"
		})}, reason: remotecluster.ReasonKubeconfigInvalid, want: "is not a usable kubeconfig"},
		{name: "Secret in a namespace that does not exist",
			mutate: func(rc *peeringv1alpha1.RemoteCluster) { rc.Spec.KubeconfigSecretRef.Namespace = "no-such-namespace" },
			reason: remotecluster.ReasonKubeconfigSecretNotFound, want: "no-such-namespace/stretch-peer-provider-us, which holds the kubeconfig provider provider-us issued, does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newG(t)
			reg, _ := startController(t)
			if tt.data != nil {
				secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: peering.SecretName("provider-us")}, Data: tt.data}
				g.Expect(home.Client.Create(t.Context(), secret)).To(Succeed())
				t.Cleanup(func() {
					g.Expect(client.IgnoreNotFound(home.Client.Delete(context.Background(), secret))).To(Succeed())
				})
			}
			var mutate []func(*peeringv1alpha1.RemoteCluster)
			if tt.mutate != nil {
				mutate = append(mutate, tt.mutate)
			}
			rc := peer(t, "provider-us", usID.ID, nil, mutate...)
			g.Eventually(func(g Gomega) {
				c := condition(g, rc, peeringv1alpha1.APIReachableCondition)
				g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(c.Reason).To(Equal(tt.reason))
				g.Expect(c.Message).To(And(ContainSubstring("Secret "+rc.Spec.KubeconfigSecretRef.Namespace+"/stretch-peer-provider-us"),
					ContainSubstring(tt.want), ContainSubstring("re-run 'stretchctl peer' for provider provider-us")))
				ready := nodeReady(virtualNode(g, rc))
				g.Expect(ready.Status).To(Equal(corev1.ConditionFalse))
				g.Expect(ready.Reason).To(Equal(tt.reason))
			}).Should(Succeed())
			g.Expect(reg.ClusterIDs()).To(BeEmpty(), "no usable credentials, no peer")
		})
	}
}
