package kwok

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// auditPolicy records every write at the Metadata level (who, what, the
// answer's code) once answered, and nothing else: reads would swamp the
// log, and the bodies are not needed to tell who sends what.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted, Panic]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
`

// auditVerbs turns the audit log's verbs into those of the API server's
// apiserver_request_total, as testenv.Writes keys them. A server-side
// apply is a patch in the audit log, APPLY in the metric.
var auditVerbs = map[string]string{"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE", "deletecollection": "DELETECOLLECTION"}

// writeAuditPolicy writes the policy into the cluster's directory and
// returns its path, for kwokctl's kubeAuditPolicy.
func (c *Cluster) writeAuditPolicy() (string, error) {
	path := filepath.Join(c.root, "audit-policy.yaml")
	return path, os.WriteFile(path, []byte(auditPolicy), 0o644)
}

// auditEvent is what AuditedWrites reads of an audit.k8s.io/v1 Event.
type auditEvent struct {
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
}

// AuditedWrites returns the write requests the API server received from
// from until to, by request as testenv.Writes keys them ("VERB
// resource[/subresource]", " (<code>)" when refused), then by sender: the
// program of its user agent and its user ("kube-controller-manager as
// system:kube-controller-manager"). The cluster must have been started
// with Options.AuditWrites.
func (c *Cluster) AuditedWrites(from, to time.Time) (map[string]map[string]int64, error) {
	if !c.opts.AuditWrites {
		return nil, fmt.Errorf("kwok cluster %s was started without Options.AuditWrites: its API server keeps no audit log", c.Name)
	}
	f, err := os.Open(filepath.Join(c.clusterDir, "logs", "audit.log"))
	if err != nil {
		return nil, fmt.Errorf("reading the audit log of kwok cluster %s: %w", c.Name, err)
	}
	defer f.Close()
	return auditedWrites(bufio.NewScanner(f), from, to)
}

func auditedWrites(lines *bufio.Scanner, from, to time.Time) (map[string]map[string]int64, error) {
	lines.Buffer(make([]byte, 0, 64<<10), 4<<20)
	out := map[string]map[string]int64{}
	for lines.Scan() {
		var e auditEvent
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("an audit log line is not an event: %w", err)
		}
		verb, ok := auditVerbs[e.Verb]
		if !ok || e.ObjectRef == nil || e.RequestReceivedTimestamp.Before(from) || !e.RequestReceivedTimestamp.Before(to) {
			continue
		}
		key := verb + " " + e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			key += "/" + e.ObjectRef.Subresource
		}
		if e.ResponseStatus != nil && (e.ResponseStatus.Code < 200 || e.ResponseStatus.Code > 299) {
			key += " (" + strconv.Itoa(e.ResponseStatus.Code) + ")"
		}
		if out[key] == nil {
			out[key] = map[string]int64{}
		}
		out[key][sender(e.UserAgent, e.User.Username)]++
	}
	return out, lines.Err()
}

// sender names a client by the program of its user agent ("kwok/v0.8.0
// (linux/amd64) ..." is kwok) and its user.
func sender(userAgent, user string) string {
	program, _, _ := strings.Cut(userAgent, "/")
	if program == "" {
		program = "unknown"
	}
	return program + " as " + user
}
