package manager_test

import (
	"flag"
	"io"
	"testing"

	. "github.com/onsi/gomega"

	"stretch.dev/stretch/internal/manager"
)

func TestClusterIdentityFlags(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantName   string
		wantLabels map[string]string
		wantErr    string // from parsing or Validate: a usage error either way
	}{
		{name: "neither: identity left to stretchctl install", args: nil},
		{name: "name", args: []string{"--cluster-name", "home"}, wantName: "home"},
		{name: "name and labels", args: []string{"--cluster-name", "home", "--cluster-labels", "region=eu,provider=aws"},
			wantName: "home", wantLabels: map[string]string{"region": "eu", "provider": "aws"}},
		{name: "labels without name", args: []string{"--cluster-labels", "region=eu"},
			wantErr: "--cluster-labels region=eu is given without --cluster-name"},
		{name: "bad name", args: []string{"--cluster-name", "Home"}, wantErr: `--cluster-name: cluster name "Home" is not valid`},
		{name: "bad labels", args: []string{"--cluster-name", "home", "--cluster-labels", "region"}, wantErr: "not of the form key=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			opts, err := parseOptions(tt.args)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(opts.ClusterName).To(Equal(tt.wantName))
			if tt.wantLabels == nil {
				g.Expect(opts.ClusterLabels).To(BeEmpty())
			} else {
				g.Expect(opts.ClusterLabels).To(Equal(tt.wantLabels))
			}
		})
	}
}

func TestAPIServerURLFlag(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr []string // from Validate: the flag, the value, the cause and the fix
	}{
		{name: "not given: unknown", args: nil, want: ""},
		{name: "host and port", args: []string{"--api-server-url", "https://api.home.example.com:6443"}, want: "https://api.home.example.com:6443"},
		{name: "host only", args: []string{"--api-server-url=https://203.0.113.10"}, want: "https://203.0.113.10"},
		{name: "trailing slash", args: []string{"--api-server-url", "https://203.0.113.10:6443/"}, want: "https://203.0.113.10:6443/"},
		{name: "with a cluster name", args: []string{"--cluster-name", "home", "--api-server-url", "https://[2001:db8::1]:6443"}, want: "https://[2001:db8::1]:6443"},
		{name: "http", args: []string{"--api-server-url", "http://api.home.example.com"},
			wantErr: []string{"--api-server-url", `"http://api.home.example.com"`, "the scheme must be https", "https://HOST[:PORT]", "apiServerURL"}},
		{name: "no scheme", args: []string{"--api-server-url", "api.home.example.com:6443"},
			wantErr: []string{"--api-server-url", `"api.home.example.com:6443"`, "https://HOST[:PORT]"}},
		{name: "a path", args: []string{"--api-server-url", "https://api.home.example.com/k8s"},
			wantErr: []string{"--api-server-url", `"https://api.home.example.com/k8s"`, "must not have a path"}},
		{name: "a query", args: []string{"--api-server-url", "https://api.home.example.com?x=1"},
			wantErr: []string{"--api-server-url", "must not have a path, query"}},
		{name: "bad port", args: []string{"--api-server-url", "https://api.home.example.com:70000"},
			wantErr: []string{"--api-server-url", `port "70000"`}},
		{name: "checked with a cluster name too", args: []string{"--cluster-name", "home", "--api-server-url", "https://"},
			wantErr: []string{"--api-server-url", "it has no host"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			opts, err := parseOptions(tt.args)
			if len(tt.wantErr) > 0 {
				g.Expect(err).To(HaveOccurred())
				for _, w := range tt.wantErr {
					g.Expect(err.Error()).To(ContainSubstring(w))
				}
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(opts.APIServerURL).To(Equal(tt.want))
		})
	}
}

// parseOptions parses the manager's flags from their defaults and validates
// them, as main does.
func parseOptions(args []string) (manager.Options, error) {
	opts := manager.DefaultOptions()
	fs := flag.NewFlagSet("stretch-controller-manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	opts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	return opts, opts.Validate()
}
