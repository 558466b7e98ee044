package webhook_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/webhook"
	"stretch.dev/stretch/internal/webhook/certs"
)

// caBundles returns the CAs each webhook configuration trusts.
func caBundles(g Gomega) [][]*x509.Certificate {
	ctx := context.Background()
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: webhook.MutatingConfigurationName}, m)).To(Succeed())
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: webhook.ValidatingConfigurationName}, v)).To(Succeed())
	return [][]*x509.Certificate{certs.ParseCertificates(m.Webhooks[0].ClientConfig.CABundle), certs.ParseCertificates(v.Webhooks[0].ClientConfig.CABundle)}
}

// TestCertificateRotation moves a fake clock through the lifetimes of the
// serving certificate and of the CA; the webhooks keep answering through the
// real API server, which checks the certificates against the configurations'
// bundle, without the server restarting. The clock moves less than the
// certificates' backdating, so that their validity holds in real time too.
func TestCertificateRotation(t *testing.T) {
	clock := testingclock.NewFakeClock(time.Now())
	s, addr := serve(t, certs.Options{Clock: clock, CertValidity: 6 * time.Minute, CAValidity: 9 * time.Minute, CheckInterval: time.Hour})
	ctx := context.Background()
	g := NewWithT(t)
	stillPlaced := func() {
		t.Helper()
		g.Eventually(func(g Gomega) {
			g.Expect(create(g, pod("probe-testcertificaterotation", nil), true).Spec.Tolerations).To(ContainElement(placement.VirtualNodeToleration))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	}

	secret := &corev1.Secret{}
	g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: identity.SystemNamespace, Name: webhook.CertificateSecretName}, secret)).To(Succeed())
	g.Expect(secret.Type).To(Equal(corev1.SecretTypeTLS))
	g.Expect(secret.Data).To(HaveKey(corev1.TLSCertKey))
	g.Expect(secret.Data).To(HaveKey(corev1.TLSPrivateKeyKey))
	g.Expect(secret.Data).To(HaveKey(certs.CAKey))
	g.Expect(secret.Data).To(HaveKey(certs.CAPrivateKey))
	first := servedSerial(g, addr)
	firstCA := caBundles(g)[0]
	g.Expect(firstCA).To(HaveLen(1))

	// Nothing is due yet: a check changes nothing.
	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	g.Expect(servedSerial(g, addr)).To(Equal(first))

	// Past two thirds of the serving certificate's life: a new one, same CA.
	clock.Step(3 * time.Minute)
	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	second := servedSerial(g, addr)
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
	g.Expect(servedSerial(g, addr)).To(Equal(second))
	stillPlaced()

	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	third := servedSerial(g, addr)
	g.Expect(third).NotTo(Equal(second), "then a certificate of the new CA")
	stillPlaced()

	// A deleted configuration comes back at the next check.
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	m.Name = webhook.MutatingConfigurationName
	g.Expect(home.Client.Delete(ctx, m)).To(Succeed())
	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	stillPlaced()

	// A Secret whose certificate is garbage gets a new one, from the CA.
	g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
	secret.Data[corev1.TLSCertKey] = []byte("garbage")
	g.Expect(home.Client.Update(ctx, secret)).To(Succeed())
	g.Expect(s.Rotator.Check(ctx)).To(Succeed())
	g.Expect(servedSerial(g, addr)).NotTo(Equal(third))
	stillPlaced()
}

// TestConfigurationsInjectedOnceServing checks that the webhook
// configurations are pointed at a server only once it serves a certificate:
// a manager outside the cluster points them at its own URL, and an API
// server calling it before that got "tls: internal error".
func TestConfigurationsInjectedOnceServing(t *testing.T) {
	ctx := context.Background()
	g := NewWithT(t)
	var rotator *certs.Rotator
	injected := 0
	rotator = certs.New(certs.Options{
		Client: home.Client, Reader: home.Client,
		Secret: client.ObjectKey{Namespace: identity.SystemNamespace, Name: "certs-injected-once-serving"},
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
