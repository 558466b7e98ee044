package realnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"stretch.dev/stretch/internal/testenv/machine"
)

// The addresses of the real nodes and their control planes. 198.18.0.0/15 is
// set aside for benchmarks (RFC 2544): it is not the VM's network
// (192.0.2.0/24), nor its resolver (10.255.255.53), nor a private range a
// user's network might route. A lease is one /24 of 198.18.0.0/16 and the /24
// at the same place in 198.19.0.0/16; the last three /24s of 198.18.0.0/16
// are not leased: 198.18.255.0/24 is the hosts' LAN (see Host), and a
// lease's LAN address is 198.18.255.<index+1>, below the machine's .254.
const (
	leaseCount = 253
	// leaseDir holds the lock and the record of every lease; /run is a
	// tmpfs, so nothing outlives a reboot that also ended the processes.
	leaseDir = "/run/stretch-realnode"
	// linkPrefix starts the name of every link this package creates:
	// srn<lease><role>.
	linkPrefix = "srn"
)

// subnet24 returns 198.<second>.<index>.0/24.
func subnet24(second, index int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, byte(second), byte(index), 0}), 24)
}

// hostAddr returns the address 198.<second>.<index>.<host>.
func hostAddr(second, index, host int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, byte(second), byte(index), byte(host)})
}

// lease is a /24 that this process holds through an flock, and the record of
// what was created with it, so that whoever takes the lease next cleans up
// after a process that died.
type lease struct {
	index int
	lock  *os.File

	mu  sync.Mutex
	res resources
}

// resources are what a node or a control plane created on the machine.
type resources struct {
	Processes []recordedProcess `json:"processes,omitempty"`
	// Cgroups are relative to every hierarchy, e.g. /stretch-srn3.
	Cgroups []string `json:"cgroups,omitempty"`
	// Links are deleted: a name in the initial network namespace, or
	// <namespace>/<name> for a link inside a host.
	Links []string `json:"links,omitempty"`
	// Routes are routes added inside a host, deleted before its namespace
	// (which would take them along, but a host may outlive them).
	Routes []recordedRoute `json:"routes,omitempty"`
	// Netns are network namespaces (hosts) to delete, after their links.
	Netns []string `json:"netns,omitempty"`
	// Dirs are unmounted below and removed.
	Dirs []string `json:"dirs,omitempty"`
	// Mentions are shared directories whose entries that name one of Dirs
	// are removed: symlinks into them (the kubelet's /var/log/containers)
	// and files holding their path (libcni's result cache, which names the
	// network namespace).
	Mentions []string `json:"mentions,omitempty"`
}

// recordedRoute is a route to Dst via Via in the network namespace Netns.
type recordedRoute struct {
	Netns string `json:"netns"`
	Dst   string `json:"dst"`
	Via   string `json:"via"`
}

// args are the arguments of 'ip' that select the route, after the verb
// ("route add", "route del", "route show").
func (r recordedRoute) args(verb string) []string {
	return []string{"-n", r.Netns, "route", verb, r.Dst, "via", r.Via}
}

// recordedProcess identifies a process; the start time tells a recycled pid
// apart.
type recordedProcess struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Start string `json:"start"`
}

