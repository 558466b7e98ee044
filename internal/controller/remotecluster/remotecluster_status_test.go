package remotecluster

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
)

func testRemoteCluster() *peeringv1alpha1.RemoteCluster {
	return &peeringv1alpha1.RemoteCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "provider-eu", Generation: 3},
		Spec: peeringv1alpha1.RemoteClusterSpec{
			ClusterID:           "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a",
			KubeconfigSecretRef: peeringv1alpha1.SecretKeyReference{Namespace: "stretch-system", Name: "stretch-peer-provider-eu"},
		},
	}
}

// wantCondition is the part of a condition the setters decide.
type wantCondition struct {
	status metav1.ConditionStatus
	reason string
}

func conditionOf(rc *peeringv1alpha1.RemoteCluster, t string) wantCondition {
	c := meta.FindStatusCondition(rc.Status.Conditions, t)
	if c == nil {
		return wantCondition{}
	}
	return wantCondition{c.Status, c.Reason}
}

// failures has one failure of each reason a probe can give.
func failures(rc *peeringv1alpha1.RemoteCluster) map[string]*failure {
	m := map[string]*failure{}
	for _, reason := range []string{ReasonKubeconfigSecretNotFound, ReasonKubeconfigInvalid, ReasonUnreachable, ReasonClusterIDMismatch,
		ReasonUnauthorized, ReasonForbidden, ReasonProviderNotInstalled, ReasonProviderIdentityInvalid} {
		m[reason] = newFailure(reason, rc, "detail")
	}
	return m
}

func TestSetAPIReachableAndAuthenticated(t *testing.T) {
	rc := testRemoteCluster()
	f := failures(rc)
	for _, tc := range []struct {
		name          string
		failure       *failure
		reachable     wantCondition
		authenticated wantCondition
	}{
		{"probe succeeded", nil, wantCondition{"True", ReasonReachable}, wantCondition{"True", ReasonCredentialsAccepted}},
		{"secret missing", f[ReasonKubeconfigSecretNotFound], wantCondition{"False", ReasonKubeconfigSecretNotFound}, wantCondition{"Unknown", ReasonKubeconfigSecretNotFound}},
		{"kubeconfig invalid", f[ReasonKubeconfigInvalid], wantCondition{"False", ReasonKubeconfigInvalid}, wantCondition{"Unknown", ReasonKubeconfigInvalid}},
		{"unreachable", f[ReasonUnreachable], wantCondition{"False", ReasonUnreachable}, wantCondition{"Unknown", ReasonUnreachable}},
		{"another cluster", f[ReasonClusterIDMismatch], wantCondition{"False", ReasonClusterIDMismatch}, wantCondition{"Unknown", ReasonClusterIDMismatch}},
		{"401", f[ReasonUnauthorized], wantCondition{"True", ReasonReachable}, wantCondition{"False", ReasonUnauthorized}},
		{"403", f[ReasonForbidden], wantCondition{"True", ReasonReachable}, wantCondition{"True", ReasonForbidden}},
		{"not installed", f[ReasonProviderNotInstalled], wantCondition{"True", ReasonReachable}, wantCondition{"True", ReasonCredentialsAccepted}},
		{"identity invalid", f[ReasonProviderIdentityInvalid], wantCondition{"True", ReasonReachable}, wantCondition{"True", ReasonCredentialsAccepted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			rc := testRemoteCluster()
			setAPIReachable(rc, tc.failure)
			setAuthenticated(rc, tc.failure)
			g.Expect(conditionOf(rc, peeringv1alpha1.APIReachableCondition)).To(Equal(tc.reachable))
			g.Expect(conditionOf(rc, peeringv1alpha1.AuthenticatedCondition)).To(Equal(tc.authenticated))
			for _, c := range rc.Status.Conditions {
				g.Expect(c.ObservedGeneration).To(Equal(int64(3)))
				g.Expect(c.Message).NotTo(BeEmpty())
			}
		})
	}
}

func TestSetVirtualNodeReady(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ready readiness
	}{
		{"ready", readiness{metav1.ConditionTrue, ReasonProviderReady, "provider provider-eu answers"}},
		{"not ready", readiness{metav1.ConditionFalse, ReasonUnreachable, "cannot reach"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			rc := testRemoteCluster()
			setVirtualNodeReady(rc, tc.ready)
			c := meta.FindStatusCondition(rc.Status.Conditions, peeringv1alpha1.VirtualNodeReadyCondition)
			g.Expect(c).NotTo(BeNil())
			g.Expect(readiness{c.Status, c.Reason, c.Message}).To(Equal(tc.ready))
		})
	}
}

func TestNodeReadiness(t *testing.T) {
	rc := testRemoteCluster()
	f := failures(rc)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	recent := &metav1.Time{Time: now.Add(-2 * time.Second)}
	old := &metav1.Time{Time: now.Add(-time.Minute)}
	const grace = 30 * time.Second
	for _, tc := range []struct {
		name          string
		failure       *failure
		wasReady      bool
		lastHeartbeat *metav1.Time
		want          wantCondition
	}{
		{"probe succeeded", nil, false, nil, wantCondition{"True", ReasonProviderReady}},
		{"unreachable within the grace period", f[ReasonUnreachable], true, recent, wantCondition{"True", ReasonProviderReady}},
		{"unreachable for longer than the grace period", f[ReasonUnreachable], true, old, wantCondition{"False", ReasonUnreachable}},
		{"unreachable and not ready before", f[ReasonUnreachable], false, recent, wantCondition{"False", ReasonUnreachable}},
		{"unreachable and never answered", f[ReasonUnreachable], true, nil, wantCondition{"False", ReasonUnreachable}},
		{"revoked credentials: at once", f[ReasonUnauthorized], true, recent, wantCondition{"False", ReasonUnauthorized}},
		{"another cluster: at once", f[ReasonClusterIDMismatch], true, recent, wantCondition{"False", ReasonClusterIDMismatch}},
		{"secret deleted: at once", f[ReasonKubeconfigSecretNotFound], true, recent, wantCondition{"False", ReasonKubeconfigSecretNotFound}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := nodeReadiness(rc, tc.failure, tc.wasReady, tc.lastHeartbeat, now, grace)
			g.Expect(wantCondition{got.status, got.reason}).To(Equal(tc.want))
			g.Expect(got.message).To(ContainSubstring("provider-eu"), "the message names the provider")
		})
	}
}

func TestFailureMessagesSayWhatToDo(t *testing.T) {
	rc := testRemoteCluster()
	for reason, f := range failures(rc) {
		t.Run(reason, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(f.reason).To(Equal(reason))
			g.Expect(f.message).To(ContainSubstring("provider"))
			switch reason {
			case ReasonKubeconfigSecretNotFound, ReasonKubeconfigInvalid, ReasonUnauthorized, ReasonForbidden, ReasonClusterIDMismatch:
				g.Expect(f.message).To(ContainSubstring("stretch-system/stretch-peer-provider-eu"))
				g.Expect(f.message).To(ContainSubstring("re-run 'stretchctl peer' for provider provider-eu"))
			case ReasonProviderNotInstalled:
				g.Expect(f.message).To(ContainSubstring("stretchctl install"))
			}
		})
	}
}
