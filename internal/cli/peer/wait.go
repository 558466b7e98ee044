package peer

import (
	"context"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/internal/peering"
)

// WaitReady waits until the home controller reports RemoteCluster name's
// virtual node Ready, printing each change of its conditions.
func WaitReady(ctx context.Context, home client.Reader, name string, timeout time.Duration, out io.Writer) error {
	var last string
	rc := &peeringv1alpha1.RemoteCluster{}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := home.Get(ctx, client.ObjectKey{Name: name}, rc); err != nil {
			if apierrors.IsNotFound(err) {
				return false, fmt.Errorf("RemoteCluster %s was deleted while waiting for it to be ready", name)
			}
			return false, nil // transient: retried until the timeout
		}
		if summary := peering.Summary(rc.Status.Conditions); summary != last {
			fmt.Fprintf(out, "… RemoteCluster %s: %s\n", name, summary)
			last = summary
		}
		return meta.IsStatusConditionTrue(rc.Status.Conditions, peeringv1alpha1.VirtualNodeReadyCondition), nil
	})
	switch {
	case err == nil:
		fmt.Fprintf(out, "✓ virtual node %s is Ready\n", peeringv1alpha1.VirtualNodeName(name))
		return nil
	case wait.Interrupted(err) && ctx.Err() == nil:
		return fmt.Errorf("RemoteCluster %s is not ready after %s (%s): check that stretch-controller-manager runs on the home cluster and reaches the provider ('stretchctl status', 'kubectl describe remotecluster %s')",
			name, timeout, peering.Summary(rc.Status.Conditions), name)
	default:
		return fmt.Errorf("waiting for RemoteCluster %s to be ready: %w", name, err)
	}
}
