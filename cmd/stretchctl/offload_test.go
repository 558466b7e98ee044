package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/internal/cli/status"
	"stretch.dev/stretch/internal/diagnose/checks"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
)

// TestOffloadCommands runs offload, unoffload, diagnose and status as a user
// would, on a home cluster peered with two providers with Stretch running.
func TestOffloadCommands(t *testing.T) {
	g := NewWithT(t)
	servers, err := testenv.StartAPIServers(t.TempDir(), "home", "provider-eu", "provider-us")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = testenv.StopAPIServers(servers) })
	home, eu, us := servers[0], servers[1], servers[2]
	homeID := uuid.NewString()
	stretch := fleet.Run(t, home, homeID, []fleet.Provider{
		{Server: eu, Labels: map[string]string{"region": "eu"}},
		{Server: us, Labels: map[string]string{"region": "us"}},
	})
	ctx := context.Background()
	kubeconfig := home.Kubeconfig
	// Both virtual nodes first: an offloading to every provider must not be
	// judged on one of them.
	g.Eventually(func(g Gomega) {
		for _, n := range []string{"stretch-provider-eu", "stretch-provider-us"} {
			g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: n}, &corev1.Node{})).To(Succeed())
		}
	}).WithTimeout(30 * time.Second).Should(Succeed())
	namespaces := func(t *testing.T, labels map[string]string, names ...string) {
		for _, n := range names {
			NewWithT(t).Expect(home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: labels}})).To(Succeed())
		}
	}
	taken := func(t *testing.T, provider *testenv.APIServer, name string) {
		NewWithT(t).Expect(provider.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	}

	// A kubeconfig whose current context points where nothing listens, with
	// the home cluster as context "home" and as "home-clash", whose namespace
	// is clash.
	multi := filepath.Join(t.TempDir(), "kubeconfig")
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	homeContext := *cfg.Contexts[cfg.CurrentContext]
	cfg.Contexts = map[string]*clientcmdapi.Context{"home": &homeContext}
	clash := homeContext
	clash.Namespace = "clash"
	cfg.Contexts["home-clash"] = &clash
	cfg.Clusters["broken"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.AuthInfos["broken"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["broken"] = &clientcmdapi.Context{Cluster: "broken", AuthInfo: "broken"}
	cfg.CurrentContext = "broken"
	g.Expect(clientcmd.WriteToFile(*cfg, multi)).To(Succeed())

	t.Run("--context picks the cluster; status -o yaml", func(t *testing.T) {
		g := NewWithT(t)
		_, err := run("status", "--kubeconfig", multi)
		g.Expect(err).To(MatchError(ContainSubstring("cannot reach the cluster at https://127.0.0.1:1")))
		out, err := run("status", "--kubeconfig", multi, "--context", "home", "-o", "yaml")
		g.Expect(err).NotTo(HaveOccurred())
		var report status.Report
		g.Expect(yaml.UnmarshalStrict([]byte(out), &report)).To(Succeed())
		g.Expect(report.Cluster.ClusterID).To(Equal(homeID))
		g.Expect(report.Peers).To(ConsistOf(HaveField("Name", "provider-eu"), HaveField("Name", "provider-us")))
	})

	t.Run("offload --wait: SomeFailed says each provider's reason", func(t *testing.T) {
		g := NewWithT(t)
		namespaces(t, nil, "clash")
		taken(t, us, "clash-"+homeID)
		out, err := run("offload", "namespace", "-n", "clash", "--wait", "--kubeconfig", kubeconfig)
		g.Expect(exitCode(err)).To(Equal(exitFailed))
		g.Expect(err).To(MatchError(And(ContainSubstring("namespace clash: phase SomeFailed"),
			ContainSubstring("\n  provider-us: CreationFailed: AlreadyExists: namespace clash-"+homeID+" already exists on this provider"))))
		g.Expect(out).To(ContainSubstring("  namespace clash, provider provider-us: CreationFailed: AlreadyExists: namespace clash-" + homeID))
		g.Expect(out).To(ContainSubstring("  namespace clash, provider provider-eu: NamespaceCreated\n"), "--wait ends once every provider has settled")
		g.Expect(err).NotTo(MatchError(ContainSubstring("provider-eu:")))
	})

	t.Run("offload --wait: AllFailed says each provider's reason", func(t *testing.T) {
		g := NewWithT(t)
		namespaces(t, nil, "taken")
		taken(t, eu, "taken-"+homeID)
		taken(t, us, "taken-"+homeID)
		_, err := run("offload", "namespace", "taken", "--wait", "--kubeconfig", kubeconfig)
		g.Expect(exitCode(err)).To(Equal(exitFailed))
		g.Expect(err).To(MatchError(And(ContainSubstring("namespace taken: phase AllFailed"),
			ContainSubstring("\n  provider-eu: CreationFailed: AlreadyExists: namespace taken-"+homeID),
			ContainSubstring("\n  provider-us: CreationFailed: AlreadyExists: namespace taken-"+homeID))))
	})

	t.Run("diagnose -o json and -o yaml", func(t *testing.T) {
		g := NewWithT(t)
		for _, format := range []string{"json", "yaml"} {
			out, err := run("diagnose", "namespace", "clash", "-o", format, "--kubeconfig", kubeconfig)
			g.Expect(exitCode(err)).To(Equal(exitFailed))
			g.Expect(err).To(MatchError(ContainSubstring("checks did not pass")))
			var results []checks.Check
			if format == "json" {
				g.Expect(json.Unmarshal([]byte(out), &results)).To(Succeed())
			} else {
				g.Expect(yaml.UnmarshalStrict([]byte(out), &results)).To(Succeed())
			}
			g.Expect(results).To(ContainElement(checks.Check{Name: "NamespaceOffloading named offloading", Result: checks.Passed, Detail: `namespace clash has NamespaceOffloading "offloading"`}))
			g.Expect(results).To(ContainElement(And(HaveField("Name", "phase"), HaveField("Result", checks.Failed), HaveField("Detail", ContainSubstring("provider-us (AlreadyExists)")))))
			g.Expect(results).To(ContainElement(And(HaveField("Name", "namespaces on the providers"), HaveField("Result", checks.Failed),
				HaveField("Detail", ContainSubstring("provider-us: AlreadyExists: namespace clash-"+homeID+" already exists on this provider")),
				HaveField("Fix", ContainSubstring("remove or rename it on that provider")))), format)
		}
	})

	t.Run("diagnose the kubeconfig context's namespace", func(t *testing.T) {
		g := NewWithT(t)
		out, err := run("diagnose", "namespace", "--kubeconfig", multi, "--context", "home-clash")
		g.Expect(exitCode(err)).To(Equal(exitFailed))
		g.Expect(out).To(HavePrefix("Namespace clash, of the kubeconfig context: pass NAME or -n NAME for another.\nDiagnosing the offloading of namespace clash\n"))
		g.Expect(out).To(ContainSubstring("✗ failed   namespaces on the providers: "))
	})

	t.Run("offload --wait: the timeout says what each provider last said", func(t *testing.T) {
		g := NewWithT(t)
		namespaces(t, nil, "stuck")
		stretch.StopTenant(us) // us never answers the request
		t.Cleanup(func() { stretch.StartTenant(us) })
		_, err := run("offload", "namespace", "stuck", "--wait", "--timeout", "3s", "--kubeconfig", kubeconfig)
		g.Expect(exitCode(err)).To(Equal(exitFailed))
		g.Expect(err).To(MatchError(And(HavePrefix("namespaces stuck are not offloaded after 3s: see 'kubectl get namespaceoffloadings offloading -n NAMESPACE -o yaml'"),
			ContainSubstring("\nnamespace stuck: phase InProgress\n"), ContainSubstring("\n  provider-us: Creating: the provider is creating the twin namespace"))))
	})

	t.Run("offload --wait: the timeout says what to look at", func(t *testing.T) {
		g := NewWithT(t)
		namespaces(t, nil, "slow")
		stretch.StopHome() // nothing judges the offloading
		t.Cleanup(stretch.StartHome)
		_, err := run("offload", "namespace", "slow", "--wait", "--timeout", "2s", "--kubeconfig", kubeconfig)
		g.Expect(exitCode(err)).To(Equal(exitFailed))
		g.Expect(err).To(MatchError("namespaces slow are not offloaded after 2s: see 'kubectl get namespaceoffloadings offloading -n NAMESPACE -o yaml' and 'stretchctl diagnose namespace NAMESPACE'"))
	})

	t.Run("unoffload --ns-selector --wait shows each provider's progress", func(t *testing.T) {
		g := NewWithT(t)
		namespaces(t, map[string]string{"team": "web"}, "web-1", "web-2")
		out, err := run("offload", "namespaces", "--ns-selector", "team=web", "--wait", "--kubeconfig", kubeconfig)
		g.Expect(err).NotTo(HaveOccurred(), out)
		g.Expect(out).To(ContainSubstring("✓ namespace web-2 offloaded: twin web-2-" + homeID + " ready on provider-eu, provider-us"))

		out, err = run("unoffload", "namespaces", "--ns-selector", "team=web", "--wait", "--kubeconfig", kubeconfig)
		g.Expect(err).NotTo(HaveOccurred(), out)
		for _, ns := range []string{"web-1", "web-2"} {
			g.Expect(out).To(ContainSubstring("✓ namespace " + ns + ": unoffload started (twins on provider-eu, provider-us are deleted with everything in them)"))
			g.Expect(out).To(MatchRegexp(`(?m)^  namespace %s, provider provider-(eu|us): (NamespaceCreated|Terminating)`, ns))
			g.Expect(out).To(ContainSubstring("✓ namespace " + ns + " unoffloaded\n"))
			g.Expect(apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "offloading"}, &offloadingv1alpha1.NamespaceOffloading{}))).To(BeTrue())
		}
	})

	t.Run("offload --ns-selector: a twin name too long is a usage error, as for named namespaces", func(t *testing.T) {
		g := NewWithT(t)
		long := "abcdefghijklmnopqrstuvwxyz0"
		namespaces(t, map[string]string{"team": "long"}, "short", long)
		for _, args := range [][]string{{}, {"-o", "yaml"}} {
			out, err := run(append([]string{"offload", "namespaces", "--ns-selector", "team=long", "--kubeconfig", kubeconfig}, args...)...)
			g.Expect(exitCode(err)).To(Equal(exitUsage), out)
			g.Expect(err).To(MatchError(And(ContainSubstring("nothing was changed"), ContainSubstring("namespace "+long+": NameTooLong"), ContainSubstring("at most 26 characters"))))
			g.Expect(out).NotTo(ContainSubstring("apiVersion"), "nothing printed")
		}
		for _, ns := range []string{"short", long} {
			g.Expect(apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "offloading"}, &offloadingv1alpha1.NamespaceOffloading{}))).To(BeTrue(), "nothing applied")
		}
	})

	t.Run("unoffload asks on a terminal, unless --yes", func(t *testing.T) {
		terminal := env{isTerminal: func(any) bool { return true }}
		tests := []struct {
			ns, stdin    string
			yes, deleted bool
		}{
			{ns: "ask-no", stdin: "n\n"},
			{ns: "ask-yes", stdin: "y\n", deleted: true},
			{ns: "no-ask", stdin: "", yes: true, deleted: true}, // asked, the empty answer would be a no
		}
		for _, tt := range tests {
			t.Run(tt.ns, func(t *testing.T) {
				g := NewWithT(t)
				namespaces(t, nil, tt.ns)
				_, err := run("offload", "namespace", tt.ns, "--kubeconfig", kubeconfig)
				g.Expect(err).NotTo(HaveOccurred())
				args := []string{"unoffload", "namespace", tt.ns, "--kubeconfig", kubeconfig}
				if tt.yes {
					args = append(args, "--yes")
				}
				out, err := runWith(terminal, strings.NewReader(tt.stdin), args...)
				const prompt = "? Their twin namespaces on the providers are deleted with everything in them. [y/N] "
				if tt.yes {
					g.Expect(out).NotTo(ContainSubstring(prompt))
				} else {
					g.Expect(out).To(HavePrefix("Unoffload " + tt.ns + prompt))
				}
				off := &offloadingv1alpha1.NamespaceOffloading{}
				getErr := home.Client.Get(ctx, client.ObjectKey{Namespace: tt.ns, Name: "offloading"}, off)
				if !tt.deleted {
					g.Expect(err).To(MatchError("not confirmed, nothing was changed"))
					g.Expect(getErr).NotTo(HaveOccurred())
					g.Expect(off.DeletionTimestamp).To(BeNil())
					return
				}
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(out).To(ContainSubstring("✓ namespace " + tt.ns + ": unoffload started"))
				g.Expect(apierrors.IsNotFound(getErr) || off.DeletionTimestamp != nil).To(BeTrue())
			})
		}
	})

	// Not a terminal (a pipe, a test): never asked.
	g.Expect(isTerminal(strings.NewReader(""))).To(BeFalse())
}
