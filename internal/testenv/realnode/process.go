package realnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"stretch.dev/stretch/internal/testenv/machine"
)

// component is a process this package started, with its output in a log
// file.
type component struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // the exit, set when done is closed
}

// startComponent starts bin with args in host's network namespace, its
// stdout and stderr appended to logPath, and records it in the lease before
// it can fork anything. nsenter execs bin in place: the pid is bin's.
func startComponent(l *lease, host *Host, name, logPath string, env []string, bin string, args ...string) (*component, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := host.command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = env
	// Its own process group: a ^C of the test does not reach it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &component{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := l.recordProcess(name, cmd.Process.Pid); err != nil {
		_ = c.stop(0)
		return nil, err
	}
	return c, nil
}

// pid returns the process id.
func (c *component) pid() int { return c.cmd.Process.Pid }

// exited returns the exit error once the process has ended.
func (c *component) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM, and SIGKILL after grace. A process that already ended
// is not an error: what matters is that it is gone.
func (c *component) stop(grace time.Duration) error {
	if c == nil {
		return nil
	}
	if done, _ := c.exited(); done {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
	}
	_ = c.cmd.Process.Kill()
	select {
	case <-c.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", c.name, c.pid())
	}
}

// failure describes a component that exited during a start, with its log.
func (c *component) failure() error {
	done, err := c.exited()
	if !done {
		return nil
	}
	if err == nil {
		err = errors.New("exit status 0")
	}
	return fmt.Errorf("%s exited: %w\n%s", c.name, err, c.logTail())
}

// logTail returns the last lines of the log, indented, for errors.
func (c *component) logTail() string {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return fmt.Sprintf("  (no log %s: %v)", c.logPath, err)
	}
	return fmt.Sprintf("  last lines of %s:\n%s", c.logPath, indent(machine.Tail(data, logTailLines)))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// describe says whether the component runs, or how it ended, and gives the
// last n lines of its log that contain one of words (any line when there
// are none): what a failing test prints about it.
func (c *component) describe(n int, words ...string) string {
	state := fmt.Sprintf("%s (pid %d) is running", c.name, c.pid())
	if done, err := c.exited(); done {
		state = fmt.Sprintf("%s (pid %d) exited: %v", c.name, c.pid(), err)
	}
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return fmt.Sprintf("%s; no log %s: %v", state, c.logPath, err)
	}
	var kept []string
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if len(words) == 0 || slices.ContainsFunc(words, func(w string) bool { return strings.Contains(line, w) }) {
			kept = append(kept, line)
		}
	}
	return fmt.Sprintf("%s; last %d of %d lines of %s with %q:\n%s", state, min(n, len(kept)), len(kept), c.logPath, words, indent(strings.Join(kept[max(0, len(kept)-n):], "\n")))
}
