package webhook_test

import (
	"testing"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"stretch.dev/stretch/internal/webhook"
)

func TestEndpoints(t *testing.T) {
	inCluster := webhook.Endpoint{Service: types.NamespacedName{Namespace: "stretch-system", Name: "stretch-webhook"}}
	tests := []struct {
		name       string
		endpoint   webhook.Endpoint
		wantHosts  []string
		wantConfig admissionregistrationv1.WebhookClientConfig
		wantErr    string
	}{
		{name: "outside the cluster", endpoint: webhook.Endpoint{URL: "https://127.0.0.1:9443"}, wantHosts: []string{"127.0.0.1"},
			wantConfig: admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:9443/mutate-pod"), CABundle: []byte("ca")}},
		{name: "in the cluster", endpoint: inCluster, wantHosts: []string{"stretch-webhook.stretch-system.svc", "stretch-webhook.stretch-system.svc.cluster.local"},
			wantConfig: admissionregistrationv1.WebhookClientConfig{CABundle: []byte("ca"), Service: &admissionregistrationv1.ServiceReference{
				Namespace: "stretch-system", Name: "stretch-webhook", Path: ptr.To("/mutate-pod"), Port: ptr.To[int32](443)}}},
		{name: "plain http", endpoint: webhook.Endpoint{URL: "http://127.0.0.1:9443"}, wantErr: "not an https URL"},
		{name: "neither", endpoint: webhook.Endpoint{}, wantErr: "needs a URL or a Service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			hosts, err := tt.endpoint.Hosts()
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(hosts).To(Equal(tt.wantHosts))
			set := webhook.Configurations(tt.endpoint, []byte("ca"))
			m, v := set.PodPlacement, set.Offloading
			g.Expect(m.Webhooks).To(HaveLen(2))
			for _, wh := range m.Webhooks {
				g.Expect(wh.ClientConfig).To(Equal(tt.wantConfig), wh.Name)
			}
			g.Expect(v.Webhooks).To(HaveLen(1))
			want := tt.wantConfig.DeepCopy()
			if want.URL != nil {
				want.URL = ptr.To("https://127.0.0.1:9443/validate-namespaceoffloading")
			} else {
				want.Service.Path = ptr.To("/validate-namespaceoffloading")
			}
			g.Expect(v.Webhooks[0].ClientConfig).To(Equal(*want))
		})
	}
}

// TestConfigurations checks what decides which requests reach the webhooks
// and what happens when they do not answer.
func TestConfigurations(t *testing.T) {
	g := NewWithT(t)
	set := webhook.Configurations(webhook.Endpoint{URL: "https://127.0.0.1:9443"}, []byte("ca"))
	m, v := set.PodPlacement, set.Offloading
	podsCreated := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
			Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
	}}
	stretchClass := "has(object.spec.runtimeClassName) && object.spec.runtimeClassName == 'stretch'"
	tests := []struct {
		name       string
		webhook    admissionregistrationv1.MutatingWebhook
		namespaces []metav1.LabelSelectorRequirement
		conditions []admissionregistrationv1.MatchCondition
	}{
		{"offloaded namespaces, every pod", m.Webhooks[0],
			[]metav1.LabelSelectorRequirement{{Key: "stretch.dev/scheduling-enabled", Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}}},
			nil},
		{"every other namespace but the system ones, pods of runtime class stretch", m.Webhooks[1],
			[]metav1.LabelSelectorRequirement{
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public", "kube-node-lease", "stretch-system"}},
				{Key: "stretch.dev/scheduling-enabled", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"}},
			},
			[]admissionregistrationv1.MatchCondition{{Name: "runtime-class-stretch", Expression: stretchClass}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			wh := tt.webhook
			g.Expect(wh.Rules).To(Equal(podsCreated))
			g.Expect(wh.NamespaceSelector).To(Equal(&metav1.LabelSelector{MatchExpressions: tt.namespaces}))
			g.Expect(wh.MatchConditions).To(Equal(tt.conditions))
			g.Expect(*wh.FailurePolicy).To(Equal(admissionregistrationv1.Fail))
			g.Expect(*wh.TimeoutSeconds).To(BeNumerically("<=", 5))
			g.Expect(*wh.SideEffects).To(Equal(admissionregistrationv1.SideEffectClassNoneOnDryRun))
			// Placed once: a pod goes to one of the two, and only once.
			g.Expect(*wh.ReinvocationPolicy).To(Equal(admissionregistrationv1.NeverReinvocationPolicy))
		})
	}
	g.Expect(m.Webhooks[0].Name).NotTo(Equal(m.Webhooks[1].Name))

	vwh := v.Webhooks[0]
	g.Expect(vwh.Rules).To(Equal([]admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{"offloading.stretch.dev"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"namespaceoffloadings"},
			Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
	}}))
	g.Expect(*vwh.FailurePolicy).To(Equal(admissionregistrationv1.Fail))
	g.Expect(*vwh.TimeoutSeconds).To(BeNumerically("<=", 5))
	g.Expect(*vwh.SideEffects).To(Equal(admissionregistrationv1.SideEffectClassNone))

	// Twin pods: created or updated (tolerations and labels can change), in
	// namespaces labelled as twins, failing closed.
	g.Expect(set.TwinPods.Name).To(Equal("stretch-twin-pod-admission"))
	g.Expect(set.TwinPods.Webhooks).To(HaveLen(1))
	twh := set.TwinPods.Webhooks[0]
	g.Expect(twh.ClientConfig.URL).To(HaveValue(Equal("https://127.0.0.1:9443/validate-twin-pod")))
	g.Expect(twh.Rules).To(Equal([]admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
			Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
	}}))
	g.Expect(twh.NamespaceSelector).To(Equal(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "stretch.dev/origin-cluster-id", Operator: metav1.LabelSelectorOpExists}}}))
	g.Expect(*twh.FailurePolicy).To(Equal(admissionregistrationv1.Fail))
	g.Expect(*twh.TimeoutSeconds).To(BeNumerically("<=", 5))

	// Twin EndpointSlices: written by home clusters' credentials only (the
	// provider's EndpointSlice controller never waits), failing closed.
	g.Expect(set.TwinEndpoints.Name).To(Equal("stretch-twin-endpointslice-admission"))
	g.Expect(set.TwinEndpoints.Webhooks).To(HaveLen(1))
	ewh := set.TwinEndpoints.Webhooks[0]
	g.Expect(ewh.ClientConfig.URL).To(HaveValue(Equal("https://127.0.0.1:9443/validate-twin-endpointslice")))
	g.Expect(ewh.Rules).To(Equal([]admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{"discovery.k8s.io"}, APIVersions: []string{"v1"}, Resources: []string{"endpointslices"},
			Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
	}}))
	g.Expect(ewh.NamespaceSelector).To(Equal(twh.NamespaceSelector))
	g.Expect(ewh.MatchConditions).To(Equal([]admissionregistrationv1.MatchCondition{{Name: "home-cluster-credentials",
		Expression: "request.userInfo.username.startsWith('system:serviceaccount:stretch-tenant-')"}}))
	g.Expect(*ewh.FailurePolicy).To(Equal(admissionregistrationv1.Fail))
	g.Expect(set.Objects()).To(ContainElement(set.TwinEndpoints))
}
