package tenant

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/tenancy"
)

// Each test of the policy has a home cluster of its own, so that its
// TenantPolicy reaches no other test's twins.
const (
	labelsHomeID  = "5a5a5a5a-0000-4000-8000-000000000001"
	relabelHomeID = "5a5a5a5a-0000-4000-8000-000000000002"
	upgradeHomeID = "5a5a5a5a-0000-4000-8000-000000000003"
	deniedHomeID  = "5a5a5a5a-0000-4000-8000-000000000004"
	tightenHomeID = "5a5a5a5a-0000-4000-8000-000000000005"
)

// setPolicy creates or replaces the spec of the TenantPolicy of a home
// cluster, as the provider's admin does.
func setPolicy(g Gomega, homeClusterID string, spec peeringv1alpha1.TenantPolicySpec) {
	ctx := context.Background()
	p := &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: peeringv1alpha1.TenantNamespace(homeClusterID), Name: wellknown.TenantPolicyName}}
	err := provider.Client.Get(ctx, client.ObjectKeyFromObject(p), p)
	if apierrors.IsNotFound(err) {
		p.Spec = spec
		g.ExpectWithOffset(1, provider.Client.Create(ctx, p)).To(Succeed())
		return
	}
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	p.Spec = spec
	g.ExpectWithOffset(1, provider.Client.Update(ctx, p)).To(Succeed())
}

// expectLevel waits until twin carries the Pod Security labels of level.
func expectLevel(g Gomega, twin string, level peeringv1alpha1.PodSecurityLevel) {
	g.EventuallyWithOffset(1, func(g Gomega) {
		ns := &corev1.Namespace{}
		g.Expect(provider.Client.Get(context.Background(), client.ObjectKey{Name: twin}, ns)).To(Succeed())
		g.Expect(tenancy.PodSecurityDrift(ns.Labels, level)).To(BeEmpty(), "labels of %s: %v", twin, ns.Labels)
	}).Should(Succeed())
}

func expectReady(g Gomega, rn *peeringv1alpha1.RemoteNamespace) {
	g.EventuallyWithOffset(1, func(g Gomega) {
		st := status(g, rn)
		g.Expect(st.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceReady), st.Message)
	}).Should(Succeed())
}

// firstSeen watches namespace name from before it exists and returns it as
// the API server first served it: as it was created.
func firstSeen(t *testing.T, name string) func(Gomega) *corev1.Namespace {
	t.Helper()
	wc, err := client.NewWithWatch(provider.Config, client.Options{Scheme: provider.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), &corev1.NamespaceList{}, client.MatchingFields{"metadata.name": name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return func(g Gomega) *corev1.Namespace {
		var ev watch.Event
		g.EventuallyWithOffset(1, w.ResultChan()).Should(Receive(&ev))
		g.ExpectWithOffset(1, ev.Type).To(Equal(watch.Added))
		return ev.Object.(*corev1.Namespace)
	}
}

// TestTwinCreatedWithPodSecurityLabels: a twin carries the Pod Security
// labels of its home cluster's policy from its creation, baseline without a
// policy, so that no pod ever runs in it unchecked.
func TestTwinCreatedWithPodSecurityLabels(t *testing.T) {
	startTenant(t)
	tests := []struct {
		name   string
		policy *peeringv1alpha1.TenantPolicySpec
		want   peeringv1alpha1.PodSecurityLevel
	}{
		{name: "no policy", want: peeringv1alpha1.PodSecurityBaseline},
		{name: "restricted", policy: &peeringv1alpha1.TenantPolicySpec{PodSecurity: peeringv1alpha1.PodSecurityRestricted}, want: peeringv1alpha1.PodSecurityRestricted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			if tt.policy != nil {
				ensureNamespace(t, peeringv1alpha1.TenantNamespace(labelsHomeID))
				setPolicy(g, labelsHomeID, *tt.policy)
			}
			home := "labels-" + string(tt.want)
			twin := home + "-" + labelsHomeID
			created := firstSeen(t, twin)
			rn := request(t, labelsHomeID, home, twin)
			ns := created(g)
			g.Expect(tenancy.PodSecurityDrift(ns.Labels, tt.want)).To(BeEmpty(), "as created: %v", ns.Labels)
			g.Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", string(tt.want)))
			g.Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce-version", "latest"))
			expectReady(g, rn)
		})
	}
}

// TestPodSecurityLabelsKept: labels removed or weakened on a twin come
// back, and a policy change relabels every twin of the home cluster.
func TestPodSecurityLabelsKept(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startTenant(t)
	var twins []string
	for _, home := range []string{"front", "back"} {
		twin := home + "-" + relabelHomeID
		expectReady(g, request(t, relabelHomeID, home, twin))
		expectLevel(g, twin, peeringv1alpha1.PodSecurityBaseline)
		twins = append(twins, twin)
	}

	// Someone removes one label and weakens another.
	ns := &corev1.Namespace{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: twins[0]}, ns)).To(Succeed())
	delete(ns.Labels, "pod-security.kubernetes.io/warn")
	ns.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
	ns.Labels["team"] = "web"
	g.Expect(provider.Client.Update(ctx, ns)).To(Succeed())
	expectLevel(g, twins[0], peeringv1alpha1.PodSecurityBaseline)
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: twins[0]}, ns)).To(Succeed())
	g.Expect(ns.Labels).To(HaveKeyWithValue("team", "web"), "other labels are left alone")

	setPolicy(g, relabelHomeID, peeringv1alpha1.TenantPolicySpec{PodSecurity: peeringv1alpha1.PodSecurityRestricted})
	for _, twin := range twins {
		expectLevel(g, twin, peeringv1alpha1.PodSecurityRestricted)
	}
	// Without a policy, the default again.
	g.Expect(provider.Client.Delete(ctx, &peeringv1alpha1.TenantPolicy{ObjectMeta: metav1.ObjectMeta{
		Namespace: peeringv1alpha1.TenantNamespace(relabelHomeID), Name: wellknown.TenantPolicyName}})).To(Succeed())
	for _, twin := range twins {
		expectLevel(g, twin, peeringv1alpha1.PodSecurityBaseline)
	}
}

