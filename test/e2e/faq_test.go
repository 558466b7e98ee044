package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
)

// The seed's FAQ, case by case: each problem is reproduced, seen with the
// page's own kubectl commands (our names) and with 'stretchctl diagnose',
// then the page's fix is applied and the namespace recovers. Home has a kwok
// node for the pods that stay local; provider-eu and provider-us carry
// region=eu and region=us.
func TestFAQ(t *testing.T) {
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: 1}, "home", "provider-eu", "provider-us")
	home, eu, us := clusters[0], clusters[1], clusters[2]
	whole := t
	f := &faq{t: t, home: home}

	step(t, "install, run the managers, peer", func(t *testing.T) {
		g := NewWithT(t)
		for _, c := range []struct {
			cluster      *kwok.Cluster
			name, labels string
		}{{home, "home", "region=home"}, {eu, "provider-eu", "region=eu"}, {us, "provider-us", "region=us"}} {
			_, err := stretchctl(t, "install", "--image", testImage, "--kubeconfig", c.cluster.Kubeconfig, "--cluster-name", c.name, "--cluster-labels", c.labels)
			g.Expect(err).NotTo(HaveOccurred())
			startManager(whole, c.cluster)
		}
		for _, p := range []*kwok.Cluster{eu, us} {
			_, err := stretchctl(t, "peer", "--kubeconfig", home.Kubeconfig, "--remote-kubeconfig", p.Kubeconfig, "--wait", "--timeout", "2m")
			g.Expect(err).NotTo(HaveOccurred())
		}
		f.homeID = f.kubectl(g, home, "get", "configmap", "-n", "stretch-system", "stretch-cluster-identity", "-o=jsonpath={.data.clusterID}")
	})

	step(t, "the resource must be named offloading", func(t *testing.T) {
		g := NewWithT(t)
		f.kubectl(g, home, "create", "namespace", "named")
		out, err := f.apply(t, home, offloadingYAML("named", "offload", "{}"))
		g.Expect(err).To(HaveOccurred())
		g.Expect(out).To(ContainSubstring(`the name must be "offloading", the only one Stretch reconciles`))
		f.diagnoseFails(g, "named", "✗ failed   NamespaceOffloading named offloading", "namespace named is not offloaded", "fix: stretchctl offload namespace named")

		// The fix: the right name.
		_, err = f.apply(t, home, offloadingYAML("named", "offloading", "{}"))
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, "named", "Ready")
		// The page's check of the status: every provider's conditions.
		out = f.kubectl(g, home, "get", "namespaceoffloadings", "offloading", "-n", "named", "-o", "yaml")
		g.Expect(out).To(ContainSubstring("provider-eu:"))
		g.Expect(out).To(ContainSubstring("provider-us:"))
		g.Expect(strings.Count(out, "reason: NamespaceCreated")).To(Equal(2))
		f.diagnosePasses(g, "named", "✓ passed   namespaces on the providers: provider-eu: twin named-"+f.homeID+" exists")
	})

	step(t, "NoClusterSelected: a selector with a syntax error", func(t *testing.T) {
		g := NewWithT(t)
		f.kubectl(g, home, "create", "namespace", "syntax")
		out, err := f.apply(t, home, offloadingYAML("syntax", "offloading", `{clusterSelector: {nodeSelectorTerms: [{matchExpressions: [{key: region, operator: In}]}]}}`))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("Warning:"))
		f.waitPhase(g, "syntax", "NoClusterSelected")
		annotation := f.kubectl(g, home, "get", "namespaceoffloadings", "-n", "syntax", "offloading", `-o=jsonpath={.metadata.annotations['offloading\.stretch\.dev/cluster-selector-error']}`)
		g.Expect(annotation).To(ContainSubstring("values"))
		f.diagnoseFails(g, "syntax", "✗ failed   cluster selector syntax", "spec.clusterSelector cannot be parsed")

		f.kubectl(g, home, "patch", "namespaceoffloading", "offloading", "-n", "syntax", "--type=merge",
			"-p", `{"spec":{"clusterSelector":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"region","operator":"In","values":["eu"]}]}]}}}`)
		f.waitPhase(g, "syntax", "Ready")
		g.Expect(f.kubectl(g, home, "get", "namespaceoffloadings", "-n", "syntax", "offloading", `-o=jsonpath={.metadata.annotations['offloading\.stretch\.dev/cluster-selector-error']}`)).To(BeEmpty())
		f.diagnosePasses(g, "syntax", "✓ passed   cluster selector syntax")
	})

	step(t, "NoClusterSelected: the cluster labels were not set at install time", func(t *testing.T) {
		g := NewWithT(t)
		f.kubectl(g, home, "create", "namespace", "asia")
		_, err := f.apply(t, home, offloadingYAML("asia", "offloading", `{clusterSelector: {nodeSelectorTerms: [{matchExpressions: [{key: region, operator: In, values: [ap]}]}]}}`))
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, "asia", "NoClusterSelected")
		g.Expect(f.kubectl(g, home, "get", "namespaceoffloadings", "-n", "asia", "offloading", "-o=jsonpath={.metadata.annotations}")).NotTo(ContainSubstring("cluster-selector-error"))
		nodes := f.kubectl(g, home, "get", "nodes", "--show-labels")
		g.Expect(nodes).To(ContainSubstring("region=us"))
		g.Expect(nodes).NotTo(ContainSubstring("region=ap"))
		f.diagnoseFails(g, "asia", "✗ failed   virtual nodes against the selector", "no virtual node matches the selector")

		// The fix: the provider's cluster labels, set again at install.
		_, err = stretchctl(t, "install", "--image", testImage, "--kubeconfig", us.Kubeconfig, "--cluster-name", "provider-us", "--cluster-labels", "region=ap")
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, "asia", "Ready")
		g.Expect(f.kubectl(g, home, "get", "nodes", "--show-labels")).To(ContainSubstring("region=ap"))
		f.diagnosePasses(g, "asia", "✓ passed   virtual nodes against the selector: selected: stretch-provider-us")
	})

	step(t, "AllFailed: the namespace name is too long for the twin", func(t *testing.T) {
		g := NewWithT(t)
		long := strings.Repeat("a", 27)
		f.kubectl(g, home, "create", "namespace", long)
		_, err := f.apply(t, home, offloadingYAML(long, "offloading", "{}"))
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, long, "AllFailed")
		out := f.kubectl(g, home, "get", "namespaceoffloadings", "offloading", "-n", long, "-o", "yaml")
		g.Expect(strings.Count(out, "reason: CreationFailed")).To(Equal(2))
		g.Expect(strings.Count(out, "NameTooLong: twin namespace name")).To(Equal(2))
		g.Expect(out).To(ContainSubstring("26"), "the message gives the longest home namespace that fits")
		f.diagnoseFails(g, long, "✗ failed   twin namespace name", "NameTooLong", "✗ failed   namespaces on the providers: provider-eu: NameTooLong")

		// The fix: a name that fits (26 characters), or a twin name of one's own.
		fits := strings.Repeat("a", 26)
		f.kubectl(g, home, "create", "namespace", fits)
		_, err = f.apply(t, home, offloadingYAML(fits, "offloading", "{}"))
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, fits, "Ready")
		f.kubectl(g, home, "delete", "namespaceoffloading", "offloading", "-n", long)
		f.kubectl(g, home, "create", "namespace", "long-"+long[:20])
		_, err = f.apply(t, home, offloadingYAML("long-"+long[:20], "offloading", `{namespaceMappingStrategy: SelectedName, remoteNamespaceName: short-twin}`))
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, "long-"+long[:20], "Ready")
		f.diagnosePasses(g, fits, "✓ passed   twin namespace name: twin "+fits+"-"+f.homeID+" (63 of at most 63 characters); with DefaultName a home namespace may have at most 26 characters ("+fits+" has 26)")
		f.diagnosePasses(g, "long-"+long[:20], "✓ passed   twin namespace name: twin short-twin (10 of at most 63 characters)\n")
	})

	step(t, "SomeFailed: a namespace with the twin's name already exists on a provider", func(t *testing.T) {
		g := NewWithT(t)
		twin := "clash-" + f.homeID
		f.kubectl(g, us, "create", "namespace", twin)
		f.kubectl(g, us, "create", "configmap", "theirs", "-n", twin, "--from-literal=owner=provider")
		f.kubectl(g, home, "create", "namespace", "clash")
		_, err := f.apply(t, home, offloadingYAML("clash", "offloading", "{}"))
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, "clash", "SomeFailed")
		// The page: which clusters failed, and the origin annotation of each twin.
		out := f.kubectl(g, home, "get", "namespaceoffloadings", "offloading", "-n", "clash",
			"-o=jsonpath={.status.remoteNamespacesConditions.provider-us[?(@.type==\"Ready\")]['reason','message']}")
		g.Expect(out).To(HavePrefix("CreationFailed AlreadyExists: "))
		g.Expect(f.kubectl(g, home, "get", "namespaceoffloadings", "offloading", "-n", "clash",
			"-o=jsonpath={.status.remoteNamespacesConditions.provider-eu[?(@.type==\"Ready\")].reason}")).To(Equal("NamespaceCreated"))
		origin := `-o=jsonpath={.metadata.annotations['stretch\.dev/remote-namespace-origin']}`
		g.Expect(f.kubectl(g, eu, "get", "namespace", twin, origin)).To(Equal(f.homeID))
		g.Expect(f.kubectl(g, us, "get", "namespace", twin, origin)).To(BeEmpty())
		f.diagnoseFails(g, "clash", "✗ failed   namespaces on the providers", "provider-us: AlreadyExists: namespace "+twin+" already exists on this provider",
			"fix: namespace "+twin+" on provider-us was not created by Stretch for this cluster")
		g.Expect(f.kubectl(g, us, "get", "configmap", "theirs", "-n", twin, "-o=jsonpath={.data.owner}")).To(Equal("provider"), "the existing namespace is untouched")

		// The fix: remove the other namespace on that provider.
		f.kubectl(g, us, "delete", "namespace", twin, "--timeout=2m")
		f.waitPhase(g, "clash", "Ready")
		g.Eventually(func() string { return f.kubectl(g, us, "get", "namespace", twin, origin) }).WithTimeout(time.Minute).Should(Equal(f.homeID))
		f.diagnosePasses(g, "clash", "provider-us: twin "+twin+" exists, created by Stretch for this cluster")
	})

	step(t, "pods not offloaded: the pod offloading strategy is Local", func(t *testing.T) {
		g := NewWithT(t)
		f.kubectl(g, home, "create", "namespace", "local")
		_, err := f.apply(t, home, offloadingYAML("local", "offloading", "{podOffloadingStrategy: Local}"))
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, "local", "Ready")
		f.kubectl(g, home, "create", "deployment", "app", "-n", "local", "--image=registry.example/app:1", "--replicas=2")
		f.waitReady(g, "local", "app", "2")
		g.Expect(f.nodesOf(g, "local")).To(HaveEach(HavePrefix("kwok-node-")))
		g.Expect(f.kubectl(g, home, "get", "namespaceoffloadings", "offloading", "-n", "local", "-o=jsonpath={['spec.podOffloadingStrategy']}")).To(Equal("Local"))
		// Pods at home is what Local asks for: the check says so, and passes.
		f.diagnosePasses(g, "local", "✓ passed   pod offloading strategy: Local: pods stay home: only the twin namespaces are created\n")

		// The fix: a strategy that offloads, and new pods.
		f.kubectl(g, home, "patch", "namespaceoffloading", "offloading", "-n", "local", "--type=merge", "-p", `{"spec":{"podOffloadingStrategy":"Remote"}}`)
		g.Eventually(func() string {
			return f.kubectl(g, home, "get", "namespace", "local", `-o=jsonpath={.metadata.labels['stretch\.dev/scheduling-enabled']}`)
		}).WithTimeout(time.Minute).Should(Equal("true"))
		f.kubectl(g, home, "rollout", "restart", "deployment/app", "-n", "local")
		f.kubectl(g, home, "rollout", "status", "deployment/app", "-n", "local", "--timeout=2m")
		g.Eventually(func() []string { return f.nodesOf(g, "local") }).WithTimeout(time.Minute).Should(And(HaveLen(2), HaveEach(HavePrefix("stretch-provider-"))))
		f.diagnosePasses(g, "local", "✓ passed   pod offloading strategy: Remote: pods run only on the selected providers\n")
	})

	step(t, "pods pending: the pod's NodeSelectorTerms contradict the imposed ones", func(t *testing.T) {
		g := NewWithT(t)
		f.kubectl(g, home, "create", "namespace", "picky")
		_, err := f.apply(t, home, offloadingYAML("picky", "offloading", `{podOffloadingStrategy: Remote, clusterSelector: {nodeSelectorTerms: [{matchExpressions: [{key: region, operator: In, values: [eu]}]}]}}`))
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, "picky", "Ready")
		out, err := f.apply(t, home, `apiVersion: v1
kind: Pod
metadata: {name: wants-us, namespace: picky}
spec:
  containers: [{name: app, image: registry.example/app:1}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: region, operator: In, values: [us]}]
`)
		g.Expect(err).NotTo(HaveOccurred(), "admitted, as the page describes")
		g.Expect(out).To(ContainSubstring("Warning: no node can match the node affinity of this pod"))
		g.Consistently(func() string {
			return f.kubectl(g, home, "get", "pod", "wants-us", "-n", "picky", "-o=jsonpath={.status.phase}")
		}).WithTimeout(3 * time.Second).Should(Equal("Pending"))
		f.diagnoseFails(g, "picky", "✗ failed   pending pod wants-us", "no node can ever match its node affinity", "region In (us) contradicts region In (eu)")

		// The fix: drop the contradicting terms.
		f.kubectl(g, home, "delete", "pod", "wants-us", "-n", "picky")
		f.kubectl(g, home, "run", "wants-us", "-n", "picky", "--image=registry.example/app:1", "--restart=Never")
		g.Eventually(func() string {
			return f.kubectl(g, home, "get", "pod", "wants-us", "-n", "picky", "-o=jsonpath={.spec.nodeName} {.status.phase}")
		}).WithTimeout(time.Minute).Should(Equal("stretch-provider-eu Running"))
		f.diagnosePasses(g, "picky")
	})

	step(t, "pods pending: created before the namespace was offloaded", func(t *testing.T) {
		g := NewWithT(t)
		// Only provider-eu's virtual node has region=eu, and a pod that
		// Stretch did not place does not tolerate its taint.
		runEarly := func() {
			f.kubectl(g, home, "run", "early", "-n", "early", "--image=registry.example/app:1", "--restart=Never", `--overrides={"spec":{"nodeSelector":{"region":"eu"}}}`)
		}
		f.kubectl(g, home, "create", "namespace", "early")
		runEarly() // before the offloading: the webhook does not see it
		_, err := f.apply(t, home, offloadingYAML("early", "offloading", "{podOffloadingStrategy: Remote}"))
		g.Expect(err).NotTo(HaveOccurred())
		f.waitPhase(g, "early", "Ready")
		g.Expect(f.kubectl(g, home, "get", "pod", "early", "-n", "early", "-o=jsonpath={.status.phase}")).To(Equal("Pending"))
		f.diagnoseFails(g, "early", "✗ failed   pending pod early: it was not placed by Stretch: it was created at", "the offloading became Ready",
			"fix: delete it and create it again (no controller does it for this pod): kubectl delete pod -n early early")

		// The fix: the same pod again, now placed by Stretch.
		f.kubectl(g, home, "delete", "pod", "early", "-n", "early")
		runEarly()
		g.Eventually(func() string {
			return f.kubectl(g, home, "get", "pod", "early", "-n", "early", "-o=jsonpath={.spec.nodeName} {.status.phase}")
		}).WithTimeout(time.Minute).Should(Equal("stretch-provider-eu Running"))
		f.diagnosePasses(g, "early")
	})

	step(t, "unoffload: pods and twins go, the namespace stays at home", func(t *testing.T) {
		g := NewWithT(t)
		twin := f.kubectl(g, home, "get", "namespaceoffloadings", "offloading", "-n", "local", "-o=jsonpath={.status.remoteNamespaceName}")
		_, err := stretchctl(t, "unoffload", "namespace", "local", "--wait", "--yes", "--kubeconfig", home.Kubeconfig)
		g.Expect(err).NotTo(HaveOccurred())
		for _, p := range []*kwok.Cluster{eu, us} {
			g.Expect(f.kubectl(g, p, "get", "namespace", twin, "--ignore-not-found")).To(BeEmpty())
		}
		// The Deployment's pods are recreated at home, where they now run.
		g.Eventually(func() []string { return f.nodesOf(g, "local") }).WithTimeout(2 * time.Minute).Should(And(HaveLen(2), HaveEach(HavePrefix("kwok-node-"))))
	})
}

