package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/cli/status"
	"stretch.dev/stretch/internal/peering"
	"stretch.dev/stretch/internal/testenv"
)

func TestPeerCommandErrors(t *testing.T) {
	dir := t.TempDir()
	unreachable := filepath.Join(dir, "unreachable")
	garbage := filepath.Join(dir, "garbage")
	g := NewWithT(t)
	g.Expect(os.WriteFile(unreachable, []byte(unreachableKubeconfig), 0o600)).To(Succeed())
	g.Expect(os.WriteFile(garbage, []byte("apiVersion: v1\nkind: Config\n"), 0o600)).To(Succeed())
	const id = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"

	tests := []commandErrorCase{
		{name: "peer without a provider", args: []string{"peer"}, wantUsage: true, wantErr: "say which provider to peer with: --remote-kubeconfig PROVIDER to peer directly, or --from-file FILE"},
		{name: "peer both ways at once", args: []string{"peer", "--from-file", garbage, "--remote-kubeconfig", unreachable}, wantUsage: true, wantErr: "not both"},
		{name: "peer positional argument", args: []string{"peer", "provider-eu"}, wantUsage: true, wantErr: `takes no arguments, got "provider-eu"`},
		{name: "peer zero timeout", args: []string{"peer", "--from-file", garbage, "--timeout", "0s"}, wantUsage: true, wantErr: "--timeout must be positive"},
		{name: "peer unknown flag", args: []string{"peer", "--remote", "x"}, wantUsage: true, wantErr: "unknown flag: --remote (see 'stretchctl peer --help')"},
		{name: "peer missing file", args: []string{"peer", "--from-file", filepath.Join(dir, "nope")}, wantErr: "credentials file: stat"},
		{name: "peer file that is a folder", args: []string{"peer", "--from-file", dir}, wantErr: "is not a regular file"},
		{name: "peer garbage file", args: []string{"peer", "--from-file", garbage}, wantErr: "not a credentials file written by 'stretchctl peer generate-credentials'"},
		{name: "peer --api-server-url with a file", args: []string{"peer", "--from-file", garbage, "--api-server-url", "https://203.0.113.10:6443"}, wantUsage: true, wantErr: "with --from-file, the provider's admin passes it to 'stretchctl peer generate-credentials'"},
		{name: "peer --api-server-url not https", args: []string{"peer", "--remote-kubeconfig", unreachable, "--kubeconfig", unreachable, "--api-server-url", "http://203.0.113.10:6443"}, wantUsage: true, wantErr: `--api-server-url: "http://203.0.113.10:6443" is not of the form https://HOST[:PORT]`},
		{name: "peer --api-server-url with a path", args: []string{"peer", "--remote-kubeconfig", unreachable, "--kubeconfig", unreachable, "--api-server-url", "https://203.0.113.10:6443/api"}, wantUsage: true, wantErr: "must not have a path"},
		{name: "peer unreachable home", args: []string{"peer", "--kubeconfig", unreachable, "--remote-kubeconfig", unreachable}, wantErr: "cannot reach the home cluster at https://127.0.0.1:1"},
		{name: "generate without home ID", args: []string{"peer", "generate-credentials", "-o", "f"}, wantUsage: true, wantErr: "pass --home-cluster-id ID"},
		{name: "generate bad home ID", args: []string{"peer", "generate-credentials", "--home-cluster-id", "ABC", "-o", "f"}, wantUsage: true, wantErr: `--home-cluster-id: cluster ID "ABC" is not a lower-case UUID`},
		{name: "generate without output", args: []string{"peer", "generate-credentials", "--home-cluster-id", id}, wantUsage: true, wantErr: "pass -o FILE"},
		{name: "generate into a missing folder", args: []string{"peer", "generate-credentials", "--home-cluster-id", id, "-o", filepath.Join(dir, "no", "f")}, wantErr: "does not exist"},
		{name: "generate --api-server-url without scheme", args: []string{"peer", "generate-credentials", "--kubeconfig", unreachable, "--home-cluster-id", id, "-o", filepath.Join(dir, "f"), "--api-server-url", "203.0.113.10:6443"}, wantUsage: true, wantErr: "--api-server-url: "},
		{name: "generate --api-server-url bad port", args: []string{"peer", "generate-credentials", "--kubeconfig", unreachable, "--home-cluster-id", id, "-o", filepath.Join(dir, "f"), "--api-server-url", "https://api.example.com:70000"}, wantUsage: true, wantErr: `port "70000"`},
		{name: "generate on unreachable provider", args: []string{"peer", "generate-credentials", "--kubeconfig", unreachable, "--home-cluster-id", id, "-o", filepath.Join(dir, "f")}, wantErr: "cannot reach the provider cluster"},
		{name: "revoke without home ID", args: []string{"peer", "revoke"}, wantUsage: true, wantErr: "pass --home-cluster-id ID"},
		{name: "revoke bad home ID", args: []string{"peer", "revoke", "--home-cluster-id", "x"}, wantUsage: true, wantErr: `cluster ID "x" is not a lower-case UUID`},
		{name: "revoke on unreachable provider", args: []string{"peer", "revoke", "--kubeconfig", unreachable, "--home-cluster-id", id}, wantErr: "cannot reach the provider cluster"},
		{name: "unpeer without name", args: []string{"unpeer"}, wantUsage: true, wantErr: "stretchctl unpeer takes the provider's name, e.g. 'stretchctl unpeer provider-eu'"},
		{name: "unpeer two names", args: []string{"unpeer", "a", "b"}, wantUsage: true, wantErr: "takes the provider's name"},
		{name: "unpeer bad name", args: []string{"unpeer", "Provider_EU"}, wantUsage: true, wantErr: `cluster name "Provider_EU" is not valid`},
		{name: "unpeer zero timeout", args: []string{"unpeer", "a", "--timeout", "0s"}, wantUsage: true, wantErr: "--timeout must be positive"},
		{name: "unpeer unreachable home", args: []string{"unpeer", "a", "--kubeconfig", unreachable}, wantErr: "cannot reach the home cluster"},
		{name: "status bad format", args: []string{"status", "-o", "xml"}, wantUsage: true, wantErr: `output format "xml" is not supported: use -o yaml or -o json, or leave -o out for tables, or -o wide`},
		{name: "status positional argument", args: []string{"status", "peers"}, wantUsage: true, wantErr: "takes no arguments"},
		{name: "status unreachable", args: []string{"status", "--kubeconfig", unreachable}, wantErr: "cannot reach the cluster at https://127.0.0.1:1"},
	}
	expectCommandErrors(t, tests)
}

