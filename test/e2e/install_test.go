package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"stretch.dev/stretch/config"
	"stretch.dev/stretch/internal/testenv"
)

const (
	systemNamespace  = "stretch-system"
	identityName     = "stretch-cluster-identity"
	runtimeClassName = "stretch"
)

// stretchctl install and uninstall, run as a user would, on a real cluster.
func TestInstall(t *testing.T) {
	c := testenv.StartKwokClusterForTest(t, suite, "install", testenv.KwokOptions{})
	ctx := t.Context()

	var clusterID string
	step(t, "install creates the CRDs, namespace, identity and RuntimeClass", func(t *testing.T) {
		g := NewWithT(t)
		_, err := stretchctl(t, "install", "--kubeconfig", c.Kubeconfig,
			"--cluster-name", "provider-eu", "--cluster-labels", "region=eu,provider=kwok")
		g.Expect(err).NotTo(HaveOccurred())
		clusterID = expectInstalled(ctx, g, c.Client, "provider-eu", map[string]string{"region": "eu", "provider": "kwok"})
	})

	step(t, "install again keeps the cluster ID and updates the labels", func(t *testing.T) {
		g := NewWithT(t)
		_, err := stretchctl(t, "install", "--kubeconfig", c.Kubeconfig,
			"--cluster-name", "provider-eu", "--cluster-labels", "region=eu,provider=kwok,tier=gold")
		g.Expect(err).NotTo(HaveOccurred())
		id := expectInstalled(ctx, g, c.Client, "provider-eu", map[string]string{"region": "eu", "provider": "kwok", "tier": "gold"})
		g.Expect(id).To(Equal(clusterID), "cluster ID after a second install")
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
			&corev1.Namespace{}, &corev1.ConfigMap{}, &nodev1.RuntimeClass{},
		}
		keys := []client.ObjectKey{
			{Name: systemNamespace}, {Namespace: systemNamespace, Name: identityName}, {Name: runtimeClassName},
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
