package realnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// mount is one line of /proc/self/mountinfo.
type mount struct {
	point     string
	fsType    string
	superOpts []string
}

// parseMountinfo reads the format of proc(5) /proc/PID/mountinfo: the mount
// point is field 5, the fields after " - " are the type, the source and the
// super options.
func parseMountinfo(data string) ([]mount, error) {
	var mounts []mount
	for line := range strings.SplitSeq(data, "\n") {
		if line == "" {
			continue
		}
		before, after, ok := strings.Cut(line, " - ")
		fields, tail := strings.Fields(before), strings.Fields(after)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			return nil, fmt.Errorf("mountinfo line %q: want 'ID PARENT MAJ:MIN ROOT POINT ... - TYPE SOURCE OPTIONS'", line)
		}
		mounts = append(mounts, mount{
			point:     unescapeMountinfo(fields[4]),
			fsType:    tail[0],
			superOpts: strings.Split(tail[2], ","),
		})
	}
	return mounts, nil
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) of a path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readMounts() ([]mount, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountinfo(string(data))
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(mounts []mount, dir string) []string {
	dir = filepath.Clean(dir)
	var points []string
	for _, m := range mounts {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			points = append(points, m.point)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(points)
}

// unmountUnder detaches every mount at or below dir: the container root
// filesystems, shm and network namespaces of containerd and the volumes of
// the kubelet. A mount point can be stacked, so it repeats until none is left.
func unmountUnder(dir string) error {
	for range 10 {
		mounts, err := readMounts()
		if err != nil {
			return err
		}
		points := mountsUnder(mounts, dir)
		if len(points) == 0 {
			return nil
		}
		var errs []error
		for _, p := range points {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	return fmt.Errorf("mounts are still left under %s after 10 rounds of unmounting: see 'grep %s /proc/self/mountinfo'", dir, dir)
}
