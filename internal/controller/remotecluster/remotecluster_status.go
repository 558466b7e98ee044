package remotecluster

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

// Reasons of the RemoteCluster conditions; the virtual node's Ready condition
// uses the same ones.
const (
	// ReasonReachable: the provider's API server answered.
	ReasonReachable = "Reachable"
	// ReasonCredentialsAccepted: the provider accepted the issued credentials.
	ReasonCredentialsAccepted = "CredentialsAccepted"
	// ReasonProviderReady: the last probe of the provider succeeded.
	ReasonProviderReady = "ProviderReady"

	// ReasonKubeconfigSecretNotFound: the Secret with the kubeconfig is missing.
	ReasonKubeconfigSecretNotFound = "KubeconfigSecretNotFound"
	// ReasonKubeconfigInvalid: the Secret holds no usable kubeconfig.
	ReasonKubeconfigInvalid = "KubeconfigInvalid"
	// ReasonUnreachable: the provider's API server did not answer.
	ReasonUnreachable = "Unreachable"
	// ReasonClusterIDMismatch: the kubeconfig leads to another cluster.
	ReasonClusterIDMismatch = "ClusterIDMismatch"
	// ReasonUnauthorized: the provider rejected the credentials (401).
	ReasonUnauthorized = "Unauthorized"
	// ReasonForbidden: the provider accepted the credentials but denied a
	// request the peering needs (403).
	ReasonForbidden = "Forbidden"
	// ReasonProviderNotInstalled: the provider has no cluster identity.
	ReasonProviderNotInstalled = "ProviderNotInstalled"
	// ReasonProviderIdentityInvalid: the provider's cluster identity is invalid.
	ReasonProviderIdentityInvalid = "ProviderIdentityInvalid"
	// ReasonNodeNameInUse: a Node that is not this RemoteCluster's virtual
	// node has its name.
	ReasonNodeNameInUse = "NodeNameInUse"
	// ReasonDuplicateClusterID: an older RemoteCluster already peers with
	// the provider of spec.clusterID; a provider has one RemoteCluster.
	ReasonDuplicateClusterID = "DuplicateClusterID"
)

// progress is how far a probe of a provider got before it failed.
type progress int

const (
	// notReached: the provider's API server was not reached (or the
	// endpoint is not the provider).
	notReached progress = iota
	// answered: the API server answered but rejected the credentials.
	answered
	// authenticated: the credentials were accepted; a later step failed.
	authenticated
)

// failure is why a probe of a provider failed, in the words of a condition.
type failure struct {
	reason   string
	message  string
	progress progress
}

func (f *failure) Error() string { return f.reason + ": " + f.message }

// transient failures may heal on their own: the virtual node stays Ready for
// a grace period. The others need someone to act, so the node goes NotReady
// at once.
func (f *failure) transient() bool { return f.reason == ReasonUnreachable }

// readiness is the Ready condition of the virtual node, also shown as the
// RemoteCluster's VirtualNodeReady condition.
type readiness struct {
	status  metav1.ConditionStatus
	reason  string
	message string
}

// nodeReadiness decides the virtual node's readiness from the last probe.
// wasReady is the previous readiness, lastHeartbeat the last successful
// probe. A transient failure keeps a Ready node Ready for grace after the
// last successful probe, as kubelets are given time before NotReady.
func nodeReadiness(rc *peeringv1alpha1.RemoteCluster, f *failure, wasReady bool, lastHeartbeat *metav1.Time, now time.Time, grace time.Duration) readiness {
	ready := readiness{metav1.ConditionTrue, ReasonProviderReady, fmt.Sprintf("provider %s answers", rc.Name)}
	switch {
	case f == nil:
		return ready
	case f.transient() && wasReady && lastHeartbeat != nil && now.Sub(lastHeartbeat.Time) < grace:
		return ready
	default:
		return readiness{metav1.ConditionFalse, f.reason, f.message}
	}
}

// setAPIReachable sets the APIReachable condition from the last probe.
func setAPIReachable(rc *peeringv1alpha1.RemoteCluster, f *failure) {
	c := metav1.Condition{Type: peeringv1alpha1.APIReachableCondition, Status: metav1.ConditionTrue, Reason: ReasonReachable,
		Message: fmt.Sprintf("the API server of provider %s answers", rc.Name)}
	if f != nil && f.progress == notReached {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, f.reason, f.message
	}
	setCondition(rc, c)
}

// setAuthenticated sets the Authenticated condition from the last probe:
// Unknown when the provider was not reached, and True but with reason
// Forbidden when the credentials are accepted but lack rights.
func setAuthenticated(rc *peeringv1alpha1.RemoteCluster, f *failure) {
	c := metav1.Condition{Type: peeringv1alpha1.AuthenticatedCondition, Status: metav1.ConditionTrue, Reason: ReasonCredentialsAccepted,
		Message: fmt.Sprintf("provider %s accepts the issued credentials", rc.Name)}
	switch {
	case f == nil:
	case f.progress == notReached:
		c.Status, c.Reason = metav1.ConditionUnknown, f.reason
		c.Message = "the credentials could not be checked: " + f.message
	case f.progress == answered:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, f.reason, f.message
	case f.reason == ReasonForbidden:
		c.Reason, c.Message = f.reason, f.message
	}
	setCondition(rc, c)
}

// setVirtualNodeReady mirrors the virtual node's Ready condition.
func setVirtualNodeReady(rc *peeringv1alpha1.RemoteCluster, ready readiness) {
	setCondition(rc, metav1.Condition{Type: peeringv1alpha1.VirtualNodeReadyCondition, Status: ready.status, Reason: ready.reason, Message: ready.message})
}

func setCondition(rc *peeringv1alpha1.RemoteCluster, c metav1.Condition) {
	c.ObservedGeneration = rc.Generation
	meta.SetStatusCondition(&rc.Status.Conditions, c)
}
