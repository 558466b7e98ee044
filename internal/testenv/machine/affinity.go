package machine

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// Pin restricts every thread of process pid to the CPUs cpus (all of this
// machine's when cpus is empty). Threads the process creates later inherit
// the set from the thread that creates them, so a process pinned once
// stays pinned. Benchmarks pin the processes of each cluster to CPUs of
// their own, as clusters on machines of their own would run.
func Pin(pid int, cpus ...int) error {
	var set unix.CPUSet
	if len(cpus) == 0 {
		for i := range runtime.NumCPU() {
			set.Set(i)
		}
	}
	for _, c := range cpus {
		if c < 0 || c >= runtime.NumCPU() {
			return fmt.Errorf("pinning process %d to CPU %d: this machine has CPUs 0 to %d", pid, c, runtime.NumCPU()-1)
		}
		set.Set(c)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("pinning process %d: listing its threads: %w", pid, err)
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		// A thread that ended since the listing is no error.
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pinning thread %d of process %d to CPUs %v: %w", tid, pid, cpus, err)
		}
	}
	return nil
}

// Affinity returns the CPUs thread tid may run on.
func Affinity(tid int) ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &set); err != nil {
		return nil, fmt.Errorf("reading the CPUs of thread %d: %w", tid, err)
	}
	var cpus []int
	for i := range runtime.NumCPU() {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}
