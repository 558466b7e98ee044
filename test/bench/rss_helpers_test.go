package bench

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/machine"
)

// rssSampleEvery is how often VmRSS is read where the high-water mark cannot
// be reset.
const rssSampleEvery = 50 * time.Millisecond

// rssPeak is the peak resident memory of a process during one phase of the
// run.
type rssPeak struct {
	Bytes int64
	// Sampled: the largest of VmRSS read every rssSampleEvery, which may miss
	// a shorter peak; otherwise the kernel's own high-water mark, reset at
	// the start of the phase, which misses nothing.
	Sampled bool
}

// String is the peak in MiB, marked when it was sampled.
func (p rssPeak) String() string {
	if p.Sampled {
		return fmt.Sprintf("%d (sampled)", p.Bytes>>20)
	}
	return fmt.Sprintf("%d", p.Bytes>>20)
}

// rssMeter measures the peak resident memory of a process from its start
// to its stop, rather than since the process started (VmHWM alone, which
// also holds the set-up and every earlier phase).
//
// It resets the process's high-water mark by writing "5" to
// /proc/<pid>/clear_refs (Linux 4.0 and later), then reads VmHWM at the
// stop. Checked on the benchmark machine (Linux 6.18, tests as root): the
// write is accepted for a child process the test started and VmHWM falls
// to VmRSS (207 MB after 200 MB mapped and unmapped, 2.5 MB after the
// reset). The kernel refuses the write for a process the caller may not
// trace or on kernels without type 5; then it samples VmRSS every
// rssSampleEvery instead and the report marks the figure as sampled. The
// managers run in the test's own cgroup, so cgroup memory would count the
// API servers too.
type rssMeter struct {
	pid     int
	sampled bool
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	max     int64
	samples int
	err     error
}

// startRSS starts measuring pid's peak resident memory; sample forces the
// sampling fallback (tests).
func startRSS(pid int, sample bool) *rssMeter {
	m := &rssMeter{pid: pid}
	if !sample {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err == nil {
			return m
		}
	}
	m.sampled, m.stop = true, make(chan struct{})
	m.read()
	m.done.Go(func() {
		tick := time.NewTicker(rssSampleEvery)
		defer tick.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
				m.read()
			}
		}
	})
	return m
}

// read takes one VmRSS sample.
func (m *rssMeter) read() {
	v, err := procStatus(m.pid, "VmRSS")
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if m.err == nil {
			m.err = err
		}
		return
	}
	m.max, m.samples = max(m.max, v), m.samples+1
}

// sampleCount is how many VmRSS samples were taken so far.
func (m *rssMeter) sampleCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.samples
}

// end stops the measurement and returns the peak since startRSS.
func (m *rssMeter) end() (rssPeak, error) {
	if !m.sampled {
		hwm, err := procStatus(m.pid, "VmHWM")
		return rssPeak{Bytes: hwm}, err
	}
	close(m.stop)
	m.done.Wait()
	m.read()
	m.mu.Lock()
	defer m.mu.Unlock()
	return rssPeak{Bytes: m.max, Sampled: true}, m.err
}

// busyMeter measures how busy the machine's CPUs are over a phase, from
// /proc/stat: a latency measured on saturated CPUs says more about the
// machine than about the code.
type busyMeter struct{ start machine.CPUTime }

func startBusy(t *testing.T) busyMeter {
	return busyMeter{allCPUs(t)}
}

// end returns the share of the CPUs' time spent busy since the start.
func (m busyMeter) end(t *testing.T) float64 {
	return allCPUs(t).BusySince(m.start)
}

// allCPUs is the time of every CPU together.
func allCPUs(t *testing.T) machine.CPUTime {
	cpus, err := machine.CPUTimes()
	if err != nil {
		t.Fatal(err)
	}
	var all machine.CPUTime
	for _, c := range cpus {
		all.Busy += c.Busy
		all.Total += c.Total
	}
	return all
}

// cpuOf is the CPU time so far of the processes pids, together.
func cpuOf(t *testing.T, pids ...int) time.Duration {
	var cpu time.Duration
	for _, pid := range pids {
		u, err := testenv.UsageOf(pid)
		if err != nil {
			t.Fatalf("CPU time of pid %d: %v", pid, err)
		}
		cpu += u.CPU
	}
	return cpu
}

// procStatus returns a field of /proc/<pid>/status given in kB, in bytes.
func procStatus(pid int, field string) (int64, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("%s: %s: %w", path, strings.TrimSpace(line), err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s has no %s line", path, field)
}
