package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"stretch.dev/stretch/config"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
	"stretch.dev/stretch/internal/testenv/machine"
)

const (
	systemNamespace  = "stretch-system"
	identityName     = "stretch-cluster-identity"
	runtimeClassName = "stretch"
	storageClassName = "stretch"
)

// stretchctl install and uninstall, run as a user would, on a real cluster:
// the chart's release with its Deployment rolled out (kwok runs its pods),
// the cluster ID kept across a second install and across 'helm uninstall'
// and 'helm install', and uninstall removing everything.
func TestInstall(t *testing.T) {
	c := testenv.StartKwokClusterForTest(t, suite, "install", kwok.Options{FakeNodes: 2})
	ctx := t.Context()
	helm, err := machine.Binary("helm")
	if err != nil {
		t.Fatal(err)
	}
	root, err := machine.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	helmEnv := t.TempDir()
	runHelm := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		return run(t, "env", append([]string{"HELM_CACHE_HOME=" + helmEnv, "HELM_CONFIG_HOME=" + helmEnv, "HELM_DATA_HOME=" + helmEnv,
			helm, "--kubeconfig", c.Kubeconfig, "--namespace", systemNamespace}, args...)...)
	}

	step(t, "install without an image is refused before anything is written", func(t *testing.T) {
		g := NewWithT(t)
		out, err := stretchctl(t, "install", "--kubeconfig", c.Kubeconfig, "--cluster-name", "provider-eu")
		g.Expect(err).To(HaveOccurred())
		g.Expect(out).To(ContainSubstring("nothing was changed"))
		g.Expect(out).To(ContainSubstring("image.repository is required"))
		g.Expect(apierrors.IsNotFound(c.Client.Get(ctx, client.ObjectKey{Name: systemNamespace}, &corev1.Namespace{}))).To(BeTrue(), "no namespace %s", systemNamespace)
	})

	var clusterID string
	step(t, "install deploys the manager with the chart and waits for it, showing progress", func(t *testing.T) {
		g := NewWithT(t)
		out, err := stretchctl(t, "install", "--kubeconfig", c.Kubeconfig, "--image", testImage, "--wait",
			"--cluster-name", "provider-eu", "--cluster-labels", "region=eu,provider=kwok")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("Installing chart stretch"))
		g.Expect(out).To(MatchRegexp(`deployment stretch-system/stretch-controller-manager: \d/2 replicas updated`))
		g.Expect(out).To(ContainSubstring("✓ deployment stretch-system/stretch-controller-manager rolled out"))
		clusterID = expectInstalled(ctx, g, c.Client, "provider-eu", map[string]string{"region": "eu", "provider": "kwok"})
		expectManagerDeployed(ctx, g, c.Client)
		out, err = runHelm(t, "list")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(MatchRegexp(`stretch\s+stretch-system\s+1\s.*deployed`))
	})

	step(t, "install again keeps the cluster ID, updates the labels and upgrades the release", func(t *testing.T) {
		g := NewWithT(t)
		out, err := stretchctl(t, "install", "--kubeconfig", c.Kubeconfig,
			"--cluster-name", "provider-eu", "--cluster-labels", "region=eu,provider=kwok,tier=gold")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("Upgrading Helm release stretch-system/stretch from revision 1"))
		id := expectInstalled(ctx, g, c.Client, "provider-eu", map[string]string{"region": "eu", "provider": "kwok", "tier": "gold"})
		g.Expect(id).To(Equal(clusterID), "cluster ID after a second install")
		expectManagerDeployed(ctx, g, c.Client) // the image given first is kept
	})

	step(t, "install refuses another name for the cluster, changing nothing", func(t *testing.T) {
		g := NewWithT(t)
		out, err := stretchctl(t, "install", "--kubeconfig", c.Kubeconfig, "--cluster-name", "provider-us")
		g.Expect(err).To(HaveOccurred())
		g.Expect(out).To(ContainSubstring(`already installed as "provider-eu"`))
		out, err = runHelm(t, "history", "stretch")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(strings.Count(strings.TrimSpace(out), "\n")).To(Equal(2), "two revisions, no third:\n%s", out)
	})

	step(t, "helm uninstall and helm install keep the cluster ID and the CRDs", func(t *testing.T) {
		g := NewWithT(t)
		_, err := runHelm(t, "uninstall", "stretch", "--wait")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(apierrors.IsNotFound(c.Client.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: "stretch-controller-manager"}, &appsv1.Deployment{}))).To(BeTrue(), "the Deployment goes with the release")
		_, err = runHelm(t, "install", "stretch", filepath.Join(root, "charts", "stretch"), "--set", "clusterName=provider-eu",
			"--set", "image.repository=registry.example/stretch-controller-manager", "--set", "image.tag=e2e", "--wait")
		g.Expect(err).NotTo(HaveOccurred())
		id := expectInstalled(ctx, g, c.Client, "provider-eu", map[string]string{"region": "eu", "provider": "kwok", "tier": "gold"})
		g.Expect(id).To(Equal(clusterID), "cluster ID after helm uninstall and helm install")
		expectManagerDeployed(ctx, g, c.Client)
	})

	step(t, "kubectl lists NamespaceOffloadings", func(t *testing.T) {
		g := NewWithT(t)
		out, err := kubectl(t, c, "get", "namespaceoffloadings", "-A")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("No resources found"))
	})

	step(t, "uninstall removes everything install created", func(t *testing.T) {
		g := NewWithT(t)
		_, err := stretchctl(t, "uninstall", "--kubeconfig", c.Kubeconfig)
		g.Expect(err).NotTo(HaveOccurred())
		crds, err := config.CRDs()
		g.Expect(err).NotTo(HaveOccurred())
		gone := []client.Object{
			&corev1.Namespace{}, &corev1.ConfigMap{}, &nodev1.RuntimeClass{}, &storagev1.StorageClass{}, &rbacv1.ClusterRole{}, &rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{},
		}
		keys := []client.ObjectKey{
			{Name: systemNamespace}, {Namespace: systemNamespace, Name: identityName}, {Name: runtimeClassName}, {Name: storageClassName},
			{Name: "stretch-controller-manager"}, {Name: "stretch-remote-workloads"}, {Name: "stretch-controller-manager"},
		}
		for _, crd := range crds {
			gone = append(gone, &apiextensionsv1.CustomResourceDefinition{})
			keys = append(keys, client.ObjectKey{Name: crd.Name})
		}
		// The namespace goes once the namespace controller emptied it.
		g.Eventually(func(g Gomega) {
			for i, obj := range gone {
				err := c.Client.Get(ctx, keys[i], obj)
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T %s: %v", obj, keys[i], err)
			}
		}).WithTimeout(2 * time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
	})
}

