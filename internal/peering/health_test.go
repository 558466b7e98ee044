package peering

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestHealth(t *testing.T) {
	up := func(t string) metav1.Condition {
		return metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: "Up"}
	}
	tests := []struct {
		name        string
		conds       []metav1.Condition
		wantProblem string
		wantSummary string
	}{
		{
			name:        "no status yet",
			wantProblem: "NoStatus",
			wantSummary: "APIReachable=Unknown Authenticated=Unknown VirtualNodeReady=Unknown (NoStatus: the home controller (stretch-controller-manager) has not reported on this peering yet)",
		},
		{
			name: "token rejected",
			conds: []metav1.Condition{up("APIReachable"),
				{Type: "Authenticated", Status: metav1.ConditionFalse, Reason: "Unauthorized", Message: "token rejected"},
				{Type: "VirtualNodeReady", Status: metav1.ConditionFalse, Reason: "NotAuthenticated"}},
			wantProblem: "Unauthorized",
			wantSummary: "APIReachable=True Authenticated=False VirtualNodeReady=False (Unauthorized: token rejected)",
		},
		{
			name:        "healthy",
			conds:       []metav1.Condition{up("VirtualNodeReady"), up("APIReachable"), up("Authenticated")},
			wantSummary: "APIReachable=True Authenticated=True VirtualNodeReady=True",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			p := Problem(tt.conds)
			if tt.wantProblem == "" {
				g.Expect(p).To(BeNil())
			} else {
				g.Expect(p.Reason).To(Equal(tt.wantProblem))
			}
			g.Expect(Summary(tt.conds)).To(Equal(tt.wantSummary))
		})
	}
}
