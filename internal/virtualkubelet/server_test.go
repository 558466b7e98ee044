package virtualkubelet_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
)

// answer is the kubelet API's answer to one request.
type answer struct {
	code int
	body string
}

// kubeletAPI calls the kubelet API of virtual nodes at addr as the API
// server does, with cert as its client certificate (nil: none). The serving
// certificate is not checked, as the API server does not check kubelets'
// by default.
func kubeletAPI(addr string, cert *tls.Certificate) func(method, path string) (answer, error) {
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see above
	if cert != nil {
		// Given whatever CAs the server asks for: Go's client would keep a
		// certificate of another CA to itself.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	return func(method, path string) (answer, error) {
		req, err := http.NewRequest(method, "https://"+addr+path, nil)
		if err != nil {
			return answer{}, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return answer{}, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(b)}, err
	}
}

// clientCert is the client certificate of a user of the home API server,
// signed by its client CA.
func clientCert(t *testing.T, name string) *tls.Certificate {
	t.Helper()
	cfg, err := home.AddUser(name)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

// forgedCert is a client certificate for the API server's admin that a CA
// of nobody's signed.
func forgedCert(t *testing.T) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "system:admin", Organization: []string{"system:masters"}},
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA:        true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// The kubelet API of virtual nodes answers as a kubelet without anonymous
// access: 401 without a client certificate, 403 for a user of the home
// cluster without nodes/proxy rights on the node, the request once RBAC
// grants them; a certificate of another CA does not get past the handshake.
func TestKubeletAPIRefusals(t *testing.T) {
	g := newG(t)
	addr := testenv.FreeAddr(t)
	fleet.RunWith(t, home, homeID, []fleet.Provider{{Server: eu}}, fleet.Options{KubeletBindAddress: addr})
	ns := "kubelet-api"
	twin := offload(t, g, ns)
	pod := boundPod(ns, "web")
	pod.Spec.ServiceAccountName, pod.Spec.Volumes = "", nil
	g.Expect(home.Client.Create(ctx, pod)).To(Succeed())
	// Once the remote pod exists, the kubelet of the node knows the pod.
	g.Eventually(func(g Gomega) { remotePod(g, twin, "web") }).Should(Succeed())
	node := peeringv1alpha1.VirtualNodeName(eu.Name)
	logs, exec := "/containerLogs/"+ns+"/web/app", "/exec/"+ns+"/web/app?command=true"

	t.Run("without a client certificate: 401, and how to reach it", func(t *testing.T) {
		g := newG(t)
		call := kubeletAPI(addr, nil)
		var a answer
		g.Eventually(func() (err error) {
			a, err = call(http.MethodGet, logs)
			return err
		}).Should(Succeed(), "the kubelet API serves")
		g.Expect(a.code).To(Equal(http.StatusUnauthorized), a.body)
		g.Expect(a.body).To(And(ContainSubstring("certificate of the cluster's client CA"), ContainSubstring("through the API server")))
	})

	alice := kubeletAPI(addr, clientCert(t, "alice"))
	t.Run("a user of the client CA without nodes/proxy rights: 403 naming the user, the verb and the node", func(t *testing.T) {
		g := newG(t)
		for _, r := range []struct{ method, path, verb string }{
			{http.MethodGet, logs, "get"},
			{http.MethodPost, exec, "create"},
		} {
			a, err := alice(r.method, r.path)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(a.code).To(Equal(http.StatusForbidden), "%s %s: %s", r.method, r.path, a.body)
			g.Expect(a.body).To(And(ContainSubstring(`"alice"`), ContainSubstring(r.verb+" nodes/proxy of node "+node), ContainSubstring("ClusterRoleBinding")))
		}
	})

	t.Run("the same user once RBAC grants nodes/proxy: served", func(t *testing.T) {
		g := newG(t)
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "kubelet-api-alice"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/proxy"}, Verbs: []string{"get", "create"}}}}
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kubelet-api-alice"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "alice"}}}
		g.Expect(home.Client.Create(ctx, role)).To(Succeed())
		g.Expect(home.Client.Create(ctx, binding)).To(Succeed())
		t.Cleanup(func() {
			_ = home.Client.Delete(ctx, binding)
			_ = home.Client.Delete(ctx, role)
		})
		// The provider has no kubelet: its API server answers the logs of a
		// pod on no node with an empty stream, which comes back as is.
		g.Eventually(func(g Gomega) {
			a, err := alice(http.MethodGet, logs)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(a).To(Equal(answer{code: http.StatusOK}))
		}).Should(Succeed())
	})

	t.Run("a certificate of an unknown CA fails the handshake", func(t *testing.T) {
		g := newG(t)
		_, err := kubeletAPI(addr, forgedCert(t))(http.MethodGet, logs)
		g.Expect(err).To(MatchError(ContainSubstring("tls: unknown certificate authority")))
	})

}