// TestPeerCommands runs every peering command as a user would, on two real
// API servers: install, peer directly, peer out of band, status, unpeer,
// revoke.
func TestPeerCommands(t *testing.T) {
	g := NewWithT(t)
	servers, err := testenv.StartAPIServers(t.TempDir(), "home", "provider")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = testenv.StopAPIServers(servers) })
	home, provider := servers[0].Kubeconfig, servers[1].Kubeconfig

	_, err = run("install", "--out-of-cluster", "--kubeconfig", home, "--cluster-name", "home")
	g.Expect(err).NotTo(HaveOccurred())
	_, err = run("install", "--out-of-cluster", "--kubeconfig", provider, "--cluster-name", "provider-eu", "--cluster-labels", "region=eu")
	g.Expect(err).NotTo(HaveOccurred())

	out, err := run("status", "--kubeconfig", home, "-o", "json")
	g.Expect(err).NotTo(HaveOccurred())
	var report status.Report
	g.Expect(json.Unmarshal([]byte(out), &report)).To(Succeed())
	homeID := report.Cluster.ClusterID

	// envtest serves on 127.0.0.1: what is issued by default is a loopback
	// address, and the commands say so; --api-server-url replaces it.
	const loopbackWarning = "a loopback address that a home cluster on another machine (or in a pod) cannot reach: pass --api-server-url https://HOST:PORT"
	const override = "https://api.provider-eu.example.com:6443"
	providerServer := kubeconfigServer(t, provider)
	g.Expect(providerServer).To(HavePrefix("https://127.0.0.1:"))
	out, err = run("peer", "--kubeconfig", home, "--remote-kubeconfig", provider, "--api-server-url", override+"/")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).NotTo(ContainSubstring("Warning"))
	g.Expect(peerServer(t, servers[0])).To(Equal(override))

	out, err = run("peer", "--kubeconfig", home, "--remote-kubeconfig", provider)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring(`Peered with "provider-eu": 'stretchctl status' shows it and its virtual node stretch-provider-eu.`))
	g.Expect(out).To(ContainSubstring("Warning: the provider's API server is given to the home cluster as " + providerServer))
	g.Expect(out).To(ContainSubstring(loopbackWarning))
	g.Expect(peerServer(t, servers[0])).To(Equal(providerServer))

	overridden := filepath.Join(t.TempDir(), "provider-eu-override.credentials")
	out, err = run("peer", "generate-credentials", "--kubeconfig", provider, "--home-cluster-id", homeID, "-o", overridden, "--api-server-url", override)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).NotTo(ContainSubstring("Warning"))
	data, err := os.ReadFile(overridden)
	g.Expect(err).NotTo(HaveOccurred())
	creds, err := peering.ParseCredentials(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(creds.Provider.Server).To(Equal(override))

	file := filepath.Join(t.TempDir(), "provider-eu.credentials")
	out, err = run("peer", "generate-credentials", "--kubeconfig", provider, "--home-cluster-id", homeID, "-o", file)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring(loopbackWarning))
	g.Expect(out).To(ContainSubstring("stretchctl peer --kubeconfig HOME --from-file " + file))
	info, err := os.Stat(file)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o600)))

	out, err = run("peer", "--kubeconfig", home, "--from-file", file)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring(`with provider "provider-eu", from ` + file))
	g.Expect(out).To(ContainSubstring("Warning: the provider's API server is given to the home cluster as " + providerServer + ", a loopback address"))
	g.Expect(out).To(ContainSubstring("ask the provider's admin for credentials made with 'stretchctl peer generate-credentials --api-server-url https://HOST:PORT'"))

	out, err = run("status", "--kubeconfig", home)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(MatchRegexp(`provider-eu\s+[0-9a-f-]{36}\s+Unknown\s+Unknown\s+Unknown\s+<none>\s+NoStatus: `))

	// The provider's admin sets the home cluster's policy, one flag at a
	// time: each keeps what the others set.
	out, err = run("policy", "set", homeID, "--kubeconfig", provider, "--limits", "cpu=8,memory=16Gi")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("✓ TenantPolicy stretch-tenant-" + homeID + "/policy applied for home cluster " + homeID + ": pod security baseline, limits cpu=8,memory=16Gi"))
	out, err = run("policy", "set", homeID, "--kubeconfig", provider, "--pod-security", "restricted")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("pod security restricted, limits cpu=8,memory=16Gi"))
	out, err = run("policy", "show", "--kubeconfig", provider)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(MatchRegexp(homeID + `\s+restricted\s+cpu 0/8, memory 0/16Gi\s+`))
	_, err = run("policy", "show", "home", "--kubeconfig", provider)
	g.Expect(err).To(MatchError(ContainSubstring(`home cluster "home" is not a cluster ID: a provider knows its home clusters by ID only`)))
	g.Expect(err).To(MatchError(ContainSubstring("the home clusters peered with this provider are " + homeID)))

	out, err = run("unpeer", "provider-eu", "--kubeconfig", home)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("Run on the provider: stretchctl peer revoke --kubeconfig PROVIDER --home-cluster-id " + homeID))

	out, err = run("peer", "revoke", "--kubeconfig", provider, "--home-cluster-id", homeID)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("is revoked"))
}

