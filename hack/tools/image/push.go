package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pushOptions say which layout goes where.
type pushOptions struct {
	Layout   string
	Repo     string
	Tag      string // default: the layout's ref.name, the version it was built with
	Insecure bool
}

// push uploads the image index of a layout written by build, every platform
// with it, and returns the pushed reference with its digest.
func push(ctx context.Context, o pushOptions, log io.Writer) (string, error) {
	if o.Repo == "" {
		return "", errors.New("image push: no repository: pass -repo REGISTRY/NAME (make image-push REGISTRY=host/path)")
	}
	if o.Layout == "" {
		return "", errors.New("image push: no layout: pass -layout DIR, the directory 'image build -out' wrote")
	}
	idx, refName, err := layoutIndex(o.Layout)
	if err != nil {
		return "", err
	}
	tag := o.Tag
	if tag == "" {
		tag = refName
	}
	if tag == "" {
		return "", fmt.Errorf("image push: the layout %s names no version (no %s annotation): pass -tag", o.Layout, annotationRefName)
	}
	var opts []name.Option
	if o.Insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.NewTag(strings.TrimSuffix(o.Repo, "/")+":"+tag, opts...)
	if err != nil {
		return "", fmt.Errorf("image push: %q is not a valid image reference: %w: set REGISTRY to host[:port]/path and use a version without '+'", o.Repo+":"+tag, err)
	}
	digest, err := idx.Digest()
	if err != nil {
		return "", fmt.Errorf("image push: digest of the index in %s: %w", o.Layout, err)
	}
	fmt.Fprintf(log, "image: pushing %s (index %s) ...\n", ref, digest)
	if err := remote.WriteIndex(ref, idx,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("stretch-image"),
	); err != nil {
		return "", fmt.Errorf("image push: pushing %s: %w: check that the registry is reachable and that you are logged in to it (docker/podman login writes the credentials this uses)", ref, err)
	}
	return ref.String() + "@" + digest.String(), nil
}

// layoutIndex is the one image index in an OCI layout written by build, and
// the ref.name it was tagged with.
func layoutIndex(dir string) (v1.ImageIndex, string, error) {
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, "", fmt.Errorf("image push: reading the OCI layout %s: %w: run 'make image' first", dir, err)
	}
	m, err := root.IndexManifest()
	if err != nil {
		return nil, "", fmt.Errorf("image push: reading %s/index.json: %w: run 'make image' again", dir, err)
	}
	var found []v1.Descriptor
	for _, d := range m.Manifests {
		if d.MediaType.IsIndex() {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return nil, "", fmt.Errorf("image push: %s/index.json holds %d image indexes, want 1: rebuild the layout with 'make image'", dir, len(found))
	}
	idx, err := root.ImageIndex(found[0].Digest)
	if err != nil {
		return nil, "", fmt.Errorf("image push: image index %s in %s: %w: run 'make image' again", found[0].Digest, dir, err)
	}
	return idx, found[0].Annotations[annotationRefName], nil
}
