package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// caBundlePath is where Go's crypto/x509 (and most TLS stacks) look first on Linux.
const caBundlePath = "etc/ssl/certs/ca-certificates.crt"

// tarEntry is one file or directory of a layer. Names are relative to the
// root and have no leading slash; a directory's name ends in "/".
type tarEntry struct {
	name     string
	mode     int64
	uid, gid int
	data     []byte
}

func (e tarEntry) isDir() bool { return strings.HasSuffix(e.name, "/") }

// layerTar writes the entries as a tar stream that depends on nothing but its
// input: sorted by name, one fixed timestamp, numeric owners without names.
func layerTar(entries []tarEntry, mtime time.Time) ([]byte, error) {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b tarEntry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, e := range sorted {
		if i > 0 && sorted[i-1].name == e.name {
			return nil, fmt.Errorf("image build: layer entry %q is listed twice: list each path once", e.name)
		}
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		if e.isDir() {
			hdr.Typeflag = tar.TypeDir
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("image build: layer entry %q: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("image build: layer entry %q: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image build: closing a layer: %w", err)
	}
	return buf.Bytes(), nil
}

// newLayer makes an OCI gzip layer from a tar stream held in memory. The
// compressed bytes are kept, so the layer is compressed once. The default
// level: on the manager's binary the best one saves under 0.1 MiB and takes
// 2.5 times as long; the fastest one is 1.7 MiB larger.
func newLayer(stream []byte) (v1.Layer, error) {
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(stream)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.DefaultCompression), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("image build: compressing a layer: %w", err)
	}
	return l, nil
}

// baseEntries is the static base every image shares: users, a CA bundle and
// the directories a nonroot process may write to. No shell, no package manager.
func baseEntries() ([]tarEntry, error) {
	certs, err := caBundlePEM()
	if err != nil {
		return nil, err
	}
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonroot, nonroot)
	group := "root:x:0:\nnobody:x:65534:\n" + fmt.Sprintf("nonroot:x:%d:\n", nonroot)
	return []tarEntry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: caBundlePath, mode: 0o644, data: certs},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: nonroot, gid: nonroot},
		{name: "tmp/", mode: 0o1777},
	}, nil
}

// baseFileNames lists the regular files of the base layer, for the history.
func baseFileNames() []string {
	entries, err := baseEntries()
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if !e.isDir() {
			names = append(names, "/"+e.name)
		}
	}
	return names
}

// baseLayer is the layer of baseEntries.
func baseLayer(mtime time.Time) (v1.Layer, error) {
	entries, err := baseEntries()
	if err != nil {
		return nil, err
	}
	b, err := layerTar(entries, mtime)
	if err != nil {
		return nil, err
	}
	return newLayer(b)
}

// binaryLayer holds the binary alone, at /<name>.
func binaryLayer(name string, data []byte, mtime time.Time) (v1.Layer, error) {
	b, err := layerTar([]tarEntry{{name: name, mode: 0o755, data: data}}, mtime)
	if err != nil {
		return nil, err
	}
	return newLayer(b)
}

// caBundlePEM is the Mozilla NSS root store as a PEM bundle, taken from a
// pinned Go module rather than the host, so it is the same on every machine.
// Roots with constraints (a distrust-after date) are left out: a PEM file
// cannot carry the constraint, and trusting them without it would trust more
// than NSS does.
func caBundlePEM() ([]byte, error) {
	var buf bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, fmt.Errorf("image build: encoding the CA bundle: %w", err)
		}
	}
	if buf.Len() == 0 {
		return nil, fmt.Errorf("image build: the CA bundle from %s is empty: check that module's version in hack/tools/image/go.mod", caBundleModule())
	}
	return buf.Bytes(), nil
}

// caBundleModule names the module and version the CA bundle comes from.
func caBundleModule() string {
	const mod = "golang.org/x/crypto/x509roots/fallback"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == mod {
				return mod + "@" + d.Version
			}
		}
	}
	return mod
}
