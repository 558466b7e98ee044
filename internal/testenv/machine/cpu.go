package machine

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPUTime is one CPU's time since boot, in clock ticks (/proc/stat).
type CPUTime struct {
	// Busy is every state but idle and iowait.
	Busy, Total uint64
}

// BusySince is the share of the time since prev that the CPU was busy,
// from 0 to 1.
func (c CPUTime) BusySince(prev CPUTime) float64 {
	if c.Total <= prev.Total {
		return 0
	}
	return float64(c.Busy-prev.Busy) / float64(c.Total-prev.Total)
}

// CPUTimes returns the time of each CPU, by number.
func CPUTimes() ([]CPUTime, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, fmt.Errorf("reading the CPUs' times: %w", err)
	}
	return parseCPUTimes(string(data))
}

// parseCPUTimes reads the cpuN lines of /proc/stat: user nice system idle
// iowait irq softirq steal… ticks.
func parseCPUTimes(stat string) ([]CPUTime, error) {
	var out []CPUTime
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil || n != len(out) {
			return nil, fmt.Errorf("/proc/stat: unexpected line %q", line)
		}
		var c CPUTime
		for i, v := range f[1:] {
			ticks, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/stat: %q in line %q: %w", v, line, err)
			}
			c.Total += ticks
			if i != 3 && i != 4 { // idle, iowait
				c.Busy += ticks
			}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("/proc/stat lists no CPU")
	}
	return out, nil
}
