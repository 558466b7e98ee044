package realnode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The machines these tests run on have a hybrid cgroup layout: every
// controller in its own v1 hierarchy under /sys/fs/cgroup, plus a v2
// "unified" mount. A node's kubelet gets a cgroupRoot of its own, created
// beforehand in every v1 hierarchy: with a shared one, a kubelet would clean
// up the pods of another. runc also makes the pod cgroups in the v2 mount,
// so cleaning walks every hierarchy, v1 and v2.

// cgroupHierarchies returns the mount points of the v1 cgroup hierarchies and
// of every hierarchy (v1 and v2).
func cgroupHierarchies() (v1, all []string, err error) {
	mounts, err := readMounts()
	if err != nil {
		return nil, nil, err
	}
	for _, m := range mounts {
		switch m.fsType {
		case "cgroup":
			v1 = append(v1, m.point)
			all = append(all, m.point)
		case "cgroup2":
			all = append(all, m.point)
		}
	}
	return slices.Compact(v1), slices.Compact(all), nil
}

// createCgroup makes the cgroup rel (e.g. "/stretch-srn3/system") in every
// v1 hierarchy. A new cpuset cgroup has no CPUs and memory nodes until they
// are copied from its parent.
func createCgroup(rel string) error {
	v1, _, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	if len(v1) == 0 {
		return fmt.Errorf("creating cgroup %s: no cgroup v1 hierarchy is mounted: this harness knows the hybrid layout of the CI machines only (see docs/design.md §6)", rel)
	}
	parts := strings.Split(strings.Trim(rel, "/"), "/")
	for _, h := range v1 {
		dir := h
		for _, p := range parts {
			parent := dir
			dir = filepath.Join(dir, p)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("creating cgroup %s: %w", dir, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				data, err := os.ReadFile(filepath.Join(parent, f))
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return fmt.Errorf("creating cgroup %s: %w", dir, err)
				}
				if strings.TrimSpace(string(data)) == "" {
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					return fmt.Errorf("creating cgroup %s: copying %s from %s: %w", dir, f, parent, err)
				}
			}
		}
	}
	return nil
}

// addToCgroup moves a process into the cgroup rel of every v1 hierarchy;
// the processes it starts later are born there.
func addToCgroup(rel string, pid int) error {
	v1, _, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range v1 {
		if err := os.WriteFile(filepath.Join(h, rel, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("moving pid %d into cgroup %s of %s: %w", pid, rel, h, err)
		}
	}
	return nil
}

// cgroupDirs returns the directories of cgroup rel and of its descendants
// in every hierarchy, deepest first.
func cgroupDirs(rel string) ([]string, error) {
	_, all, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, h := range all {
		root := filepath.Join(h, rel)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
					return fs.SkipDir
				}
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing cgroup %s: %w", root, err)
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs, nil
}

// cgroupPIDs returns every process in cgroup rel or below, in any hierarchy.
func cgroupPIDs(rel string) ([]int, error) {
	dirs, err := cgroupDirs(rel)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			// A cgroup that the runtime is removing answers ENODEV
			// (cgroup v1) before it disappears: it holds no process.
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
				continue
			}
			return nil, err
		}
		for f := range strings.FieldsSeq(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// killCgroup SIGKILLs every process in cgroup rel or below until none is
// left: containers, shims, and whatever they forked.
func killCgroup(rel string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := cgroupPIDs(rel)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v are still in cgroup %s %s after SIGKILL: see 'ps -o pid,stat,cmd -p %s'",
				pids, rel, timeout, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(pids)), ","), "[]"))
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeCgroup removes cgroup rel and its descendants from every hierarchy;
// they must hold no process.
func removeCgroup(rel string) error {
	dirs, err := cgroupDirs(rel)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		// A cgroup just emptied can be busy for a moment.
		var err error
		for range 50 {
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) || !errors.Is(err, syscall.EBUSY) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
