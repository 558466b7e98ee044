package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/kwok"
)

// A StatefulSet whose claims are of class stretch runs offloaded with
// strategy Remote on a provider whose own class is WaitForFirstConsumer:
// the home scheduler picks the virtual node, the virtual kubelet creates
// the claims there with the provider's class and binds them at home, the
// remote pods start, the provider binds the claims and that shows at home.
// Scaling down keeps the claims on both sides and scaling up reuses them;
// an unoffload keeps the twin, and says why, until the claims are deleted
// at home (design §4.23). Real kube-scheduler and kube-controller-manager
// on both sides; the provider's provisioner is played by the test.
func TestStatefulSetWithVolumesRunsOnProvider(t *testing.T) {
	clusters := testenv.StartKwokClustersForTest(t, suite, kwok.Options{FakeNodes: 1}, "home", "provider")
	home, provider := clusters[0], clusters[1]
	const ns = "db"

	step(t, "install", func(t *testing.T) {
		g := NewWithT(t)
		for _, c := range clusters {
			_, err := stretchctl(t, "install", "--image", testImage, "--kubeconfig", c.Kubeconfig, "--cluster-name", c.Name)
			g.Expect(err).NotTo(HaveOccurred())
		}
	})
	// They run until the test ends, not only a step.
	startManager(t, home)
	startManager(t, provider)
	provision(t, provider, "fast")

	step(t, "peer and map class stretch to the provider class fast", func(t *testing.T) {
		g := NewWithT(t)
		_, err := stretchctl(t, "peer", "--kubeconfig", home.Kubeconfig, "--remote-kubeconfig", provider.Kubeconfig, "--wait", "--timeout", "2m")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = kubectl(t, home, "patch", "remotecluster", provider.Name, "--type", "merge", "-p", `{"spec":{"storageClasses":[{"homeClass":"stretch","providerClass":"fast"}]}}`)
		g.Expect(err).NotTo(HaveOccurred())
		manifest := filepath.Join(t.TempDir(), "fast.yaml")
		g.Expect(os.WriteFile(manifest, []byte(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
provisioner: fast.example.com
volumeBindingMode: WaitForFirstConsumer
`), 0o600)).To(Succeed())
		_, err = kubectl(t, provider, "apply", "-f", manifest)
		g.Expect(err).NotTo(HaveOccurred())
	})

	twin := offloadRemote(t, home, ns)

	// Said when a wait fails: both sides' pods, claims and volumes.
	explain := func() string {
		h, _ := kubectl(t, home, "get", "pods,pvc,pv", "-A", "-o", "wide")
		he, _ := kubectl(t, home, "get", "events", "-n", ns)
		p, _ := kubectl(t, provider, "get", "pods,pvc,pv", "-A", "-o", "wide")
		pe, _ := kubectl(t, provider, "get", "events", "-n", twin)
		return "home:\n" + h + he + "\nprovider:\n" + p + pe
	}
	// phases lists "name phase" of the kind's objects in namespace n.
	phases := func(g Gomega, c *kwok.Cluster, kind, n string) []string {
		out, err := kubectl(t, c, "get", kind, "-n", n, "-o=jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}")
		g.Expect(err).NotTo(HaveOccurred())
		return strings.Fields(strings.ReplaceAll(out, " ", "="))
	}
	claimUID := func(g Gomega, name string) string {
		out, err := kubectl(t, home, "get", "pvc", name, "-n", ns, "-o=jsonpath={.metadata.uid}")
		g.Expect(err).NotTo(HaveOccurred())
		return out
	}

	manifest := filepath.Join(t.TempDir(), "db.yaml")
	var firstUID string
	step(t, "a StatefulSet with claims of class stretch runs on the virtual node", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(os.WriteFile(manifest, []byte(statefulSet(ns, 2)), 0o600)).To(Succeed())
		_, err := kubectl(t, home, "apply", "-f", manifest)
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) string {
			out, err := kubectl(t, home, "get", "pods", "-n", ns, "-o=jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}={.status.phase} {end}")
			g.Expect(err).NotTo(HaveOccurred())
			return out
		}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Equal("db-0=stretch-"+provider.Name+"=Running db-1=stretch-"+provider.Name+"=Running "), explain)
		g.Eventually(func(g Gomega) []string { return phases(g, home, "pvc", ns) }).WithTimeout(time.Minute).
			Should(ConsistOf("data-db-0=Bound", "data-db-1=Bound"), explain)
		g.Eventually(func(g Gomega) []string { return phases(g, provider, "pvc", twin) }).WithTimeout(time.Minute).
			Should(ConsistOf("data-db-0=Bound", "data-db-1=Bound"), explain)
		out, err := kubectl(t, provider, "get", "pvc", "-n", twin, "-o=jsonpath={.items[*].spec.storageClassName}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(Equal("fast fast"))
		// The binding state flows back to the home volumes.
		g.Eventually(func(g Gomega) string {
			out, err := kubectl(t, home, "get", "pv", "-o=jsonpath={range .items[*]}{.spec.claimRef.name}={.metadata.annotations.volumes\\.stretch\\.dev/remote-phase} {end}")
			g.Expect(err).NotTo(HaveOccurred())
			return out
		}).WithTimeout(time.Minute).Should(And(ContainSubstring("data-db-0=Bound"), ContainSubstring("data-db-1=Bound")), explain)
		firstUID = claimUID(g, "data-db-1")
	})

	step(t, "scaling down keeps the claims on both sides; scaling up reuses them", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "scale", "statefulset", "db", "-n", ns, "--replicas", "1")
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) []string { return phases(g, provider, "pods", twin) }).WithTimeout(time.Minute).
			Should(ConsistOf("db-0=Running"), explain)
		g.Consistently(func(g Gomega) []string { return phases(g, provider, "pvc", twin) }).WithTimeout(5 * time.Second).
			Should(ConsistOf("data-db-0=Bound", "data-db-1=Bound"))
		g.Expect(phases(g, home, "pvc", ns)).To(ConsistOf("data-db-0=Bound", "data-db-1=Bound"))

		_, err = kubectl(t, home, "scale", "statefulset", "db", "-n", ns, "--replicas", "2")
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) []string { return phases(g, provider, "pods", twin) }).WithTimeout(2*time.Minute).
			Should(ConsistOf("db-0=Running", "db-1=Running"), explain)
		g.Expect(claimUID(g, "data-db-1")).To(Equal(firstUID))
	})

	step(t, "an unoffload keeps the twin while it holds the claims, and says why", func(t *testing.T) {
		g := NewWithT(t)
		out, err := stretchctl(t, "unoffload", "namespace", ns, "--kubeconfig", home.Kubeconfig)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(ContainSubstring("provider " + provider.Name + " keeps the twin while it holds the copies of claims data-db-0, data-db-1 (their data)"))
		g.Eventually(func(g Gomega) string {
			out, err := kubectl(t, home, "get", "namespaceoffloadings", "offloading", "-n", ns, "-o=jsonpath={.status.remoteNamespacesConditions."+provider.Name+"[?(@.type==\"Ready\")].reason}")
			g.Expect(err).NotTo(HaveOccurred())
			return out
		}).WithTimeout(time.Minute).Should(Equal("RemoteVolumesHeld"), explain)
		events, err := kubectl(t, home, "get", "events", "-n", ns, "--field-selector", "reason=UnoffloadBlocked", "-o=jsonpath={.items[*].message}")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(events).To(ContainSubstring("data-db-0 (PersistentVolume pvc-"))
		g.Consistently(func(g Gomega) []string { return phases(g, provider, "pvc", twin) }).WithTimeout(5 * time.Second).
			Should(ConsistOf("data-db-0=Bound", "data-db-1=Bound"))
	})

	step(t, "deleting the claims at home lets the unoffload finish", func(t *testing.T) {
		g := NewWithT(t)
		_, err := kubectl(t, home, "scale", "statefulset", "db", "-n", ns, "--replicas", "0")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = kubectl(t, home, "delete", "pvc", "-n", ns, "data-db-0", "data-db-1", "--wait=false")
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) string {
			out, _ := kubectl(t, home, "get", "namespaceoffloadings", "-n", ns, "-o=name")
			return out
		}).WithTimeout(2*time.Minute).WithPolling(2*time.Second).Should(BeEmpty(), explain)
		g.Eventually(func(g Gomega) string {
			out, _ := kubectl(t, provider, "get", "namespace", twin, "--ignore-not-found", "-o=name")
			return out
		}).WithTimeout(time.Minute).Should(BeEmpty(), explain)
		out, err := kubectl(t, home, "get", "pv", "-o=name")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(out).To(BeEmpty())
	})
}

// statefulSet is a StatefulSet with one claim of class stretch per pod.
func statefulSet(ns string, replicas int) string {
	return `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: ` + ns + `}
spec:
  replicas: ` + strconv.Itoa(replicas) + `
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: registry.example/db:1
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: stretch
      resources: {requests: {storage: 1Gi}}
`
}

// provision plays, until the test ends, the provisioner of class on
// cluster c, as a real one would: each claim of that class the scheduler
// placed (annotation volume.kubernetes.io/selected-node) gets a
// PersistentVolume of its size and modes, bound to it; a volume released
// by its claim's deletion is deleted.
func provision(t *testing.T, c *kwok.Cluster, class string) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("clientset of %s: %v", c.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			claims, err := cs.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			for _, pvc := range claims.Items {
				if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != class || pvc.Spec.VolumeName != "" || pvc.Annotations["volume.kubernetes.io/selected-node"] == "" {
					continue
				}
				pv := &corev1.PersistentVolume{
					ObjectMeta: metav1.ObjectMeta{Name: "pvc-" + string(pvc.UID), Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": class + ".example.com"}},
					Spec: corev1.PersistentVolumeSpec{
						Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
						AccessModes:                   pvc.Spec.AccessModes,
						StorageClassName:              class,
						PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
						ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
						PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/" + class + "/" + string(pvc.UID)}},
					},
				}
				if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
					t.Logf("provisioner of %s on %s: %v", class, c.Name, err)
				}
			}
			pvs, err := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			for _, pv := range pvs.Items {
				if pv.Spec.StorageClassName == class && pv.Status.Phase == corev1.VolumeReleased {
					_ = cs.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
				}
			}
			return false, nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
}
