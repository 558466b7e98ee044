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
			opts := manager.DefaultOptions()
			fs := flag.NewFlagSet("stretch-controller-manager", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			opts.BindFlags(fs)
			err := fs.Parse(tt.args)
			if err == nil {
				err = opts.Validate()
			}
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
