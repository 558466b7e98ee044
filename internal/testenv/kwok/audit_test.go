package kwok

import (
	"bufio"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestAuditedWrites(t *testing.T) {
	g := NewWithT(t)
	log := strings.Join([]string{
		`{"kind":"Event","stage":"ResponseComplete","verb":"create","user":{"username":"system:admin"},"userAgent":"stretch-controller-manager/v0.1.0 (linux/amd64)","objectRef":{"resource":"pods","namespace":"a"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-12-06T10:00:01.000000Z"}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"delete","user":{"username":"system:kwok"},"userAgent":"kwok/v0.8.0 (linux/amd64) kubernetes/abc","objectRef":{"resource":"pods","namespace":"a"},"responseStatus":{"code":404},"requestReceivedTimestamp":"2026-12-06T10:00:02.000000Z"}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"delete","user":{"username":"system:kwok"},"userAgent":"kwok/v0.8.0 (linux/amd64) kubernetes/abc","objectRef":{"resource":"pods","namespace":"a"},"responseStatus":{"code":404},"requestReceivedTimestamp":"2026-12-06T10:00:03.000000Z"}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"patch","user":{"username":"system:node:n1"},"userAgent":"","objectRef":{"resource":"pods","subresource":"status"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-12-06T10:00:04.000000Z"}`,
		// Before from, at to, and a read: left out.
		`{"kind":"Event","stage":"ResponseComplete","verb":"create","user":{"username":"a"},"userAgent":"x/1","objectRef":{"resource":"pods"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-12-06T09:59:59.000000Z"}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"create","user":{"username":"a"},"userAgent":"x/1","objectRef":{"resource":"pods"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-12-06T10:00:10.000000Z"}`,
		`{"kind":"Event","stage":"ResponseComplete","verb":"get","user":{"username":"a"},"userAgent":"x/1","objectRef":{"resource":"pods"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-12-06T10:00:05.000000Z"}`,
	}, "\n")
	from := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	got, err := auditedWrites(bufio.NewScanner(strings.NewReader(log)), from, from.Add(10*time.Second))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(map[string]map[string]int64{
		"POST pods":         {"stretch-controller-manager as system:admin": 1},
		"DELETE pods (404)": {"kwok as system:kwok": 2},
		"PATCH pods/status": {"unknown as system:node:n1": 1},
	}))

	_, err = auditedWrites(bufio.NewScanner(strings.NewReader("not json")), from, from)
	g.Expect(err).To(MatchError(ContainSubstring("not an event")))
}
