package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The inputs of the image the tests build: the real manager, fixed metadata.
const (
	testVersion  = "v0.0.0-imagetest"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
	testEpoch    = 1700000000
	testSource   = "https://stretch.dev/stretch"
	testLicenses = "Apache-2.0"
	binaryName   = "stretch-controller-manager"
)

var (
	// scratch holds the layout every test shares; TestMain removes it.
	scratch string

	sharedOnce   sync.Once
	sharedResult *buildResult
	sharedErr    error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stretch-image-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "image tests: temporary directory:", err)
		os.Exit(1)
	}
	scratch = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testOptions builds the manager of this repository (three levels up) into out.
func testOptions(t *testing.T, out string) buildOptions {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(gomod, []byte("module stretch.dev/stretch\n")) {
		t.Fatalf("%s is not the stretch.dev/stretch module (go.mod: %v): run the tests from hack/tools/image of the repository", root, err)
	}
	platforms, err := parsePlatforms("linux/amd64,linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	return buildOptions{
		Root:      root,
		Package:   "./cmd/" + binaryName,
		Version:   testVersion,
		Revision:  testRevision,
		Source:    testSource,
		Licenses:  testLicenses,
		LDFlags:   "-X stretch.dev/stretch/internal/version.Version=" + testVersion,
		Epoch:     testEpoch,
		Platforms: platforms,
		Out:       out,
	}
}

// sharedImage builds the image once for every test that only reads it.
func sharedImage(t *testing.T) (string, *buildResult) {
	t.Helper()
	out := filepath.Join(scratch, "shared")
	sharedOnce.Do(func() {
		var log bytes.Buffer
		sharedResult, sharedErr = build(context.Background(), testOptions(t, out), &log)
		if sharedErr != nil {
			sharedErr = fmt.Errorf("%w\nbuild log:\n%s", sharedErr, log.String())
		}
	})
	if sharedErr != nil {
		t.Fatalf("building the shared test image: %v", sharedErr)
	}
	return out, sharedResult
}

func TestBuildIsReproducible(t *testing.T) {
	g := NewWithT(t)
	first, firstRes := sharedImage(t)
	second := filepath.Join(t.TempDir(), "second")
	secondRes, err := build(context.Background(), testOptions(t, second), io.Discard)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(secondRes.Index).To(Equal(firstRes.Index), "index digest of two builds of the same inputs")
	g.Expect(secondRes.Platforms).To(Equal(firstRes.Platforms), "per-platform manifest digests and sizes")
	t.Logf("index %s both times", firstRes.Index)

	// Not only the digests: every file of the two layouts is the same.
	g.Expect(layoutFiles(t, second)).To(Equal(layoutFiles(t, first)))
}

// layoutFiles maps every file of a layout to its content.
func layoutFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatalf("reading the layout %s: %v", dir, err)
	}
	if _, ok := files["index.json"]; !ok {
		t.Fatalf("layout %s has no index.json", dir)
	}
	return files
}

