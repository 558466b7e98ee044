package peering

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestParseAPIServerURL(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "https://203.0.113.10:6443", want: "https://203.0.113.10:6443"},
		{in: "https://api.provider-eu.example.com", want: "https://api.provider-eu.example.com"},
		{in: "https://api.provider-eu.example.com/", want: "https://api.provider-eu.example.com"},
		{in: "https://[2001:db8::1]:6443", want: "https://[2001:db8::1]:6443"},
		{in: "HTTPS://Example.com:443", want: "https://Example.com:443"},
		{in: "http://203.0.113.10:6443", wantErr: "the scheme must be https"},
		{in: "203.0.113.10:6443", wantErr: "is not"},
		{in: "api.example.com", wantErr: "the scheme must be https"},
		{in: "", wantErr: "the scheme must be https"},
		{in: "https://", wantErr: "it has no host"},
		{in: "https://:6443", wantErr: "it has no host"},
		{in: "https:api.example.com", wantErr: "it has no host"},
		{in: "https://admin:secret@api.example.com", wantErr: "must not hold a user"},
		{in: "https://api.example.com/k8s", wantErr: "must not have a path"},
		{in: "https://api.example.com?x=1", wantErr: "must not have a path"},
		{in: "https://api.example.com?", wantErr: "must not have a path"},
		{in: "https://api.example.com#top", wantErr: "must not have a path"},
		{in: "https://api.example.com:0", wantErr: `port "0" is not a number from 1 to 65535`},
		{in: "https://api.example.com:65536", wantErr: `port "65536"`},
		{in: "https://api.example.com:", wantErr: "the port after ':' is empty"},
		{in: "https://api.example.com:https", wantErr: "is not"},
		{in: "https://exa mple.com", wantErr: "is not"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseAPIServerURL(tt.in)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				g.Expect(err).To(MatchError(ContainSubstring("https://HOST[:PORT]")), "the error shows the expected form")
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
			g.Expect(validateServer(got)).To(Succeed(), "what is accepted here is a valid provider.server")
		})
	}
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		server string
		want   bool
	}{
		{"https://127.0.0.1:6443", true},
		{"https://127.1.2.3", true},
		{"127.0.0.1:40123", true}, // a rest.Config's Host may lack the scheme
		{"https://[::1]:6443", true},
		{"https://localhost:6443", true},
		{"https://LOCALHOST.", true},
		{"https://api.localhost", true},
		{"https://[::ffff:127.0.0.1]:6443", true},
		{"https://128.0.0.1:6443", false},
		{"https://203.0.113.10:6443", false},
		{"https://[2001:db8::1]:6443", false},
		{"https://localhost.example.com", false},
		{"https://mylocalhost", false},
		{"https://0.0.0.0:6443", false},
		{"https://api.provider-eu.example.com", false},
		{"::not a url", false},
	}
	for _, tt := range tests {
		t.Run(tt.server, func(t *testing.T) {
			NewWithT(t).Expect(IsLoopback(tt.server)).To(Equal(tt.want))
		})
	}
}
