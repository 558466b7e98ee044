// Package version holds the version of the Stretch binaries, set at link time:
//
//	go build -ldflags "-X stretch.dev/stretch/internal/version.Version=v0.1.0" ./cmd/...
package version

// Version is the release the binary was built from; "dev" for a local build.
var Version = "dev"
