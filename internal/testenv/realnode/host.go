package realnode

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// The hosts' network: every Host has one leg (a veth) on lanBridge, a bridge
// of the initial network namespace with no uplink, in lanSubnet. The
// machine itself (the tests, the demo, kubectl) holds lanGateway there, so it
// reaches every host; hosts reach each other directly on the bridge.
// lanSubnet is the /24 that leaseCount keeps out of the leases.
var (
	lanSubnet  = subnet24(18, 255)
	lanGateway = hostAddr(18, 255, 254)
)

const (
	lanBridge = linkPrefix + "lan"
	// lanLock is shared by every holder of a Host: whoever takes it
	// exclusively is the last one and may delete lanBridge.
	lanLock = "lan.lock"
	// hostInterface is the name of a host's leg inside its namespace.
	hostInterface = "eth0"
	// nsenterPath runs a command in a host's network namespace only: 'ip
	// netns exec' would also remount /sys, and hide the cgroup
	// hierarchies the kubelet and runc need.
	nsenterPath = "/usr/bin/nsenter"
	netnsDir    = "/run/netns"
)

// lanAddr is the address on the LAN of the host of lease index.
func lanAddr(index int) netip.Addr {
	return hostAddr(18, 255, index+1)
}

// Host is a network namespace that stands for one machine: a cluster's
// control plane, its kube-proxy and its nodes (containerd, kubelet, pods)
// run in it. It has one address on the LAN, no default route (so nothing
// leaves this machine), and iptables of its own, so that kube-proxy's and
// the kubelet's rules stay inside it and a test can cut its links.
type Host struct {
	// Name is the network namespace, e.g. srn3 (/run/netns/srn3).
	Name string
	// Addr is the host's address on the LAN: what other hosts and this
	// machine reach it at.
	Addr netip.Addr

	lease *lease
	lan   *os.File

	mu    sync.Mutex
	proxy *component
	cut   map[netip.Addr]bool
}

// newHost creates the network namespace of lease l and plugs it into the
// LAN. The namespace and the LAN leg are recorded in the lease, which
// removes them.
func newHost(l *lease) (*Host, error) {
	h := &Host{Name: l.link(""), Addr: lanAddr(l.index), lease: l, cut: map[netip.Addr]bool{}}
	if _, err := os.Stat(nsenterPath); err != nil {
		return nil, fmt.Errorf("%w: install util-linux, which has nsenter", err)
	}
	var err error
	if h.lan, err = joinLAN(); err != nil {
		return nil, err
	}
	leg := l.link("h")
	if err := l.record(func(r *resources) {
		r.Netns = append(r.Netns, h.Name)
		r.Links = append(r.Links, leg)
	}); err != nil {
		return nil, errors.Join(err, h.leaveLAN())
	}
	steps := [][]string{
		{"netns", "add", h.Name},
		{"link", "add", leg, "type", "veth", "peer", "name", hostInterface, "netns", h.Name},
		{"link", "set", leg, "master", lanBridge, "up"},
		{"-n", h.Name, "addr", "add", netip.PrefixFrom(h.Addr, lanSubnet.Bits()).String(), "dev", hostInterface},
		{"-n", h.Name, "link", "set", hostInterface, "up"},
		{"-n", h.Name, "link", "set", "lo", "up"},
	}
	for _, args := range steps {
		if err := ipCommand(args...); err != nil {
			return nil, errors.Join(err, h.leaveLAN())
		}
	}
	// Pods reach other hosts through the host's leg (the CNI bridge
	// masquerades them), and Services through kube-proxy's rules, which
	// bridged traffic between two pods of a node only meets with
	// bridge-nf-call-iptables (per namespace since Linux 5.3).
	for _, sysctl := range []string{"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"} {
		if err := h.run("sh", "-c", "echo 1 > /proc/sys/"+sysctl); err != nil {
			return nil, errors.Join(err, h.leaveLAN())
		}
	}
	return h, nil
}

