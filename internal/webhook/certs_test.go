package webhook_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/webhook"
	"stretch.dev/stretch/internal/webhook/certs"
	"stretch.dev/stretch/internal/webhook/webhooktest"
)

// caBundles returns the CAs each webhook configuration trusts.
func caBundles(g Gomega) [][]*x509.Certificate {
	ctx := context.Background()
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: wellknown.PodPlacementWebhookName}, m)).To(Succeed())
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: wellknown.OffloadingWebhookName}, v)).To(Succeed())
	return [][]*x509.Certificate{certs.ParseCertificates(m.Webhooks[0].ClientConfig.CABundle), certs.ParseCertificates(v.Webhooks[0].ClientConfig.CABundle)}
}

// TestCertificateRotation moves a fake clock through the lifetimes of the
// serving certificate and of the CA; the webhooks keep answering through the
// real API server, which checks the certificates against the configurations'
// bundle, without the server restarting. The clock moves less than the
// certificates' backdating, so that their validity holds in real time too.
func TestCertificateRotation(t *testing.T) {
	clock := testingclock.NewFakeClock(time.Now())
	s, addr := webhooktest.Serve(t, home, certs.Options{Clock: clock, CertValidity: 6 * time.Minute, CAValidity: 9 * time.Minute, CheckInterval: time.Hour})
	ctx := context.Background()
	g := NewWithT(t)
	stillPlaced := func() {
		t.Helper()
		g.Eventually(func(g Gomega) {
			g.Expect(webhooktest.Create(g, home, webhooktest.Pod("probe-testcertificaterotation", nil), true).Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	}

	secret := &corev1.Secret{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: wellknown.WebhookCertificateSecretName}, secret)).To(Succeed())
	g.Expect(secret.Type).To(Equal(corev1.SecretTypeTLS))
	g.Expect(secret.Data).To(HaveKey(corev1.TLSCertKey))
	g.Expect(secret.Data).To(HaveKey(corev1.TLSPrivateKeyKey))
	g.Expect(secret.Data).To(HaveKey(certs.CAKey))
	g.Expect(secret.Data).To(HaveKey(certs.CAPrivateKey))
	first := webhooktest.ServedSerial(g, addr)
	firstCA := caBundles(g)[0]
	g.Expect(firstCA).To(HaveLen(1))

	// Nothing is due yet: a check changes nothing.
	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	g.Expect(webhooktest.ServedSerial(g, addr)).To(Equal(first))

	// Past two thirds of the serving certificate's life: a new one, same CA.
	clock.Step(3 * time.Minute)
	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	second := webhooktest.ServedSerial(g, addr)
	g.Expect(second).NotTo(Equal(first))
	g.Expect(caBundles(g)[0]).To(Equal(firstCA))
	stillPlaced()

	// Past two thirds of the CA's life: the bundle trusts both CAs, and the
	// certificate of the old one serves until the next check.
	clock.Step(90 * time.Second)
	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	for _, bundle := range caBundles(g) {
		g.Expect(bundle).To(HaveLen(2))
		g.Expect(bundle[1].Equal(firstCA[0])).To(BeTrue(), "the old CA is still trusted")
	}
	g.Expect(webhooktest.ServedSerial(g, addr)).To(Equal(second))
	stillPlaced()

	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	third := webhooktest.ServedSerial(g, addr)
	g.Expect(third).NotTo(Equal(second), "then a certificate of the new CA")
	stillPlaced()

	// A deleted configuration comes back at the next check.
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	m.Name = wellknown.PodPlacementWebhookName
	g.Expect(home.Client.Delete(ctx, m)).To(Succeed())
	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	stillPlaced()

	// A Secret whose certificate is garbage gets a new one, from the CA.
	g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
	secret.Data[corev1.TLSCertKey] = []byte("garbage")
	g.Expect(home.Client.Update(ctx, secret)).To(Succeed())
	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	g.Expect(webhooktest.ServedSerial(g, addr)).NotTo(Equal(third))
	stillPlaced()
}

// TestConfigurationsInjectedOnceServing checks that the webhook
// configurations are pointed at a server only once it serves a certificate:
// a manager outside the cluster points them at its own URL, and an API
// server calling it before that got "tls: internal error".
func TestConfigurationsInjectedOnceServing(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	// The Secret's namespace: this test may run alone.
	webhooktest.Identity(t, home)
	var rotator *certs.Rotator
	injected := 0
	rotator = certs.New(certs.Options{
		Client: home.Client, Reader: home.Client,
		Secret: client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: "certs-injected-once-serving"},
		Hosts:  []string{"127.0.0.1"},
		Inject: func(context.Context, []byte) error {
			injected++
			served, err := rotator.GetCertificate(nil)
			g.Expect(err).NotTo(HaveOccurred(), "a configuration was pointed at the server before it served a certificate")
			g.Expect(served).NotTo(BeNil())
			return nil
		},
	})
	g.Expect(rotator.Check(ctx)).To(Succeed())
	g.Expect(injected).To(Equal(1))
	g.Expect(rotator.Ready()).To(BeClosed())
}

