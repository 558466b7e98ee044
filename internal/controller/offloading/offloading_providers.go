package offloading

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/remote"
)

// syncRequest writes or deletes the RemoteNamespace on the provider and
// returns what the provider reports. Reads come from the peer's cache; a
// provider whose last probe failed is not written to, so that a dead provider
// never holds a worker for a request timeout.
func (r *Reconciler) syncRequest(ctx context.Context, rc *peeringv1alpha1.RemoteCluster, off *offloadingv1alpha1.NamespaceOffloading, homeID, twin string, wanted, keep bool) (*peeringv1alpha1.RemoteNamespace, error) {
	deleting := !off.DeletionTimestamp.IsZero()
	// A provider that never had a twin for this namespace (not in the status)
	// is not waited for; if a request was sent there after all, it is deleted
	// as an orphan when the provider answers again.
	known := off.Status.RemoteNamespacesConditions[rc.Name] != nil
	mustKnow := wanted || deleting && known
	key := client.ObjectKey{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: off.Namespace}

	peer, rn, err := r.readRequest(ctx, rc, key)
	if err != nil {
		if mustKnow {
			return nil, err
		}
		return nil, nil
	}
	switch {
	case rn == nil && wanted:
		if err := peer.Health(); err != nil {
			return nil, unusable{error: fmt.Errorf("provider %s does not answer: %w", rc.Name, err)}
		}
		rn = &peeringv1alpha1.RemoteNamespace{
			// Born with the provider's finalizer: one write fewer on the
			// provider per twin, and a request deleted before the provider
			// saw it is still cleaned up by it.
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Finalizers: []string{wellknown.RemoteNamespaceFinalizer}},
			Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: off.Namespace, HomeClusterID: homeID, RemoteNamespaceName: twin},
		}
		// AlreadyExists: the cache has not seen our last create yet.
		if err := peer.Client.Create(ctx, rn); client.IgnoreAlreadyExists(err) != nil {
			return nil, fmt.Errorf("asking provider %s for twin %s: %w", rc.Name, twin, err)
		}
		return rn, nil
	case rn != nil && !wanted && !keep && rn.DeletionTimestamp.IsZero():
		if err := r.withdraw(ctx, rc.Name, peer, rn); err != nil {
			return rn, err
		}
	}
	return rn, nil
}

// readRequest returns the provider's peer and the RemoteNamespace key names
// there, nil when there is none.
func (r *Reconciler) readRequest(ctx context.Context, rc *peeringv1alpha1.RemoteCluster, key client.ObjectKey) (*remote.Peer, *peeringv1alpha1.RemoteNamespace, error) {
	peer, ok := r.Registry.Get(rc.Spec.ClusterID)
	if !ok {
		r.unread.LoadOrStore(rc.Spec.ClusterID, time.Now())
		return nil, nil, unusable{error: fmt.Errorf("provider %s is not connected (see the conditions of RemoteCluster %s)", rc.Name, rc.Name), unread: true}
	}
	reader, err := peer.Reader(&peeringv1alpha1.RemoteNamespace{})
	if err != nil {
		r.unread.LoadOrStore(rc.Spec.ClusterID, time.Now())
		return nil, nil, unusable{error: fmt.Errorf("provider %s cannot be read (see the conditions of RemoteCluster %s): %w", rc.Name, rc.Name, err), unread: true}
	}
	r.unread.Delete(rc.Spec.ClusterID)
	rn := &peeringv1alpha1.RemoteNamespace{}
	if err := reader.Get(ctx, key, rn); err != nil {
		if apierrors.IsNotFound(err) {
			return peer, nil, nil
		}
		return nil, nil, fmt.Errorf("reading the twin request on provider %s: %w", rc.Name, err)
	}
	return peer, rn, nil
}

