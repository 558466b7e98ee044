package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

// The README's "Install on your clusters" lines work as written: its
// 'stretchctl install' and 'helm install' commands run, unchanged, against
// two clusters whose kubeconfigs are home.kubeconfig and eu.kubeconfig, and
// each cluster then has the manager's Deployment with the README's image and
// the identity the command named.
func TestREADMEInstallLines(t *testing.T) {
	root, err := machine.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	commands := installCommands(t, string(readme))
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: 1}, "home", "provider-eu")
	home, eu := clusters[0], clusters[1]

	dir := t.TempDir()
	for name, c := range map[string]*kwok.Cluster{"home.kubeconfig": home, "eu.kubeconfig": eu} {
		data, err := os.ReadFile(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(root, "charts"), filepath.Join(dir, "charts")); err != nil {
		t.Fatal(err)
	}
	bin, err := machine.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range commands {
		ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", line)
		cmd.Dir = dir
		// helm keeps its cache and settings under these; nothing of the
		// user's is read or written.
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
			"HELM_CACHE_HOME="+filepath.Join(dir, ".helm/cache"), "HELM_CONFIG_HOME="+filepath.Join(dir, ".helm/config"), "HELM_DATA_HOME="+filepath.Join(dir, ".helm/data"))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		t.Logf("$ %s\n%s", line, out.String())
		if err != nil {
			t.Fatalf("the README's line failed: %v", err)
		}
	}

	g := NewWithT(t)
	for c, name := range map[*kwok.Cluster]string{home: "home", eu: "provider-eu"} {
		d := &appsv1.Deployment{}
		g.Expect(c.Client.Get(t.Context(), client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: wellknown.ManagerName}, d)).To(Succeed())
		g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("registry.example.com/stretch/stretch-controller-manager:v0.1.0"))
		g.Expect(d.Status.AvailableReplicas).To(Equal(int32(2)), "the README's --wait waited for the rollout")
		if name == "home" { // helm alone leaves the identity to the manager
			id, err := identity.Load(t.Context(), c.Client)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(id.Name).To(Equal(name))
		}
	}
}

// installCommands are the 'stretchctl install' and 'helm install' commands
// of the README's "Install on your clusters" section, with their
// continuation lines joined.
func installCommands(t *testing.T, readme string) []string {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Install on your clusters\n")
	if !ok {
		t.Fatal(`README.md has no "## Install on your clusters" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(section)
	if block == nil {
		t.Fatal(`the README's "Install on your clusters" section has no sh block`)
	}
	var commands []string
	for _, cmd := range strings.Split(strings.ReplaceAll(block[1], "\\\n", " "), "\n") {
		cmd = strings.Join(strings.Fields(cmd), " ")
		if strings.HasPrefix(cmd, "stretchctl install ") || strings.HasPrefix(cmd, "helm install ") {
			commands = append(commands, cmd)
		}
	}
	if len(commands) != 2 {
		t.Fatalf("want one 'stretchctl install' and one 'helm install' line in the README's install block, got %q", commands)
	}
	return commands
}
