package podplacement_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/placement"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/webhook/podplacement"
)

// Namespaces of the fuzzed requests, one per answer the handler can give.
const (
	readyNS       = "fuzz-ready"       // Remote, with a selector: pods are placed
	inProgressNS  = "fuzz-in-progress" // pods are turned away until Ready
	terminatingNS = "fuzz-terminating" // pods stay home
	missingNS     = "fuzz-missing"     // no NamespaceOffloading: pods are turned away
)

var readySelector = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
	MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: corev1.NodeSelectorOpIn, Values: []string{"eu"}}}}}}

// setUp creates the namespaces and their NamespaceOffloadings, once per
// API server: fuzzing workers find them made by the coordinator.
func setUp(f *testing.F) {
	ctx := context.Background()
	for ns, phase := range map[string]offloadingv1alpha1.OffloadingPhase{
		readyNS: offloadingv1alpha1.ReadyPhase, inProgressNS: offloadingv1alpha1.InProgressPhase, terminatingNS: offloadingv1alpha1.TerminatingPhase, missingNS: "",
	} {
		err := home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{wellknown.SchedulingEnabledLabel: "true"}}})
		if client.IgnoreAlreadyExists(err) != nil {
			f.Fatal(err)
		}
		if err != nil || phase == "" {
			continue // made by the coordinator, or meant to be missing
		}
		off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: wellknown.NamespaceOffloadingName},
			Spec: offloadingv1alpha1.NamespaceOffloadingSpec{PodOffloadingStrategy: offloadingv1alpha1.RemoteStrategy, ClusterSelector: readySelector}}
		if err := home.Client.Create(ctx, off); err != nil {
			f.Fatal(err)
		}
		off.Status.OffloadingPhase = phase
		if err := home.Client.Status().Update(ctx, off); err != nil {
			f.Fatal(err)
		}
	}
}

// recorder keeps the events the handler records, instead of writing them
// to the API server once per fuzzed input.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Eventf(regarding, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	obj, ok := regarding.(client.Object)
	if !ok || obj.GetNamespace() == "" || obj.GetName() == "" || eventtype != corev1.EventTypeWarning || reason != podplacement.ContradictionReason || action == "" || note == "" {
		r.events = append(r.events, "malformed")
		return
	}
	r.events = append(r.events, klog.KObj(obj).String())
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func podJSON(p *corev1.Pod) []byte {
	data, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return data
}

// review is the body the API server posts for a pod CREATE; object is
// spliced in as it is, so that it may be anything.
func review(ns string, object []byte) []byte {
	if object == nil {
		object = []byte("null")
	}
	return fmt.Appendf(nil, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002",`+
		`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":%q,"operation":"CREATE","object":%s}}`, ns, object)
}