// withdraw deletes a twin request; the provider then deletes the twin.
func (r *Reconciler) withdraw(ctx context.Context, provider string, peer *remote.Peer, rn *peeringv1alpha1.RemoteNamespace) error {
	if err := peer.Health(); err != nil {
		return unusable{error: fmt.Errorf("provider %s does not answer: %w", provider, err)}
	}
	if err := peer.Client.Delete(ctx, rn, client.Preconditions{UID: &rn.UID}); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("withdrawing the twin request on provider %s: %w", provider, err)
	}
	return nil
}

// deleteOrphans withdraws the twin requests of a home namespace that has no
// NamespaceOffloading any more: those an unoffload forced past a provider
// that did not answer, found when the provider's RemoteNamespaces are listed
// again.
func (r *Reconciler) deleteOrphans(ctx context.Context, namespace, homeID string) error {
	peers := &peeringv1alpha1.RemoteClusterList{}
	if err := r.Client.List(ctx, peers); err != nil {
		return fmt.Errorf("listing RemoteClusters: %w", err)
	}
	key := client.ObjectKey{Namespace: peeringv1alpha1.TenantNamespace(homeID), Name: namespace}
	var errs []error
	for i := range peers.Items {
		rc := &peers.Items[i]
		peer, rn, err := r.readRequest(ctx, rc, key)
		if err != nil || rn == nil || !rn.DeletionTimestamp.IsZero() {
			continue // a provider that becomes usable enqueues its requests again
		}
		ctrl.LoggerFrom(ctx).Info("withdrawing an orphan twin request", "provider", rc.Name, "twin", rn.Spec.RemoteNamespaceName)
		errs = append(errs, r.withdraw(ctx, rc.Name, peer, rn))
	}
	return retryable(errs...)
}

// unusable marks the error of a provider known not to be usable now: not
// connected, its requests not listed yet, or its last probe failed. Such
// errors are not retried: the registry's OnReady enqueues every
// NamespaceOffloading, and every request the provider holds, once it is
// usable again.
type unusable struct {
	error
	// unread is set when this manager has not read the provider's requests
	// yet (not connected, or not listed yet), which by itself says nothing
	// of the provider.
	unread bool
}

func (u unusable) Unwrap() error { return u.error }

// retryable joins the errors that are worth a retry with backoff: those of
// providers thought usable, such as a request that timed out.
func retryable(errs ...error) error {
	var keep []error
	for _, err := range errs {
		if err != nil && !errors.As(err, new(unusable)) {
			keep = append(keep, err)
		}
	}
	return errors.Join(keep...)
}

// unreadGrace is how long a provider whose RemoteCluster says it answers
// may stay unread by this manager (not connected, or its requests not
// listed yet, as for a moment after every start) before the status says
// so. Meanwhile what the status last said of it stands: a restart must not
// turn Ready into InProgress and back (the pod webhook refuses pods while
// an offloading is not Ready), nor write every status twice.
const unreadGrace = 30 * time.Second

// markUnseen marks the providers that are unread but within their grace,
// with the twin state the status last gave them, and returns how long
// until the first of those graces ends (zero when there is none).
func (r *Reconciler) markUnseen(states []providerState, last offloadingv1alpha1.NamespaceOffloadingStatus) time.Duration {
	var first time.Duration
	for i := range states {
		var u unusable
		if !errors.As(states[i].err, &u) || !u.unread || !states[i].reachable {
			continue
		}
		since, ok := r.unread.Load(states[i].clusterID)
		if !ok {
			continue
		}
		left := unreadGrace - time.Since(since.(time.Time))
		if left <= 0 {
			continue
		}
		states[i].unseen, states[i].last = true, lastTwin(last.RemoteNamespacesConditions[states[i].name])
		first = sooner(first, left)
	}
	return first
}

// sooner returns the shorter of two waits, zero meaning none.
func sooner(a, b time.Duration) time.Duration {
	if a <= 0 || b > 0 && b < a {
		return b
	}
	return a
}
