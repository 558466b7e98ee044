// Package webhook registers Stretch's admission webhooks: at home, the pod
// placement webhook and the NamespaceOffloading validation; on a provider,
// the admission of pods and EndpointSlices in twin namespaces. It builds their
// configurations for one of two endpoints (a Service in the cluster, or a URL
// for a manager that runs outside it), keeps them applied with the CA bundle
// of internal/webhook/certs, and mounts the handlers on the manager's
// webhook server.
package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/homepods"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/webhook/certs"
	"stretch.dev/stretch/internal/webhook/offloadingvalidation"
	"stretch.dev/stretch/internal/webhook/podplacement"
	"stretch.dev/stretch/internal/webhook/twinendpoints"
	"stretch.dev/stretch/internal/webhook/twinpod"
)

// Paths of the webhooks on the server, and the field owner of their
// configurations (named in api/wellknown).
const (
	podPath        = "/mutate-pod"
	offloadingPath = "/validate-namespaceoffloading"
	twinPodPath    = "/validate-twin-pod"
	// twinEndpointsPath admits the EndpointSlices home clusters write into
	// twins.
	twinEndpointsPath = "/validate-twin-endpointslice"
	fieldOwner        = "stretch-webhook"
	// timeoutSeconds is tight: the pod webhook sits on every pod creation
	// of an offloaded namespace, and answers from caches.
	timeoutSeconds = 5
)

// Endpoint is where the API server reaches the webhook server.
type Endpoint struct {
	// URL is the server's base URL, e.g. https://127.0.0.1:9443, for a
	// manager that runs outside the cluster.
	URL string
	// Service is the Service in front of an in-cluster manager; it is used
	// when URL is empty.
	Service types.NamespacedName
	// ServicePort is the Service's port; zero means 443.
	ServicePort int32
}

// Hosts are the names the serving certificate must be valid for.
func (e Endpoint) Hosts() ([]string, error) {
	if e.URL != "" {
		u, err := url.Parse(e.URL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return nil, fmt.Errorf("webhook URL %q is not an https URL with a host, such as https://127.0.0.1:9443", e.URL)
		}
		return []string{u.Hostname()}, nil
	}
	if e.Service.Name == "" || e.Service.Namespace == "" {
		return nil, fmt.Errorf("the webhook endpoint needs a URL or a Service namespace/name")
	}
	svc := e.Service.Name + "." + e.Service.Namespace + ".svc"
	return []string{svc, svc + ".cluster.local"}, nil
}

func (e Endpoint) clientConfig(path string, caBundle []byte) admissionregistrationv1.WebhookClientConfig {
	if e.URL != "" {
		return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(e.URL + path), CABundle: caBundle}
	}
	port := e.ServicePort
	if port == 0 {
		port = 443
	}
	return admissionregistrationv1.WebhookClientConfig{CABundle: caBundle, Service: &admissionregistrationv1.ServiceReference{
		Namespace: e.Service.Namespace, Name: e.Service.Name, Path: ptr.To(path), Port: ptr.To(port)}}
}

// runtimeClassCondition matches the pods of runtime class stretch, for the
// second pod webhook.
const runtimeClassCondition = "has(object.spec.runtimeClassName) && object.spec.runtimeClassName == '" + wellknown.RuntimeClassName + "'"

// systemNamespaces never call the runtime-class pod webhook: the manager's
// own pods and the cluster's must not wait for it.
var systemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease", wellknown.SystemNamespace}

// Set is the webhook configurations of a manager.
type Set struct {
	// PodPlacement places the pods of offloaded namespaces (home).
	PodPlacement *admissionregistrationv1.MutatingWebhookConfiguration
	// Offloading validates NamespaceOffloadings (home).
	Offloading *admissionregistrationv1.ValidatingWebhookConfiguration
	// TwinPods admits the pods of twin namespaces (provider).
	TwinPods *admissionregistrationv1.ValidatingWebhookConfiguration
	// TwinEndpoints admits the EndpointSlices home clusters write into
	// twin namespaces (provider).
	TwinEndpoints *admissionregistrationv1.ValidatingWebhookConfiguration
}

// Objects are the configurations of the set.
func (s Set) Objects() []client.Object {
	return []client.Object{s.PodPlacement, s.Offloading, s.TwinPods, s.TwinEndpoints}
}

