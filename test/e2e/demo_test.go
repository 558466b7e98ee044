package e2e

import (
	"encoding/json"
	"net/netip"
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
// start twice, and 'make demo-down' leaves nothing running. On the way, as
// a newcomer reads them: the virtual nodes show Stretch's version and the
// providers' OS image and runtime, the clusters give pods and Services IPs
// from ranges of their own, and 'kubectl logs' and 'kubectl exec' on home
// pods answer from the provider's kwok.
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
	// -o wide: Stretch's version as the kubelet's; the OS image, kernel
	// (kubectl adds the architecture) and runtime of the providers' kwok
	// nodes.
	g.Expect(regexp.MustCompile(`(?m)^\s+stretch-provider-(eu|us)\s+Ready\s+<none>\s+\S+\s+v\d+\.\d+\.\d+-\S*stretch\S*\s+127\.0\.0\.1\s+<none>\s+`+
		regexp.QuoteMeta(kwok.NodeOSImage)+`\s+kwok-\S+ \(amd64\)\s+kwok-\S+\s+virtual-node\s+(eu|us)\s+kwok$`).FindAllString(string(out), -1)).To(HaveLen(2))
	pods := regexp.MustCompile(`(?m)^\s+pod/(hello-\S+)\s+1/1\s+Running\s+0\s+\S+\s+(\S+)\s+stretch-(provider-eu|provider-us)\s`).FindAllStringSubmatch(string(out), -1)
	g.Expect(pods).To(HaveLen(4))
	expectDistinctRanges(g, string(out), dir, pods)
	expectLogsAndExec(g, string(out), dir, pods)
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

// expectDistinctRanges checks that each cluster of the demo has pod and
// Service ranges of its own, as its table says, and that the home pods
// (pods: name, IP, provider) show the IPs of their provider's range and
// every Service an IP of its cluster's range.
func expectDistinctRanges(g Gomega, out, dir string, pods [][]string) {
	podCIDRs, serviceCIDRs := map[string]netip.Prefix{}, map[string]netip.Prefix{}
	var all []netip.Prefix
	for _, m := range regexp.MustCompile(`(?m)^\s+(home|provider-eu|provider-us)\s+https://127\.0\.0\.1:\d+\s+(\S+)\s+(\S+)$`).FindAllStringSubmatch(out, -1) {
		podCIDRs[m[1]], serviceCIDRs[m[1]] = netip.MustParsePrefix(m[2]), netip.MustParsePrefix(m[3])
		all = append(all, podCIDRs[m[1]], serviceCIDRs[m[1]])
	}
	g.Expect(podCIDRs).To(HaveLen(3), "the table of clusters")
	for i, a := range all {
		for _, b := range all[i+1:] {
			g.Expect(a.Overlaps(b)).To(BeFalse(), "ranges %s and %s", a, b)
		}
	}
	ips := map[string]string{}
	for _, p := range pods {
		g.Expect(ips).NotTo(HaveKey(p[2]), "IP %s of pod %s", p[2], p[1])
		ips[p[2]] = p[1]
		g.Expect(podCIDRs[p[3]].Contains(netip.MustParseAddr(p[2]))).To(BeTrue(), "pod %s on %s has IP %s, outside %s", p[1], p[3], p[2], podCIDRs[p[3]])
	}
	serviceIP := regexp.MustCompile(`(?m)^service/hello\s+ClusterIP\s+(\S+)\s`)
	for role, cmd := range map[string]string{
		"home":        "kubectl --kubeconfig " + dir + "/kubeconfig-home get pods,services -n demo -o wide",
		"provider-eu": "kubectl --kubeconfig " + dir + "/kubeconfig-provider-eu get pods,configmaps,services -n ",
		"provider-us": "kubectl --kubeconfig " + dir + "/kubeconfig-provider-us get pods,configmaps,services -n ",
	} {
		m := serviceIP.FindStringSubmatch(outputOf(out, cmd))
		g.Expect(m).NotTo(BeNil(), "Service hello in the output of %q", cmd)
		g.Expect(serviceCIDRs[role].Contains(netip.MustParseAddr(m[1]))).To(BeTrue(), "Service hello on %s has IP %s, outside %s", role, m[1], serviceCIDRs[role])
	}
}

// expectLogsAndExec checks that the demo's 'kubectl logs' and 'kubectl
// exec' on home pods answer from the provider each pod runs on.
func expectLogsAndExec(g Gomega, out, dir string, pods [][]string) {
	providers := map[string]bool{}
	for _, p := range pods {
		providers[p[3]] = true
	}
	shown := 0
	for _, p := range pods {
		logs := outputOf(out, "kubectl --kubeconfig "+dir+"/kubeconfig-home -n demo logs "+p[1])
		if logs == "" {
			continue
		}
		shown++
		g.Expect(logs).To(ContainSubstring("hello 1.0: listening on :8080"))
		g.Expect(logs).To(ContainSubstring("this log is served by kwok on " + p[3] + ", from "))
		exec := outputOf(out, "kubectl --kubeconfig "+dir+"/kubeconfig-home -n demo exec "+p[1]+` -- sh -c 'echo "hello from $PROVIDER"'`)
		g.Expect(exec).To(Equal("hello from " + p[3] + "\n"))
	}
	g.Expect(shown).To(Equal(len(providers)), "logs and exec of one pod per provider that runs some")
}

// outputOf returns what the demo printed under the first command that
// starts with cmd: its indented lines, unindented.
func outputOf(out, cmd string) string {
	_, after, ok := strings.Cut(out, "\n$ "+cmd)
	if !ok {
		return ""
	}
	lines := strings.Split(after, "\n")[1:] // the rest of the command line
	var b strings.Builder
	for _, line := range lines {
		text, ok := strings.CutPrefix(line, "    ")
		if !ok {
			break
		}
		b.WriteString(text + "\n")
	}
	return b.String()
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
