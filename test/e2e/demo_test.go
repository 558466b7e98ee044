package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

// What 'make demo' runs: the story comes up, says what to type, refuses to
// start twice, and 'make demo-down' leaves nothing running.
func TestDemo(t *testing.T) {
	g := NewWithT(t)
	root, err := machine.RepoRoot()
	g.Expect(err).NotTo(HaveOccurred())
	demo := filepath.Join(t.TempDir(), "demo")
	build := exec.Command("go", "build", "-o", demo, "./hack/demo")
	build.Dir = root
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	dir := filepath.Join(t.TempDir(), ".demo")
	t.Cleanup(func() {
		// Whatever a failure left; not run(), whose context is done by now.
		_, _ = runIn(t, root, demo, "-dir", dir, "down")
	})

	out, err = runIn(t, root, demo, "-dir", dir, "up")
	if err != nil {
		testenv.KeepArtifact(t, suite, filepath.Join(dir, "logs", "stretch-controller-manager-home.log"))
	}
	g.Expect(err).NotTo(HaveOccurred())
	for _, want := range []string{
		"$ stretchctl peer --kubeconfig " + dir + "/kubeconfig-home --remote-kubeconfig " + dir + "/kubeconfig-provider-us --wait",
		`deployment "hello" successfully rolled out`,
		"The demo is running. Try:",
		"export KUBECONFIG=" + dir + "/kubeconfig-home",
		"stretchctl diagnose namespace demo",
	} {
		g.Expect(string(out)).To(ContainSubstring(want))
	}
	g.Expect(regexp.MustCompile(`(?m)^\s+stretch-provider-(eu|us)\s+Ready\s+<none>\s+\S+\s+virtual-node\s+(eu|us)\s+kwok$`).FindAllString(string(out), -1)).To(HaveLen(2))
	g.Expect(regexp.MustCompile(`(?m)^\s+hello-\S+\s+1/1\s+Running\s+0\s+\S+\s+\S+\s+stretch-provider-(eu|us)\s`).FindAllString(string(out), -1)).To(HaveLen(4))
	for _, role := range []string{"home", "provider-eu", "provider-us"} {
		g.Expect(filepath.Join(dir, "kubeconfig-"+role)).To(BeAnExistingFile())
	}

	out, err = runIn(t, root, demo, "-dir", dir, "up")
	g.Expect(err).To(HaveOccurred())
	g.Expect(string(out)).To(ContainSubstring("a demo is already running"))
	g.Expect(string(out)).To(ContainSubstring("make demo-down"))

	// What runs: the clusters' components (under their roots) and the managers.
	var st struct {
		Clusters []struct{ Kwok kwok.State }
		Managers []struct{ PID int }
	}
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(json.Unmarshal(data, &st)).To(Succeed())
	g.Expect(st.Clusters).To(HaveLen(3))
	g.Expect(st.Managers).To(HaveLen(3))

	out, err = runIn(t, root, demo, "-dir", dir, "down")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(out)).To(ContainSubstring("Stopped; the ports are free."))
	g.Expect(dir).NotTo(BeADirectory())
	for _, c := range st.Clusters {
		g.Expect(processesMatching(c.Kwok.Root)).To(BeEmpty(), "processes of cluster %s", c.Kwok.Name)
		g.Expect(c.Kwok.Root).NotTo(BeADirectory())
	}
	for _, m := range st.Managers {
		g.Expect(machine.ProcessRunning(m.PID)).To(BeFalse(), "manager pid %d", m.PID)
	}
}

// processesMatching returns the command lines that contain s.
func processesMatching(s string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			found = append(found, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return found
}

// runIn runs bin in dir and returns its output.
func runIn(t *testing.T, dir, bin string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s\n%s", filepath.Base(bin), strings.Join(args, " "), out)
	return out, err
}
