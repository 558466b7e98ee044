package main

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestPushThenPull(t *testing.T) {
	g := NewWithT(t)
	dir, res := sharedImage(t)

	// An in-process registry on 127.0.0.1 (httptest binds loopback only).
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.Hostname()).To(Equal("127.0.0.1"))
	repo := u.Host + "/stretch/" + binaryName

	ctx := context.Background()
	pushed, err := push(ctx, pushOptions{Layout: dir, Repo: repo}, io.Discard)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pushed).To(Equal(repo+":"+testVersion+"@"+res.Index.String()),
		"push prints the tag it pushed with the index digest")

	tag, err := name.NewTag(repo + ":" + testVersion)
	g.Expect(err).NotTo(HaveOccurred())
	desc, err := remote.Head(tag, remote.WithContext(ctx))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(desc.Digest).To(Equal(res.Index), "the tag points at the built index")

	remoteIdx, err := remote.Index(tag, remote.WithContext(ctx))
	g.Expect(err).NotTo(HaveOccurred())
	remoteDigest, err := remoteIdx.Digest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(remoteDigest).To(Equal(res.Index))

	localIdx, _, err := layoutIndex(dir)
	g.Expect(err).NotTo(HaveOccurred())
	localManifest, err := localIdx.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	remoteManifest, err := remoteIdx.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(remoteManifest.Manifests).To(Equal(localManifest.Manifests))
	g.Expect(localManifest.Manifests).To(HaveLen(2))

	// Each platform pulled by platform, as a node would, is the built image,
	// down to its layers.
	for _, pr := range res.Platforms {
		p := platformImageFromLayout(t, dir, pr.Platform)
		plat, err := v1.ParsePlatform(pr.Platform)
		g.Expect(err).NotTo(HaveOccurred())
		pulled, err := remote.Image(tag, remote.WithContext(ctx), remote.WithPlatform(*plat))
		g.Expect(err).NotTo(HaveOccurred(), "pulling %s for %s", tag, pr.Platform)
		digest, err := pulled.Digest()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(digest).To(Equal(pr.Manifest), "manifest digest of %s", pr.Platform)

		localLayers, err := p.Layers()
		g.Expect(err).NotTo(HaveOccurred())
		pulledLayers, err := pulled.Layers()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(pulledLayers).To(HaveLen(len(localLayers)))
		for i := range localLayers {
			want, err := localLayers[i].Digest()
			g.Expect(err).NotTo(HaveOccurred())
			// Read the blob back: the registry verifies nothing on our behalf here.
			rc, err := pulledLayers[i].Compressed()
			g.Expect(err).NotTo(HaveOccurred())
			n, err := io.Copy(io.Discard, rc)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(rc.Close()).To(Succeed())
			size, err := localLayers[i].Size()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(n).To(Equal(size))
			got, err := pulledLayers[i].Digest()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(want), "layer %d of %s", i, pr.Platform)
		}
	}
}

func TestPushRefusesMissingInputs(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts pushOptions
		want string
	}{
		{"no repository", pushOptions{Layout: "x"}, "no repository: pass -repo REGISTRY/NAME (make image-push REGISTRY=host/path)"},
		{"no layout", pushOptions{Repo: "127.0.0.1:1/x"}, "no layout"},
		{"layout not built", pushOptions{Repo: "127.0.0.1:1/x", Layout: "/nonexistent/layout"}, "run 'make image' first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := push(context.Background(), tc.opts, io.Discard)
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}
