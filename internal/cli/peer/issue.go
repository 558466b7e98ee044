// Package peer sets up and tears down peerings: on the provider, a tenant
// namespace, a ServiceAccount with least-privilege RBAC and its token (the
// credentials); on the home cluster, the kubeconfig Secret and the
// RemoteCluster that the home controller turns into a virtual node.
package peer

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
)

// TokenLifetime is what stretchctl asks for the issued token; the provider's
// API server may grant less (--service-account-max-token-expiration).
// Peering again issues a new token.
const TokenLifetime = 365 * 24 * time.Hour

// IssueCredentials runs on the provider that c reaches: it applies the
// tenant of home cluster homeClusterID (namespace, ServiceAccount, RBAC) and
// issues a token for it. The server, CA and TLS server name of cfg are what
// the home cluster is given to reach the provider (see WithAPIServerURL).
// Everything is checked before the first write.
func IssueCredentials(ctx context.Context, c client.Client, cfg *rest.Config, homeClusterID string, out io.Writer) (*peering.Credentials, error) {
	if err := identity.ValidateClusterID(homeClusterID); err != nil {
		return nil, fmt.Errorf("home cluster ID: %w: pass the ID that 'stretchctl status' shows on the home cluster", err)
	}
	self, err := identity.Load(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("provider cluster: %w", err)
	}
	if self.ID == homeClusterID {
		return nil, fmt.Errorf("cannot peer a cluster with itself: %s is the cluster ID of %q, the provider: pass the ID of the home cluster ('stretchctl status --kubeconfig HOME' shows it)", homeClusterID, self.Name)
	}
	provider, err := endpoint(cfg)
	if err != nil {
		return nil, err
	}
	provider.ClusterID, provider.ClusterName, provider.ClusterLabels = self.ID, self.Name, self.Labels
	if err := provider.Validate(); err != nil {
		return nil, fmt.Errorf("the provider's kubeconfig cannot be handed to a home cluster: %w", err)
	}

	for _, obj := range append(sharedObjects(), tenantObjects(homeClusterID)...) {
		if err := apply.Object(ctx, c, obj); err != nil {
			return nil, err
		}
	}
	ns := peeringv1alpha1.TenantNamespace(homeClusterID)
	fmt.Fprintf(out, "✓ tenant namespace %s, ServiceAccount %s and its RBAC applied on %q\n", ns, wellknown.TenantServiceAccountName, self.Name)
	// Peering again over a peering of an earlier release: its Role and
	// RoleBinding of the old name go, now that the new ones exist.
	if _, err := migrateTenant(ctx, c, homeClusterID, out); err != nil {
		return nil, err
	}

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.TenantServiceAccountName}}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(TokenLifetime / time.Second))}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return nil, fmt.Errorf("issuing a token for ServiceAccount %s/%s: %w", ns, sa.Name, err)
	}
	creds := &peering.Credentials{
		APIVersion:          peering.CredentialsAPIVersion,
		Kind:                peering.CredentialsKind,
		HomeClusterID:       homeClusterID,
		Provider:            provider,
		Token:               tr.Status.Token,
		ExpirationTimestamp: tr.Status.ExpirationTimestamp,
	}
	if err := creds.Validate(); err != nil {
		return nil, fmt.Errorf("the API server issued an unusable token: %w", err)
	}
	fmt.Fprintf(out, "✓ token issued to home cluster %s, valid until %s\n", homeClusterID, creds.ExpirationTimestamp.UTC().Format(time.RFC3339))
	return creds, nil
}