// acquireLease takes the first free /24. Leftovers of an earlier holder that
// died are cleaned first.
func acquireLease(logf Logf) (*lease, error) {
	if err := os.MkdirAll(leaseDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w (the real nodes need root)", leaseDir, err)
	}
	for i := range leaseCount {
		f, err := os.OpenFile(filepath.Join(leaseDir, fmt.Sprintf("net-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("opening the lock of subnet %s: %w", subnet24(18, i), err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		l := &lease{index: i, lock: f}
		if err := l.cleanLeftovers(logf); err != nil {
			l.unlock()
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("all %d subnets of 198.18.0.0/16 are held by running tests or demos (locks in %s): stop some of them", leaseCount, leaseDir)
}

func (l *lease) recordPath() string {
	return filepath.Join(leaseDir, fmt.Sprintf("net-%d.json", l.index))
}

// link names a link of this lease: srn<index><role>.
func (l *lease) link(role string) string {
	return fmt.Sprintf("%s%d%s", linkPrefix, l.index, role)
}

func (l *lease) cleanLeftovers(logf Logf) error {
	var res resources
	data, err := os.ReadFile(l.recordPath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(data, &res); err != nil {
			return fmt.Errorf("reading %s: %w: remove it by hand", l.recordPath(), err)
		}
		logf("realnode: cleaning what a dead process left with subnet %s: %s", subnet24(18, l.index), strings.TrimSpace(string(data)))
	}
	// Whatever recorded them, the namespace and the LAN leg of this
	// lease are stale now.
	res.Links = append(res.Links, l.link("h"))
	res.Netns = append(res.Netns, l.link(""))
	if err := res.clean(); err != nil {
		return fmt.Errorf("cleaning what an earlier test left with subnet %s: %w", subnet24(18, l.index), err)
	}
	return os.RemoveAll(l.recordPath())
}

// record adds to the lease's record, and writes it before the thing it
// describes is created, so that a crash right after leaves no orphan.
func (l *lease) record(add func(*resources)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	add(&l.res)
	data, err := json.Marshal(l.res)
	if err != nil {
		return err
	}
	tmp := l.recordPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, l.recordPath())
}

// recordProcess records a started process.
func (l *lease) recordProcess(name string, pid int) error {
	start, _ := machine.ProcessStart(pid)
	return l.record(func(r *resources) {
		r.Processes = append(r.Processes, recordedProcess{Name: name, PID: pid, Start: start})
	})
}

// release cleans everything recorded and gives the /24 back. Safe to call
// twice.
func (l *lease) release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lock == nil {
		return nil
	}
	if err := l.res.clean(); err != nil {
		// Keep the record: the next holder of the lease tries again.
		return fmt.Errorf("cleaning subnet %s: %w", subnet24(18, l.index), err)
	}
	if err := os.RemoveAll(l.recordPath()); err != nil {
		return err
	}
	l.unlock()
	return nil
}

func (l *lease) unlock() {
	if l.lock != nil {
		_ = l.lock.Close() // closing releases the flock
		l.lock = nil
	}
}

// clean removes every recorded resource; what is already gone is skipped.
func (r resources) clean() error {
	var errs []error
	for _, p := range r.Processes {
		if start, ok := machine.ProcessStart(p.PID); ok && start == p.Start {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	for _, cg := range r.Cgroups {
		if err := killCgroup(cg, 30*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range r.Processes {
		if err := waitGone(p, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range r.Dirs {
		if err := unmountUnder(d); err != nil {
			errs = append(errs, err)
		}
	}
	for _, cg := range r.Cgroups {
		if err := removeCgroup(cg); err != nil {
			errs = append(errs, err)
		}
	}
	for _, link := range r.Links {
		if err := deleteLink(link); err != nil {
			errs = append(errs, err)
		}
	}
	for _, route := range r.Routes {
		if err := deleteRoute(route); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range r.Netns {
		if err := deleteNetns(ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range r.Mentions {
		for _, m := range mentioning(d, r.Dirs) {
			if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		// Removing a directory with a mount left inside would delete
		// the files of what is mounted there.
		return errors.Join(errs...)
	}
	for _, d := range r.Dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// leftovers describes every recorded resource still on the machine.
func (l *lease) leftovers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res.present()
}

// present describes every resource still on the machine.
func (r resources) present() []string {
	var out []string
	for _, p := range r.Processes {
		if start, ok := machine.ProcessStart(p.PID); ok && start == p.Start {
			out = append(out, fmt.Sprintf("process %s (pid %d)", p.Name, p.PID))
		}
	}
	for _, cg := range r.Cgroups {
		if dirs, err := cgroupDirs(cg); err != nil || len(dirs) > 0 {
			out = append(out, fmt.Sprintf("cgroup %s: %d directories (%v)", cg, len(dirs), err))
		}
	}
	for _, link := range r.Links {
		if linkExists(link) {
			out = append(out, "link "+link)
		}
	}
	for _, route := range r.Routes {
		if routeExists(route) {
			out = append(out, fmt.Sprintf("route to %s via %s in %s", route.Dst, route.Via, route.Netns))
		}
	}
	for _, ns := range r.Netns {
		if _, err := os.Lstat(filepath.Join(netnsDir, ns)); err == nil {
			out = append(out, "network namespace "+ns)
		}
	}
	mounts, err := readMounts()
	if err != nil {
		out = append(out, err.Error())
	}
	for _, d := range r.Dirs {
		for _, m := range mountsUnder(mounts, d) {
			out = append(out, "mount "+m)
		}
		if _, err := os.Lstat(d); err == nil {
			out = append(out, "directory "+d)
		}
	}
	for _, d := range r.Mentions {
		for _, m := range mentioning(d, r.Dirs) {
			out = append(out, "file "+m)
		}
	}
	return out
}

// mentioning returns the entries of dir that name one of dirs: symlinks
// into them, and small files that hold their path.
func mentioning(dir string, dirs []string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil {
			continue
		}
		var text string
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			text, _ = os.Readlink(p)
		case info.Mode().IsRegular() && info.Size() < 1<<20:
			data, _ := os.ReadFile(p)
			text = string(data)
		default:
			continue
		}
		for _, d := range dirs {
			if strings.Contains(text, filepath.Clean(d)+"/") {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// waitGone waits until a recorded process has exited (and been reaped).
func waitGone(p recordedProcess, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		start, ok := machine.ProcessStart(p.PID)
		if !ok || start != p.Start {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) still runs %s after SIGKILL", p.Name, p.PID, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ipCommand runs ip(8) and returns its error with its output.
func ipCommand(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// addBridge creates a bridge holding addr inside host: no port, no uplink.
// The dummy link type is not available on these machines.
func addBridge(host *Host, name string, addr netip.Prefix) error {
	if err := ipCommand("-n", host.Name, "link", "add", "name", name, "type", "bridge"); err != nil {
		return err
	}
	if err := ipCommand("-n", host.Name, "addr", "add", addr.String(), "dev", name); err != nil {
		return err
	}
	return ipCommand("-n", host.Name, "link", "set", name, "up")
}

// linkArgs splits a recorded link, name or <namespace>/<name>, into the
// arguments of ip(8) that select it.
func linkArgs(link string) (nsArgs []string, name string) {
	if ns, name, ok := strings.Cut(link, "/"); ok {
		return []string{"-n", ns}, name
	}
	return nil, link
}

// deleteLink deletes a recorded link; a missing link, or a missing
// namespace (which took its links with it), is not an error.
func deleteLink(link string) error {
	nsArgs, name := linkArgs(link)
	args := append(nsArgs, "link", "del", name)
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Cannot find device") && !strings.Contains(string(out), "Cannot open network namespace") {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// deleteRoute deletes a recorded route; a missing route, or a missing
// namespace (which took its routes with it), is not an error.
func deleteRoute(r recordedRoute) error {
	out, err := exec.Command("ip", r.args("del")...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such process") && !strings.Contains(string(out), "Cannot open network namespace") {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(r.args("del"), " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// routeExists reports whether a recorded route is still there.
func routeExists(r recordedRoute) bool {
	out, err := exec.Command("ip", "-n", r.Netns, "route", "show", r.Dst, "via", r.Via).Output()
	return err == nil && strings.TrimSpace(string(out)) != ""
}

// linkExists reports whether a recorded link is still there.
func linkExists(link string) bool {
	nsArgs, name := linkArgs(link)
	return exec.Command("ip", append(nsArgs, "link", "show", "dev", name)...).Run() == nil
}
