package manager

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestWebhookOptions(t *testing.T) {
	tests := []struct {
		name                 string
		bind, url, service   string
		wantURL, wantService string
		wantErr              string
	}{
		{name: "disabled", bind: "0"},
		{name: "outside the cluster, URL from the bind address", bind: "127.0.0.1:9443", wantURL: "https://127.0.0.1:9443"},
		{name: "outside the cluster, explicit URL", bind: "0.0.0.0:9443", url: "https://10.0.0.5:9443/", wantURL: "https://10.0.0.5:9443"},
		{name: "in the cluster", bind: ":9443", service: "stretch-system/stretch-webhook", wantService: "stretch-system/stretch-webhook"},
		{name: "every address, no way to reach it", bind: ":9443", wantErr: "--webhook-url or --webhook-service"},
		{name: "bad service", bind: ":9443", service: "stretch-webhook", wantErr: "is not namespace/name"},
		{name: "bad bind address", bind: "9443", wantErr: "is not host:port"},
		{name: "bad URL", bind: "127.0.0.1:9443", url: "http://127.0.0.1:9443", wantErr: "not an https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			s, err := newWebhookServing(Options{WebhookBindAddress: tt.bind, WebhookURL: tt.url, WebhookService: tt.service})
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			if tt.bind == "0" {
				g.Expect(s).To(BeNil())
				return
			}
			g.Expect(s.Endpoint.URL).To(Equal(tt.wantURL))
			if tt.wantService != "" {
				g.Expect(s.Endpoint.Service.String()).To(Equal(tt.wantService))
			}
		})
	}
}