// faq holds what the FAQ's steps share.
type faq struct {
	t      *testing.T
	home   *kwok.Cluster
	homeID string
}

// kubectl runs kubectl against c and returns its trimmed output; it must succeed.
func (f *faq) kubectl(g Gomega, c *kwok.Cluster, args ...string) string {
	out, err := kubectl(f.t, c, args...)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return strings.TrimSpace(out)
}

// apply applies a manifest with kubectl and returns its output and error.
func (f *faq) apply(t *testing.T, c *kwok.Cluster, manifest string) (string, error) {
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	return kubectl(t, c, "apply", "-f", path)
}

// waitPhase waits until the page's phase command prints phase.
func (f *faq) waitPhase(g Gomega, ns, phase string) {
	g.EventuallyWithOffset(1, func() string {
		out, _ := kubectl(f.t, f.home, "get", "namespaceoffloadings", "offloading", "-n", ns, "-o=jsonpath={['status.offloadingPhase']}")
		return out
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal(phase))
}

// diagnoseFails runs 'stretchctl diagnose namespace ns' and expects it to
// exit with 1, checks not passing, with every want in its output.
func (f *faq) diagnoseFails(g Gomega, ns string, want ...string) {
	out, err := stretchctl(f.t, "diagnose", "namespace", ns, "--kubeconfig", f.home.Kubeconfig)
	g.ExpectWithOffset(1, exitCode(err)).To(Equal(1), "diagnose exits with 1 when a check does not pass: %v", err)
	g.ExpectWithOffset(1, out).To(ContainSubstring("checks did not pass"))
	for _, w := range want {
		g.ExpectWithOffset(1, out).To(ContainSubstring(w))
	}
}

// diagnosePasses runs 'kubectl stretch diagnose namespace -n ns' (the
// plugin, and -n) until every check passes, with every want in its output.
func (f *faq) diagnosePasses(g Gomega, ns string, want ...string) {
	g.EventuallyWithOffset(1, func(g Gomega) {
		out, err := run(f.t, binaries.kubectl, "stretch", "diagnose", "namespace", "-n", ns, "--kubeconfig", f.home.Kubeconfig)
		g.Expect(exitCode(err)).To(Equal(0), "diagnose exits with 0 once every check passes: %v", err)
		g.Expect(out).NotTo(ContainSubstring("✗"))
		g.Expect(out).NotTo(ContainSubstring("! warning"))
		for _, w := range want {
			g.Expect(out).To(ContainSubstring(w))
		}
	}).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
}

// exitCode is the exit code of a command run by run: 0 without error, -1
// when it did not exit by itself.
func exitCode(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		return -1
	}
}

// waitReady waits until deployment name in ns has ready replicas.
func (f *faq) waitReady(g Gomega, ns, name, replicas string) {
	g.EventuallyWithOffset(1, func() string {
		out, _ := kubectl(f.t, f.home, "get", "deployment", name, "-n", ns, "-o=jsonpath={.status.readyReplicas}")
		return out
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Equal(replicas))
}

// nodesOf returns the nodes of the running pods of ns at home.
func (f *faq) nodesOf(g Gomega, ns string) []string {
	out := f.kubectl(g, f.home, "get", "pods", "-n", ns, "--field-selector=status.phase=Running", "-o=jsonpath={.items[*].spec.nodeName}")
	return strings.Fields(out)
}

// offloadingYAML is a NamespaceOffloading named name in ns with spec (flow YAML).
func offloadingYAML(ns, name, spec string) string {
	return `apiVersion: offloading.stretch.dev/v1alpha1
kind: NamespaceOffloading
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec: ` + spec + "\n"
}
