package testenv

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// ServeAdmission posts body to the webhook as the API server does, and
// returns its answer. It fails t unless the answer is what the API server
// can use: HTTP 200 and an AdmissionReview whose response is well formed
// (see CheckAdmissionResponse).
func ServeAdmission(t testing.TB, wh *admission.Webhook, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	wh.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("HTTP %d: the API server would fail the request instead of reading the answer: %s", w.Code, w.Body)
	}
	review := &admissionv1.AdmissionReview{}
	if err := json.Unmarshal(w.Body.Bytes(), review); err != nil || review.Response == nil {
		t.Fatalf("the answer is not an AdmissionReview with a response (%v): %s", err, w.Body)
	}
	CheckAdmissionResponse(t, *review.Response, nil)
	return review.Response
}

// CheckAdmissionResponse fails t unless resp is a well-formed answer: a
// denial has a status code and a message that says why; warnings are not
// empty; a patch is a JSON patch, which, when object is given, applies to
// it. It returns the patched object (object itself without a patch).
func CheckAdmissionResponse(t testing.TB, resp admissionv1.AdmissionResponse, object []byte) []byte {
	t.Helper()
	if !resp.Allowed {
		if resp.Result == nil || resp.Result.Message == "" || resp.Result.Code == 0 {
			t.Fatalf("a denial without a code or a message: %+v", resp.Result)
		}
		if len(resp.Patch) > 0 {
			t.Fatal("a denial with a patch")
		}
	}
	for _, w := range resp.Warnings {
		if w == "" {
			t.Fatal("an empty warning")
		}
	}
	if len(resp.Patch) == 0 {
		return object
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("a patch of type %v, not JSONPatch", resp.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("the patch is not a JSON patch: %v: %s", err, resp.Patch)
	}
	if object == nil {
		return nil
	}
	patched, err := patch.Apply(object)
	if err != nil {
		t.Fatalf("the patch does not apply to the object: %v\npatch: %s\nobject: %s", err, resp.Patch, object)
	}
	return patched
}

// CompleteAdmission completes the response of a handler called directly, as
// the webhook server does before answering the API server, and checks it
// with CheckAdmissionResponse against the request's object. It returns the
// response and the patched object.
func CompleteAdmission(t testing.TB, req admission.Request, resp admission.Response) (admissionv1.AdmissionResponse, []byte) {
	t.Helper()
	if err := resp.Complete(req); err != nil {
		t.Fatalf("the response cannot be sent: %v", err)
	}
	if resp.UID != req.UID {
		t.Fatalf("the response is for UID %q, the request %q", resp.UID, req.UID)
	}
	return resp.AdmissionResponse, CheckAdmissionResponse(t, resp.AdmissionResponse, req.Object.Raw)
}
