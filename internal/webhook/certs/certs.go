// Package certs gives the webhook server its TLS certificate: a CA and a
// serving certificate it generates, keeps in a Secret shared by every
// replica, rotates before they expire and serves without a restart. The CA
// bundle goes to the webhook configurations through a callback, before any
// certificate signed by a new CA is served.
//
// It is our own code rather than a library's because the usual one,
// open-policy-agent/cert-controller (pkg/rotator, as read when this was
// written), does not fit: it puts only DNS names in the serving certificate,
// so it cannot serve https://127.0.0.1:9443, the URL a manager outside the
// cluster registers; it only updates the Secret, which must exist
// beforehand; it waits for the certificate as files in a directory (the
// Secret mounted by the kubelet, so a change reaches the server only when
// the kubelet syncs the volume), where we serve from memory; and a CA it
// renews replaces the old one in the Secret and in the configurations at
// once, so API servers that still see the old bundle reject the new
// certificate until they catch up, where we trust both CAs for a while.
package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Keys of the Secret.
const (
	// CAKey holds the trusted CAs, PEM: the current one first, then the
	// previous one while it is valid, so that a CA rotation breaks no call.
	CAKey = "ca.crt"
	// CAPrivateKey holds the current CA's key.
	CAPrivateKey = "ca.key"
)

// Defaults of Options.
const (
	DefaultCAValidity    = 5 * 365 * 24 * time.Hour
	DefaultCertValidity  = 365 * 24 * time.Hour
	DefaultCheckInterval = time.Minute
	// backdate makes new certificates valid a little before now, for API
	// servers whose clock is behind.
	backdate = 5 * time.Minute
)

// Options configure a Rotator.
type Options struct {
	// Client writes the Secret; Reader reads it, uncached.
	Client client.Client
	Reader client.Reader
	// Secret is where the CA and the serving certificate are kept.
	Secret types.NamespacedName
	// Hosts are the DNS names and IP addresses the serving certificate is
	// for, e.g. "127.0.0.1" or "stretch-webhook.stretch-system.svc".
	Hosts []string
	// Inject makes the webhook configurations trust the CA bundle. It is
	// called on every check (it must be idempotent), once a certificate is
	// served, and always before a certificate signed by a new CA is.
	Inject func(ctx context.Context, caBundle []byte) error
	// CAValidity and CertValidity are the lifetimes of new certificates;
	// each is renewed after two thirds of it.
	CAValidity, CertValidity time.Duration
	// CheckInterval is how often the Secret is read again: renewals, and
	// certificates another replica renewed, are picked up then.
	CheckInterval time.Duration
	Clock         clock.PassiveClock
}

// Rotator keeps the webhook server's certificate. It is a manager.Runnable
// that every replica runs, leader or not: all of them serve webhooks.
type Rotator struct {
	opts    Options
	current atomic.Pointer[tls.Certificate]
	ready   chan struct{}
}

var (
	_ manager.Runnable               = &Rotator{}
	_ manager.LeaderElectionRunnable = &Rotator{}
)

// New returns a Rotator; it serves nothing until its first check.
func New(opts Options) *Rotator {
	if opts.CAValidity == 0 {
		opts.CAValidity = DefaultCAValidity
	}
	if opts.CertValidity == 0 {
		opts.CertValidity = DefaultCertValidity
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Rotator{opts: opts, ready: make(chan struct{})}
}

// NeedLeaderElection is false: every replica serves webhooks.
func (r *Rotator) NeedLeaderElection() bool { return false }

// Start checks the certificates now and every CheckInterval until ctx is
// done. A failed check is logged and retried at the next one.
func (r *Rotator) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("webhook-certs")
	wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
		if err := r.Check(ctx); err != nil {
			log.Error(err, "checking the webhook certificates", "secret", r.opts.Secret)
		}
	}, r.opts.CheckInterval, 0.1, true)
	return nil
}

// Ready is closed once a certificate is served.
func (r *Rotator) Ready() <-chan struct{} { return r.ready }

// GetCertificate serves the current certificate; use it as the webhook
// server's tls.Config.GetCertificate.
func (r *Rotator) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := r.current.Load()
	if c == nil {
		return nil, errors.New("the webhook certificate is not ready yet")
	}
	return c, nil
}