// Configurations returns the webhook configurations for the endpoint.
func Configurations(e Endpoint, caBundle []byte) Set {
	fail := admissionregistrationv1.Fail
	equivalent := admissionregistrationv1.Equivalent
	podWebhook := func(name string, namespaces *metav1.LabelSelector, conditions ...admissionregistrationv1.MatchCondition) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:         name,
			ClientConfig: e.clientConfig(podPath, caBundle),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
			}},
			NamespaceSelector: namespaces,
			MatchConditions:   conditions,
			FailurePolicy:     &fail,
			MatchPolicy:       &equivalent,
			// Events about contradicting terms are its only side effect.
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To[int32](timeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
		}
	}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: wellknown.PodPlacementWebhookName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			// A pod is sent to exactly one of the two, so that it is placed
			// once (reinvocation is off). The namespaces whose pods may go to
			// providers send every pod, without a match condition: CEL
			// evaluated on every pod of a burst costs the API server CPU.
			podWebhook("pods.offloading.stretch.dev",
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: wellknown.SchedulingEnabledLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}}}}),
			// Pods of runtime class stretch go to providers whatever the
			// strategy, so also from the other namespaces (Local, or not
			// offloaded at all: then they are refused, as they could never
			// start).
			podWebhook("runtimeclass-pods.offloading.stretch.dev",
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: slices.Clone(systemNamespaces)},
					{Key: wellknown.SchedulingEnabledLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"}},
				}},
				admissionregistrationv1.MatchCondition{Name: "runtime-class-stretch", Expression: runtimeClassCondition}),
		},
	}
	validating := validatingConfiguration(wellknown.OffloadingWebhookName, admissionregistrationv1.ValidatingWebhook{
		Name:         "namespaceoffloadings.offloading.stretch.dev",
		ClientConfig: e.clientConfig(offloadingPath, caBundle),
		Rules: createOrUpdate(admissionregistrationv1.Rule{APIGroups: []string{offloadingv1alpha1.GroupVersion.Group}, APIVersions: []string{offloadingv1alpha1.GroupVersion.Version},
			Resources: []string{"namespaceoffloadings"}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)}),
	})
	return Set{PodPlacement: mutating, Offloading: validating, TwinPods: twinPods(e, caBundle), TwinEndpoints: twinEndpoints(e, caBundle)}
}

// homeIdentityCondition matches the requests of home clusters: their
// issued credentials are a ServiceAccount of their tenant namespace.
const homeIdentityCondition = "request.userInfo.username.startsWith('system:serviceaccount:" + wellknown.TenantNamespacePrefix + "')"

// twinEndpoints is the configuration of the provider's admission of the
// EndpointSlices that home clusters write into twins (docs/security.md):
// only theirs, so that the provider's own EndpointSlice controller, which
// lists the twin's pods, never waits for it. It fails closed like twinPods.
func twinEndpoints(e Endpoint, caBundle []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return validatingConfiguration(wellknown.TwinEndpointsWebhookName, admissionregistrationv1.ValidatingWebhook{
		Name:         "twinendpointslices.peering.stretch.dev",
		ClientConfig: e.clientConfig(twinEndpointsPath, caBundle),
		Rules: createOrUpdate(admissionregistrationv1.Rule{APIGroups: []string{"discovery.k8s.io"}, APIVersions: []string{"v1"}, Resources: []string{"endpointslices"},
			Scope: ptr.To(admissionregistrationv1.NamespacedScope)}),
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: wellknown.OriginClusterIDLabel, Operator: metav1.LabelSelectorOpExists}}},
		MatchConditions: []admissionregistrationv1.MatchCondition{{Name: "home-cluster-credentials", Expression: homeIdentityCondition}},
	})
}

// twinPods is the configuration of the provider's admission of pods in
// twins: every pod created or updated in a namespace labelled as a twin. It
// fails closed: a provider whose manager is down admits no pod into twins
// rather than pods its policy would refuse; the home cluster retries.
func twinPods(e Endpoint, caBundle []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return validatingConfiguration(wellknown.TwinPodsWebhookName, admissionregistrationv1.ValidatingWebhook{
		Name:         "twinpods.peering.stretch.dev",
		ClientConfig: e.clientConfig(twinPodPath, caBundle),
		Rules: createOrUpdate(admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
			Scope: ptr.To(admissionregistrationv1.NamespacedScope)}),
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: wellknown.OriginClusterIDLabel, Operator: metav1.LabelSelectorOpExists}}},
	})
}

// validatingConfiguration is a configuration of the one webhook wh, with
// what all of Stretch's validating webhooks share: they fail closed, match
// equivalent versions, have no side effects and answer within the timeout.
func validatingConfiguration(name string, wh admissionregistrationv1.ValidatingWebhook) *admissionregistrationv1.ValidatingWebhookConfiguration {
	wh.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
	wh.MatchPolicy = ptr.To(admissionregistrationv1.Equivalent)
	wh.SideEffects = ptr.To(admissionregistrationv1.SideEffectClassNone)
	wh.TimeoutSeconds = ptr.To[int32](timeoutSeconds)
	wh.AdmissionReviewVersions = []string{"v1"}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{wh},
	}
}