// WithAPIServerURL returns the provider config to hand to home clusters:
// cfg, or when apiServerURL (checked by peering.ParseAPIServerURL) is set a
// copy that points there instead, for a provider whose kubeconfig names an
// address only reachable from here (a loopback or a private address). The
// provider's API server certificate must be valid for it.
func WithAPIServerURL(cfg *rest.Config, apiServerURL string) *rest.Config {
	if apiServerURL == "" {
		return cfg
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Host = apiServerURL
	return cfg
}

// Server is the API server URL that IssueCredentials puts in the
// credentials it issues with cfg.
func Server(cfg *rest.Config) string {
	if !strings.Contains(cfg.Host, "://") {
		return "https://" + cfg.Host
	}
	return cfg.Host
}

// endpoint is where, and with which CA, a home cluster reaches the provider:
// the server of the provider's kubeconfig.
func endpoint(cfg *rest.Config) (peering.Provider, error) {
	if cfg.Insecure {
		return peering.Provider{}, fmt.Errorf("the provider's kubeconfig skips TLS verification (insecure-skip-tls-verify), so it has no CA to hand to the home cluster: use a kubeconfig with certificate-authority-data")
	}
	p := peering.Provider{Server: Server(cfg), CertificateAuthorityData: cfg.CAData, TLSServerName: cfg.ServerName}
	if len(p.CertificateAuthorityData) == 0 && cfg.CAFile != "" {
		ca, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return peering.Provider{}, fmt.Errorf("reading the CA of the provider's kubeconfig: %w", err)
		}
		p.CertificateAuthorityData = ca
	}
	return p, nil
}

// sharedObjects are the provider objects every tenant uses; revoking one
// tenant leaves them.
func sharedObjects() []client.Object {
	return []client.Object{&rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: wellknown.NodeReaderClusterRole, Labels: apply.Labels()},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}}
}

// tenantObjects are what a provider creates for one home cluster, in the
// order they are applied. Its ServiceAccount may: manage RemoteNamespaces in
// its tenant namespace, read its TenantPolicy there, read the provider's
// nodes (capacity) and read the identity ConfigMap. Twin namespaces are granted later, one RoleBinding each,
// by the provider's tenant controller.
func tenantObjects(homeClusterID string) []client.Object {
	ns := peeringv1alpha1.TenantNamespace(homeClusterID)
	labels := tenantLabels(homeClusterID)
	subject := tenantSubject(homeClusterID)
	binding := peering.TenantBindingName(homeClusterID)
	requests, requestsBinding := requestsRBAC(homeClusterID)
	return []client.Object{
		&corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels},
		},
		&corev1.ServiceAccount{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.TenantServiceAccountName, Labels: labels},
			// Nothing runs as this account on the provider: its token is for the home cluster.
			AutomountServiceAccountToken: ptr.To(false),
		},
		requests,
		requestsBinding,
		role(wellknown.SystemNamespace, binding, labels,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{wellknown.IdentityConfigMapName}, Verbs: []string{"get"}}),
		roleBinding(wellknown.SystemNamespace, binding, labels, subject),
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: binding, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: wellknown.NodeReaderClusterRole},
			Subjects:   []rbacv1.Subject{subject},
		},
	}
}

// requestsRBAC are the Role and RoleBinding wellknown.TenantRoleName in the
// tenant namespace of homeClusterID: its ServiceAccount may manage its
// RemoteNamespaces (twin requests) there and read its TenantPolicy.
func requestsRBAC(homeClusterID string) (*rbacv1.Role, *rbacv1.RoleBinding) {
	ns := peeringv1alpha1.TenantNamespace(homeClusterID)
	labels := tenantLabels(homeClusterID)
	group := peeringv1alpha1.GroupVersion.Group
	requests := role(ns, wellknown.TenantRoleName, labels,
		rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{"remotenamespaces"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{"remotenamespaces/status"}, Verbs: []string{"get", "list", "watch"}},
		// The provider's policy for this home cluster is the provider
		// admin's: the home cluster may read it (its limits and usage),
		// never write it.
		rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{"tenantpolicies"}, Verbs: []string{"get", "list", "watch"}})
	return requests, roleBinding(ns, wellknown.TenantRoleName, labels, tenantSubject(homeClusterID))
}

// tenantLabels are the labels of everything issued to homeClusterID.
func tenantLabels(homeClusterID string) map[string]string {
	return apply.Labels(wellknown.HomeClusterIDLabel, homeClusterID)
}

// tenantSubject is the ServiceAccount whose token homeClusterID holds.
func tenantSubject(homeClusterID string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: peeringv1alpha1.TenantNamespace(homeClusterID), Name: wellknown.TenantServiceAccountName}
}

func role(namespace, name string, labels map[string]string, rules ...rbacv1.PolicyRule) *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Rules:      rules,
	}
}

// roleBinding binds the Role of the same name to subject.
func roleBinding(namespace, name string, labels map[string]string, subject rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{subject},
	}
}
