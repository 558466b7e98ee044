package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The OCI annotation keys the images carry, on the index and on every
// manifest, and as labels in every config.
const (
	annotationSource   = "org.opencontainers.image.source"
	annotationRevision = "org.opencontainers.image.revision"
	annotationVersion  = "org.opencontainers.image.version"
	annotationTitle    = "org.opencontainers.image.title"
	annotationLicenses = "org.opencontainers.image.licenses"
	annotationCreated  = "org.opencontainers.image.created"
	annotationRefName  = "org.opencontainers.image.ref.name"
)

// nonroot is the user and group the image runs as: distroless's "nonroot".
const nonroot = 65532

// buildOptions are the inputs of one image; the same options give the same
// digest.
type buildOptions struct {
	Root      string // the main module's directory
	Package   string // the binary's package, relative to Root
	Version   string
	Revision  string
	Source    string
	Licenses  string
	LDFlags   string
	Epoch     int64 // Unix seconds of every timestamp in the image
	Platforms []v1.Platform
	Out       string
}

// name is the binary's (and the image's) name: the package's last element.
func (o buildOptions) name() string {
	return path.Base(filepath.ToSlash(o.Package))
}

func (o buildOptions) validate() error {
	var errs []error
	if o.Package == "" || o.name() == "." || o.name() == "/" {
		errs = append(errs, errors.New("-package is empty: set it to the binary's package, e.g. ./cmd/stretch-controller-manager"))
	}
	if o.Version == "" {
		errs = append(errs, errors.New("-version is empty: pass the version 'make build' stamps, e.g. -version $(git describe --tags --always --dirty)"))
	}
	if o.Revision == "" {
		errs = append(errs, errors.New("-revision is empty: pass the git commit, with -dirty when the tree has changes"))
	}
	if o.Source == "" {
		errs = append(errs, errors.New("-source is empty: pass the source repository URL"))
	}
	if o.Epoch < 0 {
		errs = append(errs, fmt.Errorf("epoch %d is negative: use the commit time of HEAD or 0", o.Epoch))
	}
	if len(o.Platforms) == 0 {
		errs = append(errs, errors.New("no platforms: pass -platforms linux/amd64,linux/arm64"))
	}
	if o.Out == "" {
		errs = append(errs, errors.New("-out is empty: pass the OCI layout directory to write, e.g. bin/images/stretch-controller-manager"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	return nil
}

// annotations are the OCI annotations of the index and the manifests, and the
// labels of the configs.
func (o buildOptions) annotations() map[string]string {
	a := map[string]string{
		annotationSource:   o.Source,
		annotationRevision: o.Revision,
		annotationVersion:  o.Version,
		annotationTitle:    o.name(),
		annotationCreated:  time.Unix(o.Epoch, 0).UTC().Format(time.RFC3339),
	}
	if o.Licenses != "" {
		a[annotationLicenses] = o.Licenses
	}
	return a
}

// parsePlatforms reads "os/arch[/variant],..." and refuses anything but Linux:
// the binary is built with CGO_ENABLED=0 for a Linux container.
func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := v1.ParsePlatform(f)
		if err != nil {
			return nil, fmt.Errorf("image build: platform %q: %w: write it as os/arch, e.g. linux/amd64", f, err)
		}
		if p.OS != "linux" || p.Architecture == "" {
			return nil, fmt.Errorf("image build: platform %q is not a Linux platform: the images are for Linux containers, use e.g. linux/arm64", f)
		}
		if seen[p.String()] {
			return nil, fmt.Errorf("image build: platform %q is listed twice in -platforms: list each once", f)
		}
		seen[p.String()] = true
		out = append(out, *p)
	}
	if len(out) == 0 {
		return nil, errors.New("image build: -platforms is empty: pass e.g. linux/amd64,linux/arm64")
	}
	return out, nil
}

// buildResult describes what build wrote.
type buildResult struct {
	Index     v1.Hash
	Platforms []platformResult
}

// platformResult describes one platform's image.
type platformResult struct {
	Platform       string
	Manifest       v1.Hash
	CompressedSize int64 // sum of the compressed layers
	BinarySize     int64
}

// build compiles the binary for every platform, assembles the image index and
// writes it as an OCI image layout into o.Out, replacing what was there.
func build(ctx context.Context, o buildOptions, log io.Writer) (*buildResult, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, fmt.Errorf("image build: -root %s: %w", o.Root, err)
	}
	o.Root = root
	mtime := time.Unix(o.Epoch, 0).UTC()
	annotations := o.annotations()

	base, err := baseLayer(mtime)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "stretch-image-")
	if err != nil {
		return nil, fmt.Errorf("image build: temporary directory for the binaries: %w", err)
	}
	defer os.RemoveAll(work)

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	res := &buildResult{}
	for _, p := range o.Platforms {
		fmt.Fprintf(log, "image: building %s for %s ...\n", o.name(), p)
		bin := filepath.Join(work, strings.ReplaceAll(p.String(), "/", "-"), o.name())
		if err := compile(ctx, o, p, bin); err != nil {
			return nil, err
		}
		img, binSize, err := platformImage(o, p, base, bin, mtime, annotations)
		if err != nil {
			return nil, err
		}
		pr := platformResult{Platform: p.String(), BinarySize: binSize}
		if pr.Manifest, err = img.Digest(); err != nil {
			return nil, fmt.Errorf("image build: digest of the %s image: %w", p, err)
		}
		layers, err := img.Layers()
		if err != nil {
			return nil, fmt.Errorf("image build: layers of the %s image: %w", p, err)
		}
		for _, l := range layers {
			n, err := l.Size()
			if err != nil {
				return nil, fmt.Errorf("image build: size of a %s layer: %w", p, err)
			}
			pr.CompressedSize += n
		}
		res.Platforms = append(res.Platforms, pr)
		platform := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &platform},
		})
	}
	idx = mutate.Annotations(idx, annotations).(v1.ImageIndex)
	if res.Index, err = idx.Digest(); err != nil {
		return nil, fmt.Errorf("image build: digest of the image index: %w", err)
	}
	if err := writeLayout(o.Out, idx, o.Version); err != nil {
		return nil, err
	}
	return res, nil
}

