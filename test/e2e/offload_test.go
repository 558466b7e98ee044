package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"stretch.dev/stretch/internal/testenv/kwok"
)

// offloadWithKubectl offloads namespace foo from home to the provider with
// plain kubectl and checks it with the FAQ's own commands, then unoffloads it.
func offloadWithKubectl(t *testing.T, home, provider *kwok.Cluster) {
	// The FAQ's command, as users type it (the shell strips the quotes).
	phase := func(g Gomega) string {
		out, err := kubectl(t, home, "get", "namespaceoffloadings", "offloading", "-n", "foo", "-o=jsonpath={['status.offloadingPhase']}")
		g.Expect(err).NotTo(HaveOccurred())
		return out
	}
	// Said when a wait fails: what both sides report.
	explain := func() string {
		off, _ := kubectl(t, home, "get", "namespaceoffloadings", "offloading", "-n", "foo", "-o", "yaml")
		reqs, _ := kubectl(t, provider, "get", "remotenamespaces", "-A", "-o", "yaml")
		return "NamespaceOffloading at home:\n" + off + "\nRemoteNamespaces on the provider:\n" + reqs
	}
	var twin string

	step(t, "a NamespaceOffloading applied with kubectl gets a twin", func(t *testing.T) {
		g := NewWithT(t)
		manifest := filepath.Join(t.TempDir(), "offloading.yaml")
		g.Expect(os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Namespace
metadata:
  name: foo
---
apiVersion: offloading.stretch.dev/v1alpha1
kind: NamespaceOffloading
metadata:
  name: offloading
  namespace: foo
spec:
  clusterSelector:
    nodeSelectorTerms:
    - matchExpressions:
      - {key: region, operator: In, values: [eu]}
`), 0o600)).To(Succeed())
		_, err := kubectl(t, home, "apply", "-f", manifest)
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(phase).WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("Ready"), explain)

		out, err := kubectl(t, home, "get", "namespaceoffloadings", "offloading", "-n", "foo", "-o", "yaml")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("provider-eu:"))
		g.Expect(out).To(ContainSubstring("reason: NamespaceCreated"))
		out, err = kubectl(t, home, "get", "nsoff", "-n", "foo")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(MatchRegexp(`NAME\s+PHASE\s+POD STRATEGY\s+MAPPING\s+REMOTE NAMESPACE\s+AGE`))
		g.Expect(out).To(MatchRegexp(`offloading\s+Ready\s+LocalAndRemote\s+DefaultName\s+foo-\S+`))
		out, err = kubectl(t, home, "get", "namespaceoffloadings", "offloading", "-n", "foo", "-o=jsonpath={['spec.podOffloadingStrategy']}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(Equal("LocalAndRemote"))
		out, err = kubectl(t, home, "get", "namespace", "foo", "-o=jsonpath={.metadata.labels['stretch\\.dev/scheduling-enabled']}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(Equal("true"))

		// The twin on the provider carries the home cluster's ID.
		twin, err = kubectl(t, home, "get", "namespaceoffloadings", "offloading", "-n", "foo", "-o=jsonpath={.status.remoteNamespaceName}")
		g.Expect(err).NotTo(HaveOccurred())
		homeID, err := kubectl(t, home, "get", "configmap", "-n", "stretch-system", "stretch-cluster-identity", "-o=jsonpath={.data.clusterID}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(twin).To(Equal("foo-" + homeID))
		out, err = kubectl(t, provider, "get", "namespace", twin, "-o=jsonpath={.metadata.annotations['stretch\\.dev/remote-namespace-origin']}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(Equal(homeID))
	})

	step(t, "pods are placed by the webhook; a contradiction is admitted with a warning", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "run", "web", "-n", "foo", "--image=registry.k8s.io/pause:3.10", "--restart=Never")
		g.Expect(err).NotTo(HaveOccurred())
		out, err := kubectl(t, home, "get", "pod", "web", "-n", "foo", "-o=jsonpath={.spec.tolerations[*].key}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("virtual-node.stretch.dev/not-allowed"))
		out, err = kubectl(t, home, "get", "pod", "web", "-n", "foo",
			"-o=jsonpath={.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[*].matchExpressions[*]['key','operator']}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(Equal("region stretch.dev/type stretch.dev/type In In NotIn")) // keys, then operators

		manifest := filepath.Join(t.TempDir(), "pod.yaml")
		g.Expect(os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: nowhere, namespace: foo}
spec:
  containers: [{name: app, image: registry.k8s.io/pause:3.10}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: stretch.dev/type, operator: In, values: [virtual-node]}, {key: region, operator: In, values: [us]}]
`), 0o600)).To(Succeed())
		out, err = kubectl(t, home, "apply", "-f", manifest)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("Warning: no node can match the node affinity of this pod"))
		g.Expect(out).To(ContainSubstring("region In (us) contradicts region In (eu)"))
		_, err = kubectl(t, home, "delete", "pod", "web", "nowhere", "-n", "foo", "--wait=false")
		g.Expect(err).NotTo(HaveOccurred())
	})

	step(t, "a selector with a syntax error is reported in the annotation", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "patch", "namespaceoffloading", "offloading", "-n", "foo", "--type=json",
			`-p=[{"op":"replace","path":"/spec/clusterSelector/nodeSelectorTerms/0/matchExpressions/0/operator","value":"Near"}]`)
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(phase).WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("NoClusterSelected"), explain)
		out, err := stretchctl(t, "diagnose", "namespace", "foo", "--kubeconfig", home.Kubeconfig)
		g.Expect(err).To(HaveOccurred(), "a failed check exits non-zero")
		g.Expect(out).To(ContainSubstring("✗ failed   cluster selector syntax"))
		g.Expect(out).To(ContainSubstring("fix: fix spec.clusterSelector"))
		annotation := "-o=jsonpath={.metadata.annotations['offloading\\.stretch\\.dev/cluster-selector-error']}"
		out, err = kubectl(t, home, "get", "namespaceoffloadings", "-n", "foo", "offloading", annotation)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring(`"Near"`))

		_, err = kubectl(t, home, "patch", "namespaceoffloading", "offloading", "-n", "foo", "--type=json",
			`-p=[{"op":"replace","path":"/spec/clusterSelector/nodeSelectorTerms/0/matchExpressions/0/operator","value":"In"}]`)
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(phase).WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("Ready"), explain)
		out, err = kubectl(t, home, "get", "namespaceoffloadings", "-n", "foo", "offloading", annotation)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(BeEmpty())
	})

	step(t, "kubectl delete unoffloads: the twin goes, then the resource", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "delete", "namespaceoffloading", "offloading", "-n", "foo", "--timeout=2m")
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) {
			out, err := kubectl(t, provider, "get", "namespace", twin, "--ignore-not-found")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(strings.TrimSpace(out)).To(BeEmpty())
		}).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		out, err := kubectl(t, home, "get", "namespace", "foo", "--show-labels")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).NotTo(ContainSubstring("stretch.dev/scheduling-enabled"))
	})

	step(t, "the kubectl plugin offloads and unoffloads, waiting for the providers", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "create", "namespace", "bar")
		g.Expect(err).NotTo(HaveOccurred())
		// A plugin takes its flags after its name: no kubectl flags first.
		out, err := run(t, binaries.kubectl, "stretch", "offload", "namespace", "bar", "--selector", "region in (eu)", "--pod-offloading-strategy", "Remote", "--wait", "--kubeconfig", home.Kubeconfig)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("namespace bar, provider provider-eu: NamespaceCreated"))
		g.Expect(out).To(ContainSubstring("✓ namespace bar offloaded"))
		out, err = run(t, binaries.kubectl, "stretch", "unoffload", "namespace", "bar", "--wait", "--yes", "--kubeconfig", home.Kubeconfig)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("✓ namespace bar unoffloaded"))
	})
}

// offloadRemote creates namespace ns at home, offloads it with strategy
// Remote (stretchctl, waiting until Ready) and returns its twins' name.
func offloadRemote(t *testing.T, home *kwok.Cluster, ns string) string {
	t.Helper()
	var twin string
	step(t, "offload the namespace with strategy Remote", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "create", "namespace", ns)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = stretchctl(t, "offload", "namespace", ns, "--kubeconfig", home.Kubeconfig, "--pod-offloading-strategy", "Remote", "--wait")
		g.Expect(err).NotTo(HaveOccurred())
		twin, err = kubectl(t, home, "get", "namespaceoffloadings", "offloading", "-n", ns, "-o=jsonpath={.status.remoteNamespaceName}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(twin).NotTo(BeEmpty())
	})
	return twin
}
