// Command image builds the OCI images of the Stretch binaries and pushes them,
// without a container daemon, the way ko does: the static Go binary is the only
// layer over a small base layer (CA bundle, nonroot user), written into an OCI
// image layout directory with a reproducible digest.
//
//	image build -root DIR -package ./cmd/NAME -version V -source URL -out DIR
//	image push -layout DIR -repo REGISTRY/NAME
//
// The Makefile targets 'image' and 'image-push' run it with 'go run'.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

const usage = `usage: image build [flags]   build the OCI image layout of one binary
       image push [flags]    push a built image layout to a registry
Run 'image build -h' or 'image push -h' for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("image: no subcommand: run 'image build' or 'image push'")
	}
	switch args[0] {
	case "build":
		return runBuild(ctx, args[1:], stderr)
	case "push":
		return runPush(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("image: unknown subcommand %q: run 'image build' or 'image push'", args[0])
	}
}

func runBuild(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o buildOptions
	var platforms, epoch string
	fs.StringVar(&o.Root, "root", ".", "directory of the Go main module that holds the binary")
	fs.StringVar(&o.Package, "package", "", "package of the binary, relative to -root (e.g. ./cmd/stretch-controller-manager); its last element names the binary and the image")
	fs.StringVar(&o.Version, "version", "", "version of the image: the org.opencontainers.image.version annotation and the tag in the layout")
	fs.StringVar(&o.Revision, "revision", "", "source revision (default: git HEAD of -root, with -dirty when the tree has changes)")
	fs.StringVar(&epoch, "epoch", "", "timestamp of every file and of the config, in Unix seconds (default: $SOURCE_DATE_EPOCH, else the commit time of git HEAD)")
	fs.StringVar(&o.Source, "source", "", "source repository URL (org.opencontainers.image.source)")
	fs.StringVar(&o.Licenses, "licenses", "", "SPDX license expression (org.opencontainers.image.licenses); left out when empty")
	fs.StringVar(&o.LDFlags, "ldflags", "", "extra linker flags, as 'make build' passes them (-s -w -buildid= are always added)")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated platforms of the image index")
	fs.StringVar(&o.Out, "out", "", "OCI image layout directory to write; replaced when it exists")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("image build: unexpected arguments %q: every input is a flag (see 'image build -h')", fs.Args())
	}
	var err error
	if o.Platforms, err = parsePlatforms(platforms); err != nil {
		return err
	}
	if o.Revision == "" {
		if o.Revision, err = gitRevision(ctx, o.Root); err != nil {
			return err
		}
	}
	if o.Epoch, err = resolveEpoch(ctx, epoch, o.Root); err != nil {
		return err
	}
	res, err := build(ctx, o, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "image: wrote %s: index %s\n", o.Out, res.Index)
	for _, p := range res.Platforms {
		fmt.Fprintf(stderr, "image:   %-12s manifest %s, layers %s compressed (binary %s)\n",
			p.Platform, p.Manifest, mib(p.CompressedSize), mib(p.BinarySize))
	}
	return nil
}

func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o pushOptions
	fs.StringVar(&o.Layout, "layout", "", "OCI image layout directory written by 'image build'")
	fs.StringVar(&o.Repo, "repo", "", "repository to push to, e.g. registry.example.com/stretch/stretch-controller-manager")
	fs.StringVar(&o.Tag, "tag", "", "tag to push (default: the version the layout was built with)")
	fs.BoolVar(&o.Insecure, "insecure", false, "use plain HTTP for a registry that is not on a loopback or private address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("image push: unexpected arguments %q: every input is a flag (see 'image push -h')", fs.Args())
	}
	ref, err := push(ctx, o, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, ref)
	return nil
}

// resolveEpoch picks the timestamp of the image: the flag, else
// SOURCE_DATE_EPOCH (the reproducible-builds convention), else the commit
// time of HEAD, so the same commit always gives the same digest.
func resolveEpoch(ctx context.Context, flagValue, root string) (int64, error) {
	if flagValue == "" {
		flagValue = os.Getenv("SOURCE_DATE_EPOCH")
	}
	if flagValue == "" {
		return gitCommitTime(ctx, root)
	}
	epoch, err := strconv.ParseInt(strings.TrimSpace(flagValue), 10, 64)
	if err != nil || epoch < 0 {
		return 0, fmt.Errorf("image build: epoch %q (from -epoch or SOURCE_DATE_EPOCH) is not a non-negative number of Unix seconds: set it to e.g. $(git log -1 --format=%%ct)", flagValue)
	}
	return epoch, nil
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
