package charts_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/jsonpath"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/charts"
	"stretch.dev/stretch/config"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/manager"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/machine"
)

var cluster *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { cluster = s[0] }, "home")
}

// base are the values of a default install: only the required cluster name.
func base() map[string]any {
	return map[string]any{"clusterName": "provider-eu", "image": map[string]any{"repository": testRepository}}
}

// testRepository is where the tests' image would be pulled from.
const testRepository = "registry.example.com/stretch/stretch-controller-manager"

func render(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := charts.Render(values, wellknown.SystemNamespace)
	if err != nil {
		t.Fatalf("rendering the chart with %v: %v", values, err)
	}
	return objs
}

// find returns the rendered object of that kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// convert decodes a rendered object into its typed form, refusing unknown fields.
func convert[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string, into *T) *T {
	t.Helper()
	u := find(objs, kind, name)
	if u == nil {
		t.Fatalf("the chart renders no %s %s", kind, name)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("decoding %s %s: %v", kind, name, err)
	}
	return into
}

func kindNames(objs []*unstructured.Unstructured) []string {
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.GetKind() + "/" + o.GetName()
	}
	return names
}

func chartDir(t *testing.T) string {
	t.Helper()
	root, err := machine.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "charts", "stretch")
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := machine.Binary("helm")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	// No user's repositories, plugins or kubeconfig: only the arguments count.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home, "KUBECONFIG="+filepath.Join(home, "none"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestHelmLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default", []string{"--set", "clusterName=x,image.repository=" + testRepository}},
		{"manager outside the cluster", []string{"--set", "manager.enabled=false"}},
		{"everything on", []string{"--set", "clusterName=x,image.repository=" + testRepository + ",metrics.serviceMonitor.enabled=true,clusterLabels.region=eu,image.digest=sha256:" + strings.Repeat("a", 64)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"lint", chartDir(t), "--strict"}, tc.args...)
			out, err := helm(t, args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			NewWithT(t).Expect(out).To(ContainSubstring("0 chart(s) failed"))
		})
	}
}

// TestRenderMatchesHelmTemplate: Render gives the objects 'helm template'
// gives (Helm orders them differently: CRDs after ServiceAccounts).
func TestRenderMatchesHelmTemplate(t *testing.T) {
	g := NewWithT(t)
	out, err := helm(t, "template", charts.ReleaseName, chartDir(t), "--namespace", wellknown.SystemNamespace,
		"--kube-version", charts.KubernetesVersion, "--set", "clusterName=provider-eu,image.repository="+testRepository)
	g.Expect(err).NotTo(HaveOccurred(), out)

	want := map[string]map[string]any{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		obj := map[string]any{}
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		g.Expect(err).NotTo(HaveOccurred())
		if len(obj) > 0 {
			u := unstructured.Unstructured{Object: obj}
			want[u.GetKind()+"/"+u.GetName()] = obj
		}
	}
	got := map[string]map[string]any{}
	for _, o := range render(t, base()) {
		got[o.GetKind()+"/"+o.GetName()] = o.Object
	}
	g.Expect(got).To(HaveLen(len(want)))
	for key, obj := range want {
		g.Expect(got).To(HaveKeyWithValue(key, obj), "%s differs from helm template's", key)
	}
}

