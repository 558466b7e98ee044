package realnode

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"
)

func TestParseMountinfo(t *testing.T) {
	g := NewWithT(t)
	data := `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
31 22 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
40 22 0:50 / /tmp/srn-node-1/a\040b rw - tmpfs tmpfs rw
41 40 0:51 / /tmp/srn-node-1/a\040b/c rw shared:5 master:2 - overlay overlay rw,lowerdir=/x
`
	mounts, err := parseMountinfo(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(mounts).To(HaveLen(5))
	g.Expect(mounts[1]).To(Equal(mount{point: "/sys/fs/cgroup/cpuset", fsType: "cgroup", superOpts: []string{"rw", "cpuset"}}))
	g.Expect(mounts[2].fsType).To(Equal("cgroup2"))
	g.Expect(mounts[3].point).To(Equal("/tmp/srn-node-1/a b"))
	// Deepest first, and not /tmp/srn-node-10 for /tmp/srn-node-1.
	mounts = append(mounts, mount{point: "/tmp/srn-node-10/x", fsType: "tmpfs"})
	g.Expect(mountsUnder(mounts, "/tmp/srn-node-1/")).To(Equal([]string{"/tmp/srn-node-1/a b/c", "/tmp/srn-node-1/a b"}))

	_, err = parseMountinfo("garbage\n")
	g.Expect(err).To(MatchError(ContainSubstring(`mountinfo line "garbage"`)))
}

func TestUnescapeMountinfo(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`/a/b`, `/a/b`},
		{`/a\040b`, `/a b`},
		{`/a\011b\134`, "/a\tb\\"},
		{`/trailing\04`, `/trailing\04`},
		{`/not\999octal`, `/not\999octal`},
	} {
		if got := unescapeMountinfo(tc.in); got != tc.want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAddresses(t *testing.T) {
	g := NewWithT(t)
	g.Expect(subnet24(18, 7).String()).To(Equal("198.18.7.0/24"))
	g.Expect(subnet24(19, 255).String()).To(Equal("198.19.255.0/24"))
	g.Expect(hostAddr(18, 3, 129).String()).To(Equal("198.18.3.129"))
	// Every address of every lease is in the benchmark range, clear of the
	// VM's network and resolver.
	bench := netip.MustParsePrefix("198.18.0.0/15")
	for i := range leaseCount {
		for _, p := range []netip.Prefix{subnet24(18, i), subnet24(19, i)} {
			g.Expect(bench.Contains(p.Addr()) && p.Bits() >= bench.Bits()).To(BeTrue(), "%s", p)
			g.Expect(p.Overlaps(netip.MustParsePrefix("192.0.2.0/24"))).To(BeFalse())
			g.Expect(p.Contains(netip.MustParseAddr("10.255.255.53"))).To(BeFalse())
		}
	}
	// The hosts' LAN is no lease's, and every host has its own address
	// there, apart from the machine's.
	g.Expect(lanSubnet.String()).To(Equal("198.18.255.0/24"))
	seen := map[netip.Addr]bool{lanGateway: true}
	for i := range leaseCount {
		g.Expect(subnet24(18, i).Overlaps(lanSubnet)).To(BeFalse(), "lease %d", i)
		a := lanAddr(i)
		g.Expect(lanSubnet.Contains(a) && a != lanSubnet.Addr()).To(BeTrue(), "%s", a)
		g.Expect(seen[a]).To(BeFalse(), "%s twice", a)
		seen[a] = true
	}
	g.Expect(lanAddr(leaseCount-1).Next()).To(Equal(lanGateway), "the last host is right below the machine's address")
	l := &lease{index: 12}
	g.Expect([]string{l.link(""), l.link("h"), l.link("n"), l.link("p")}).To(Equal([]string{"srn12", "srn12h", "srn12n", "srn12p"}))
	// Link names are at most 15 bytes.
	g.Expect(len((&lease{index: leaseCount - 1}).link("p"))).To(BeNumerically("<=", 15))
	g.Expect(len(lanBridge)).To(BeNumerically("<=", 15))
}

func TestRenderCNIConfig(t *testing.T) {
	g := NewWithT(t)
	data, err := renderCNIConfig("srn4", "srn4p", netip.MustParsePrefix("198.18.4.0/25"), "/tmp/n/cni/ipam")
	g.Expect(err).NotTo(HaveOccurred())
	var cfg struct {
		Name    string `json:"name"`
		Plugins []struct {
			Type      string `json:"type"`
			Bridge    string `json:"bridge"`
			IPMasq    bool   `json:"ipMasq"`
			IsGateway bool   `json:"isGateway"`
			IPAM      struct {
				Ranges  [][]map[string]string `json:"ranges"`
				Routes  []map[string]string   `json:"routes"`
				DataDir string                `json:"dataDir"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	g.Expect(json.Unmarshal(data, &cfg)).To(Succeed())
	g.Expect(cfg.Name).To(Equal("srn4"))
	g.Expect(cfg.Plugins).To(HaveLen(2))
	g.Expect(cfg.Plugins[0].Type).To(Equal("bridge"))
	g.Expect(cfg.Plugins[0].Bridge).To(Equal("srn4p"))
	g.Expect(cfg.Plugins[0].IsGateway).To(BeTrue())
	g.Expect(cfg.Plugins[0].IPMasq).To(BeTrue(), "other hosts have no route to the pods")
	g.Expect(cfg.Plugins[0].IPAM.Ranges).To(Equal([][]map[string]string{{{"subnet": "198.18.4.0/25", "gateway": "198.18.4.1"}}}))
	g.Expect(cfg.Plugins[0].IPAM.Routes).To(Equal([]map[string]string{{"dst": "198.18.0.0/15"}}), "no default route")
	g.Expect(cfg.Plugins[0].IPAM.DataDir).To(Equal("/tmp/n/cni/ipam"))
	g.Expect(cfg.Plugins[1].Type).To(Equal("portmap"))
}

func TestRenderKubeletConfig(t *testing.T) {
	g := NewWithT(t)
	data, err := renderKubeletConfig(kubeletConfig{
		CgroupRoot: "/stretch-srn4", ContainerdSocket: "/tmp/n/containerd/containerd.sock",
		Address: netip.MustParseAddr("198.18.4.129"), ResolvConf: "/tmp/n/kubelet/resolv.conf",
	})
	g.Expect(err).NotTo(HaveOccurred())
	var cfg map[string]any
	g.Expect(yaml.Unmarshal(data, &cfg)).To(Succeed())
	g.Expect(cfg).To(HaveKeyWithValue("kind", "KubeletConfiguration"))
	// What this machine needs (docs/design.md §6).
	g.Expect(cfg).To(HaveKeyWithValue("failCgroupV1", false))
	g.Expect(cfg).To(HaveKeyWithValue("cgroupDriver", "cgroupfs"))
	g.Expect(cfg).To(HaveKeyWithValue("failSwapOn", false))
	g.Expect(cfg).To(HaveKeyWithValue("cgroupRoot", "/stretch-srn4"))
	g.Expect(cfg).To(HaveKeyWithValue("containerRuntimeEndpoint", "unix:///tmp/n/containerd/containerd.sock"))
	g.Expect(cfg).To(HaveKeyWithValue("address", "198.18.4.129"))
	g.Expect(cfg).To(HaveKeyWithValue("healthzBindAddress", "198.18.4.129"))
	g.Expect(cfg).To(HaveKeyWithValue("resolvConf", "/tmp/n/kubelet/resolv.conf"))
	g.Expect(cfg).To(HaveKeyWithValue("readOnlyPort", BeNumerically("==", 0)))
}

func TestRenderContainerdConfig(t *testing.T) {
	g := NewWithT(t)
	data, err := renderContainerdConfig(containerdConfig{
		Root: "/n/root", State: "/n/state", Socket: "/n/c.sock", Opt: "/n/opt", ShimSockets: "/run/s4",
		RuncRoot: "/n/runc", Runc: "/usr/bin/runc", PauseImage: "stretch.invalid/pause:local",
		CNIBinDir: "/repo/bin/cni", CNIConfDir: "/n/cni/net.d",
	})
	g.Expect(err).NotTo(HaveOccurred())
	for _, line := range []string{
		"version = 3",
		"root = '/n/root'",
		"state = '/n/state'",
		"address = '/n/c.sock'",
		"socket_dir = '/run/s4'",
		"sandbox = 'stretch.invalid/pause:local'",
		"restrict_oom_score_adj = true",
		"netns_mounts_under_state_dir = true",
		"runtime_type = 'io.containerd.runc.v2'",
		"BinaryName = '/usr/bin/runc'",
		"SystemdCgroup = false",
		"Root = '/n/runc'",
		"bin_dirs = ['/repo/bin/cni']",
		"conf_dir = '/n/cni/net.d'",
		"snapshotter = 'overlayfs'",
	} {
		g.Expect(string(data)).To(ContainSubstring(line))
	}
	g.Expect(string(data)).To(MatchRegexp(`(?s)\[plugins.'io.containerd.nri.v1.nri'\]\s+disable = true`))
}

func TestMentioning(t *testing.T) {
	g := NewWithT(t)
	shared := t.TempDir()
	node := filepath.Join(t.TempDir(), "srn-node-1")
	other := node + "0" // a prefix of ours must not match
	must := func(err error) { t.Helper(); g.Expect(err).NotTo(HaveOccurred()) }
	must(os.Symlink(node+"/kubelet/pod-logs/a/0.log", filepath.Join(shared, "a.log")))
	must(os.Symlink(other+"/kubelet/pod-logs/b/0.log", filepath.Join(shared, "b.log")))
	must(os.WriteFile(filepath.Join(shared, "cni-loopback-1-lo"), []byte(`{"netns":"`+node+`/containerd/state/netns/cni-1"}`), 0o600))
	must(os.WriteFile(filepath.Join(shared, "cni-loopback-2-lo"), []byte(`{"netns":"`+other+`/containerd/state/netns/cni-2"}`), 0o600))
	got := mentioning(shared, []string{node})
	slices.Sort(got)
	g.Expect(got).To(Equal([]string{filepath.Join(shared, "a.log"), filepath.Join(shared, "cni-loopback-1-lo")}))
	g.Expect(mentioning(filepath.Join(shared, "missing"), []string{node})).To(BeEmpty())
}

func TestCertificates(t *testing.T) {
	g := NewWithT(t)
	ca, err := NewCA("test")
	g.Expect(err).NotTo(HaveOccurred())
	_, _, err = ca.issue(certRequest{commonName: "nobody"})
	g.Expect(err).To(MatchError(ContainSubstring("a client, a server or both")))

	dir := t.TempDir()
	g.Expect(os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o600)).To(Succeed())
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)).To(Succeed())
	loaded, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(loaded.CertPEM).To(Equal(ca.CertPEM))

	// A certificate it issues verifies against the CA.
	certPEM, _, err := loaded.issue(certRequest{commonName: "system:node:n", organizations: []string{"system:nodes"}, client: true})
	g.Expect(err).NotTo(HaveOccurred())
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cert.Subject.CommonName).To(Equal("system:node:n"))
	g.Expect(cert.Subject.Organization).To(Equal([]string{"system:nodes"}))

	_, otherKey, err := ca.issue(certRequest{commonName: "other", client: true})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(filepath.Join(dir, "other.key"), otherKey, 0o600)).To(Succeed())
	_, err = LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "other.key"))
	g.Expect(err).To(MatchError(ContainSubstring("is not the key of the certificate")))
	_, err = LoadCA(filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.key"))
	g.Expect(err).To(MatchError(ContainSubstring("holds no PEM certificate")))
}

func TestStartNodeRefusesBadOptions(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	pause := &Image{Ref: "stretch.invalid/pause:local", Archive: "/nonexistent"}
	cluster := JoinConfig{Server: "https://198.18.255.1:6443", CA: ca, host: &Host{Name: "srn0"}}
	for _, tc := range []struct {
		name    string
		cluster JoinConfig
		opts    NodeOptions
		want    string
	}{
		{"bad name", cluster, NodeOptions{Name: "Real_0", Pause: pause}, `node name "Real_0": want lower-case letters`},
		{"no pause image", cluster, NodeOptions{Name: "real-0"}, "NodeOptions.Pause is nil: build the sandbox image with BuildPauseImage"},
		{"no CA", JoinConfig{Server: cluster.Server, host: cluster.host}, NodeOptions{Name: "real-0", Pause: pause}, "needs the API server's URL, the cluster CA and a host"},
		{"no host", JoinConfig{Server: cluster.Server, CA: ca}, NodeOptions{Name: "real-0", Pause: pause}, "pass a ControlPlane's JoinConfig()"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := StartNode(t.Context(), tc.cluster, tc.opts)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}

func TestLinkArgs(t *testing.T) {
	for _, tc := range []struct {
		link, name string
		ns         []string
	}{
		{"srn3h", "srn3h", nil},
		{"srn3/srn5p", "srn5p", []string{"-n", "srn3"}},
	} {
		ns, name := linkArgs(tc.link)
		if name != tc.name || !slices.Equal(ns, tc.ns) {
			t.Errorf("linkArgs(%q) = %v, %q; want %v, %q", tc.link, ns, name, tc.ns, tc.name)
		}
	}
}

func TestRouteRecord(t *testing.T) {
	g := NewWithT(t)
	r := recordedRoute{Netns: "srn3", Dst: "198.18.5.0/25", Via: "198.18.255.6"}
	g.Expect(r.args("del")).To(Equal([]string{"-n", "srn3", "route", "del", "198.18.5.0/25", "via", "198.18.255.6"}))
	// A lease's record keeps it for whoever cleans up after a crash.
	data, err := json.Marshal(resources{Routes: []recordedRoute{r}})
	g.Expect(err).NotTo(HaveOccurred())
	var back resources
	g.Expect(json.Unmarshal(data, &back)).To(Succeed())
	g.Expect(back.Routes).To(Equal([]recordedRoute{r}))
	// A route whose namespace is gone went with it.
	g.Expect(deleteRoute(recordedRoute{Netns: "srn-absent-namespace", Dst: "198.18.5.0/25", Via: "198.18.255.6"})).To(Succeed())
}

func TestCutRules(t *testing.T) {
	g := NewWithT(t)
	rules := cutRules(netip.MustParseAddr("198.18.255.7"))
	// Both ways, for the host's own processes and for its pods.
	var chains []string
	for _, r := range rules {
		chains = append(chains, r[0]+" "+r[1]+" "+r[2])
		g.Expect(r[len(r)-2:]).To(Equal([]string{"-j", "DROP"}))
	}
	g.Expect(chains).To(ConsistOf("INPUT -s 198.18.255.7", "OUTPUT -d 198.18.255.7", "FORWARD -s 198.18.255.7", "FORWARD -d 198.18.255.7"))
}

func TestRenderProxyConfig(t *testing.T) {
	g := NewWithT(t)
	data, err := renderProxyConfig("/tmp/p/kubeconfig", "real-0")
	g.Expect(err).NotTo(HaveOccurred())
	var cfg map[string]any
	g.Expect(yaml.Unmarshal(data, &cfg)).To(Succeed())
	g.Expect(cfg).To(HaveKeyWithValue("kind", "KubeProxyConfiguration"))
	g.Expect(cfg).To(HaveKeyWithValue("mode", "iptables"))
	g.Expect(cfg).To(HaveKeyWithValue("hostnameOverride", "real-0"))
	// The machine's conntrack limits are not kube-proxy's to change.
	g.Expect(cfg["conntrack"]).To(HaveKeyWithValue("maxPerCore", BeNumerically("==", 0)))
	for _, addr := range []string{"metricsBindAddress", "healthzBindAddress"} {
		g.Expect(cfg[addr]).To(HavePrefix("127.0.0.1:"), addr)
	}
}
