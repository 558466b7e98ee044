// Package faults makes an API server misbehave for a client: an
// http.RoundTripper wrapper that answers a share of the requests with
// conflicts, throttling or internal errors, or every request while "down",
// deterministically for a seed. It does not import testing.
package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/transport"
)

// Fault is an answer an Injector gives instead of the API server's.
type Fault struct {
	// Code is the HTTP status: 409, 429 or 500.
	Code int
	// Share is the fraction of the matching requests that get it, in [0, 1].
	Share float64
	// Verbs and Resources restrict the requests it applies to (as in RBAC:
	// "create", "list", "watch", ...; "pods", "namespaces", ...); empty
	// means all.
	Verbs, Resources []string
	// AfterServing makes the request reach the API server first, and only
	// its answer be replaced: the change is made but the client is told it
	// failed, as when a connection drops after the request.
	AfterServing bool
}

// Injector is an http.RoundTripper wrapper that answers a share of the
// requests with errors instead of the API server, deterministically for a
// seed and a sequence of requests, and counts requests by verb. Wrap clients
// with rest.Config.Wrap(f.Wrap). It is safe for concurrent use.
type Injector struct {
	mu     sync.Mutex
	rnd    *rand.Rand
	faults []Fault
	down   bool
	counts map[string]int
	failed map[int]int
	// watches are the bodies of the open watches, closed by SetDown.
	watches map[*watchBody]struct{}
}

// NewInjector returns an injector that injects faults (the first that
// matches a request and whose share is drawn wins) with a random sequence
// seeded by seed.
func NewInjector(seed uint64, faults ...Fault) *Injector {
	return &Injector{rnd: rand.New(rand.NewPCG(seed, seed)), faults: faults, counts: map[string]int{}, failed: map[int]int{}, watches: map[*watchBody]struct{}{}}
}

// Wrap is a transport.WrapperFunc.
func (f *Injector) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) { return f.roundTrip(rt, req) })
}

var _ transport.WrapperFunc = (&Injector{}).Wrap

// SetFaults replaces the faults injected from now on.
func (f *Injector) SetFaults(faults ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = faults
}

// SetDown makes every request answered 500 while down, as a broken API
// server (or a proxy in front of it) would; going down also ends the open
// watches, as the server's going away would.
func (f *Injector) SetDown(down bool) {
	f.mu.Lock()
	f.down = down
	var open []*watchBody
	if down {
		for w := range f.watches {
			open = append(open, w)
		}
	}
	f.mu.Unlock()
	for _, w := range open {
		_ = w.Close()
	}
}

// Counts returns the number of requests seen so far by verb, and their total
// under "".
func (f *Injector) Counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.counts)
}

// Injected returns the number of faults injected so far by status code.
func (f *Injector) Injected() map[int]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.failed)
}

func (f *Injector) roundTrip(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	verb, resource := RequestVerb(req)
	f.mu.Lock()
	f.counts[verb]++
	f.counts[""]++
	fault, ok := f.pick(verb, resource)
	if ok {
		f.failed[fault.Code]++
	}
	f.mu.Unlock()
	if !ok {
		resp, err := rt.RoundTrip(req)
		if err != nil || verb != "watch" {
			return resp, err
		}
		w := &watchBody{ReadCloser: resp.Body, f: f}
		f.mu.Lock()
		f.watches[w] = struct{}{}
		f.mu.Unlock()
		resp.Body = w
		return resp, nil
	}
	if fault.AfterServing {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return faultResponse(req, fault.Code), nil
}

// pick draws the fault for a request; f.mu is held.
func (f *Injector) pick(verb, resource string) (Fault, bool) {
	if f.down {
		return Fault{Code: http.StatusInternalServerError}, true
	}
	for _, fault := range f.faults {
		if !matches(fault.Verbs, verb) || !matches(fault.Resources, resource) {
			continue
		}
		if f.rnd.Float64() < fault.Share {
			return fault, true
		}
	}
	return Fault{}, false
}

func matches(list []string, s string) bool {
	if len(list) == 0 {
		return true
	}
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// faultResponse is the answer an API server gives with code: a Status, and
// for 429 a Retry-After of one second, as priority and fairness sends.
func faultResponse(req *http.Request, code int) *http.Response {
	status := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: int32(code)}
	header := http.Header{"Content-Type": []string{"application/json"}}
	switch code {
	case http.StatusConflict:
		status.Reason = metav1.StatusReasonConflict
		status.Message = "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (injected)"
	case http.StatusTooManyRequests:
		status.Reason = metav1.StatusReasonTooManyRequests
		status.Message = "Too many requests, please try again later (injected)"
		status.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
		header.Set("Retry-After", "1")
	default:
		status.Reason = metav1.StatusReasonInternalError
		status.Message = fmt.Sprintf("Internal error occurred: injected %d", code)
	}
	body, _ := json.Marshal(status)
	return &http.Response{
		Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: header, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Request: req,
	}
}

// RequestVerb is the RBAC verb and resource of a request to an API server,
// e.g. ("list", "pods") for GET /api/v1/namespaces/a/pods; a subresource
// is named resource/subresource, e.g. "pods/status".
func RequestVerb(req *http.Request) (verb, resource string) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	// /api/v1/... or /apis/group/version/...
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return strings.ToLower(req.Method), "" // discovery, /healthz, ...
	}
	// /namespaces/x and its status and finalize are the namespace itself.
	if len(parts) >= 3 && parts[0] == "namespaces" && (len(parts) > 3 || parts[2] != "status" && parts[2] != "finalize") {
		parts = parts[2:]
	}
	named := false
	switch len(parts) {
	case 0:
		return strings.ToLower(req.Method), ""
	case 1:
		resource = parts[0]
	case 2:
		resource, named = parts[0], true
	default:
		resource, named = parts[0]+"/"+parts[2], true
	}
	switch req.Method {
	case http.MethodGet:
		switch {
		case req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1":
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		verb = strings.ToLower(req.Method)
	}
	return verb, resource
}

// watchBody is the body of an open watch, forgotten when closed.
type watchBody struct {
	io.ReadCloser
	f *Injector
}

func (w *watchBody) Close() error {
	w.f.mu.Lock()
	delete(w.f.watches, w)
	w.f.mu.Unlock()
	return w.ReadCloser.Close()
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