func TestRenderedObjects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   []string
	}{{
		name:   "default",
		values: base(),
		want: []string{
			"CustomResourceDefinition/namespaceoffloadings.offloading.stretch.dev",
			"CustomResourceDefinition/remoteclusters.peering.stretch.dev",
			"CustomResourceDefinition/remotenamespaces.peering.stretch.dev",
			"CustomResourceDefinition/tenantpolicies.peering.stretch.dev",
			"PodDisruptionBudget/stretch-controller-manager",
			"ServiceAccount/stretch-controller-manager",
			"StorageClass/stretch",
			"ClusterRole/stretch-controller-manager",
			"ClusterRole/stretch-remote-workloads",
			"ClusterRoleBinding/stretch-controller-manager",
			"Service/stretch-webhook",
			"Service/stretch-metrics",
			"Deployment/stretch-controller-manager",
			"RuntimeClass/stretch",
		},
	}, {
		name:   "manager outside the cluster",
		values: map[string]any{"manager": map[string]any{"enabled": false}},
		want: []string{
			"CustomResourceDefinition/namespaceoffloadings.offloading.stretch.dev",
			"CustomResourceDefinition/remoteclusters.peering.stretch.dev",
			"CustomResourceDefinition/remotenamespaces.peering.stretch.dev",
			"CustomResourceDefinition/tenantpolicies.peering.stretch.dev",
			"ServiceAccount/stretch-controller-manager",
			"StorageClass/stretch",
			"ClusterRole/stretch-controller-manager",
			"ClusterRole/stretch-remote-workloads",
			"ClusterRoleBinding/stretch-controller-manager",
			"RuntimeClass/stretch",
		},
	}, {
		name:   "no CRDs, no PDB, a ServiceMonitor",
		values: with(base(), "crds", map[string]any{"enabled": false}, "podDisruptionBudget", map[string]any{"enabled": false}, "metrics", map[string]any{"serviceMonitor": map[string]any{"enabled": true}}),
		want: []string{
			"ServiceAccount/stretch-controller-manager",
			"StorageClass/stretch",
			"ClusterRole/stretch-controller-manager",
			"ClusterRole/stretch-remote-workloads",
			"ClusterRoleBinding/stretch-controller-manager",
			"Service/stretch-webhook",
			"Service/stretch-metrics",
			"Deployment/stretch-controller-manager",
			"RuntimeClass/stretch",
			"ServiceMonitor/stretch-controller-manager",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			objs := render(t, tc.values)
			g.Expect(kindNames(objs)).To(Equal(tc.want), "the objects, in install order")
			for _, o := range objs {
				g.Expect(o.GetLabels()).To(HaveKeyWithValue(apply.PartOfLabel, apply.PartOf), "%s/%s", o.GetKind(), o.GetName())
				g.Expect(o.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"), "%s/%s", o.GetKind(), o.GetName())
				g.Expect(o.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/instance", charts.ReleaseName), "%s/%s", o.GetKind(), o.GetName())
				if o.GetKind() == "CustomResourceDefinition" {
					g.Expect(o.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"), "helm uninstall must keep %s", o.GetName())
				}
			}
		})
	}
}

// with returns values with more key/value pairs set.
func with(values map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		values[kv[i].(string)] = kv[i+1]
	}
	return values
}

// TestCRDsAreConfigCRDs: the chart renders config/crd exactly (one source),
// from copies that are byte for byte those of config/.
func TestCRDsAreConfigCRDs(t *testing.T) {
	g := NewWithT(t)
	root, err := machine.RepoRoot()
	g.Expect(err).NotTo(HaveOccurred())
	sources, err := filepath.Glob(filepath.Join(root, "config", "crd", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sources).NotTo(BeEmpty())
	copies, err := filepath.Glob(filepath.Join(root, "charts", "stretch", "files", "crds", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(baseNames(copies)).To(Equal(baseNames(sources)), "run 'make generate'")

	objs := render(t, base())
	rendered := 0
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			rendered++
		}
	}
	g.Expect(rendered).To(Equal(len(sources)))
	for _, src := range sources {
		data, err := os.ReadFile(src)
		g.Expect(err).NotTo(HaveOccurred())
		want := &unstructured.Unstructured{}
		g.Expect(yaml.Unmarshal(data, &want.Object)).To(Succeed())
		got := find(objs, "CustomResourceDefinition", want.GetName())
		g.Expect(got).NotTo(BeNil(), "the chart lacks CRD %s: run 'make generate'", want.GetName())
		g.Expect(got.Object["spec"]).To(Equal(want.Object["spec"]), "CRD %s differs from %s: run 'make generate'", want.GetName(), src)
	}

	pairs := map[string]string{filepath.Join(root, "config", "rbac", "role.yaml"): filepath.Join(root, "charts", "stretch", "files", "rbac", "role.yaml")}
	for _, src := range sources {
		pairs[src] = filepath.Join(root, "charts", "stretch", "files", "crds", filepath.Base(src))
	}
	for src, dst := range pairs {
		a, err := os.ReadFile(src)
		g.Expect(err).NotTo(HaveOccurred())
		b, err := os.ReadFile(dst)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(bytes.Equal(a, b)).To(BeTrue(), "%s differs from %s: run 'make generate'", dst, src)
	}
}

func baseNames(paths []string) []string {
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	sort.Strings(names)
	return names
}

// TestRBAC: the manager's ClusterRole is the generated role, rule for rule,
// and the remote workloads' role grants exactly what the virtual kubelet uses.
func TestRBAC(t *testing.T) {
	g := NewWithT(t)
	objs := render(t, base())

	data, err := config.File("rbac/role.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	generated := &rbacv1.ClusterRole{}
	g.Expect(yaml.UnmarshalStrict(data, generated)).To(Succeed())
	role := convert(t, objs, "ClusterRole", wellknown.ManagerName, &rbacv1.ClusterRole{})
	g.Expect(role.Rules).To(Equal(generated.Rules), "the chart's rules must be config/rbac/role.yaml's: run 'make generate'")

	workloads := convert(t, objs, "ClusterRole", "stretch-remote-workloads", &rbacv1.ClusterRole{})
	all := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	g.Expect(workloads.Rules).To(Equal([]rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "configmaps", "secrets", "services", "serviceaccounts"}, Verbs: all},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: all},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/attach", "pods/portforward"}, Verbs: []string{"create", "get"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
	}), "what a home cluster may do in its twins (templates/rbac.yaml): every rule a right given to another cluster")

	binding := convert(t, objs, "ClusterRoleBinding", wellknown.ManagerName, &rbacv1.ClusterRoleBinding{})
	g.Expect(binding.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: wellknown.ManagerName}))
	g.Expect(binding.Subjects).To(Equal([]rbacv1.Subject{{Kind: "ServiceAccount", Namespace: wellknown.SystemNamespace, Name: wellknown.ManagerName}}))

	sa := convert(t, objs, "ServiceAccount", wellknown.ManagerName, &corev1.ServiceAccount{})
	g.Expect(sa.Namespace).To(Equal(wellknown.SystemNamespace))

	rc := find(objs, "RuntimeClass", "stretch")
	g.Expect(rc).NotTo(BeNil())
	g.Expect(rc.Object["handler"]).To(Equal("stretch"))

	// Design §4.23: claims of class stretch are provisioned on the provider
	// of the virtual node their first pod is scheduled to.
	sc := convert(t, objs, "StorageClass", wellknown.StorageClassName, &storagev1.StorageClass{})
	g.Expect(sc.Provisioner).To(Equal(wellknown.VolumeProvisioner))
	g.Expect(sc.VolumeBindingMode).To(Equal(ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)))
	g.Expect(sc.ReclaimPolicy).To(Equal(ptr.To(corev1.PersistentVolumeReclaimDelete)))
	g.Expect(sc.AllowedTopologies).To(Equal([]corev1.TopologySelectorTerm{{MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{
		{Key: wellknown.VirtualNodeTypeLabel, Values: []string{wellknown.VirtualNodeTypeValue}}}}}))
}