// FuzzHandle feeds the pod webhook what a broken or hostile client could make
// the API server send: arbitrary AdmissionReview bodies through the webhook
// server, and arbitrary pod bytes straight to the handler for the namespace
// whose offloading is Ready. Every answer must be one the API server can use
// (see testenv.CheckAdmissionResponse), never a panic; and a pod placed in
// the Ready namespace must come out tolerating virtual nodes and required
// onto them, whatever it asked for itself.
func FuzzHandle(f *testing.F) {
	setUp(f)
	events := &recorder{}
	// The manager's client reads NamespaceOffloadings from its cache.
	reader := home.StartCache(f, &offloadingv1alpha1.NamespaceOffloading{})
	h := &podplacement.Handler{Client: reader, Decoder: admission.NewDecoder(home.Scheme), Recorder: events}
	wh := &admission.Webhook{Handler: h}

	plain := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{GenerateName: "app-"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}}}
	own := plain.DeepCopy()
	own.Name = "pinned"
	own.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "region", Operator: corev1.NodeSelectorOpIn, Values: []string{"us"}}}},
			{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"stretch-provider-eu"}}}},
		}}}}
	own.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	runtimeClass := plain.DeepCopy()
	runtimeClass.Spec.RuntimeClassName = new(wellknown.RuntimeClassName)
	for _, p := range []*corev1.Pod{plain, own, runtimeClass} {
		for _, ns := range []string{readyNS, inProgressNS, terminatingNS, missingNS} {
			f.Add(review(ns, podJSON(p)), podJSON(p))
		}
	}
	malformed := [][]byte{
		nil, []byte("null"), []byte("{}"), []byte(`{"apiVersion":"v1","kind":"Pod"}`),
		[]byte(`{"apiVersion":"v1","kind":"Pod","spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{}]}}}}}`),
		[]byte(`{"apiVersion":"v1","kind":"Pod","spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"region","operator":"Near"}]}]}}}}}`),
		[]byte(`{"apiVersion":"v1","kind":"Pod","spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":null}}}}`),
		[]byte(`{"apiVersion":"v1","kind":"Pod","spec":{"tolerations":[null,{}]}}`),
		[]byte(`{"apiVersion":"v1","kind":"Pod","spec":"not an object"}`),
		[]byte(`{"apiVersion":"v1","kind":"ConfigMap","data":{"a":"b"}}`),
		[]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":1}}`),
		[]byte("apiVersion: v1\nkind: Pod\n"),
		[]byte(`{"apiVersion":"v1","kind":"Pod"`),
	}
	for _, m := range malformed {
		f.Add(review(readyNS, m), m)
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), []byte(nil))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x","namespace":"fuzz-ready","object":{"kind":"Pod","apiVersion":"v1"}}}`), []byte(nil))
	f.Add([]byte(`{"kind":"AdmissionReview","request":{"uid":"x","object":[]}}`), []byte(nil))
	f.Add([]byte("garbage"), []byte("garbage"))

	f.Fuzz(func(t *testing.T, body, object []byte) {
		testenv.ServeAdmission(t, wh, body)
		for _, e := range events.take() {
			if e == "malformed" {
				t.Fatal("an event without a namespaced object, reason or note was recorded")
			}
		}

		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: types.UID("fuzz"), Namespace: readyNS, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: object}, DryRun: new(true)}}
		resp, patched := testenv.CompleteAdmission(t, req, h.Handle(t.Context(), req))
		if !resp.Allowed {
			return
		}
		// Decoded as the API server decodes a patched object: field names
		// are case-sensitive and unknown fields are dropped.
		pod := &corev1.Pod{}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(patched, pod); err != nil {
			t.Fatalf("the admitted pod does not decode: %v\n%s", err, patched)
		}
		taint := corev1.Taint{Key: wellknown.VirtualNodeTaintKey, Value: wellknown.VirtualNodeTaintValue, Effect: corev1.TaintEffectNoExecute}
		if !slices.ContainsFunc(pod.Spec.Tolerations, func(tl corev1.Toleration) bool { return tl.ToleratesTaint(klog.Background(), &taint, false) }) {
			t.Fatalf("a pod admitted in a namespace offloaded Remote does not tolerate virtual nodes: %v", pod.Spec.Tolerations)
		}
		a := pod.Spec.Affinity
		if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
			t.Fatalf("a pod admitted in a namespace offloaded Remote has no required node affinity: %s", patched)
		}
		required := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		for _, term := range required {
			if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
				continue // an empty term matches no node: nothing to pin
			}
			s := placement.TermsString([]corev1.NodeSelectorTerm{term})
			if !strings.Contains(s, "stretch.dev/type In (virtual-node)") || !strings.Contains(s, "region In (eu)") {
				t.Fatalf("term %s of an admitted pod lets it run off the selected virtual nodes", s)
			}
		}
		if len(required) == 0 {
			t.Fatal("a pod admitted in a namespace offloaded Remote has no required node affinity term")
		}
		if e := events.take(); len(e) > 0 {
			t.Fatalf("a dry run recorded events %v", e)
		}
	})
}