func TestImageIndexAndConfigs(t *testing.T) {
	g := NewWithT(t)
	dir, res := sharedImage(t)
	idx, refName, err := layoutIndex(dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(refName).To(Equal(testVersion), "the layout tags the index with the version")
	digest, err := idx.Digest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(digest).To(Equal(res.Index))

	want := map[string]string{
		annotationSource:   testSource,
		annotationRevision: testRevision,
		annotationVersion:  testVersion,
		annotationTitle:    binaryName,
		annotationLicenses: testLicenses,
		annotationCreated:  time.Unix(testEpoch, 0).UTC().Format(time.RFC3339),
	}
	im, err := idx.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(im.MediaType).To(Equal(types.OCIImageIndex))
	g.Expect(im.Annotations).To(Equal(want), "index annotations")

	var platforms []string
	for _, d := range im.Manifests {
		g.Expect(d.Platform).NotTo(BeNil(), "descriptor %s has a platform", d.Digest)
		platforms = append(platforms, d.Platform.String())
		g.Expect(d.MediaType).To(Equal(types.OCIManifestSchema1))

		img, err := idx.Image(d.Digest)
		g.Expect(err).NotTo(HaveOccurred())
		m, err := img.Manifest()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(m.Annotations).To(Equal(want), "annotations of the %s manifest", d.Platform)
		g.Expect(m.Config.MediaType).To(Equal(types.OCIConfigJSON))
		for _, l := range m.Layers {
			g.Expect(l.MediaType).To(Equal(types.OCILayer))
		}

		cf, err := img.ConfigFile()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(cf.OS).To(Equal(d.Platform.OS))
		g.Expect(cf.Architecture).To(Equal(d.Platform.Architecture))
		g.Expect(cf.Created.Unix()).To(Equal(int64(testEpoch)))
		g.Expect(cf.Config.User).To(Equal("65532:65532"), "the image runs as nonroot")
		g.Expect(cf.Config.Entrypoint).To(Equal([]string{"/" + binaryName}))
		g.Expect(cf.Config.Cmd).To(BeEmpty())
		g.Expect(cf.Config.Labels).To(Equal(want), "config labels of %s", d.Platform)
		g.Expect(cf.History).To(HaveLen(2), "one history entry per layer")
		for _, h := range cf.History {
			g.Expect(h.Created.Unix()).To(Equal(int64(testEpoch)))
		}
	}
	g.Expect(platforms).To(ConsistOf("linux/amd64", "linux/arm64"))
}

func TestImageLayers(t *testing.T) {
	dir, _ := sharedImage(t)
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		t.Run(p, func(t *testing.T) {
			g := NewWithT(t)
			img := platformImageFromLayout(t, dir, p)
			layers, err := img.Layers()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(layers).To(HaveLen(2), "a base layer and the binary")

			base := readLayer(t, layers[0])
			app := readLayer(t, layers[1])
			g.Expect(names(base)).To(Equal([]string{
				"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", caBundlePath,
				"home/", "home/nonroot/", "tmp/",
			}), "base layer entries, sorted")
			g.Expect(names(app)).To(Equal([]string{binaryName}))
			g.Expect(app[0].hdr.Mode).To(Equal(int64(0o755)))

			for _, f := range slices.Concat(base, app) {
				g.Expect(f.hdr.ModTime.Unix()).To(Equal(int64(testEpoch)), "mtime of %s", f.hdr.Name)
				g.Expect(f.hdr.Uname).To(BeEmpty())
				g.Expect(f.hdr.Gname).To(BeEmpty())
				owner := 0
				if f.hdr.Name == "home/nonroot/" {
					owner = nonroot
				}
				g.Expect([]int{f.hdr.Uid, f.hdr.Gid}).To(Equal([]int{owner, owner}), "owner of %s", f.hdr.Name)
				switch path.Base(strings.TrimSuffix(f.hdr.Name, "/")) {
				case "sh", "bash", "ash", "dash", "zsh", "busybox":
					t.Errorf("layer entry %s is a shell: the image must have none", f.hdr.Name)
				}
				g.Expect(f.hdr.Name).NotTo(HavePrefix("bin/"), "no /bin in the image")
			}

			byName := map[string][]byte{}
			for _, f := range base {
				byName[f.hdr.Name] = f.data
			}
			g.Expect(string(byName["etc/passwd"])).To(ContainSubstring("\nnonroot:x:65532:65532:"))
			g.Expect(string(byName["etc/group"])).To(ContainSubstring("\nnonroot:x:65532:"))

			// The bundle is every unconstrained NSS root, each a parseable certificate.
			wantRoots := 0
			for r := range bundle.Roots() {
				if r.Constraint == nil {
					wantRoots++
				}
			}
			g.Expect(wantRoots).To(BeNumerically(">", 100))
			rest, certs := byName[caBundlePath], 0
			for {
				var block *pem.Block
				block, rest = pem.Decode(rest)
				if block == nil {
					break
				}
				_, err := x509.ParseCertificate(block.Bytes)
				g.Expect(err).NotTo(HaveOccurred(), "certificate %d of the CA bundle", certs)
				certs++
			}
			g.Expect(bytes.TrimSpace(rest)).To(BeEmpty(), "nothing but certificates in the CA bundle")
			g.Expect(certs).To(Equal(wantRoots))
		})
	}
}

