package realnode

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"stretch.dev/stretch/internal/testenv/machine"
)

// Images are built from Go packages by hack/tools/image, the builder of the
// manager's image (static binary over a small base layer, user nonroot, the
// binary as entrypoint), for this machine's platform only, and named under a
// registry that cannot resolve: a node never pulls them, they are imported.
const (
	imageRegistry = "stretch.invalid"
	imageTag      = "local"
	// PausePackage is the package of the pod sandbox program.
	PausePackage = "./internal/testenv/realnode/pause"
)

// Image is an image built locally, as an OCI archive (a tar of an OCI image
// layout) that 'ctr images import' reads.
type Image struct {
	// Ref is the image's name in containerd, e.g.
	// stretch.invalid/testapp:local: the image of a pod's container.
	Ref string
	// Archive is the path of the OCI archive.
	Archive string
}

// repository is Ref without the tag.
func (i *Image) repository() string {
	return strings.TrimSuffix(i.Ref, ":"+imageTag)
}

// BuildPauseImage builds the pod sandbox image into dir.
func BuildPauseImage(ctx context.Context, dir string) (*Image, error) {
	return BuildImage(ctx, dir, PausePackage)
}

// BuildImage builds the image of the Go main package pkg (relative to the
// repository root, e.g. ./test/realnode/testapp) into dir. The binary is
// /<last element of pkg> and the entrypoint; the image runs as user 65532.
func BuildImage(ctx context.Context, dir, pkg string) (*Image, error) {
	root, err := machine.RepoRoot()
	if err != nil {
		return nil, err
	}
	name := path.Base(pkg)
	tool, err := imageTool(ctx, root, dir)
	if err != nil {
		return nil, err
	}
	layout := filepath.Join(dir, name+".layout")
	cmd := exec.CommandContext(ctx, tool, "build",
		"-root", root,
		"-package", pkg,
		"-version", imageTag,
		"-revision", "local",
		"-epoch", "0",
		"-source", "https://stretch.dev/stretch",
		"-platforms", "linux/"+runtime.GOARCH,
		"-out", layout,
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the image of %s: %w\n%s", pkg, err, strings.TrimSpace(string(out)))
	}
	img := &Image{Ref: imageRegistry + "/" + name + ":" + imageTag, Archive: filepath.Join(dir, name+".oci.tar")}
	if err := tarDir(layout, img.Archive); err != nil {
		return nil, fmt.Errorf("archiving the image of %s: %w", pkg, err)
	}
	return img, os.RemoveAll(layout)
}

// imageTool builds hack/tools/image (its own module) once into dir.
func imageTool(ctx context.Context, root, dir string) (string, error) {
	tool := filepath.Join(dir, "image-tool")
	if _, err := os.Stat(tool); err == nil {
		return tool, nil
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-o", tool, ".")
	cmd.Dir = filepath.Join(root, "hack", "tools", "image")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building hack/tools/image: %w\n%s", err, strings.TrimSpace(string(out)))
	}
	return tool, nil
}

// tarDir writes the files below dir into a tar file, named relative to dir.
func tarDir(dir, out string) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
