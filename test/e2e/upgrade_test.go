package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

// previousRelease is the last commit before Stretch shipped a chart: its
// stretchctl installs CRDs and RBAC with no Helm release, and its manager
// runs outside the cluster. The upgrade test builds both from git history.
const previousRelease = "d77b8600ab6b87a9e2e93ca2839f0eb04fedb0c8"

// An upgrade restarts nothing that runs: with a namespace offloaded and pods
// running at home and on the provider, (1) the previous release (no chart,
// managers outside the cluster) is upgraded to this release's chart and its
// manager, as the chart's ServiceAccount, then (2) the chart is upgraded to a
// new image. After each, no pod is recreated or restarted at home or on the
// provider, no twin or twin request is recreated, and both cluster IDs stay.
// The provider's defaults reach the existing peering: its twins are held to
// Pod Security baseline, and what that forbids is refused.
func TestUpgradeRestartsNothing(t *testing.T) {
	previous := buildPreviousRelease(t)
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: 1}, "home", "provider-eu")
	home, provider := clusters[0], clusters[1]

	var oldManagers []*testenv.ManagerProcess
	step(t, "the previous release installs both clusters and runs their managers", func(t *testing.T) {
		g := NewWithT(t)
		_, err := run(t, previous.stretchctl, "install", "--kubeconfig", home.Kubeconfig, "--cluster-name", "home")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = run(t, previous.stretchctl, "install", "--kubeconfig", provider.Kubeconfig, "--cluster-name", "provider-eu", "--cluster-labels", "region=eu")
		g.Expect(err).NotTo(HaveOccurred())
	})
	for _, c := range clusters {
		oldManagers = append(oldManagers, testenv.RunManagerBinary(t, suite, c, previous.manager, false))
	}

	step(t, "peer and offload; pods run at home and on the provider", func(t *testing.T) {
		g := NewWithT(t)
		_, err := run(t, previous.stretchctl, "peer", "--kubeconfig", home.Kubeconfig, "--remote-kubeconfig", provider.Kubeconfig, "--wait", "--timeout", "2m")
		g.Expect(err).NotTo(HaveOccurred())
		for _, ns := range []string{"offloaded", "local"} {
			_, err = kubectl(t, home, "create", "namespace", ns)
			g.Expect(err).NotTo(HaveOccurred())
		}
		_, err = run(t, previous.stretchctl, "offload", "namespace", "offloaded", "--kubeconfig", home.Kubeconfig, "--pod-offloading-strategy", "Remote", "--wait")
		g.Expect(err).NotTo(HaveOccurred())
		manifest := filepath.Join(t.TempDir(), "apps.yaml")
		g.Expect(os.WriteFile(manifest, []byte(deployment("offloaded", 4, "blue")+"---\n"+deployment("local", 2, "blue")), 0o600)).To(Succeed())
		_, err = kubectl(t, home, "apply", "-f", manifest)
		g.Expect(err).NotTo(HaveOccurred())
		waitReplicas(t, g, home, "offloaded", 4)
		waitReplicas(t, g, home, "local", 2)
	})
	before := observeRunning(t, home, provider)

	step(t, "upgrade to this release: stretchctl install takes the objects over into the chart's release", func(t *testing.T) {
		g := NewWithT(t)
		// A rollout stops the old pods first; the managers here are processes.
		for _, m := range oldManagers {
			m.Stop()
		}
		out, err := stretchctl(t, "install", "--kubeconfig", home.Kubeconfig, "--cluster-name", "home", "--image", "registry.example/stretch-controller-manager:v1", "--wait")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("Installing chart stretch"))
		g.Expect(out).To(ContainSubstring("rolled out"))
		_, err = stretchctl(t, "install", "--kubeconfig", provider.Kubeconfig, "--cluster-name", "provider-eu", "--cluster-labels", "region=eu", "--image", "registry.example/stretch-controller-manager:v1", "--wait")
		g.Expect(err).NotTo(HaveOccurred())
	})
	stops := []func(){startManager(t, home), startManager(t, provider)}
	step(t, "after the upgrade nothing that ran was restarted or recreated", func(t *testing.T) {
		expectUnchanged(t, home, provider, before, "probe-1")
	})

	step(t, "the release's defaults hold on the existing peering: twins at Pod Security baseline, the provider refuses what they forbid", func(t *testing.T) {
		expectDefaultsApplied(t, home, provider)
	})

	step(t, "the grants of the existing peering carry this release's names, the old ones gone", func(t *testing.T) {
		expectGrantsRenamed(t, provider)
	})

	step(t, "upgrade the chart's release to a new image", func(t *testing.T) {
		g := NewWithT(t)
		for _, c := range clusters {
			out, err := stretchctl(t, "install", "--kubeconfig", c.Kubeconfig, "--cluster-name", map[*kwok.Cluster]string{home: "home", provider: "provider-eu"}[c],
				"--image", "registry.example/stretch-controller-manager:v2", "--wait")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out).To(MatchRegexp(`Upgrading Helm release stretch-system/stretch from revision 1`))
			d := &appsv1.Deployment{}
			g.Expect(c.Client.Get(t.Context(), client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: wellknown.ManagerName}, d)).To(Succeed())
			g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("registry.example/stretch-controller-manager:v2"))
		}
		// The labels given at the first install stayed (values are reused).
		id, err := identity.Load(t.Context(), provider.Client)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(id.Labels).To(HaveKeyWithValue("region", "eu"))
	})
	// A rollout replaces the manager's pods: here, its processes.
	for _, stop := range stops {
		stop()
	}
	startManager(t, home)
	startManager(t, provider)
	step(t, "after the chart upgrade nothing that ran was restarted or recreated", func(t *testing.T) {
		expectUnchanged(t, home, provider, before, "probe-2")
	})
}