// TestDeployment checks the hardened pod, its probes, ports, flags and
// resources, by JSON path.
func TestDeployment(t *testing.T) {
	values := with(base(), "clusterLabels", map[string]any{"region": "eu", "provider": "aws", "stretch.dev/tier": "gold"})
	objs := render(t, values)
	deployment := find(objs, "Deployment", wellknown.ManagerName)
	if deployment == nil {
		t.Fatal("no Deployment rendered")
	}
	const c = ".spec.template.spec.containers[0]"
	for _, tc := range []struct{ path, want string }{
		{".metadata.namespace", wellknown.SystemNamespace},
		{".spec.replicas", "2"},
		{".spec.strategy.rollingUpdate.maxUnavailable", "0"},
		{".spec.template.spec.serviceAccountName", wellknown.ManagerName},
		{".spec.template.spec.automountServiceAccountToken", "true"},
		{".spec.template.spec.securityContext.runAsNonRoot", "true"},
		{".spec.template.spec.securityContext.runAsUser", "65532"},
		{".spec.template.spec.securityContext.seccompProfile.type", "RuntimeDefault"},
		{c + ".securityContext.readOnlyRootFilesystem", "true"},
		{c + ".securityContext.allowPrivilegeEscalation", "false"},
		{c + ".securityContext.capabilities.drop", `["ALL"]`},
		{c + ".image", testRepository + ":v0.1.0"},
		{c + ".livenessProbe.httpGet.path", "/healthz"},
		{c + ".livenessProbe.httpGet.port", "healthz"},
		{c + ".readinessProbe.httpGet.path", "/readyz"},
		{c + ".readinessProbe.httpGet.port", "healthz"},
		{c + `.ports[?(@.name=="healthz")].containerPort`, "8081"},
		{c + `.ports[?(@.name=="metrics")].containerPort`, "8080"},
		{c + `.ports[?(@.name=="webhook")].containerPort`, "9443"},
		{c + `.ports[?(@.name=="kubelet")].containerPort`, "10250"},
		{c + `.env[?(@.name=="POD_IP")].valueFrom.fieldRef.fieldPath`, "status.podIP"},
		{c + `.env[?(@.name=="GOMEMLIMIT")].valueFrom.resourceFieldRef.resource`, "limits.memory"},
		{c + ".resources.requests.cpu", "250m"},
		{c + ".resources.requests.memory", "256Mi"},
		{c + ".resources.limits.cpu", "1"},
		{c + ".resources.limits.memory", "512Mi"},
		{c + `.volumeMounts[?(@.name=="tmp")].mountPath`, "/tmp"},
		{`.spec.template.spec.volumes[?(@.name=="tmp")].emptyDir`, "{}"},
		{".spec.template.spec.topologySpreadConstraints[0].topologyKey", "kubernetes.io/hostname"},
		{".spec.template.spec.topologySpreadConstraints[0].whenUnsatisfiable", "ScheduleAnyway"},
		{".spec.template.spec.nodeSelector", `{"kubernetes.io/os":"linux"}`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			NewWithT(t).Expect(jsonPath(t, deployment, tc.path)).To(Equal(tc.want))
		})
	}

	t.Run("flags", func(t *testing.T) {
		g := NewWithT(t)
		d := convert(t, objs, "Deployment", wellknown.ManagerName, &appsv1.Deployment{})
		args := d.Spec.Template.Spec.Containers[0].Args
		g.Expect(args).To(ConsistOf(
			"--metrics-bind-address=:8080",
			"--health-probe-bind-address=:8081",
			"--webhook-bind-address=:9443",
			"--webhook-service=stretch-system/stretch-webhook",
			"--kubelet-bind-address=:10250",
			"--kubelet-address=$(POD_IP)",
			"--cluster-name=provider-eu",
			"--cluster-labels=provider=aws,region=eu,stretch.dev/tier=gold",
			"--zap-log-level=info",
		))
		// Every flag is one the manager has.
		fs := flag.NewFlagSet("stretch-controller-manager", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		opts := manager.DefaultOptions()
		opts.BindFlags(fs)
		g.Expect(fs.Parse(args)).To(Succeed(), "the chart passes a flag that stretch-controller-manager does not have")
		g.Expect(fs.Args()).To(BeEmpty())
		g.Expect(opts.LeaderElect).To(BeTrue(), "replicas elect a leader")
		g.Expect(opts.APIServerURL).To(BeEmpty(), "without apiServerURL, no --api-server-url")
	})

	t.Run("apiServerURL", func(t *testing.T) {
		g := NewWithT(t)
		objs := render(t, with(base(), "apiServerURL", "https://api.home.example.com:6443"))
		d := convert(t, objs, "Deployment", wellknown.ManagerName, &appsv1.Deployment{})
		args := d.Spec.Template.Spec.Containers[0].Args
		g.Expect(args).To(ContainElement("--api-server-url=https://api.home.example.com:6443"))
		fs := flag.NewFlagSet("stretch-controller-manager", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		opts := manager.DefaultOptions()
		opts.BindFlags(fs)
		g.Expect(fs.Parse(args)).To(Succeed())
		g.Expect(opts.APIServerURL).To(Equal("https://api.home.example.com:6443"))
		g.Expect(opts.Validate()).To(Succeed(), "what the schema lets through, the manager accepts")
	})

	t.Run("pod disruption budget", func(t *testing.T) {
		g := NewWithT(t)
		d := convert(t, objs, "Deployment", wellknown.ManagerName, &appsv1.Deployment{})
		pdb := convert(t, objs, "PodDisruptionBudget", wellknown.ManagerName, &policyv1.PodDisruptionBudget{})
		g.Expect(pdb.Namespace).To(Equal(wellknown.SystemNamespace))
		g.Expect(pdb.Spec.MinAvailable.String()).To(Equal("1"))
		g.Expect(pdb.Spec.Selector).To(Equal(d.Spec.Selector))
		g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("app.kubernetes.io/name", wellknown.ManagerName), "stretchctl install --wait finds the pods by it")
		g.Expect(d.Spec.Template.Spec.TopologySpreadConstraints[0].LabelSelector).To(Equal(d.Spec.Selector))
	})

	t.Run("services", func(t *testing.T) {
		g := NewWithT(t)
		d := convert(t, objs, "Deployment", wellknown.ManagerName, &appsv1.Deployment{})
		webhookSvc := convert(t, objs, "Service", "stretch-webhook", &corev1.Service{})
		g.Expect(webhookSvc.Spec.Selector).To(Equal(d.Spec.Selector.MatchLabels))
		g.Expect(webhookSvc.Spec.Ports).To(HaveLen(1))
		g.Expect(webhookSvc.Spec.Ports[0].Port).To(Equal(int32(443)), "the webhook configurations call port 443")
		g.Expect(webhookSvc.Spec.Ports[0].TargetPort.String()).To(Equal("webhook"))
		metricsSvc := convert(t, objs, "Service", "stretch-metrics", &corev1.Service{})
		g.Expect(metricsSvc.Spec.Selector).To(Equal(d.Spec.Selector.MatchLabels))
		g.Expect(metricsSvc.Spec.Ports[0].Port).To(Equal(int32(8080)))
		g.Expect(metricsSvc.Spec.Ports[0].TargetPort.String()).To(Equal("metrics"))
	})
}

