package peering

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/yaml"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

const (
	homeID     = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"
	providerID = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
)

// validCredentials returns credentials that pass Validate, with a real CA.
func validCredentials(t testing.TB) *Credentials {
	t.Helper()
	ca, _, err := certutil.GenerateSelfSignedCertKey("provider-eu", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Credentials{
		APIVersion:    CredentialsAPIVersion,
		Kind:          CredentialsKind,
		HomeClusterID: homeID,
		Provider: Provider{
			ClusterID:                providerID,
			ClusterName:              "provider-eu",
			ClusterLabels:            map[string]string{"region": "eu"},
			Server:                   "https://127.0.0.1:6443",
			CertificateAuthorityData: ca,
		},
		Token:               "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
		ExpirationTimestamp: metav1.NewTime(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)),
	}
}

func TestCredentialsRoundTrip(t *testing.T) {
	g := NewWithT(t)
	want := validCredentials(t)
	data, err := want.Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).To(HavePrefix("apiVersion: peering.stretch.dev/v1alpha1\n"))
	g.Expect(string(data)).To(ContainSubstring("kind: PeeringCredentials\n"))

	got, err := ParseCredentials(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.ExpirationTimestamp.Equal(&want.ExpirationTimestamp)).To(BeTrue())
	got.ExpirationTimestamp = want.ExpirationTimestamp // same instant, other time zone
	g.Expect(got).To(Equal(want))
	g.Expect(got.Expired(time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC))).To(BeFalse())
	g.Expect(got.Expired(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))).To(BeTrue())
}

func TestKubeconfig(t *testing.T) {
	g := NewWithT(t)
	c := validCredentials(t)
	data, err := c.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())

	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.Host).To(Equal(c.Provider.Server))
	g.Expect(cfg.BearerToken).To(Equal(c.Token))
	g.Expect(cfg.CAData).To(Equal(c.Provider.CertificateAuthorityData))

	raw, err := clientcmd.Load(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(raw.CurrentContext).To(Equal("provider-eu"))
	g.Expect(raw.Contexts["provider-eu"].Namespace).To(Equal("stretch-tenant-" + homeID))
}

func TestParseCredentialsErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *Credentials)
		raw     string
		wantErr string
	}{
		{name: "empty", raw: " ", wantErr: "not a credentials file"},
		{name: "no bytes", raw: "", wantErr: "the credentials file is empty"},
		{name: "too large", raw: strings.Repeat("a", MaxCredentialsSize+1), wantErr: "more than the 1048576"},
		{name: "not YAML", raw: "{[", wantErr: "not a credentials file written by"},
		{name: "a kubeconfig", raw: "apiVersion: v1\nkind: Config\nclusters: []\n", wantErr: `unknown field "clusters"`},
		{name: "unknown field", raw: "apiVersion: peering.stretch.dev/v1alpha1\nkind: PeeringCredentials\nextra: 1\n", wantErr: `unknown field "extra"`},
		{name: "wrong kind", edit: func(c *Credentials) { c.Kind = "Secret" }, wantErr: `kind "Secret"`},
		{name: "wrong version", edit: func(c *Credentials) { c.APIVersion = "peering.stretch.dev/v2" }, wantErr: `apiVersion "peering.stretch.dev/v2"`},
		{name: "home ID", edit: func(c *Credentials) { c.HomeClusterID = "HOME" }, wantErr: `homeClusterID: cluster ID "HOME" is not a lower-case UUID`},
		{name: "upper-case provider ID", edit: func(c *Credentials) { c.Provider.ClusterID = strings.ToUpper(providerID) }, wantErr: "provider.clusterID"},
		{name: "self", edit: func(c *Credentials) { c.Provider.ClusterID = homeID }, wantErr: "cannot peer a cluster with itself"},
		{name: "name", edit: func(c *Credentials) { c.Provider.ClusterName = "Provider_EU" }, wantErr: "provider.clusterName"},
		{name: "label", edit: func(c *Credentials) { c.Provider.ClusterLabels = map[string]string{"bad key": "x"} }, wantErr: "provider.clusterLabels"},
		{name: "no server", edit: func(c *Credentials) { c.Provider.Server = "" }, wantErr: "provider.server is missing"},
		{name: "http server", edit: func(c *Credentials) { c.Provider.Server = "http://10.0.0.1:6443" }, wantErr: "not an https URL"},
		{name: "no host", edit: func(c *Credentials) { c.Provider.Server = "https:///api" }, wantErr: "not of the form https://HOST"},
		{name: "user in URL", edit: func(c *Credentials) { c.Provider.Server = "https://u:p@host" }, wantErr: "not of the form https://HOST"},
		{name: "bad CA", edit: func(c *Credentials) { c.Provider.CertificateAuthorityData = []byte("not PEM") }, wantErr: "not a PEM certificate bundle"},
		{name: "bad TLS name", edit: func(c *Credentials) { c.Provider.TLSServerName = "a b" }, wantErr: "provider.tlsServerName"},
		{name: "no token", edit: func(c *Credentials) { c.Token = "" }, wantErr: "token is missing"},
		{name: "token with newline", edit: func(c *Credentials) { c.Token = "abc\nHost: evil" }, wantErr: "cannot be sent in an HTTP header"},
		{name: "no expiration", edit: func(c *Credentials) { c.ExpirationTimestamp = metav1.Time{} }, wantErr: "expirationTimestamp is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			data := []byte(tt.raw)
			if tt.edit != nil {
				c := validCredentials(t)
				tt.edit(c)
				var err error
				// Marshal stamps apiVersion and kind: encode by hand to keep edits.
				data, err = yaml.Marshal(c)
				g.Expect(err).NotTo(HaveOccurred())
			}
			_, err := ParseCredentials(data)
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

func TestNames(t *testing.T) {
	g := NewWithT(t)
	g.Expect(SecretName("provider-eu")).To(Equal("stretch-peer-provider-eu"))
	g.Expect(TenantBindingName(homeID)).To(Equal("stretch-tenant-" + homeID))
}

// FuzzParseCredentials checks that no input makes ParseCredentials panic;
// that a refusal says what is wrong in one readable message; and that
// whatever it accepts survives a round trip unchanged and yields a
// kubeconfig that client-go loads into a client of the provider's server,
// with the token, trusting the CA and defaulting to the tenant namespace.
func FuzzParseCredentials(f *testing.F) {
	c := validCredentials(f)
	valid, err := c.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(""))
	f.Add([]byte("apiVersion: peering.stretch.dev/v1alpha1\nkind: PeeringCredentials\n"))
	f.Add([]byte("apiVersion: v1\nkind: Config\n"))
	f.Add([]byte("provider: [1, 2]\ntoken: {a: b}\n"))
	f.Add([]byte("expirationTimestamp: not-a-time\n"))
	f.Add([]byte("&a [*a, *a]"))
	// Valid but for one field each.
	for _, mutate := range []func(*Credentials){
		func(c *Credentials) { c.HomeClusterID = strings.ToUpper(homeID) },
		func(c *Credentials) { c.Provider.ClusterID = homeID },
		func(c *Credentials) { c.Provider.ClusterName = "Provider_EU" },
		func(c *Credentials) { c.Provider.ClusterLabels = map[string]string{"bad key!": "v"} },
		func(c *Credentials) { c.Provider.Server = "http://127.0.0.1:6443" },
		func(c *Credentials) { c.Provider.Server = "https://user:pw@127.0.0.1:6443/?q=1" },
		func(c *Credentials) { c.Provider.Server = "https://[::1" },
		func(c *Credentials) { c.Provider.CertificateAuthorityData = []byte("not PEM") },
		func(c *Credentials) { c.Provider.TLSServerName = "Not A Name" },
		func(c *Credentials) { c.Token = "two words" },
		func(c *Credentials) { c.Token = "" },
		func(c *Credentials) { c.ExpirationTimestamp = metav1.Time{} },
		func(c *Credentials) {
			c.ExpirationTimestamp = metav1.NewTime(time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC))
		},
		func(c *Credentials) { c.Provider.Server = "https://provider.example.com:443/k8s/clusters/c-1" },
	} {
		m := *c
		m.Provider.ClusterLabels = maps.Clone(c.Provider.ClusterLabels)
		mutate(&m)
		data, err := yaml.Marshal(&m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(append(slices.Clone(valid), []byte("extra: field\n")...))
	f.Add([]byte(strings.Replace(string(valid), "token:", "token: !!binary", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCredentials(data)
		if err != nil {
			if c != nil {
				t.Fatal("credentials returned with an error")
			}
			// Every refusal says which file and, for a bad field, which.
			msg := err.Error()
			if !strings.HasPrefix(msg, "the credentials file is") && !strings.HasPrefix(msg, "not a credentials file") && !strings.HasPrefix(msg, "invalid credentials: ") {
				t.Fatalf("the error does not say what is wrong with the file: %q", msg)
			}
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("accepted credentials do not encode: %v", err)
		}
		back, err := ParseCredentials(out)
		if err != nil {
			t.Fatalf("accepted credentials do not parse again: %v\n%s", err, out)
		}
		// Timestamps are written to the second, as Kubernetes writes them.
		want := *c
		want.ExpirationTimestamp = metav1.NewTime(c.ExpirationTimestamp.Truncate(time.Second))
		if !equality.Semantic.DeepEqual(&want, back) && !(len(want.Provider.ClusterLabels) == 0 && len(back.Provider.ClusterLabels) == 0) {
			t.Fatalf("a round trip changes the credentials:\n%+v\n%+v", want, *back)
		}
		kubeconfig, err := c.Kubeconfig()
		if err != nil {
			t.Fatalf("accepted credentials give no kubeconfig: %v", err)
		}
		loader, err := clientcmd.NewClientConfigFromBytes(kubeconfig)
		if err != nil {
			t.Fatalf("the kubeconfig does not load: %v\n%s", err, kubeconfig)
		}
		cfg, err := loader.ClientConfig()
		if err != nil {
			t.Fatalf("the kubeconfig gives no client: %v\n%s", err, kubeconfig)
		}
		ns, _, err := loader.Namespace()
		switch {
		case err != nil:
			t.Fatalf("the kubeconfig gives no namespace: %v", err)
		case strings.TrimSuffix(cfg.Host, "/") != strings.TrimSuffix(c.Provider.Server, "/") || cfg.BearerToken != c.Token:
			t.Fatalf("the kubeconfig reaches %s with token %q, the credentials say %s and %q", cfg.Host, cfg.BearerToken, c.Provider.Server, c.Token)
		case !bytes.Equal(cfg.CAData, c.Provider.CertificateAuthorityData) || cfg.ServerName != c.Provider.TLSServerName:
			t.Fatalf("the kubeconfig trusts CA %q for %q, the credentials say %q for %q", cfg.CAData, cfg.ServerName, c.Provider.CertificateAuthorityData, c.Provider.TLSServerName)
		case ns != peeringv1alpha1.TenantNamespace(c.HomeClusterID):
			t.Fatalf("the kubeconfig defaults to namespace %q, not the tenant namespace", ns)
		}
	})
}
