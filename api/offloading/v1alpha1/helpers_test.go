package v1alpha1

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSelectedProviders: the providers whose OffloadingRequired condition is
// True, sorted; an absent or Unknown condition does not select.
func TestSelectedProviders(t *testing.T) {
	required := func(status metav1.ConditionStatus) RemoteNamespaceConditions {
		return RemoteNamespaceConditions{
			{Type: RemoteNamespaceReadyCondition, Status: metav1.ConditionTrue, Reason: NamespaceCreatedReason},
			{Type: OffloadingRequiredCondition, Status: status, Reason: ClusterSelectedReason},
		}
	}
	tests := []struct {
		name  string
		conds map[string]RemoteNamespaceConditions
		want  []string
	}{
		{name: "no status"},
		{name: "selected, sorted", conds: map[string]RemoteNamespaceConditions{"provider-us": required(metav1.ConditionTrue), "provider-eu": required(metav1.ConditionTrue)},
			want: []string{"provider-eu", "provider-us"}},
		{name: "deselected", conds: map[string]RemoteNamespaceConditions{"provider-eu": required(metav1.ConditionFalse), "provider-us": required(metav1.ConditionTrue)},
			want: []string{"provider-us"}},
		{name: "unknown", conds: map[string]RemoteNamespaceConditions{"provider-eu": required(metav1.ConditionUnknown)}},
		{name: "no OffloadingRequired condition", conds: map[string]RemoteNamespaceConditions{"provider-eu": required(metav1.ConditionTrue)[:1]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			s := NamespaceOffloadingStatus{RemoteNamespacesConditions: tt.conds}
			g.Expect(s.SelectedProviders()).To(Equal(tt.want))
		})
	}
}

// TestCreationFailedMessage: what the controller writes, diagnose reads back.
func TestCreationFailedMessage(t *testing.T) {
	tests := []struct {
		name                    string
		msg                     string
		wantReason, wantMessage string
		wantOK                  bool
	}{
		{name: "written by the controller", msg: CreationFailedMessage("AlreadyExists", "namespace x already exists: not a twin"),
			wantReason: "AlreadyExists", wantMessage: "namespace x already exists: not a twin", wantOK: true},
		{name: "no provider message", msg: CreationFailedMessage("Forbidden", ""), wantReason: "Forbidden", wantOK: true},
		{name: "no provider reason", msg: CreationFailedMessage("", "refused"), wantMessage: "refused", wantOK: true},
		{name: "with the unreachable note", msg: UnreachableMessage(CreationFailedMessage("NameTooLong", "too long"), errors.New("dial tcp: i/o timeout")),
			wantReason: "NameTooLong", wantMessage: "too long (provider not reachable: dial tcp: i/o timeout)", wantOK: true},
		{name: "not a reason", msg: "the provider said: no", wantMessage: "the provider said: no"},
		{name: "no colon", msg: "refused", wantMessage: "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			reason, message, ok := SplitCreationFailedMessage(tt.msg)
			g.Expect(reason).To(Equal(tt.wantReason))
			g.Expect(message).To(Equal(tt.wantMessage))
			g.Expect(ok).To(Equal(tt.wantOK))
		})
	}
}

// TestUnreachableMessage: the note the controller appends, diagnose cuts off.
func TestUnreachableMessage(t *testing.T) {
	tests := []struct {
		name              string
		msg               string
		wantLast, wantWhy string
		wantOK            bool
	}{
		{name: "written by the controller", msg: UnreachableMessage("the provider is creating the twin namespace", errors.New("connection refused")),
			wantLast: "the provider is creating the twin namespace", wantWhy: "connection refused", wantOK: true},
		{name: "an error with parentheses", msg: UnreachableMessage("twin exists", errors.New("Get (https://x): timeout")),
			wantLast: "twin exists", wantWhy: "Get (https://x): timeout", wantOK: true},
		{name: "no note", msg: "twin exists (created by Stretch)", wantLast: "twin exists (created by Stretch)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			last, why, ok := SplitUnreachableMessage(tt.msg)
			g.Expect(last).To(Equal(tt.wantLast))
			g.Expect(why).To(Equal(tt.wantWhy))
			g.Expect(ok).To(Equal(tt.wantOK))
		})
	}
}

func TestTwinDeleting(t *testing.T) {
	g := NewWithT(t)
	for reason, want := range map[string]bool{
		TerminatingReason: true, TwinNotDeletedReason: true,
		CreatingReason: false, CreationFailedReason: false, NamespaceCreatedReason: false, ProviderUnreachableReason: false,
	} {
		g.Expect(TwinDeleting(reason)).To(Equal(want), reason)
	}
}
