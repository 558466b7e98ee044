package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The demo is a program: it uses the kwokctl runtime (internal/testenv/kwok)
// and not the harness bound to *testing.T, so it must not link testing (whose
// flags and init would ride along). A dependency that brings it back fails
// here.
func TestDoesNotLinkTesting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps .: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || !slices.Contains(deps, "stretch.dev/stretch/internal/testenv/kwok") {
		t.Fatalf("go list -deps . listed no dependency on internal/testenv/kwok:\n%s", out)
	}
	if slices.Contains(deps, "testing") {
		why, _ := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, "-deps", ".").Output()
		var importers []string
		for line := range strings.SplitSeq(string(why), "\n") {
			if path, imports, ok := strings.Cut(line, ": "); ok && slices.Contains(strings.Fields(imports), "testing") {
				importers = append(importers, path)
			}
		}
		t.Errorf("hack/demo links the testing package, imported by %v: move what the demo needs out of the package that imports testing (as internal/testenv/kwok is apart from internal/testenv)", importers)
	}
}