// previousBuild holds the binaries of previousRelease.
type previousBuild struct{ stretchctl, manager string }

// buildPreviousRelease builds stretchctl and stretch-controller-manager of
// previousRelease from git history into a temporary directory.
func buildPreviousRelease(t *testing.T) previousBuild {
	t.Helper()
	root, err := machine.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src, out := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	archive := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", root, previousRelease, src))
	if b, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("extracting the previous release %s from git history: %v\n%s(a shallow clone lacks it: fetch the history with 'git fetch --unshallow')", previousRelease, err, b)
	}
	b := previousBuild{stretchctl: filepath.Join(out, "stretchctl"), manager: filepath.Join(out, "stretch-controller-manager")}
	for bin, pkg := range map[string]string{b.stretchctl: "./cmd/stretchctl", b.manager: "./cmd/stretch-controller-manager"} {
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		build.Dir = src
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s of the previous release %s: %v\n%s", pkg, previousRelease, err, out)
		}
	}
	return b
}

// running is what must survive an upgrade untouched, by UID.
type running struct {
	homePods, remotePods map[string]int32 // UID → restarts, summed over containers
	twins, requests      []string
	homeID, providerID   string
}

func observeRunning(t *testing.T, home, provider *kwok.Cluster) running {
	t.Helper()
	ctx := t.Context()
	r := running{homePods: map[string]int32{}, remotePods: map[string]int32{}}
	pods := func(c client.Client, into map[string]int32, opts ...client.ListOption) {
		list := &corev1.PodList{}
		if err := c.List(ctx, list, opts...); err != nil {
			t.Fatal(err)
		}
		for _, p := range list.Items {
			if p.Namespace == wellknown.SystemNamespace || strings.HasPrefix(p.Namespace, "kube-") {
				continue // the chart's own pods roll, by design
			}
			var restarts int32
			for _, cs := range p.Status.ContainerStatuses {
				restarts += cs.RestartCount
			}
			into[string(p.UID)] = restarts
		}
	}
	pods(home.Client, r.homePods)
	pods(provider.Client, r.remotePods)
	nss := &corev1.NamespaceList{}
	if err := provider.Client.List(ctx, nss, client.HasLabels{wellknown.OriginClusterIDLabel}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss.Items {
		r.twins = append(r.twins, string(ns.UID))
	}
	reqs := &peeringv1alpha1.RemoteNamespaceList{}
	if err := provider.Client.List(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	for _, req := range reqs.Items {
		r.requests = append(r.requests, string(req.UID))
	}
	for c, into := range map[*kwok.Cluster]*string{home: &r.homeID, provider: &r.providerID} {
		id, err := identity.Load(ctx, c.Client)
		if err != nil {
			t.Fatal(err)
		}
		*into = id.ID
	}
	return r
}

// expectUnchanged waits until the new managers have proved that they work
// (the provider's virtual node has a Lease renewed after now, and a new
// Deployment of the offloaded namespace runs remotely), then checks that
// everything of before is still there, the same objects with the same
// restart counts, and nothing else but the probe's pod; then it deletes the
// probe and waits until it is gone on both sides.
func expectUnchanged(t *testing.T, home, provider *kwok.Cluster, before running, probe string) {
	g := NewWithT(t)
	since := time.Now()
	g.Eventually(func(g Gomega) {
		out, err := kubectl(t, home, "get", "lease", "stretch-provider-eu", "-n", corev1.NamespaceNodeLease, "-o=jsonpath={.spec.renewTime}")
		g.Expect(err).NotTo(HaveOccurred())
		renewed, err := time.Parse(time.RFC3339Nano, out)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(renewed).To(BeTemporally(">", since.Add(-time.Second)))
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	_, err := kubectl(t, home, "create", "deployment", probe, "-n", "offloaded", "--image", "registry.example/probe:1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) string {
		out, err := kubectl(t, home, "get", "deployment", probe, "-n", "offloaded", "-o=jsonpath={.status.readyReplicas}")
		g.Expect(err).NotTo(HaveOccurred())
		return out
	}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(Equal("1"), "the probe runs remotely")

	after := observeRunning(t, home, provider)
	g.Expect(after.homeID).To(Equal(before.homeID), "home cluster ID")
	g.Expect(after.providerID).To(Equal(before.providerID), "provider cluster ID")
	g.Expect(after.twins).To(ConsistOf(before.twins), "twin namespaces by UID")
	g.Expect(after.requests).To(ConsistOf(before.requests), "twin requests by UID")
	for _, side := range []struct {
		name          string
		before, after map[string]int32
	}{{"home", before.homePods, after.homePods}, {"provider", before.remotePods, after.remotePods}} {
		for uid, restarts := range side.before {
			g.Expect(side.after).To(HaveKeyWithValue(uid, restarts), "pod %s at the %s, with its restart count", uid, side.name)
		}
		g.Expect(side.after).To(HaveLen(len(side.before)+1), "pods at the %s: those before and the probe's", side.name)
	}
	t.Logf("unchanged across the upgrade: %d pods at home, %d remote pods, %d twin namespaces, %d twin requests, both cluster IDs; 0 restarted or recreated",
		len(before.homePods), len(before.remotePods), len(before.twins), len(before.requests))

	_, err = kubectl(t, home, "delete", "deployment", probe, "-n", "offloaded", "--wait=false")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		now := observeRunning(t, home, provider)
		g.Expect(now.homePods).To(HaveLen(len(before.homePods)))
		g.Expect(now.remotePods).To(HaveLen(len(before.remotePods)))
	}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(Succeed(), "the probe's pods gone at home and on the provider")
}

// waitReplicas waits until Deployment web in ns has n ready replicas.
func waitReplicas(t *testing.T, g Gomega, c *kwok.Cluster, ns string, n int) {
	g.Eventually(func(g Gomega) string {
		out, err := kubectl(t, c, "get", "deployment", "web", "-n", ns, "-o=jsonpath={.status.readyReplicas}")
		g.Expect(err).NotTo(HaveOccurred())
		return out
	}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Equal(fmt.Sprint(n)), "ready replicas of %s/web", ns)
}

// expectDefaultsApplied checks that what this release enforces by default
// on a provider reached the peering the previous release made: the twins,
// made without Pod Security labels, carry baseline's, and the provider's
// twin pod admission is registered; a privileged pod offloaded now is
// refused, the home pod saying why, and nothing runs on the provider.
func expectDefaultsApplied(t *testing.T, home, provider *kwok.Cluster) {
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		out, err := kubectl(t, provider, "get", "namespaces", "-l", wellknown.OriginClusterIDLabel,
			`-o=jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.pod-security\.kubernetes\.io/enforce}{"\n"}{end}`)
		g.Expect(err).NotTo(HaveOccurred())
		lines := strings.Fields(out)
		g.Expect(lines).NotTo(BeEmpty())
		for _, l := range lines {
			g.Expect(l).To(HaveSuffix("=baseline"), "twin and its enforced level")
		}
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	_, err := kubectl(t, provider, "get", "validatingwebhookconfiguration", wellknown.TwinPodsWebhookName)
	g.Expect(err).NotTo(HaveOccurred())

	manifest := filepath.Join(t.TempDir(), "privileged.yaml")
	g.Expect(os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: privileged, namespace: offloaded}
spec:
  containers:
  - {name: app, image: registry.example/app:1, securityContext: {privileged: true}}
`), 0o600)).To(Succeed())
	_, err = kubectl(t, home, "apply", "-f", manifest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) string {
		out, err := kubectl(t, home, "get", "pod", "privileged", "-n", "offloaded",
			`-o=jsonpath={.status.conditions[?(@.type=="`+string(offloadingv1alpha1.PodOffloadedCondition)+`")].message}`)
		g.Expect(err).NotTo(HaveOccurred())
		return out
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(ContainSubstring(`violates PodSecurity "baseline:latest": privileged`))
	out, err := kubectl(t, provider, "get", "pods", "-A", "-l", wellknown.OriginClusterIDLabel, "-o=jsonpath={.items[*].metadata.name}")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.Fields(out)).NotTo(ContainElement("privileged"))
	_, err = kubectl(t, home, "delete", "pod", "privileged", "-n", "offloaded", "--wait=true", "--timeout=1m")
	g.Expect(err).NotTo(HaveOccurred())
}

// expectGrantsRenamed checks that the RBAC objects the previous release
// named after the home cluster's ServiceAccount (stretch-home) were replaced
// by this release's: the tenant namespace's Role and RoleBinding by
// 'stretchctl install', each twin's RoleBinding by the tenant controller.
func expectGrantsRenamed(t *testing.T, provider *kwok.Cluster) {
	g := NewWithT(t)
	out, err := kubectl(t, provider, "get", "namespaces", "-o=jsonpath={.items[*].metadata.name}")
	g.Expect(err).NotTo(HaveOccurred())
	var tenants []string
	for _, ns := range strings.Fields(out) {
		if strings.HasPrefix(ns, wellknown.TenantNamespacePrefix) {
			tenants = append(tenants, ns)
		}
	}
	g.Expect(tenants).To(HaveLen(1))
	names := func(g Gomega, kind, ns string) []string {
		out, err := kubectl(t, provider, "get", kind, "-n", ns, "-o=jsonpath={.items[*].metadata.name}")
		g.Expect(err).NotTo(HaveOccurred())
		return strings.Fields(out)
	}
	g.Eventually(func(g Gomega) {
		g.Expect(names(g, "roles", tenants[0])).To(And(ContainElement(wellknown.TenantRoleName), Not(ContainElement(wellknown.LegacyTenantRoleName))))
		g.Expect(names(g, "rolebindings", tenants[0])).To(And(ContainElement(wellknown.TenantRoleName), Not(ContainElement(wellknown.LegacyTenantRoleName))))
		twins, err := kubectl(t, provider, "get", "namespaces", "-l", wellknown.OriginClusterIDLabel, "-o=jsonpath={.items[*].metadata.name}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(strings.Fields(twins)).NotTo(BeEmpty())
		for _, twin := range strings.Fields(twins) {
			g.Expect(names(g, "rolebindings", twin)).To(And(ContainElement(wellknown.TwinRoleBindingName), Not(ContainElement(wellknown.LegacyTwinRoleBindingName))), "twin %s", twin)
		}
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
}
