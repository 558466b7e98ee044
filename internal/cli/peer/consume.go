package peer

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
)

// Peer peers the home cluster with the provider directly: it issues the
// credentials on the provider and consumes them on the home cluster. The
// server and CA of providerConfig are those the home cluster is given (see
// WithAPIServerURL). What would make the home side refuse is checked before
// the provider is written.
func Peer(ctx context.Context, home, provider client.Client, providerConfig *rest.Config, out io.Writer) (*peeringv1alpha1.RemoteCluster, error) {
	self, err := identity.Load(ctx, home)
	if err != nil {
		return nil, fmt.Errorf("home cluster: %w", err)
	}
	remote, err := identity.Load(ctx, provider)
	if err != nil {
		return nil, fmt.Errorf("provider cluster: %w", err)
	}
	if err := preflight(ctx, home, self, self.ID, remote.ID, remote.Name); err != nil {
		return nil, err
	}
	creds, err := IssueCredentials(ctx, provider, providerConfig, self.ID, out)
	if err != nil {
		return nil, err
	}
	return Consume(ctx, home, creds, out)
}

// Consume sets up the home side of a peering from the credentials a provider
// issued: the kubeconfig Secret and the RemoteCluster. It is idempotent and
// leaves the fields an admin owns (spec.labels, resources, cordoned) alone.
// Everything that makes it refuse is checked before the first write.
func Consume(ctx context.Context, home client.Client, creds *peering.Credentials, out io.Writer) (*peeringv1alpha1.RemoteCluster, error) {
	if err := creds.Validate(); err != nil {
		return nil, err
	}
	name := creds.Provider.ClusterName
	if creds.Expired(time.Now()) {
		return nil, fmt.Errorf("the credentials issued by %q expired at %s: generate new ones on the provider with 'stretchctl peer generate-credentials --home-cluster-id %s'",
			name, creds.ExpirationTimestamp.UTC().Format(time.RFC3339), creds.HomeClusterID)
	}
	self, err := identity.Load(ctx, home)
	if err != nil {
		return nil, fmt.Errorf("home cluster: %w", err)
	}
	if err := preflight(ctx, home, self, creds.HomeClusterID, creds.Provider.ClusterID, name); err != nil {
		return nil, err
	}
	kubeconfig, err := creds.Kubeconfig()
	if err != nil {
		return nil, err
	}

	labels := apply.Labels(wellknown.RemoteClusterIDLabel, creds.Provider.ClusterID, wellknown.RemoteClusterNameLabel, name)
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: peering.SecretName(name), Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{peering.KubeconfigKey: kubeconfig},
	}
	if err := apply.Object(ctx, home, secret); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "✓ Secret %s/%s applied: kubeconfig of %q, token valid until %s\n", secret.Namespace, secret.Name, name, creds.ExpirationTimestamp.UTC().Format(time.RFC3339))

	// Only clusterID and the Secret reference are applied: spec.labels,
	// resources and cordoned belong to the admin and survive a re-peering.
	rc := &peeringv1alpha1.RemoteCluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: peeringv1alpha1.GroupVersion.String(), Kind: "RemoteCluster"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: peeringv1alpha1.RemoteClusterSpec{
			ClusterID: creds.Provider.ClusterID,
			KubeconfigSecretRef: peeringv1alpha1.SecretKeyReference{
				Namespace: secret.Namespace, Name: secret.Name, Key: peering.KubeconfigKey,
			},
		},
	}
	if err := apply.Object(ctx, home, rc); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "✓ RemoteCluster %s applied (cluster ID %s): the home controller makes it virtual node %s\n", name, rc.Spec.ClusterID, peeringv1alpha1.VirtualNodeName(name))
	return rc, nil
}

// preflight refuses a peering that cannot be right: credentials for another
// home cluster, a cluster peering with itself, and a provider name or cluster
// ID that an existing RemoteCluster already stands for otherwise.
func preflight(ctx context.Context, home client.Client, self identity.Identity, homeClusterID, providerID, providerName string) error {
	if homeClusterID != self.ID {
		return fmt.Errorf("these credentials were issued for home cluster %s, this cluster is %s (%q): generate them on the provider with --home-cluster-id %s",
			homeClusterID, self.ID, self.Name, self.ID)
	}
	if providerID == self.ID {
		return fmt.Errorf("cannot peer a cluster with itself: the provider has this cluster's own ID %s (%q): point --remote-kubeconfig at another cluster", self.ID, self.Name)
	}
	peers := &peeringv1alpha1.RemoteClusterList{}
	if err := apply.List(ctx, home, peers); err != nil {
		return err
	}
	for _, rc := range peers.Items {
		switch {
		case rc.Name == providerName && rc.Spec.ClusterID != providerID:
			return fmt.Errorf("RemoteCluster %s already stands for cluster ID %s, but %q now has cluster ID %s (was Stretch reinstalled there?): run 'stretchctl unpeer %s' first, then peer again",
				rc.Name, rc.Spec.ClusterID, providerName, providerID, rc.Name)
		case rc.Name != providerName && rc.Spec.ClusterID == providerID:
			return fmt.Errorf("cluster ID %s is already peered as RemoteCluster %s, and now calls itself %q: a provider is peered once; run 'stretchctl unpeer %s' first to peer it under its new name",
				providerID, rc.Name, providerName, rc.Name)
		case rc.Name == providerName && !rc.DeletionTimestamp.IsZero():
			return fmt.Errorf("RemoteCluster %s is being deleted: let 'stretchctl unpeer %s' finish, then peer again", rc.Name, rc.Name)
		}
	}
	return nil
}
