package virtualkubelet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestRefusalReason(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	terminating := apierrors.NewForbidden(pods, "web", errors.New("unable to create new content in namespace shop-x because it is being terminated"))
	terminating.ErrStatus.Details.Causes = append(terminating.ErrStatus.Details.Causes, metav1.StatusCause{Type: corev1.NamespaceTerminatingCause, Field: "metadata.namespace"})
	// As a webhook's denial reaches the client: its code, no reason.
	webhook := func(code int32) error {
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: code,
			Message: `admission webhook "policy.provider.example" denied the request: cpu limit 8 exceeds 4`}}
	}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"Pod Security", apierrors.NewForbidden(pods, "web", errors.New(`violates PodSecurity "baseline:latest": privileged (container "app" must not set securityContext.privileged=true)`)), refusedForbidden},
		{"quota", apierrors.NewForbidden(pods, "web", errors.New("exceeded quota: compute, requested: pods=1, used: pods=10, limited: pods=10")), refusedForbidden},
		{"webhook denial, 403", webhook(403), refusedForbidden},
		{"webhook denial without a code (400)", webhook(400), refusedBadRequest},
		{"webhook denial, 422", webhook(422), refusedInvalid},
		{"validation", apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "web", field.ErrorList{field.Invalid(field.NewPath("spec", "priorityClassName"), "high", "not allowed")}), refusedInvalid},
		{"bad request", apierrors.NewBadRequest("strict decoding error"), refusedBadRequest},
		{"too large", apierrors.NewRequestEntityTooLargeError("limit is 3145728"), refusedTooLarge},
		{"wrapped", fmt.Errorf("creating: %w", apierrors.NewForbidden(pods, "web", errors.New("violates PodSecurity"))), refusedForbidden},

		{"twin being deleted", terminating, ""},
		{"twin being deleted, message only", apierrors.NewForbidden(pods, "web", errors.New("unable to create new content in namespace shop-x because it is being terminated")), ""},
		{"twin gone", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "shop-x"), ""},
		{"authorization denied", apierrors.NewForbidden(pods, "", errors.New(`User "stretch-home" cannot create resource "pods" in API group "" in the namespace "shop-x"`)), ""},
		{"webhook asks to wait (429)", webhook(429), ""},
		{"webhook unreachable", apierrors.NewInternalError(errors.New(`failed calling webhook "policy.provider.example": connection refused`)), ""},
		{"conflict", apierrors.NewConflict(pods, "web", errors.New("the object has been modified")), ""},
		{"server timeout", apierrors.NewServerTimeout(pods, "create", 1), ""},
		{"timeout", apierrors.NewTimeoutError("request did not complete", 1), ""},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), ""},
		{"unavailable", apierrors.NewServiceUnavailable("etcd"), ""},
		{"unauthorized", apierrors.NewUnauthorized("token expired"), ""},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, ""},
		{"deadline", context.DeadlineExceeded, ""},
		{"none", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			NewWithT(t).Expect(refusalReason(c.err)).To(Equal(c.want))
		})
	}
}

func TestRefusalRetry(t *testing.T) {
	g := NewWithT(t)
	r := refusalRetry{first: 30 * time.Second, max: 5 * time.Minute}
	var got []time.Duration
	for attempts := range 7 {
		got = append(got, r.after(attempts+1))
	}
	g.Expect(got).To(Equal([]time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute}))
	g.Expect(r.after(1 << 20)).To(Equal(5 * time.Minute))
}

func TestRefusalsBroughtForward(t *testing.T) {
	g := NewWithT(t)
	now := time.Now()
	var s refusals
	s.set("shop/recent", refusal{last: now.Add(-10 * time.Second), next: now.Add(time.Hour)})
	s.set("shop/old", refusal{last: now.Add(-time.Minute), next: now.Add(time.Hour)})
	s.set("shop/due", refusal{last: now.Add(-5 * time.Second), next: now.Add(time.Second)})
	g.Expect(s.bringForward(now, 30*time.Second)).To(Equal(map[string]time.Duration{"shop/recent": 20 * time.Second, "shop/old": 0}))
	r, _ := s.get("shop/recent")
	g.Expect(r.next).To(Equal(now.Add(20 * time.Second)))
	r, _ = s.get("shop/due")
	g.Expect(r.next).To(Equal(now.Add(time.Second)), "already sooner")
}

func TestRefusalMessage(t *testing.T) {
	g := NewWithT(t)
	err := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "web", errors.New(`violates PodSecurity "baseline:latest": privileged`))
	g.Expect(refusalMessage("eu", err)).To(Equal(`provider eu refused the pod: pods "web" is forbidden: violates PodSecurity "baseline:latest": privileged; ` +
		`change the pod to meet the provider's policy (a changed pod is tried at once), or ask the admin of provider eu to allow it (the pod stays Pending and is tried again every 30s, up to every 5m)`))
	long := refusalMessage("eu", errors.New(strings.Repeat("x", 5000)))
	g.Expect(long).To(ContainSubstring(strings.Repeat("x", maxProviderMessage) + "...;"))
	g.Expect(long).NotTo(ContainSubstring(strings.Repeat("x", maxProviderMessage+1)))

	for d, want := range map[time.Duration]string{30 * time.Second: "30s", 5 * time.Minute: "5m", 90 * time.Second: "1m30s", time.Hour: "1h", 0: "0s"} {
		g.Expect(shortDuration(d)).To(Equal(want))
	}
}