// expectManagerDeployed checks the chart's Deployment, rolled out with the
// test image, and its Services and PodDisruptionBudget.
func expectManagerDeployed(ctx context.Context, g Gomega, c client.Client) {
	d := &appsv1.Deployment{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: "stretch-controller-manager"}, d)).To(Succeed())
	g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal(testImage))
	g.Expect(d.Spec.Replicas).To(HaveValue(Equal(int32(2))))
	for _, name := range []string{"stretch-webhook", "stretch-metrics"} {
		g.Expect(c.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: name}, &corev1.Service{})).To(Succeed(), "Service %s", name)
	}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: "stretch-controller-manager"}, &policyv1.PodDisruptionBudget{})).To(Succeed())
}

// expectInstalled checks what install creates and returns the cluster ID.
func expectInstalled(ctx context.Context, g Gomega, c client.Client, name string, labels map[string]string) string {
	crds, err := config.CRDs()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(crds).NotTo(BeEmpty())
	for _, want := range crds {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(c.Get(ctx, client.ObjectKey{Name: want.Name}, crd)).To(Succeed())
		g.Expect(crd.Status.Conditions).To(ContainElement(And(
			HaveField("Type", apiextensionsv1.Established),
			HaveField("Status", apiextensionsv1.ConditionTrue),
		)), "CRD %s Established", crd.Name)
	}
	g.Expect(c.Get(ctx, client.ObjectKey{Name: systemNamespace}, &corev1.Namespace{})).To(Succeed())
	g.Expect(c.Get(ctx, client.ObjectKey{Name: runtimeClassName}, &nodev1.RuntimeClass{})).To(Succeed())

	cm := &corev1.ConfigMap{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: identityName}, cm)).To(Succeed())
	g.Expect(cm.Data).To(HaveKeyWithValue("clusterName", name))
	id, err := uuid.Parse(cm.Data["clusterID"])
	g.Expect(err).NotTo(HaveOccurred(), "clusterID %q is a UUID", cm.Data["clusterID"])
	got := map[string]string{}
	g.Expect(yaml.Unmarshal([]byte(cm.Data["clusterLabels"]), &got)).To(Succeed())
	g.Expect(got).To(Equal(labels))
	return id.String()
}

// step runs one step of a scenario as a subtest and stops the scenario when it
// fails: the next steps build on it.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}