func jsonPath(t *testing.T, u *unstructured.Unstructured, path string) string {
	t.Helper()
	jp := jsonpath.New(path)
	if err := jp.Parse("{" + path + "}"); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	var out bytes.Buffer
	if err := jp.Execute(&out, u.Object); err != nil {
		t.Fatalf("%s of %s/%s: %v", path, u.GetKind(), u.GetName(), err)
	}
	return out.String()
}

// TestValuesAccepted: values the schema lets through reach the Deployment.
func TestValuesAccepted(t *testing.T) {
	const c = ".spec.template.spec.containers[0]"
	digest := "sha256:" + strings.Repeat("0f", 32)
	for _, tc := range []struct {
		name   string
		values map[string]any
		path   string
		want   string
	}{
		{"digest pins the image", with(base(), "image", map[string]any{"repository": testRepository, "digest": digest}), c + ".image", testRepository + "@" + digest},
		{"tag and digest", with(base(), "image", map[string]any{"repository": testRepository, "tag": "v0.2.0", "digest": digest}), c + ".image", testRepository + ":v0.2.0@" + digest},
		{"another registry", with(base(), "image", map[string]any{"repository": "registry.example.com:5000/stretch/manager", "tag": "dev"}), c + ".image", "registry.example.com:5000/stretch/manager:dev"},
		{"replicas", with(base(), "replicaCount", 3), ".spec.replicas", "3"},
		{"verbosity", with(base(), "logLevel", 4), c + `.args[?(@=="--zap-log-level=4")]`, "--zap-log-level=4"},
		{"unoffload timeout", with(base(), "unoffloadTimeout", "10m"), c + `.args[?(@=="--unoffload-timeout=10m")]`, "--unoffload-timeout=10m"},
		{"API server URL", with(base(), "apiServerURL", "https://[2001:db8::1]:6443"), c + `.args[?(@=="--api-server-url=https://[2001:db8::1]:6443")]`, "--api-server-url=https://[2001:db8::1]:6443"},
		{"extra flags", with(base(), "extraArgs", []any{"--remote-cluster-probe-interval=10s"}), c + `.args[?(@=="--remote-cluster-probe-interval=10s")]`, "--remote-cluster-probe-interval=10s"},
		{"zone spread added", with(base(), "topologySpreadConstraints", []any{map[string]any{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}}), ".spec.template.spec.topologySpreadConstraints[1].topologyKey", "topology.kubernetes.io/zone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := find(render(t, tc.values), "Deployment", wellknown.ManagerName)
			NewWithT(t).Expect(jsonPath(t, d, tc.path)).To(Equal(tc.want))
		})
	}

	t.Run("percentage PDB", func(t *testing.T) {
		objs := render(t, with(base(), "podDisruptionBudget", map[string]any{"minAvailable": "50%"}))
		pdb := convert(t, objs, "PodDisruptionBudget", wellknown.ManagerName, &policyv1.PodDisruptionBudget{})
		NewWithT(t).Expect(pdb.Spec.MinAvailable.String()).To(Equal("50%"))
	})
}