// compile builds a static, reproducible binary: no cgo, no paths of this
// machine (-trimpath), no varying build ID, no VCS stamp (the revision is in
// the annotations), the micro-architecture levels pinned to their defaults.
func compile(ctx context.Context, o buildOptions, p v1.Platform, out string) error {
	ldflags := strings.TrimSpace("-s -w -buildid= " + o.LDFlags)
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-trimpath", "-buildvcs=false",
		"-ldflags="+ldflags, "-o", out, o.Package)
	cmd.Dir = o.Root
	env := []string{"CGO_ENABLED=0", "GOOS=" + p.OS, "GOARCH=" + p.Architecture, "GOFLAGS=",
		"GOAMD64=v1", "GOARM64=v8.0"}
	if p.Architecture == "arm" {
		env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	cmd.Env = append(os.Environ(), env...)
	output, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("image build: go build %s for %s in %s failed: %w\n%s\nfix the build ('make build' shows the same errors) and run 'make image' again",
			o.Package, p, o.Root, err, strings.TrimSpace(string(output)))
	}
	return nil
}

// platformImage is one platform's image: the base layer, then the binary as
// the only other layer, run as nonroot with the binary as entrypoint.
func platformImage(o buildOptions, p v1.Platform, base v1.Layer, bin string, mtime time.Time, annotations map[string]string) (v1.Image, int64, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, 0, fmt.Errorf("image build: reading the %s binary %s: %w", p, bin, err)
	}
	goVersion := "go"
	if info, err := buildinfo.ReadFile(bin); err == nil {
		goVersion = info.GoVersion
	}
	app, err := binaryLayer(o.name(), data, mtime)
	if err != nil {
		return nil, 0, err
	}
	created := v1.Time{Time: mtime}
	cfg := &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      created,
		Config: v1.Config{
			User:       fmt.Sprintf("%d:%d", nonroot, nonroot),
			Entrypoint: []string{"/" + o.name()},
			WorkingDir: "/",
			Labels:     annotations,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("image build: config of the %s image: %w", p, err)
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created:   created,
			CreatedBy: "stretch image build: base files: " + strings.Join(baseFileNames(), ", "),
			Comment:   "CA bundle from " + caBundleModule(),
		}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{
			Created:   created,
			CreatedBy: fmt.Sprintf("go build -trimpath %s (%s, CGO_ENABLED=0, %s)", o.Package, goVersion, p),
		}},
	)
	if err != nil {
		return nil, 0, fmt.Errorf("image build: layers of the %s image: %w", p, err)
	}
	return mutate.Annotations(img, annotations).(v1.Image), int64(len(data)), nil
}

// writeLayout writes the index into a fresh OCI image layout, tagged with the
// version, and only then replaces out: a failed build leaves the last good
// image in place.
func writeLayout(out string, idx v1.ImageIndex, version string) error {
	out = filepath.Clean(out)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("image build: creating the parent of %s: %w", out, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return fmt.Errorf("image build: temporary layout next to %s: %w", out, err)
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("image build: writing the OCI layout %s: %w", tmp, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationRefName: version})); err != nil {
		return fmt.Errorf("image build: writing the image index into %s: %w", tmp, err)
	}
	// MkdirTemp makes 0700; the layout is as readable as any build output.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("image build: removing the old layout %s: %w (remove it by hand)", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("image build: moving the layout into %s: %w", out, err)
	}
	return nil
}