// Check brings the Secret, the webhook configurations and the served
// certificate up to date: it creates what is missing, renews what is past
// two thirds of its life, and serves the Secret's certificate.
func (r *Rotator) Check(ctx context.Context) error {
	now := r.opts.Clock.Now()
	secret := &corev1.Secret{}
	err := r.opts.Reader.Get(ctx, r.opts.Secret, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading Secret %s: %w", r.opts.Secret, err)
	}
	s := parse(secret.Data)

	caRenewed := false
	if s.caKey == nil || len(s.cas) == 0 || due(s.cas[0], now) {
		ca, key, err := newCA(now, r.opts.CAValidity)
		if err != nil {
			return err
		}
		s.cas = append([]*x509.Certificate{ca}, s.cas...)
		s.caKey, caRenewed = key, true
	}
	s.cas = slices.DeleteFunc(s.cas, func(c *x509.Certificate) bool { return now.After(c.NotAfter) })
	if len(s.cas) > 2 {
		s.cas = s.cas[:2]
	}
	if caRenewed {
		if err := r.write(ctx, secret, exists, s); err != nil {
			return err
		}
		exists = true
	}
	reissue := false
	switch {
	case !r.usable(s, now):
		reissue = true
	case caRenewed:
		// The certificate of the old CA serves one more check, so that API
		// servers see the new bundle before a certificate it signed.
	default:
		reissue = due(s.cert, now) || !signedBy(s.cert, s.cas[0])
	}
	if reissue {
		cert, key, err := newServingCert(now, r.opts.CertValidity, r.opts.Hosts, s.cas[0], s.caKey)
		if err != nil {
			return err
		}
		s.cert, s.key = cert, key
		if err := r.write(ctx, secret, exists, s); err != nil {
			return err
		}
	}
	pair, err := tls.X509KeyPair(encodeCerts([]*x509.Certificate{s.cert}), encodeKey(s.key))
	if err != nil {
		return fmt.Errorf("loading the serving certificate of Secret %s: %w", r.opts.Secret, err)
	}
	if old := r.current.Swap(&pair); old == nil {
		close(r.ready)
	} else if !bytes.Equal(old.Certificate[0], pair.Certificate[0]) {
		ctrl.LoggerFrom(ctx).Info("serving a new webhook certificate", "notAfter", s.cert.NotAfter)
	}
	// Injected once the certificate is served: a configuration that points
	// at this server (its URL, outside a cluster) is then never called
	// before the server can complete a handshake. The bundle already holds
	// the CA of a certificate issued above: a new CA is only served from
	// the next check.
	if err := r.opts.Inject(ctx, encodeCerts(s.cas)); err != nil {
		return fmt.Errorf("injecting the CA bundle into the webhook configurations: %w", err)
	}
	return nil
}

// usable reports whether the serving certificate can be served at all: not
// expired, for the right hosts, signed by a trusted CA.
func (r *Rotator) usable(s state, now time.Time) bool {
	if s.cert == nil || !now.Before(s.cert.NotAfter) || !sameHosts(s.cert, r.opts.Hosts) {
		return false
	}
	return slices.ContainsFunc(s.cas, func(ca *x509.Certificate) bool { return signedBy(s.cert, ca) })
}

// due reports whether c is past two thirds of its life.
func due(c *x509.Certificate, now time.Time) bool {
	return now.After(c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3))
}

// write saves s in the Secret; a conflict means another replica wrote it
// first, and the next check reads what it wrote.
func (r *Rotator) write(ctx context.Context, secret *corev1.Secret, exists bool, s state) error {
	secret.Name, secret.Namespace = r.opts.Secret.Name, r.opts.Secret.Namespace
	secret.Type = corev1.SecretTypeTLS
	secret.Data = map[string][]byte{
		CAKey:                   encodeCerts(s.cas),
		CAPrivateKey:            encodeKey(s.caKey),
		corev1.TLSCertKey:       encodeCerts(nonNil(s.cert)),
		corev1.TLSPrivateKeyKey: encodeKey(s.key),
	}
	var err error
	if exists {
		err = r.opts.Client.Update(ctx, secret)
	} else {
		err = r.opts.Client.Create(ctx, secret)
	}
	if err != nil {
		return fmt.Errorf("saving the webhook certificates in Secret %s: %w", r.opts.Secret, err)
	}
	return nil
}

func nonNil(c *x509.Certificate) []*x509.Certificate {
	if c == nil {
		return nil
	}
	return []*x509.Certificate{c}
}

// state is what the Secret holds, parsed; what does not parse is absent.
type state struct {
	cas   []*x509.Certificate
	caKey crypto.Signer
	cert  *x509.Certificate
	key   crypto.Signer
}

func parse(data map[string][]byte) state {
	var s state
	s.cas = ParseCertificates(data[CAKey])
	s.caKey = decodeKey(data[CAPrivateKey])
	if certs := ParseCertificates(data[corev1.TLSCertKey]); len(certs) > 0 {
		s.cert = certs[0]
	}
	s.key = decodeKey(data[corev1.TLSPrivateKeyKey])
	if s.cert == nil || s.key == nil {
		s.cert, s.key = nil, nil
	}
	if len(s.cas) > 0 && s.caKey != nil && !samePublicKey(s.cas[0], s.caKey) {
		s.caKey = nil
	}
	return s
}

func samePublicKey(c *x509.Certificate, k crypto.Signer) bool {
	pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(k.Public())
}

func signedBy(c, ca *x509.Certificate) bool {
	return c.CheckSignatureFrom(ca) == nil
}

func sameHosts(c *x509.Certificate, hosts []string) bool {
	var got []string
	got = append(got, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		got = append(got, ip.String())
	}
	want := slices.Clone(hosts)
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(now time.Time, validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generating the webhook CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("stretch-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the webhook CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func newServingCert(now time.Time, validity time.Duration, hosts []string, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generating the webhook serving key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: "stretch-webhook"},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the webhook serving certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// ParseCertificates returns the certificates of PEM data, such as a CA
// bundle, skipping what does not parse.
func ParseCertificates(data []byte) []*x509.Certificate {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return certs
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			certs = append(certs, c)
		}
	}
}

func encodeKey(k crypto.Signer) []byte {
	if k == nil {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func decodeKey(data []byte) crypto.Signer {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil
	}
	s, _ := k.(crypto.Signer)
	return s
}

// Ephemeral returns a serving certificate for hosts, signed by a CA made for
// it and thrown away, valid for validity: for a server whose clients do not
// verify it against a bundle we publish, such as the kubelet API of virtual
// nodes (the API server verifies kubelets only when given a CA for them).
func Ephemeral(hosts []string, validity time.Duration) (tls.Certificate, error) {
	now := time.Now()
	ca, caKey, err := newCA(now, validity)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, key, err := newServingCert(now, validity, hosts, ca, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw, ca.Raw}, PrivateKey: key, Leaf: cert}, nil
}
