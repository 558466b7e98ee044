package peering

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/yaml"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
)

const (
	// CredentialsAPIVersion is the apiVersion of a credentials file.
	CredentialsAPIVersion = "peering.stretch.dev/v1alpha1"
	// CredentialsKind is the kind of a credentials file.
	CredentialsKind = "PeeringCredentials"
	// MaxCredentialsSize bounds a credentials file; real ones are a few KiB.
	MaxCredentialsSize = 1 << 20

	maxTokenLength = 16 << 10
)

// Credentials is what a provider issues to one home cluster: who the provider
// is, where its API server is, and a token of the ServiceAccount of that home
// cluster's tenant. Written to a file (0600) for an out-of-band peering.
type Credentials struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// HomeClusterID is the home cluster the credentials were issued for;
	// another cluster cannot use them.
	HomeClusterID string `json:"homeClusterID"`
	// Provider is the issuing cluster.
	Provider Provider `json:"provider"`
	// Token is the bearer token of the tenant ServiceAccount.
	Token string `json:"token"`
	// ExpirationTimestamp is when the provider stops accepting Token.
	ExpirationTimestamp metav1.Time `json:"expirationTimestamp"`
}

// Provider is the identity and API endpoint of the issuing cluster.
type Provider struct {
	// ClusterID is the provider's cluster ID.
	ClusterID string `json:"clusterID"`
	// ClusterName is the provider's cluster name: the home cluster's
	// RemoteCluster and virtual node are named after it.
	ClusterName string `json:"clusterName"`
	// ClusterLabels are the provider's install-time cluster labels.
	ClusterLabels map[string]string `json:"clusterLabels,omitempty"`
	// Server is the https URL of the provider's API server.
	Server string `json:"server"`
	// CertificateAuthorityData is the PEM bundle that signs the API server's
	// certificate; empty means the home cluster's system roots.
	CertificateAuthorityData []byte `json:"certificateAuthorityData,omitempty"`
	// TLSServerName is the name to verify the server certificate against,
	// when it differs from Server's host.
	TLSServerName string `json:"tlsServerName,omitempty"`
}

// ParseCredentials decodes and validates a credentials file.
func ParseCredentials(data []byte) (*Credentials, error) {
	if len(data) == 0 {
		return nil, errors.New("the credentials file is empty: generate it with 'stretchctl peer generate-credentials' on the provider")
	}
	if len(data) > MaxCredentialsSize {
		return nil, fmt.Errorf("the credentials file is %d bytes, more than the %d a credentials file can be: is it the file written by 'stretchctl peer generate-credentials'?", len(data), MaxCredentialsSize)
	}
	c := &Credentials{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("not a credentials file written by 'stretchctl peer generate-credentials': %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Marshal encodes the credentials as a YAML document.
func (c *Credentials) Marshal() ([]byte, error) {
	c.APIVersion, c.Kind = CredentialsAPIVersion, CredentialsKind
	data, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding credentials: %w", err)
	}
	return data, nil
}

// Validate checks every field, so that a file that validates gives a working
// kubeconfig. It does not check the expiration against the clock.
func (c *Credentials) Validate() error {
	if c.APIVersion != CredentialsAPIVersion || c.Kind != CredentialsKind {
		return fmt.Errorf("not a credentials file written by 'stretchctl peer generate-credentials': apiVersion %q and kind %q, want %s and %s", c.APIVersion, c.Kind, CredentialsAPIVersion, CredentialsKind)
	}
	var errs []error
	if err := identity.ValidateClusterID(c.HomeClusterID); err != nil {
		errs = append(errs, fmt.Errorf("homeClusterID: %w", err))
	}
	if err := c.Provider.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Provider.ClusterID == c.HomeClusterID && c.HomeClusterID != "" {
		errs = append(errs, fmt.Errorf("provider.clusterID and homeClusterID are both %s: cannot peer a cluster with itself", c.HomeClusterID))
	}
	if err := validateToken(c.Token); err != nil {
		errs = append(errs, err)
	}
	if c.ExpirationTimestamp.IsZero() {
		errs = append(errs, errors.New("expirationTimestamp is missing"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid credentials: %w", err)
	}
	return nil
}

// Validate checks the provider's identity and endpoint.
func (p *Provider) Validate() error {
	var errs []error
	if err := identity.ValidateClusterID(p.ClusterID); err != nil {
		errs = append(errs, fmt.Errorf("provider.clusterID: %w", err))
	}
	if err := identity.ValidateClusterName(p.ClusterName); err != nil {
		errs = append(errs, fmt.Errorf("provider.clusterName: %w", err))
	}
	for k, v := range p.ClusterLabels {
		if msgs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("provider.clusterLabels: %q=%q: %s", k, v, strings.Join(msgs, "; ")))
		}
	}
	if err := validateServer(p.Server); err != nil {
		errs = append(errs, err)
	}
	if len(p.CertificateAuthorityData) > 0 {
		if _, err := certutil.ParseCertsPEM(p.CertificateAuthorityData); err != nil {
			errs = append(errs, fmt.Errorf("provider.certificateAuthorityData is not a PEM certificate bundle: %w", err))
		}
	}
	if p.TLSServerName != "" {
		if msgs := validation.IsDNS1123Subdomain(p.TLSServerName); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("provider.tlsServerName %q: %s", p.TLSServerName, strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}

func validateServer(server string) error {
	u, err := url.Parse(server)
	switch {
	case server == "":
		return errors.New("provider.server is missing")
	case err != nil:
		return fmt.Errorf("provider.server: %w", err)
	case u.Scheme != "https":
		return fmt.Errorf("provider.server %q is not an https URL: the token must not travel in clear", server)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("provider.server %q is not of the form https://HOST[:PORT][/PATH]", server)
	}
	return nil
}

func validateToken(token string) error {
	if token == "" {
		return errors.New("token is missing")
	}
	if len(token) > maxTokenLength {
		return fmt.Errorf("token is %d bytes long, more than %d", len(token), maxTokenLength)
	}
	for _, r := range token {
		// A bearer token goes into an HTTP header: visible ASCII only.
		if r <= ' ' || r > '~' {
			return errors.New("token holds characters that cannot be sent in an HTTP header (whitespace, control or non-ASCII)")
		}
	}
	return nil
}

// Expired reports whether the token has expired at now.
func (c *Credentials) Expired(now time.Time) bool { return !now.Before(c.ExpirationTimestamp.Time) }

// Kubeconfig is the kubeconfig the home cluster uses to reach the provider:
// one cluster, one token user, one context, defaulting to the tenant namespace.
func (c *Credentials) Kubeconfig() ([]byte, error) {
	name := c.Provider.ClusterName
	user := wellknown.TenantServiceAccountName + "@" + name
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   c.Provider.Server,
		CertificateAuthorityData: c.Provider.CertificateAuthorityData,
		TLSServerName:            c.Provider.TLSServerName,
	}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: c.Token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user, Namespace: peeringv1alpha1.TenantNamespace(c.HomeClusterID)}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding the kubeconfig of %s: %w", name, err)
	}
	return data, nil
}