// TestValuesRefused: a wrong value fails the render with a message that
// names it.
func TestValuesRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		values    map[string]any
		namespace string
		want      []string
	}{
		{"replicas not a number", with(base(), "replicaCount", "two"), "", []string{"/replicaCount", "want integer"}},
		{"no replica", with(base(), "replicaCount", 0), "", []string{"/replicaCount"}},
		{"cluster name not a DNS label", with(base(), "clusterName", "Bad_Name"), "", []string{"/clusterName", "does not match pattern"}},
		{"cluster name too long", with(base(), "clusterName", strings.Repeat("a", 56)), "", []string{"/clusterName", "maxLength"}},
		{"unknown key", with(base(), "replicas", 2), "", []string{"additional properties 'replicas' not allowed"}},
		{"unknown nested key", with(base(), "manager", map[string]any{"enable": false}), "", []string{"/manager", "'enable' not allowed"}},
		{"cluster label key", with(base(), "clusterLabels", map[string]any{"bad key": "x"}), "", []string{"/clusterLabels", "bad key"}},
		{"cluster label value", with(base(), "clusterLabels", map[string]any{"region": "eu west"}), "", []string{"/clusterLabels/region"}},
		{"cluster label not a string", with(base(), "clusterLabels", map[string]any{"zone": 3}), "", []string{"/clusterLabels/zone", "want string"}},
		{"pull policy", with(base(), "image", map[string]any{"repository": testRepository, "pullPolicy": "Sometimes"}), "", []string{"/image/pullPolicy"}},
		{"digest", with(base(), "image", map[string]any{"repository": testRepository, "digest": "sha256:abc"}), "", []string{"/image/digest"}},
		{"repository", with(base(), "image", map[string]any{"repository": "Registry/Stretch"}), "", []string{"/image/repository"}},
		{"replicas of the PDB", with(base(), "podDisruptionBudget", map[string]any{"minAvailable": "half"}), "", []string{"/podDisruptionBudget/minAvailable"}},
		{"scrape interval", with(base(), "metrics", map[string]any{"serviceMonitor": map[string]any{"interval": "30 seconds"}}), "", []string{"/metrics/serviceMonitor/interval"}},
		{"log level", with(base(), "logLevel", "verbose"), "", []string{"/logLevel"}},
		{"unoffload timeout", with(base(), "unoffloadTimeout", "ten minutes"), "", []string{"/unoffloadTimeout"}},
		{"API server URL not https", with(base(), "apiServerURL", "http://api.home.example.com"), "", []string{"/apiServerURL", "does not match pattern"}},
		{"API server URL with a path", with(base(), "apiServerURL", "https://api.home.example.com/k8s"), "", []string{"/apiServerURL"}},
		{"API server URL without scheme", with(base(), "apiServerURL", "api.home.example.com:6443"), "", []string{"/apiServerURL"}},
		{"extra arg not a flag", with(base(), "extraArgs", []any{"-v"}), "", []string{"/extraArgs/0"}},
		{"cpu request", with(base(), "resources", map[string]any{"requests": map[string]any{"cpu": "lots"}}), "", []string{"/resources/requests/cpu"}},
		{"toleration not an object", with(base(), "tolerations", []any{"all"}), "", []string{"/tolerations/0"}},
		{"wrong namespace", base(), "default", []string{`must be installed in namespace stretch-system, not "default"`, "--namespace stretch-system --create-namespace"}},
		{"no cluster name", map[string]any{"image": map[string]any{"repository": testRepository}}, "", []string{"clusterName is required", "--set clusterName="}},
		{"no image repository", map[string]any{"clusterName": "provider-eu"}, "", []string{"image.repository is required", "make image-push REGISTRY="}},
		{"PDB blocks drains", with(base(), "replicaCount", 1), "", []string{"podDisruptionBudget.minAvailable=1 with replicaCount=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := tc.namespace
			if ns == "" {
				ns = wellknown.SystemNamespace
			}
			_, err := charts.Render(tc.values, ns)
			g := NewWithT(t)
			g.Expect(err).To(HaveOccurred())
			for _, w := range tc.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
		})
	}

	// helm itself refuses it with the same message.
	t.Run("helm template", func(t *testing.T) {
		out, err := helm(t, "template", charts.ReleaseName, chartDir(t), "--namespace", wellknown.SystemNamespace, "--set", "clusterName=provider-eu,replicaCount=two,image.repository="+testRepository)
		g := NewWithT(t)
		g.Expect(err).To(HaveOccurred())
		g.Expect(out).To(ContainSubstring("/replicaCount"))
	})
}

