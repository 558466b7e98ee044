package kwok

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"stretch.dev/stretch/internal/testenv/machine"
)

// process identifies a component process; the start time tells a
// recycled pid apart.
type process struct {
	pid   int
	start string
}

// PIDs returns the pid of every component process, by component name
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kwok-controller).
func (c *Cluster) PIDs() map[string]int {
	pids := make(map[string]int, len(c.procs))
	for name, p := range c.procs {
		pids[name] = p.pid
	}
	return pids
}

// Pin restricts every component process to the CPUs cpus (all CPUs when
// empty): see machine.Pin.
func (c *Cluster) Pin(cpus ...int) error {
	for name, p := range c.procs {
		if err := machine.Pin(p.pid, cpus...); err != nil {
			return fmt.Errorf("cluster %s, %s: %w", c.Name, name, err)
		}
	}
	return nil
}

// Running returns the components whose process still runs.
func (c *Cluster) Running() []string {
	var names []string
	for name, p := range c.procs {
		if start, ok := machine.ProcessStart(p.pid); ok && start == p.start {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// ResidentMemory returns the resident memory (VmRSS) of all components, in bytes.
func (c *Cluster) ResidentMemory() (int64, error) {
	var total int64
	for name, p := range c.procs {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
		if err != nil {
			return 0, fmt.Errorf("memory of %s: %w", name, err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("memory of %s: %q: %w", name, line, err)
				}
				total += kb << 10
			}
		}
	}
	return total, nil
}

// findProcesses finds the processes whose executable lies in binDir.
func findProcesses(binDir string) map[string]process {
	procs := map[string]process{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		arg0, _, _ := bytes.Cut(data, []byte{0})
		if filepath.Dir(string(arg0)) != binDir {
			continue
		}
		if start, ok := machine.ProcessStart(pid); ok {
			procs[filepath.Base(string(arg0))] = process{pid: pid, start: start}
		}
	}
	return procs
}

// KillAPIServer kills the cluster's kube-apiserver as a crash would
// (SIGKILL) and returns what starts it again: the same command line,
// environment and directory, its output appended to its log, its pid file
// updated so that Stop and 'kwokctl delete' find it. Until then clients get
// "connection refused".
func (c *Cluster) KillAPIServer() (restart func() error, err error) {
	const name = "kube-apiserver"
	p, ok := c.procs[name]
	if !ok {
		return nil, fmt.Errorf("kwok cluster %s has no %s", c.Name, name)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
	if err != nil {
		return nil, fmt.Errorf("command line of %s: %w", name, err)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid))
	if err != nil {
		return nil, fmt.Errorf("environment of %s: %w", name, err)
	}
	dir, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.pid))
	if err != nil {
		return nil, fmt.Errorf("directory of %s: %w", name, err)
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("killing %s: %w", name, err)
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		start, running := machine.ProcessStart(p.pid)
		return !running || start != p.start, nil
	}); err != nil {
		return nil, fmt.Errorf("%s (pid %d) still runs after SIGKILL", name, p.pid)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	env := strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00")
	return func() error {
		log, err := os.OpenFile(filepath.Join(c.clusterDir, "logs", name+".log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer log.Close()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, dir, log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // as kwokctl's, apart from the test's signals
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s again: %w", name, err)
		}
		go func() { _ = cmd.Wait() }()
		start, _ := machine.ProcessStart(cmd.Process.Pid)
		c.procs[name] = process{pid: cmd.Process.Pid, start: start}
		return os.WriteFile(filepath.Join(c.clusterDir, "pids", name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	}, nil
}