// TestRotatorStartRotates lets the rotator's own loop, not a direct Check,
// renew a serving certificate that is past two thirds of its life.
func TestRotatorStartRotates(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	webhooktest.Identity(t, home)
	clock := testingclock.NewFakeClock(time.Now())
	key := client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: "certs-start-loop"}
	rotator := certs.New(certs.Options{
		Client: home.Client, Reader: home.Client, Secret: key, Hosts: []string{"127.0.0.1"},
		Inject: func(context.Context, []byte) error { return nil },
		Clock:  clock, CertValidity: 6 * time.Minute, CAValidity: 9 * time.Minute, CheckInterval: 100 * time.Millisecond,
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rotator.Start(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the rotator stopped with an error: %v", err)
		}
	})
	g.Eventually(rotator.Ready()).WithTimeout(10 * time.Second).Should(BeClosed())
	served := func() string {
		c, err := rotator.GetCertificate(nil)
		g.Expect(err).NotTo(HaveOccurred())
		return c.Leaf.SerialNumber.String()
	}
	first := served()

	clock.Step(3 * time.Minute)
	g.Eventually(served).WithTimeout(10 * time.Second).ShouldNot(Equal(first))
	secret := &corev1.Secret{}
	g.Expect(home.Client.Get(ctx, key, secret)).To(Succeed())
	saved := certs.ParseCertificates(secret.Data[corev1.TLSCertKey])
	g.Expect(saved).To(HaveLen(1))
	g.Expect(saved[0].SerialNumber.String()).To(Equal(served()), "the renewed certificate is the one in the Secret, for the other replicas")
}

// TestInClusterEndpoint runs the webhooks as a manager in the cluster
// does, behind Service stretch-system/stretch-webhook, and checks what the
// API server would rely on: the configurations name the Service, and the
// served certificate verifies, for the Service's DNS names, against the CA
// bundle injected into them. The call itself is not made: this API server
// has no cluster network to reach a Service through, and Endpoints may not
// point at loopback addresses, where this server listens; the e2e suite
// covers calls by URL.
func TestInClusterEndpoint(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	webhooktest.Identity(t, home)
	svc := client.ObjectKey{Namespace: wellknown.SystemNamespace, Name: "stretch-webhook"}
	addr := testenv.FreeAddr(t)
	s, err := webhook.NewServing(addr, webhook.Endpoint{Service: svc}, certs.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	// The configurations now point at a Service that is not there: tests
	// that follow point them back at their own server when they start.
	testenv.StartManager(t, home.Config, func(o *ctrl.Options) { o.WebhookServer = s.Server }, s.Setup)
	g.Eventually(s.Rotator.Ready()).WithTimeout(30 * time.Second).Should(BeClosed())

	var bundles [][]byte
	check := func(name string, cc admissionregistrationv1.WebhookClientConfig, path string) {
		g.Expect(cc.URL).To(BeNil(), name)
		g.Expect(cc.Service).To(Equal(&admissionregistrationv1.ServiceReference{Namespace: "stretch-system", Name: "stretch-webhook",
			Path: ptr.To(path), Port: ptr.To[int32](443)}), name)
		bundles = append(bundles, cc.CABundle)
	}
	g.Eventually(func(g Gomega) {
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: wellknown.PodPlacementWebhookName}, m)).To(Succeed())
		g.Expect(m.Webhooks).To(HaveLen(2))
		g.Expect(m.Webhooks[0].ClientConfig.Service).NotTo(BeNil(), "still the configuration of a test before")
		// The validating configuration is applied after the mutating one.
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: wellknown.OffloadingWebhookName}, v)).To(Succeed())
		g.Expect(v.Webhooks).To(HaveLen(1))
		g.Expect(v.Webhooks[0].ClientConfig.Service).NotTo(BeNil(), "still the configuration of a test before")
	}).WithTimeout(10 * time.Second).Should(Succeed())
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: wellknown.PodPlacementWebhookName}, m)).To(Succeed())
	for _, wh := range m.Webhooks {
		check(wh.Name, wh.ClientConfig, "/mutate-pod")
	}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: wellknown.OffloadingWebhookName}, v)).To(Succeed())
	check(v.Webhooks[0].Name, v.Webhooks[0].ClientConfig, "/validate-namespaceoffloading")

	for _, bundle := range bundles {
		g.Expect(bundle).To(Equal(bundles[0]), "every webhook trusts the same CAs")
	}
	roots := x509.NewCertPool()
	g.Expect(roots.AppendCertsFromPEM(bundles[0])).To(BeTrue())
	for _, serverName := range []string{"stretch-webhook.stretch-system.svc", "stretch-webhook.stretch-system.svc.cluster.local"} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, RootCAs: roots, MinVersion: tls.VersionTLS12})
		g.Expect(err).NotTo(HaveOccurred(), serverName)
		g.Expect(conn.Close()).To(Succeed())
	}
	// Not a certificate for anything else, the address it listens on
	// included.
	for _, serverName := range []string{"127.0.0.1", "other.stretch-system.svc"} {
		_, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, RootCAs: roots, MinVersion: tls.VersionTLS12})
		g.Expect(err).To(MatchError(ContainSubstring("x509: ")), serverName)
	}
}
