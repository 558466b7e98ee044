package webhook_test

import (
	"testing"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"stretch.dev/stretch/internal/webhook"
)

func TestEndpoints(t *testing.T) {
	inCluster := webhook.Endpoint{Service: types.NamespacedName{Namespace: "stretch-system", Name: "stretch-webhook"}}
	tests := []struct {
		name       string
		endpoint   webhook.Endpoint
		wantHosts  []string
		wantConfig admissionregistrationv1.WebhookClientConfig
		wantErr    string
	}{
		{name: "outside the cluster", endpoint: webhook.Endpoint{URL: "https://127.0.0.1:9443"}, wantHosts: []string{"127.0.0.1"},
			wantConfig: admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:9443/mutate-pod"), CABundle: []byte("ca")}},
		{name: "in the cluster", endpoint: inCluster, wantHosts: []string{"stretch-webhook.stretch-system.svc", "stretch-webhook.stretch-system.svc.cluster.local"},
			wantConfig: admissionregistrationv1.WebhookClientConfig{CABundle: []byte("ca"), Service: &admissionregistrationv1.ServiceReference{
				Namespace: "stretch-system", Name: "stretch-webhook", Path: ptr.To("/mutate-pod"), Port: ptr.To[int32](443)}}},
		{name: "plain http", endpoint: webhook.Endpoint{URL: "http://127.0.0.1:9443"}, wantErr: "not an https URL"},
		{name: "neither", endpoint: webhook.Endpoint{}, wantErr: "needs a URL or a Service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			hosts, err := tt.endpoint.Hosts()
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(hosts).To(Equal(tt.wantHosts))
			m, v := webhook.Configurations(tt.endpoint, []byte("ca"))
			g.Expect(m.Webhooks[0].ClientConfig).To(Equal(tt.wantConfig))
			g.Expect(*m.Webhooks[0].FailurePolicy).To(Equal(admissionregistrationv1.Fail))
			g.Expect(*m.Webhooks[0].TimeoutSeconds).To(BeNumerically("<=", 5))
			g.Expect(m.Webhooks[0].NamespaceSelector.MatchExpressions[0].Key).To(Equal("stretch.dev/scheduling-enabled"))
			g.Expect(v.Webhooks[0].ClientConfig.CABundle).To(Equal([]byte("ca")))
		})
	}
}
