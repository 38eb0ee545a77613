package soak_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/mountinfo"
)

// cgroupParents lists the directories of the cgroup parent in every mounted
// hierarchy where it exists: the v1 memory, pids, cpu and cpuacct hierarchies or the
// v2 unified one, as internal/cgroup makes them (<mount point>/<parent>), and any
// other hierarchy, in case the runner strays there.
func cgroupParents(t testing.TB, parent string) []string {
	t.Helper()
	mounts, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, m := range mounts {
		if m.FSType != "cgroup" && m.FSType != "cgroup2" {
			continue
		}
		dir := filepath.Join(m.Point, parent)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() && !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	slices.Sort(dirs)
	return dirs
}

// cgroupsUnder lists every cgroup below the parent dirs, nested ones included.
func cgroupsUnder(parents []string) []string {
	var out []string
	for _, p := range parents {
		_ = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && path != p {
				out = append(out, path)
			}
			return nil
		})
	}
	return out
}

// cgroupProcs lists the processes in the cgroup dir.
func cgroupProcs(dir string) []int {
	data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// mountsUnder lists the lines of /proc/self/mountinfo that mention dir.
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, dir) {
			out = append(out, line)
		}
	}
	return out
}

// openFDs maps this process's open file descriptors to what they refer to.
func openFDs(t testing.TB) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		fds[fd] = target
	}
	return fds
}

// newFDs describes the fds of now that are not in base.
func newFDs(base, now map[int]string) []string {
	var out []string
	for fd, target := range now {
		if base[fd] != target {
			out = append(out, fmt.Sprintf("%d→%s", fd, target))
		}
	}
	slices.Sort(out)
	return out
}

// vmRSS is process pid's resident set, or -1 if it cannot be read.
func vmRSS(pid int) int64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil && len(f) == 2 && f[1] == "kB" {
				return kb << 10
			}
		}
	}
	return -1
}

// rss is the test process's resident set after a full garbage collection that
// returns freed memory to the OS: what stays is what is still referenced or held.
func rss(t testing.TB) int64 {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	n := vmRSS(os.Getpid())
	if n < 0 {
		t.Fatalf("no VmRSS in /proc/%d/status", os.Getpid())
	}
	return n
}

// eventually polls check until it returns nil or timeout passes, and returns its
// last error. Teardown is asynchronous (a finished execution's sandbox is removed in
// the background, a closed connection's server side goes a moment later), so the
// leak checks give it time; a leak stays, and fails after the timeout.
func eventually(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// initPoller makes the Go runtime open its network poller's descriptors (epoll and
// a wake-up eventfd, held for the process's life), so that they are in the fd
// baseline rather than counted as a leak of the first connection.
func initPoller(t testing.TB) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