// TestPodSecurityLabelsOnUpgrade: a twin created before twins had Pod
// Security labels gets them when the new controller starts.
func TestPodSecurityLabelsOnUpgrade(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	twin := "legacy-" + upgradeHomeID
	// What the previous release left: the request, Ready, and its twin
	// with the origin annotation and labels only.
	rn := request(t, upgradeHomeID, "legacy", twin)
	old := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: twin,
		Annotations: map[string]string{wellknown.RemoteNamespaceOriginAnnotation: upgradeHomeID},
		Labels:      map[string]string{wellknown.OriginClusterIDLabel: upgradeHomeID, wellknown.OriginNamespaceLabel: "legacy"}}}
	g.Expect(provider.Client.Create(ctx, old)).To(Succeed())

	startTenant(t)
	expectLevel(g, twin, peeringv1alpha1.PodSecurityBaseline)
	expectReady(g, rn)
	ns := &corev1.Namespace{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: twin}, ns)).To(Succeed())
	g.Expect(ns.UID).To(Equal(old.UID), "the same namespace, relabelled")
}

// TestPolicyDenied: a twin whose naming or name the policy does not allow is
// not created, and the request says why; a policy that allows it later lets
// it be created.
func TestPolicyDenied(t *testing.T) {
	startTenant(t)
	ensureNamespace(t, peeringv1alpha1.TenantNamespace(deniedHomeID))
	tests := []struct {
		name        string
		policy      peeringv1alpha1.TenantPolicySpec
		home, twin  string
		wantMessage []string
		fixed       peeringv1alpha1.TenantPolicySpec
	}{
		{name: "naming", policy: peeringv1alpha1.TenantPolicySpec{TwinNamings: []peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin}},
			home: "shop", twin: "selected-shop",
			wantMessage: []string{"TenantPolicy stretch-tenant-" + deniedHomeID + "/policy", `"selected-shop"`, "its naming is SelectedName and the policy allows only DefaultName"},
			fixed:       peeringv1alpha1.TenantPolicySpec{TwinNamings: []peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin, peeringv1alpha1.SelectedNameTwin}}},
		{name: "pattern", policy: peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "team-[a-z]+"},
			home: "cart", twin: "cart",
			wantMessage: []string{`"cart"`, `does not match the policy's twinNamePattern "team-[a-z]+"`},
			fixed:       peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "team-[a-z]+|cart"}},
		{name: "invalid pattern", policy: peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "team-("},
			home: "team-web", twin: "team-web",
			wantMessage: []string{`twinNamePattern "team-(" is not a valid RE2 regular expression`, "allows no new twin"},
			fixed:       peeringv1alpha1.TenantPolicySpec{TwinNamePattern: "team-.*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			setPolicy(g, deniedHomeID, tt.policy)
			rn := request(t, deniedHomeID, tt.home, tt.twin)
			g.Eventually(func(g Gomega) {
				st := status(g, rn)
				g.Expect(st.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceCreationFailed))
				g.Expect(st.Reason).To(Equal(peeringv1alpha1.PolicyDeniedReason))
				for _, m := range tt.wantMessage {
					g.Expect(st.Message).To(ContainSubstring(m))
				}
			}).Should(Succeed())
			g.Expect(apierrors.IsNotFound(provider.Client.Get(context.Background(), client.ObjectKey{Name: tt.twin}, &corev1.Namespace{}))).To(BeTrue(), "no twin")

			setPolicy(g, deniedHomeID, tt.fixed)
			expectReady(g, rn)
			g.Expect(provider.Client.Delete(context.Background(), rn)).To(Succeed())
			expectGone(g, rn)
		})
	}
}

// TestTightenedPolicyKeepsTwins: a policy that forbids an existing twin
// does not delete it, nor what runs in it; the request stays Ready and says
// so.
func TestTightenedPolicyKeepsTwins(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startTenant(t)
	twin := "kept"
	rn := request(t, tightenHomeID, "shop", twin)
	expectReady(g, rn)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "data"}, Data: map[string]string{"k": "v"}}
	g.Expect(provider.Client.Create(ctx, cm)).To(Succeed())

	setPolicy(g, tightenHomeID, peeringv1alpha1.TenantPolicySpec{TwinNamings: []peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin}})
	g.Eventually(func(g Gomega) {
		st := status(g, rn)
		g.Expect(st.Phase).To(Equal(peeringv1alpha1.RemoteNamespaceReady))
		g.Expect(st.Message).To(ContainSubstring("no longer allows it (its naming is SelectedName and the policy allows only DefaultName): it is kept with its workloads"))
	}).Should(Succeed())
	ns := &corev1.Namespace{}
	g.Expect(provider.Client.Get(ctx, client.ObjectKey{Name: twin}, ns)).To(Succeed())
	g.Expect(ns.DeletionTimestamp).To(BeNil())
	g.Expect(provider.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())

	// Withdrawn by the home cluster, it goes as always.
	g.Expect(provider.Client.Delete(ctx, rn)).To(Succeed())
	expectGone(g, ns)
	expectGone(g, rn)
}