// joinLAN takes the LAN lock shared and creates the LAN bridge if it is
// absent. Under the shared lock nobody deletes it.
func joinLAN() (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(leaseDir, lanLock), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", lanBridge)); err == nil {
		return f, nil
	}
	// Two processes may both find it missing: the second 'add' fails with
	// "File exists", and the address and the 'up' are idempotent.
	if out, err := exec.Command("ip", "link", "add", "name", lanBridge, "type", "bridge").CombinedOutput(); err != nil && !strings.Contains(string(out), "File exists") {
		f.Close()
		return nil, fmt.Errorf("ip link add %s: %w: %s", lanBridge, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "addr", "replace", netip.PrefixFrom(lanGateway, lanSubnet.Bits()).String(), "dev", lanBridge).CombinedOutput(); err != nil {
		f.Close()
		return nil, fmt.Errorf("ip addr replace on %s: %w: %s", lanBridge, err, strings.TrimSpace(string(out)))
	}
	if err := ipCommand("link", "set", lanBridge, "up"); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// leaveLAN gives the shared LAN lock back, and deletes the LAN bridge when
// no other host holds it. Safe to call twice.
func (h *Host) leaveLAN() error {
	if h.lan == nil {
		return nil
	}
	f := h.lan
	h.lan = nil
	defer f.Close()
	// Converting a shared lock to an exclusive one is not atomic: in
	// between, another process may take it shared, and then the bridge
	// stays, which is right.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil
	}
	return deleteLink(lanBridge)
}

// command returns cmd with args, to run in the host's network namespace.
func (h *Host) command(name string, args ...string) *exec.Cmd {
	return exec.Command(nsenterPath, append([]string{"--net=" + filepath.Join(netnsDir, h.Name), "--", name}, args...)...)
}

// run runs a command in the host's network namespace.
func (h *Host) run(name string, args ...string) error {
	if out, err := h.command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s in host %s: %w: %s", name, strings.Join(args, " "), h.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cutRules are the rules that drop every packet between the host (its own
// processes and its pods) and peer.
func cutRules(peer netip.Addr) [][]string {
	comment := []string{"-m", "comment", "--comment", "stretch realnode: link cut"}
	var rules [][]string
	for _, r := range [][]string{
		{"INPUT", "-s", peer.String()},
		{"OUTPUT", "-d", peer.String()},
		{"FORWARD", "-s", peer.String()},
		{"FORWARD", "-d", peer.String()},
	} {
		rules = append(rules, append(append(r, comment...), "-j", "DROP"))
	}
	return rules
}

// Cut drops every packet between this host and the peers, both ways, as a
// broken link would: no reset, no ICMP, open connections hang. Other links
// (this machine's, other hosts') are untouched.
func (h *Host) Cut(peers ...*Host) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range peers {
		if h.cut[p.Addr] {
			continue
		}
		for _, rule := range cutRules(p.Addr) {
			if err := h.run("iptables", append([]string{"-w", "-I"}, rule...)...); err != nil {
				return fmt.Errorf("cutting host %s from %s: %w", h.Name, p.Name, err)
			}
		}
		h.cut[p.Addr] = true
	}
	return nil
}

// Heal restores the links that Cut dropped.
func (h *Host) Heal(peers ...*Host) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range peers {
		if !h.cut[p.Addr] {
			continue
		}
		for _, rule := range cutRules(p.Addr) {
			if err := h.run("iptables", append([]string{"-w", "-D"}, rule...)...); err != nil {
				return fmt.Errorf("healing the link of host %s to %s: %w", h.Name, p.Name, err)
			}
		}
		delete(h.cut, p.Addr)
	}
	return nil
}

// Route routes, in this host, each prefix to the host peer over the LAN, as
// a multi-cluster network (a mesh, or routes an operator adds) would: this
// host's processes and pods then reach the addresses of peer's pods, and
// their answers come back (the pods' own CNI masquerades what leaves them,
// so peer needs no route back for that). The routes are recorded in this
// host's lease and removed with it.
func (h *Host) Route(peer *Host, prefixes ...netip.Prefix) error {
	for _, p := range prefixes {
		r := recordedRoute{Netns: h.Name, Dst: p.Masked().String(), Via: peer.Addr.String()}
		if err := h.lease.record(func(res *resources) { res.Routes = append(res.Routes, r) }); err != nil {
			return err
		}
		if err := ipCommand(r.args("add")...); err != nil {
			return fmt.Errorf("routing %s to host %s in host %s: %w", p, peer.Name, h.Name, err)
		}
	}
	return nil
}

// CutFrom lists the hosts' addresses this host is cut from.
func (h *Host) CutFrom() []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []netip.Addr
	for a := range h.cut {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// kubeProxy returns the host's kube-proxy, nil before its first node.
func (h *Host) kubeProxy() *component {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proxy
}

// release stops the host's kube-proxy, removes the namespace (with every
// link, route and rule in it) and leaves the LAN.
func (h *Host) release() error {
	return errors.Join(h.kubeProxy().stop(stopGrace), h.lease.release(), h.leaveLAN())
}

// deleteNetns deletes a network namespace; a missing one is not an error.
func deleteNetns(name string) error {
	out, err := exec.Command("ip", "netns", "del", name).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