// warnings keeps the API server's warnings.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// TestApplyServerSide applies the rendered chart to a real kube-apiserver,
// twice (an install, then an upgrade): no error, no warning.
func TestApplyServerSide(t *testing.T) {
	ctx := context.Background()
	w := &warnings{}
	cfg := rest.CopyConfig(cluster.Config)
	cfg.WarningHandlerWithContext = w
	c, err := client.New(cfg, client.Options{Scheme: cluster.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// What 'helm install --create-namespace' creates, with the strictest Pod
	// Security level: the API server warns about a pod template that breaks it.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wellknown.SystemNamespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		values map[string]any
	}{
		{"manager outside the cluster", map[string]any{"manager": map[string]any{"enabled": false}}},
		{"default", base()},
		{"labels, digest, ServiceMonitor", with(base(),
			"clusterLabels", map[string]any{"region": "eu"},
			"image", map[string]any{"repository": testRepository, "digest": "sha256:" + strings.Repeat("a", 64)},
			"metrics", map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			objs := render(t, tc.values)
			for range 2 {
				for _, o := range objs {
					// Its CRD belongs to the Prometheus Operator, which this
					// cluster does not have; TestRenderedObjects checks it renders.
					if o.GetKind() == "ServiceMonitor" {
						continue
					}
					ac := client.ApplyConfigurationFromUnstructured(o.DeepCopy())
					g.Expect(c.Apply(ctx, ac, client.FieldOwner("helm"))).To(Succeed(), "applying %s/%s", o.GetKind(), o.GetName())
				}
			}
			g.Expect(w.take()).To(BeEmpty(), "the API server warned about the chart's objects")

			d := &appsv1.Deployment{}
			err := c.Get(ctx, client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: wellknown.ManagerName}, d)
			if find(objs, "Deployment", wellknown.ManagerName) == nil {
				// The first case: nothing applied a Deployment yet.
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%v", err)
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Spec.Template.Spec.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
		})
	}

	// The controls: what the API server warns about is caught.
	t.Run("a deprecated node label warns", func(t *testing.T) {
		g := NewWithT(t)
		objs := render(t, with(base(), "nodeSelector", map[string]any{"beta.kubernetes.io/os": "linux"}))
		ac := client.ApplyConfigurationFromUnstructured(find(objs, "Deployment", wellknown.ManagerName))
		g.Expect(c.Apply(ctx, ac, client.FieldOwner("helm"), client.DryRunAll)).To(Succeed())
		g.Expect(w.take()).To(ContainElement(ContainSubstring("beta.kubernetes.io/os")))
	})
	t.Run("a container that may escalate warns", func(t *testing.T) {
		g := NewWithT(t)
		d := find(render(t, base()), "Deployment", wellknown.ManagerName)
		containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		unstructured.RemoveNestedField(containers[0].(map[string]any), "securityContext", "allowPrivilegeEscalation")
		g.Expect(unstructured.SetNestedSlice(d.Object, containers, "spec", "template", "spec", "containers")).To(Succeed())
		ac := client.ApplyConfigurationFromUnstructured(d)
		g.Expect(c.Apply(ctx, ac, client.FieldOwner("helm"), client.DryRunAll)).To(Succeed())
		g.Expect(w.take()).To(ContainElement(ContainSubstring("allowPrivilegeEscalation")))
	})
}