// createOrUpdate are the rules of a webhook called on creates and updates of
// rule's resources.
func createOrUpdate(rule admissionregistrationv1.Rule) []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule:       rule,
	}}
}

// Serving is a manager's webhook server and the rotator of its
// certificate.
type Serving struct {
	Endpoint Endpoint
	// Server is the manager's webhook server (ctrl.Options.WebhookServer).
	Server ctrlwebhook.Server
	// Rotator is set by Setup.
	Rotator *certs.Rotator
	// HomePods are the home clusters' pods the twin pod admission counts;
	// nil: Setup creates them.
	HomePods *homepods.Cache

	certs certs.Options
}

// NewServing returns the webhook server for bindAddress (host:port),
// reached by the API server at endpoint. certOpts adjust the certificates
// (validities, clock); what identifies them is set by Setup.
func NewServing(bindAddress string, endpoint Endpoint, certOpts certs.Options) (*Serving, error) {
	host, port, err := ParseBindAddress(bindAddress)
	if err != nil {
		return nil, err
	}
	if _, err := endpoint.Hosts(); err != nil {
		return nil, err
	}
	s := &Serving{Endpoint: endpoint, certs: certOpts}
	s.Server = ctrlwebhook.NewServer(ctrlwebhook.Options{Host: host, Port: port, TLSOpts: []func(*tls.Config){func(c *tls.Config) {
		c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if s.Rotator == nil {
				return nil, errors.New("the webhook certificate is not ready yet")
			}
			return s.Rotator.GetCertificate(hello)
		}
	}}})
	return s, nil
}

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update

// Setup adds the certificate rotator (Secret stretch-system/
// stretch-webhook-certs, configurations kept applied with its CA bundle) to
// the manager, mounts the handlers, and makes the manager ready only once a
// certificate is served.
func (s *Serving) Setup(mgr ctrl.Manager) error {
	hosts, err := s.Endpoint.Hosts()
	if err != nil {
		return err
	}
	c := s.certs
	c.Client, c.Reader = mgr.GetClient(), mgr.GetAPIReader()
	c.Secret = types.NamespacedName{Namespace: wellknown.SystemNamespace, Name: wellknown.WebhookCertificateSecretName}
	c.Hosts = hosts
	c.Inject = func(ctx context.Context, caBundle []byte) error {
		return applyConfigurations(ctx, mgr.GetClient(), s.Endpoint, caBundle)
	}
	s.Rotator = certs.New(c)
	if err := mgr.Add(s.Rotator); err != nil {
		return fmt.Errorf("adding the webhook certificate rotator: %w", err)
	}
	if s.HomePods == nil {
		if s.HomePods, err = homepods.New(mgr); err != nil {
			return err
		}
	}
	srv := mgr.GetWebhookServer()
	srv.Register(podPath, &admission.Webhook{Handler: &podplacement.Handler{
		Client: mgr.GetClient(), Decoder: admission.NewDecoder(mgr.GetScheme()), Recorder: mgr.GetEventRecorder("stretch-pod-webhook")}})
	srv.Register(offloadingPath, &admission.Webhook{Handler: &offloadingvalidation.Handler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Decoder: admission.NewDecoder(mgr.GetScheme()),
		Home: &identity.IDCache{Reader: mgr.GetAPIReader()}}})
	srv.Register(twinPodPath, &admission.Webhook{Handler: &twinpod.Handler{
		Client: mgr.GetClient(), Pods: s.HomePods, Decoder: admission.NewDecoder(mgr.GetScheme())}})
	srv.Register(twinEndpointsPath, &admission.Webhook{Handler: &twinendpoints.Handler{
		Client: mgr.GetClient(), Decoder: admission.NewDecoder(mgr.GetScheme())}})
	return mgr.AddReadyzCheck("webhook-certificate", func(*http.Request) error {
		select {
		case <-s.Rotator.Ready():
			return nil
		default:
			return errors.New("no webhook certificate yet (see the log of webhook-certs)")
		}
	})
}

// applyConfigurations server-side applies the configurations.
func applyConfigurations(ctx context.Context, c client.Client, e Endpoint, caBundle []byte) error {
	for _, obj := range Configurations(e, caBundle).Objects() {
		if err := apply.As(ctx, c, fieldOwner, obj); err != nil {
			return err
		}
	}
	return nil
}

// ParseBindAddress splits host:port for the webhook server.
func ParseBindAddress(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err == nil {
		port, err = strconv.Atoi(p)
	}
	if err != nil {
		return "", 0, fmt.Errorf("webhook bind address %q is not host:port, such as 127.0.0.1:9443", addr)
	}
	return h, port, nil
}