// peerServer is the server of the kubeconfig that the home cluster of s
// holds for provider-eu.
func peerServer(t *testing.T, s *testenv.APIServer) string {
	t.Helper()
	g := NewWithT(t)
	secret := &corev1.Secret{}
	g.Expect(s.Client.Get(context.Background(), client.ObjectKey{Namespace: "stretch-system", Name: peering.SecretName("provider-eu")}, secret)).To(Succeed())
	kubeconfig, err := clientcmd.Load(secret.Data[peering.KubeconfigKey])
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kubeconfig.Clusters).To(HaveKey("provider-eu"))
	return kubeconfig.Clusters["provider-eu"].Server
}

// kubeconfigServer is the server of the current context of the kubeconfig
// at path.
func kubeconfigServer(t *testing.T, path string) string {
	t.Helper()
	g := NewWithT(t)
	kubeconfig, err := clientcmd.LoadFromFile(path)
	g.Expect(err).NotTo(HaveOccurred())
	ctx := kubeconfig.Contexts[kubeconfig.CurrentContext]
	g.Expect(ctx).NotTo(BeNil())
	g.Expect(kubeconfig.Clusters).To(HaveKey(ctx.Cluster))
	return kubeconfig.Clusters[ctx.Cluster].Server
}

// commandErrorCase is a command line that fails before any cluster is
// reached, and how.
type commandErrorCase struct {
	name      string
	args      []string
	wantUsage bool
	wantErr   string
}

// expectCommandErrors runs each case: the error says wantErr, is a usage
// error (exit code 2) exactly when wantUsage, and nothing is printed.
func expectCommandErrors(t *testing.T, tests []commandErrorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			out, err := run(tt.args...)
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
			var usage usageError
			g.Expect(errors.As(err, &usage)).To(Equal(tt.wantUsage), "usage errors exit with code 2, others with 1")
			g.Expect(out).To(BeEmpty(), "nothing is attempted on a cluster")
		})
	}
}
