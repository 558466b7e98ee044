package machine

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// ProcessRunning reports whether pid is a live process (not a zombie).
func ProcessRunning(pid int) bool {
	_, running := ProcessStart(pid)
	return pid > 0 && running
}

// ProcessStart returns the start time of a live (not zombie) process, in
// clock ticks since boot: with the pid, it tells a recycled pid apart.
func ProcessStart(pid int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	// Fields after the command, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return "", false
	}
	return fields[19], true
}

// Tail returns the last n lines of a log, for errors.
func Tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
