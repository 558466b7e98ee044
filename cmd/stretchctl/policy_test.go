package main

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

func TestPolicyCommandErrors(t *testing.T) {
	dir := t.TempDir()
	unreachable := filepath.Join(dir, "unreachable")
	NewWithT(t).Expect(os.WriteFile(unreachable, []byte(unreachableKubeconfig), 0o600)).To(Succeed())
	const id = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"
	tests := []commandErrorCase{
		{name: "set without HOME", args: []string{"policy", "set", "--limits", "cpu=1"}, wantUsage: true, wantErr: "stretchctl policy set takes the home cluster's ID, e.g. 'stretchctl policy set 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a --limits cpu=8' ('stretchctl policy show' lists the home clusters)"},
		{name: "set two homes", args: []string{"policy", "set", id, id}, wantUsage: true, wantErr: "takes the home cluster's ID"},
		{name: "set bad limits", args: []string{"policy", "set", id, "--limits", "cpu=lots"}, wantUsage: true, wantErr: `--limits "cpu=lots": cpu=lots is not a quantity`},
		{name: "set bad resource", args: []string{"policy", "set", id, "--limits", "gpu=1"}, wantUsage: true, wantErr: "or an extended resource DOMAIN/NAME such as nvidia.com/gpu"},
		{name: "set bad level", args: []string{"policy", "set", id, "--pod-security", "privileged"}, wantUsage: true, wantErr: "must be baseline (the default) or restricted"},
		{name: "set bad naming", args: []string{"policy", "set", id, "--twin-namings", "Same"}, wantUsage: true, wantErr: `"Same" must be one of DefaultName, EnforceSameName, SelectedName`},
		{name: "set bad pattern", args: []string{"policy", "set", id, "--twin-name-pattern", "a("}, wantUsage: true, wantErr: "is not a valid RE2 regular expression"},
		{name: "set bad priority class", args: []string{"policy", "set", id, "--priority-classes", "Gold"}, wantUsage: true, wantErr: `"Gold" is not a PriorityClass name`},
		{name: "set unreachable", args: []string{"policy", "set", id, "--limits", "cpu=1", "--kubeconfig", unreachable}, wantErr: "cannot reach the provider cluster at https://127.0.0.1:1"},
		{name: "show two homes", args: []string{"policy", "show", id, id}, wantUsage: true, wantErr: "takes at most one home cluster ID, got 2"},
		{name: "show bad output", args: []string{"policy", "show", "-o", "wide"}, wantUsage: true, wantErr: `output format "wide" is not supported`},
		{name: "show unreachable", args: []string{"policy", "show", "--kubeconfig", unreachable}, wantErr: "cannot reach the provider cluster"},
		{name: "mistyped verb", args: []string{"policy", "st", id}, wantUsage: true, wantErr: `unknown command "st" for "stretchctl policy"; did you mean "set"?`},
	}
	expectCommandErrors(t, tests)
}

// TestPolicyFlags: only the flags given change the policy; a flag given
// empty clears its field.
func TestPolicyFlags(t *testing.T) {
	g := NewWithT(t)
	parse := func(args ...string) (*pflag.FlagSet, *policyFlags) {
		var f policyFlags
		fs := pflag.NewFlagSet("set", pflag.ContinueOnError)
		f.bind(fs)
		g.Expect(fs.Parse(args)).To(Succeed())
		return fs, &f
	}

	fs, f := parse("--pod-security", "restricted")
	c, err := f.change(fs)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.PodSecurity).To(HaveValue(Equal(peeringv1alpha1.PodSecurityRestricted)))
	g.Expect(c.Limits).To(BeNil())
	g.Expect(c.PriorityClasses).To(BeNil())
	g.Expect(c.TwinNamings).To(BeNil())
	g.Expect(c.TwinNamePattern).To(BeNil())

	fs, f = parse("--limits", "cpu=8,nvidia.com/gpu=2", "--twin-namings", "", "--priority-classes", "high", "--twin-name-pattern", "team-.*")
	c, err = f.change(fs)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.PodSecurity).To(BeNil())
	g.Expect(*c.Limits).To(HaveLen(2))
	g.Expect((*c.Limits)[corev1.ResourceName("nvidia.com/gpu")]).To(Equal(resource.MustParse("2")))
	g.Expect(c.TwinNamings).To(HaveValue(BeEmpty()), "given empty: cleared")
	g.Expect(c.PriorityClasses).To(HaveValue(Equal([]string{"high"})))
	g.Expect(c.TwinNamePattern).To(HaveValue(Equal("team-.*")))
}
