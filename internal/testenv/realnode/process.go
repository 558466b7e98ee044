package realnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
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
