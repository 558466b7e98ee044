package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestLayerTarDependsOnlyOnItsInput(t *testing.T) {
	g := NewWithT(t)
	mtime := time.Unix(testEpoch, 0)
	entries := []tarEntry{
		{name: "b", mode: 0o644, data: []byte("b")},
		{name: "a/", mode: 0o755},
		{name: "a/c", mode: 0o600, uid: 7, gid: 8, data: []byte("c")},
	}
	reversed := []tarEntry{entries[2], entries[1], entries[0]}
	one, err := layerTar(entries, mtime)
	g.Expect(err).NotTo(HaveOccurred())
	two, err := layerTar(reversed, mtime)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(one, two)).To(BeTrue(), "the order of the input does not change the tar")

	later, err := layerTar(entries, mtime.Add(time.Second))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(one, later)).To(BeFalse(), "the timestamp is in the tar")

	_, err = layerTar(append(entries, tarEntry{name: "b", mode: 0o644}), mtime)
	g.Expect(err).To(MatchError(ContainSubstring(`layer entry "b" is listed twice`)))
}

func TestBaseEntriesHaveTheirParents(t *testing.T) {
	g := NewWithT(t)
	entries, err := baseEntries()
	g.Expect(err).NotTo(HaveOccurred())
	dirs := map[string]bool{}
	for _, e := range entries {
		if e.isDir() {
			dirs[e.name] = true
		}
	}
	for _, e := range entries {
		parent := filepath.Dir(strings.TrimSuffix(e.name, "/"))
		if parent != "." {
			g.Expect(dirs).To(HaveKey(parent+"/"), "parent directory of %s", e.name)
		}
	}
}

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "linux/amd64,linux/arm64", want: []string{"linux/amd64", "linux/arm64"}},
		{in: " linux/arm64 , ", want: []string{"linux/arm64"}},
		{in: "linux/arm/v7", want: []string{"linux/arm/v7"}},
		{in: "", wantErr: "-platforms is empty"},
		{in: "windows/amd64", wantErr: `platform "windows/amd64" is not a Linux platform`},
		{in: "linux/amd64,linux/amd64", wantErr: "listed twice"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			g := NewWithT(t)
			got, err := parsePlatforms(tc.in)
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			var names []string
			for _, p := range got {
				names = append(names, p.String())
			}
			g.Expect(names).To(Equal(tc.want))
		})
	}
}

func TestBuildOptionsValidate(t *testing.T) {
	valid := buildOptions{
		Package: "./cmd/x", Version: "v1", Revision: "abc", Source: "https://example.com/x",
		Platforms: []v1.Platform{{OS: "linux", Architecture: "amd64"}}, Out: "out",
	}
	for _, tc := range []struct {
		name   string
		mutate func(*buildOptions)
		want   string
	}{
		{"valid", func(*buildOptions) {}, ""},
		{"no package", func(o *buildOptions) { o.Package = "" }, "-package is empty"},
		{"no version", func(o *buildOptions) { o.Version = "" }, "-version is empty"},
		{"no revision", func(o *buildOptions) { o.Revision = "" }, "-revision is empty"},
		{"no source", func(o *buildOptions) { o.Source = "" }, "-source is empty"},
		{"negative epoch", func(o *buildOptions) { o.Epoch = -1 }, "epoch -1 is negative"},
		{"no platforms", func(o *buildOptions) { o.Platforms = nil }, "no platforms"},
		{"no output", func(o *buildOptions) { o.Out = "" }, "-out is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			o := valid
			tc.mutate(&o)
			err := o.validate()
			if tc.want == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}

func TestAnnotationsLeaveOutUnknownLicenses(t *testing.T) {
	g := NewWithT(t)
	o := buildOptions{Package: "./cmd/stretch-controller-manager", Version: "v1", Revision: "abc", Source: "s"}
	g.Expect(o.annotations()).To(Equal(map[string]string{
		annotationSource:   "s",
		annotationRevision: "abc",
		annotationVersion:  "v1",
		annotationTitle:    "stretch-controller-manager",
		annotationCreated:  "1970-01-01T00:00:00Z",
	}))
	o.Licenses = "Apache-2.0"
	g.Expect(o.annotations()).To(HaveKeyWithValue(annotationLicenses, "Apache-2.0"))
}

func TestGitRevisionSaysDirty(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	dir := t.TempDir()
	const commitTime = 1600000000
	gitIn := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
			"GIT_AUTHOR_DATE=@1600000000 +0000", "GIT_COMMITTER_DATE=@1600000000 +0000")
		out, err := cmd.CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "git %v: %s", args, out)
		return strings.TrimSpace(string(out))
	}
	gitIn("init", "-q")
	g.Expect(os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644)).To(Succeed())
	gitIn("add", "a")
	gitIn("commit", "-q", "-m", "a")
	head := gitIn("rev-parse", "HEAD")

	rev, err := gitRevision(ctx, dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rev).To(Equal(head), "a clean tree claims the commit")
	epoch, err := gitCommitTime(ctx, dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(epoch).To(Equal(int64(commitTime)))

	g.Expect(os.WriteFile(filepath.Join(dir, "a"), []byte("changed"), 0o644)).To(Succeed())
	rev, err = gitRevision(ctx, dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rev).To(Equal(head+"-dirty"), "a changed file")

	gitIn("checkout", "-q", "--", "a")
	g.Expect(os.WriteFile(filepath.Join(dir, "new.go"), []byte("package x"), 0o644)).To(Succeed())
	rev, err = gitRevision(ctx, dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rev).To(Equal(head+"-dirty"), "an untracked file changes the build too")

	_, err = gitRevision(ctx, t.TempDir())
	g.Expect(err).To(MatchError(ContainSubstring("pass -revision and -epoch")))
}

func TestResolveEpoch(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("SOURCE_DATE_EPOCH", "")
	got, err := resolveEpoch(context.Background(), "42", t.TempDir())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(int64(42)), "the flag wins")

	t.Setenv("SOURCE_DATE_EPOCH", "1234")
	got, err = resolveEpoch(context.Background(), "", t.TempDir())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(int64(1234)), "then SOURCE_DATE_EPOCH")

	for _, bad := range []string{"-1", "yesterday"} {
		_, err = resolveEpoch(context.Background(), bad, t.TempDir())
		g.Expect(err).To(MatchError(ContainSubstring("is not a non-negative number of Unix seconds")), bad)
	}

	t.Setenv("SOURCE_DATE_EPOCH", "")
	_, err = resolveEpoch(context.Background(), "", t.TempDir())
	g.Expect(err).To(MatchError(ContainSubstring("git log -1")), "then git, which needs a checkout")
}
