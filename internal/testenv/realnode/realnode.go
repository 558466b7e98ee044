// Package realnode runs real Kubernetes clusters on this machine for the
// tests and the demo: a control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler), kube-proxy, and nodes that each
// have their own containerd (with Debian's runc and the pinned CNI plugins)
// and kubelet. It also builds the images the nodes run from Go, since no
// registry can be reached.
//
// Every cluster lives on a Host: a network namespace that stands for a
// machine of its own, with one address on a LAN bridge of this machine
// (198.18.255.0/24), its own pod and Service ranges, its own iptables, and
// no default route, so no traffic leaves the machine. The API server listens
// on the host's LAN address, which is what issued kubeconfigs carry; a test
// cuts and heals the link between two hosts with iptables (Host.Cut).
//
// Every address is in 198.18.0.0/15 (RFC 2544, a benchmark range). A control
// plane or a node holds a /24 of 198.18.0.0/16 (and the /24 at the same
// place in 198.19.0.0/16) through a lock file, so that concurrent tests never
// collide. What it starts is recorded next to that lock, and is cleaned
// (processes, mounts, cgroups, links, namespaces) by Stop, or by the next
// process that takes the /24 when the one that held it died.
//
// It does not import testing: programs such as the demo use it too. It needs
// root, the binaries of 'make tools' in bin/ (kubelet, kube-proxy,
// containerd, ctr, containerd-shim-runc-v2, bin/cni/*), /usr/bin/runc,
// iptables and nsenter.
package realnode

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	// defaultTimeout bounds the start of a node or a control plane.
	defaultTimeout = 3 * time.Minute
	// stopGrace is how long a component may take to exit after SIGTERM.
	stopGrace = 10 * time.Second
	// pollInterval is how often a start polls for readiness.
	pollInterval = 250 * time.Millisecond
	// logTailLines is how many lines of a component log an error carries.
	logTailLines = 20
)

// Logf receives progress lines, e.g. t.Logf.
type Logf func(format string, args ...any)

func (l Logf) orDiscard() Logf {
	if l == nil {
		return func(string, ...any) {}
	}
	return l
}

// residentMemory returns the resident memory (VmRSS) of a process in bytes.
func residentMemory(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of pid %d: %q: %w", pid, line, err)
			}
			return kb << 10, nil
		}
	}
	// Kernel threads and zombies have no VmRSS.
	return 0, nil
}
