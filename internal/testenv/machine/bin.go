package machine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// BinDirEnv overrides where the tool binaries are looked up.
const BinDirEnv = "STRETCH_BIN_DIR"

// RepoRoot returns the root of the Stretch repository, found by walking up
// from the working directory to the go.mod of module stretch.dev/stretch.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module stretch.dev/stretch\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module stretch.dev/stretch above the working directory: run the tests from the repository")
		}
		dir = parent
	}
}

// BinDir returns the folder with the tool binaries: $STRETCH_BIN_DIR, or bin/
// at the repository root.
func BinDir() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// Binary returns the path of a tool binary (kube-apiserver, etcd, kwokctl,
// ...), or an error that says to run 'make tools' when it is missing.
func Binary(name string) (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s not found (%v): run 'make tools' to build the pinned Kubernetes binaries into bin/", path, err)
	}
	return path, nil
}
