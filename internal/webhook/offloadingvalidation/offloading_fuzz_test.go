package offloadingvalidation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/webhook/offloadingvalidation"
)

// ns holds a pod on a virtual node and one on a home node, so that every
// strategy has a pod to warn about.
const ns = "fuzz"

// setUp gives home an identity, a virtual node and the pods, once per API
// server: fuzzing workers find them made by the coordinator.
func setUp(f *testing.F) {
	ctx := context.Background()
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stretch-provider-eu", Labels: map[string]string{wellknown.VirtualNodeTypeLabel: wellknown.VirtualNodeTypeValue}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "home-1"}},
	}
	for _, node := range []string{"stretch-provider-eu", "home-1"} {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "on-" + node},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}})
	}
	created := false
	for _, o := range objs {
		err := home.Client.Create(ctx, o)
		if client.IgnoreAlreadyExists(err) != nil {
			f.Fatal(err)
		}
		created = created || err == nil
	}
	if created {
		if err := home.InstallIdentity(ctx, identity.Identity{ID: uuid.NewString(), Name: "home"}); err != nil {
			f.Fatal(err)
		}
	}
}

func offloadingJSON(name string, spec offloadingv1alpha1.NamespaceOffloadingSpec) []byte {
	data, err := json.Marshal(&offloadingv1alpha1.NamespaceOffloading{TypeMeta: metav1.TypeMeta{APIVersion: offloadingv1alpha1.GroupVersion.String(), Kind: "NamespaceOffloading"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})
	if err != nil {
		panic(err)
	}
	return data
}

// review is the body the API server posts; the objects are spliced in as
// they are, so that they may be anything.
func review(op admissionv1.Operation, object, old []byte) []byte {
	if object == nil {
		object = []byte("null")
	}
	if old == nil {
		old = []byte("null")
	}
	return fmt.Appendf(nil, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002",`+
		`"kind":{"group":"offloading.stretch.dev","version":"v1alpha1","kind":"NamespaceOffloading"},"resource":{"group":"offloading.stretch.dev","version":"v1alpha1","resource":"namespaceoffloadings"},`+
		`"namespace":%q,"operation":%q,"object":%s,"oldObject":%s}}`, ns, op, object, old)
}

// FuzzHandle feeds the NamespaceOffloading webhook arbitrary AdmissionReview
// bodies through the webhook server, and arbitrary new and old objects
// straight to the handler. Every answer must be one the API server can use
// (see testenv.CheckAdmissionResponse), never a panic; an object not named
// offloading is denied with a message saying so; an update that renames the
// twins is denied with a message saying what is immutable.
func FuzzHandle(f *testing.F) {
	setUp(f)
	// The manager reads pods from the API server, not its cache; here a cache
	// gives the same answers without a round trip per input, so that
	// minimizing a failing input takes seconds.
	reader := home.StartCache(f, &corev1.Node{}, &corev1.Pod{})
	h := &offloadingvalidation.Handler{Client: reader, APIReader: reader, Decoder: admission.NewDecoder(home.Scheme), Home: &identity.IDCache{Reader: home.Client}}
	wh := &admission.Webhook{Handler: h}

	sel := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: corev1.NodeSelectorOpIn, Values: []string{"eu"}}}}}}
	bad := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: "Near"}}}}}
	specs := []offloadingv1alpha1.NamespaceOffloadingSpec{
		{},
		{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy, ClusterSelector: sel},
		{PodOffloadingStrategy: offloadingv1alpha1.LocalStrategy, ClusterSelector: bad},
		{NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping, RemoteNamespaceName: "kube-system"},
		{NamespaceMappingStrategy: offloadingv1alpha1.SelectedNameMapping, RemoteNamespaceName: strings.Repeat("a", 70)},
		{NamespaceMappingStrategy: offloadingv1alpha1.EnforceSameNameMapping, PodOffloadingStrategy: "Sideways"},
	}
	for i, spec := range specs {
		obj := offloadingJSON(wellknown.NamespaceOffloadingName, spec)
		old := offloadingJSON(wellknown.NamespaceOffloadingName, specs[(i+1)%len(specs)])
		f.Add(review(admissionv1.Create, obj, nil), obj, []byte(nil), false)
		f.Add(review(admissionv1.Update, obj, old), obj, old, true)
	}
	misnamed := offloadingJSON("my-offloading", specs[0])
	f.Add(review(admissionv1.Create, misnamed, nil), misnamed, []byte(nil), false)
	for _, m := range [][]byte{
		nil, []byte("null"), []byte("{}"), []byte(`{"apiVersion":"offloading.stretch.dev/v1alpha1","kind":"NamespaceOffloading","metadata":{"name":"offloading"},"spec":[]}`),
		[]byte(`{"apiVersion":"offloading.stretch.dev/v1alpha1","kind":"NamespaceOffloading","metadata":{"name":"offloading"},"spec":{"clusterSelector":{"nodeSelectorTerms":[{"matchFields":[{"key":"metadata.name","operator":"In"}]}]}}}`),
		[]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"offloading"}}`),
		[]byte("apiVersion: offloading.stretch.dev/v1alpha1\nkind: NamespaceOffloading\nmetadata: {name: offloading}\n"),
	} {
		f.Add(review(admissionv1.Update, m, m), m, m, true)
	}
	f.Add([]byte("garbage"), []byte("garbage"), []byte("garbage"), true)

	f.Fuzz(func(t *testing.T, body, object, old []byte, update bool) {
		testenv.ServeAdmission(t, wh, body)

		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "fuzz", Namespace: ns, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: object}}}
		if update {
			req.Operation, req.OldObject = admissionv1.Update, runtime.RawExtension{Raw: old}
		}
		resp, _ := testenv.CompleteAdmission(t, req, h.Handle(t.Context(), req))
		if len(resp.Patch) > 0 {
			t.Fatal("a validating webhook answered with a patch")
		}
		// What the handler decoded, it must judge as described.
		cur, prev := &offloadingv1alpha1.NamespaceOffloading{}, &offloadingv1alpha1.NamespaceOffloading{}
		if h.Decoder.DecodeRaw(req.Object, cur) != nil || update && h.Decoder.DecodeRaw(req.OldObject, prev) != nil {
			return
		}
		switch {
		case cur.Name != wellknown.NamespaceOffloadingName:
			if resp.Allowed || !strings.Contains(resp.Result.Message, `the name must be "offloading"`) {
				t.Fatalf("NamespaceOffloading %q is not denied for its name: %+v", cur.Name, resp.Result)
			}
		case update && mapping(prev) != mapping(cur):
			if resp.Allowed || !strings.Contains(resp.Result.Message, "spec.namespaceMappingStrategy is immutable") {
				t.Fatalf("a change of namespaceMappingStrategy from %q to %q is not denied: %+v", prev.Spec.NamespaceMappingStrategy, cur.Spec.NamespaceMappingStrategy, resp.Result)
			}
		case update && prev.Spec.RemoteNamespaceName != cur.Spec.RemoteNamespaceName:
			if resp.Allowed || !strings.Contains(resp.Result.Message, "spec.remoteNamespaceName is immutable") {
				t.Fatalf("a change of remoteNamespaceName is not denied: %+v", resp.Result)
			}
		case !resp.Allowed:
			t.Fatalf("a NamespaceOffloading that changes nothing immutable is denied: %+v", resp.Result)
		}
	})
}

func mapping(o *offloadingv1alpha1.NamespaceOffloading) offloadingv1alpha1.NamespaceMappingStrategy {
	if o.Spec.NamespaceMappingStrategy == "" {
		return offloadingv1alpha1.DefaultNameMapping
	}
	return o.Spec.NamespaceMappingStrategy
}
