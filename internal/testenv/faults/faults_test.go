package faults

import (
	"net/http/httptest"
	"testing"
)

func TestRequestVerb(t *testing.T) {
	for _, tc := range []struct{ method, url, verb, resource string }{
		{"GET", "/api/v1/namespaces/a/pods", "list", "pods"},
		{"GET", "/api/v1/namespaces/a/pods?watch=true&resourceVersion=1", "watch", "pods"},
		{"GET", "/api/v1/namespaces/a/pods/web", "get", "pods"},
		{"PUT", "/api/v1/namespaces/a/pods/web/status", "update", "pods/status"},
		{"POST", "/api/v1/namespaces/a/pods", "create", "pods"},
		{"DELETE", "/api/v1/namespaces/a/pods/web", "delete", "pods"},
		{"DELETE", "/api/v1/namespaces/a/pods", "deletecollection", "pods"},
		{"GET", "/api/v1/namespaces/a", "get", "namespaces"},
		{"PUT", "/api/v1/namespaces/a/finalize", "update", "namespaces/finalize"},
		{"GET", "/api/v1/namespaces", "list", "namespaces"},
		{"PATCH", "/apis/peering.stretch.dev/v1alpha1/namespaces/t/remotenamespaces/x/status", "patch", "remotenamespaces/status"},
		{"GET", "/apis/peering.stretch.dev/v1alpha1/remoteclusters", "list", "remoteclusters"},
		{"GET", "/apis", "get", ""},
		{"GET", "/version", "get", ""},
	} {
		verb, resource := RequestVerb(httptest.NewRequest(tc.method, tc.url, nil))
		if verb != tc.verb || resource != tc.resource {
			t.Errorf("%s %s: got (%s, %s), want (%s, %s)", tc.method, tc.url, verb, resource, tc.verb, tc.resource)
		}
	}
}
