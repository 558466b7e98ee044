package status

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/cli/output"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
)

var cluster *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { cluster = s[0] }, "home")
}

const (
	homeID = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"
	euID   = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
	usID   = "1f2e3d4c-5b6a-4789-8a7b-6c5d4e3f2a1b"
	apID   = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d"
)

var heartbeat = time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)

// TestStatus fills one cluster with every kind status reports, as the
// controllers would leave them, and compares the tables with a golden file.
func TestStatus(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := cluster.Client
	g.Expect(cluster.InstallIdentity(ctx, identity.Identity{ID: homeID, Name: "home", Labels: map[string]string{"region": "eu"}})).To(Succeed())

	// Peers: one healthy, one whose token is rejected, one without status yet.
	createWithStatus(ctx, g, c, remoteCluster("provider-eu", euID), func(o client.Object) {
		rc := o.(*peeringv1alpha1.RemoteCluster)
		rc.Status.LastHeartbeatTime = &metav1.Time{Time: heartbeat}
		rc.Status.Conditions = []metav1.Condition{
			condition(peeringv1alpha1.APIReachableCondition, metav1.ConditionTrue, "Reachable", ""),
			condition(peeringv1alpha1.AuthenticatedCondition, metav1.ConditionTrue, "Authenticated", ""),
			condition(peeringv1alpha1.VirtualNodeReadyCondition, metav1.ConditionTrue, "NodeReady", ""),
		}
		// Limits on cpu, pods and GPUs; no GPU used yet.
		rc.Status.Policy = &peeringv1alpha1.ProviderPolicy{
			Limits:      corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1"), "pods": resource.MustParse("10"), "cpu": resource.MustParse("4")},
			Used:        corev1.ResourceList{"cpu": resource.MustParse("1500m"), "pods": resource.MustParse("3"), "memory": resource.MustParse("2Gi")},
			PodSecurity: "baseline",
		}
	})
	createWithStatus(ctx, g, c, remoteCluster("provider-us", usID), func(o client.Object) {
		rc := o.(*peeringv1alpha1.RemoteCluster)
		rc.Status.LastHeartbeatTime = &metav1.Time{Time: heartbeat.Add(-5 * time.Minute)}
		rc.Status.Conditions = []metav1.Condition{
			condition(peeringv1alpha1.APIReachableCondition, metav1.ConditionTrue, "Reachable", ""),
			condition(peeringv1alpha1.AuthenticatedCondition, metav1.ConditionFalse, "Unauthorized", "the provider rejects the token: peer again"),
			condition(peeringv1alpha1.VirtualNodeReadyCondition, metav1.ConditionFalse, "NotAuthenticated", "see Authenticated"),
		}
		// A policy without limits.
		rc.Status.Policy = &peeringv1alpha1.ProviderPolicy{PodSecurity: "restricted", PriorityClasses: []string{"batch-low"}}
	})
	g.Expect(c.Create(ctx, remoteCluster("provider-ap", apID))).To(Succeed())

	// A virtual node, and a real node that status leaves out.
	createWithStatus(ctx, g, c, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stretch-provider-eu", Labels: map[string]string{
		wellknown.VirtualNodeTypeLabel:   wellknown.VirtualNodeTypeValue,
		wellknown.RemoteClusterIDLabel:   euID,
		wellknown.RemoteClusterNameLabel: "provider-eu",
		corev1.LabelHostname:             "stretch-provider-eu",
		"region":                         "eu",
		"provider":                       "aws",
	}}}, func(o client.Object) {
		o.(*corev1.Node).Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "ProviderAnswers"}}
	})
	g.Expect(c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}})).To(Succeed())

	// An offloaded namespace, and a misnamed NamespaceOffloading that is not one.
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "foo"}})).To(Succeed())
	createWithStatus(ctx, g, c, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "foo", Name: wellknown.NamespaceOffloadingName}}, func(o client.Object) {
		o.(*offloadingv1alpha1.NamespaceOffloading).Status = offloadingv1alpha1.NamespaceOffloadingStatus{
			OffloadingPhase:     offloadingv1alpha1.SomeFailedPhase,
			RemoteNamespaceName: "foo-" + homeID,
			RemoteNamespacesConditions: map[string]offloadingv1alpha1.RemoteNamespaceConditions{
				"provider-eu": {
					condition(offloadingv1alpha1.OffloadingRequiredCondition, metav1.ConditionTrue, offloadingv1alpha1.ClusterSelectedReason, ""),
					condition(offloadingv1alpha1.RemoteNamespaceReadyCondition, metav1.ConditionTrue, offloadingv1alpha1.NamespaceCreatedReason, ""),
				},
				"provider-us": {
					condition(offloadingv1alpha1.OffloadingRequiredCondition, metav1.ConditionTrue, offloadingv1alpha1.ClusterSelectedReason, ""),
					condition(offloadingv1alpha1.RemoteNamespaceReadyCondition, metav1.ConditionFalse, offloadingv1alpha1.CreationFailedReason, "AlreadyExists: namespace exists"),
				},
				"provider-ap": {
					condition(offloadingv1alpha1.OffloadingRequiredCondition, metav1.ConditionFalse, offloadingv1alpha1.ClusterNotSelectedReason, ""),
				},
			},
		}
	})
	g.Expect(c.Create(ctx, &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: "foo", Name: "misnamed"}})).To(Succeed())

	// A twin this cluster hosts for another home cluster.
	tenant := peeringv1alpha1.TenantNamespace(usID)
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}})).To(Succeed())
	createWithStatus(ctx, g, c, &peeringv1alpha1.RemoteNamespace{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "bar"},
		Spec:       peeringv1alpha1.RemoteNamespaceSpec{HomeNamespace: "bar", HomeClusterID: usID, RemoteNamespaceName: "bar-" + usID},
	}, func(o client.Object) {
		o.(*peeringv1alpha1.RemoteNamespace).Status = peeringv1alpha1.RemoteNamespaceStatus{Phase: peeringv1alpha1.RemoteNamespaceReady, Reason: "NamespaceCreated"}
	})

	report, err := Collect(ctx, c)
	g.Expect(err).NotTo(HaveOccurred())
	var out bytes.Buffer
	g.Expect(report.Print(&out, heartbeat.Add(42*time.Second), false)).To(Succeed())
	testenv.ExpectGolden(t, "status.golden", out.Bytes())
	out.Reset()
	g.Expect(report.Print(&out, heartbeat.Add(42*time.Second), true)).To(Succeed())
	testenv.ExpectGolden(t, "status-wide.golden", out.Bytes())

	// -o json carries the same data, labels and messages in full.
	out.Reset()
	g.Expect(output.Print(&out, output.FormatJSON, report)).To(Succeed())
	var decoded Report
	g.Expect(json.Unmarshal(out.Bytes(), &decoded)).To(Succeed())
	g.Expect(decoded.Peers).To(HaveLen(3))
	g.Expect(decoded.Peers[2].Message).To(Equal("the provider rejects the token: peer again"))
	g.Expect(decoded.VirtualNodes[0].Labels).To(HaveKeyWithValue(wellknown.RemoteClusterIDLabel, euID))
	g.Expect(decoded.Peers[0].Policy).To(BeNil(), "provider-ap has no policy")
	g.Expect(decoded.Peers[1].Policy).NotTo(BeNil())
	g.Expect(decoded.Peers[1].Policy.Limits.Name("nvidia.com/gpu", resource.DecimalSI).String()).To(Equal("1"))
	g.Expect(decoded.Peers[1].Policy.Used.Cpu().String()).To(Equal("1500m"))
	g.Expect(decoded.Peers[2].Policy).To(Equal(&peeringv1alpha1.ProviderPolicy{PodSecurity: "restricted", PriorityClasses: []string{"batch-low"}}))
}

// TestStatusEmpty prints a cluster with nothing to report.
func TestStatusEmpty(t *testing.T) {
	r := &Report{Cluster: Cluster{Name: "lonely", ClusterID: homeID}}
	var out bytes.Buffer
	NewWithT(t).Expect(r.Print(&out, heartbeat, false)).To(Succeed())
	testenv.ExpectGolden(t, "status-empty.golden", out.Bytes())
}

func remoteCluster(name, id string) *peeringv1alpha1.RemoteCluster {
	return &peeringv1alpha1.RemoteCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: peeringv1alpha1.RemoteClusterSpec{ClusterID: id, KubeconfigSecretRef: peeringv1alpha1.SecretKeyReference{
			Namespace: wellknown.SystemNamespace, Name: "stretch-peer-" + name,
		}},
	}
}

func condition(t string, s metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: message, LastTransitionTime: metav1.Time{Time: heartbeat}}
}

// createWithStatus creates obj, then sets its status as a controller would.
func createWithStatus(ctx context.Context, g Gomega, c client.Client, obj client.Object, setStatus func(client.Object)) {
	g.Expect(c.Create(ctx, obj)).To(Succeed())
	setStatus(obj)
	g.Expect(c.Status().Update(ctx, obj)).To(Succeed())
}