func TestBinaryInImageRuns(t *testing.T) {
	g := NewWithT(t)
	dir, _ := sharedImage(t)
	// The host runs the binary of its own platform; on this project's
	// machines that is linux/amd64.
	host := runtime.GOOS + "/" + runtime.GOARCH
	if runtime.GOOS != "linux" {
		t.Fatalf("the image's binary is for Linux and this host is %s: run the image tests on Linux", host)
	}
	img := platformImageFromLayout(t, dir, host)
	layers, err := img.Layers()
	g.Expect(err).NotTo(HaveOccurred())
	app := readLayer(t, layers[len(layers)-1])
	g.Expect(app).To(HaveLen(1))
	bin := filepath.Join(t.TempDir(), binaryName)
	g.Expect(os.WriteFile(bin, app[0].data, 0o755)).To(Succeed())

	// Static: no ELF interpreter, no shared libraries.
	ef, err := elf.Open(bin)
	g.Expect(err).NotTo(HaveOccurred())
	for _, p := range ef.Progs {
		g.Expect(p.Type).NotTo(Equal(elf.PT_INTERP), "the binary needs a dynamic loader")
	}
	libs, err := ef.ImportedLibraries()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(libs).To(BeEmpty())
	// -buildid= leaves no Go build ID note, or an empty one (its descsz, at
	// offset 4 of the note, is 0).
	if note := ef.Section(".note.go.buildid"); note != nil {
		data, err := note.Data()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(len(data)).To(BeNumerically(">=", 8))
		g.Expect(ef.ByteOrder.Uint32(data[4:8])).To(BeZero(), "the Go build ID is empty")
	}
	g.Expect(ef.Close()).To(Succeed())

	info, err := buildinfo.ReadFile(bin)
	g.Expect(err).NotTo(HaveOccurred())
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	g.Expect(settings).To(HaveKeyWithValue("CGO_ENABLED", "0"))
	g.Expect(settings).To(HaveKeyWithValue("-trimpath", "true"))
	g.Expect(info.Path).To(Equal("stretch.dev/stretch/cmd/" + binaryName))
	// -trimpath keeps -ldflags out of the build info; the stamped version
	// string itself is in the binary.
	g.Expect(bytes.Contains(app[0].data, []byte(testVersion))).To(BeTrue(), "the binary holds the version %s set with -X", testVersion)
	g.Expect(bytes.Contains(app[0].data, []byte(testOptions(t, "").Root))).To(BeFalse(), "-trimpath: no path of this checkout in the binary")

	// flag.ExitOnError: -help prints the usage to stderr and exits 0.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--help")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	g.Expect(err).NotTo(HaveOccurred(), "%s --help; stderr:\n%s", bin, stderr.String())
	g.Expect(stderr.String()).To(HavePrefix("Usage of " + binaryName + ":\n"))
	g.Expect(stderr.String()).To(ContainSubstring("-kubeconfig"))
	g.Expect(stdout.String()).To(BeEmpty())
}

// platformImageFromLayout is the image of one platform in the layout at dir.
func platformImageFromLayout(t *testing.T, dir, platform string) v1.Image {
	t.Helper()
	idx, _, err := layoutIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.String() == platform {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("the image index in %s has no %s image", dir, platform)
	return nil
}

type layerFile struct {
	hdr  *tar.Header
	data []byte
}

// readLayer reads every entry of a layer, in archive order.
func readLayer(t *testing.T, l v1.Layer) []layerFile {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var files []layerFile
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("reading a layer: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s from a layer: %v", hdr.Name, err)
		}
		files = append(files, layerFile{hdr: hdr, data: data})
	}
}

func names(files []layerFile) []string {
	out := make([]string, 0, len(files))
	for _, f := range files {
		out = append(out, f.hdr.Name)
	}
	return out
}
