package testenv

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
)

// InstallIdentity gives the cluster of s the identity id, as 'stretchctl
// install' would (namespace stretch-system and the identity ConfigMap),
// without the rest of an install. Installing the same identity again is a
// no-op.
func (s *APIServer) InstallIdentity(ctx context.Context, id identity.Identity) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wellknown.SystemNamespace}}
	if err := s.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s on %s: %w", wellknown.SystemNamespace, s.Name, err)
	}
	if err := s.Client.Create(ctx, id.ConfigMap()); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the identity of %s: %w", s.Name, err)
	}
	return nil
}
