package cgroup

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SetLimits sets the limits of the hierarchy's parent group (Open's parent): they hold
// for all of its groups together, whatever each group's own limits say. A zero field
// is left as it is. On v1 the parent's memory limit covers its children only with
// memory.use_hierarchy, which is set if it is off (always on since Linux 5.10).
//
// Call it before making groups: v1 refuses a parent CPU quota below a child's.
func (h *Hierarchy) SetLimits(l Limits) error {
	p := h.parentGroup()
	if h.version == V1 && l.MemoryBytes > 0 {
		if err := ensureUseHierarchy(p.dir("memory")); err != nil {
			return err
		}
	}
	if err := p.Set(l); err != nil {
		return fmt.Errorf("set the limits of all sandboxes together: %w", err)
	}
	return nil
}

// Limits reads the limits of the hierarchy's parent group; a zero field is unlimited.
func (h *Hierarchy) Limits() (Limits, error) {
	p := h.parentGroup()
	var l Limits
	var err error
	if h.version == V2 {
		dir := p.dir("")
		if l.MemoryBytes, err = readMax(filepath.Join(dir, "memory.max")); err != nil {
			return Limits{}, err
		}
		if l.Pids, err = readMax(filepath.Join(dir, "pids.max")); err != nil {
			return Limits{}, err
		}
		data, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
		if err != nil {
			return Limits{}, err
		}
		if f := strings.Fields(string(data)); len(f) == 2 && f[0] != "max" {
			quota, qerr := strconv.ParseInt(f[0], 10, 64)
			period, perr := strconv.ParseInt(f[1], 10, 64)
			if qerr != nil || perr != nil || period <= 0 {
				return Limits{}, fmt.Errorf("cgroup: %s/cpu.max reads %q", dir, data)
			}
			l.CPUs = float64(quota) / float64(period)
		}
		return l, nil
	}
	mem, err := readInt(filepath.Join(p.dir("memory"), "memory.limit_in_bytes"))
	if err != nil {
		return Limits{}, err
	}
	// "No limit" reads as the largest page-aligned int64.
	if mem < math.MaxInt64/2 {
		l.MemoryBytes = mem
	}
	if l.Pids, err = readMax(filepath.Join(p.dir("pids"), "pids.max")); err != nil {
		return Limits{}, err
	}
	if l.CPUs, err = readCPUsV1(p.dir("cpu")); err != nil {
		return Limits{}, err
	}
	return l, nil
}

// parentGroup is the hierarchy's parent as a Group, for reading and setting its
// limits; it must never be destroyed.
func (h *Hierarchy) parentGroup() *Group {
	dirs := make(map[string]string, len(h.dirs))
	for c, d := range h.dirs {
		dirs[c] = d
	}
	return &Group{h: h, parent: true, dirs: dirs}
}

// ensureUseHierarchy turns on memory.use_hierarchy in the v1 memory group dir. The
// kernel refuses the change once the group has children; say so.
func ensureUseHierarchy(dir string) error {
	p := filepath.Join(dir, "memory.use_hierarchy")
	on, err := readInt(p)
	if err != nil {
		return fmt.Errorf("cgroup: read %s: %w", p, err)
	}
	if on == 1 {
		return nil
	}
	if err := writeFile(p, "1"); err != nil {
		return fmt.Errorf("%w: without it the limit of all sandboxes together would not cover them; remove the groups under %s and retry", err, dir)
	}
	return nil
}

// readMax reads a limit file holding a number or "max"; "max" is 0, unlimited.
func readMax(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// MachineTotals are default limits for all sandboxes of a server together, derived
// from this machine: see totalsFor.
func MachineTotals() (Limits, error) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return Limits{}, &os.SyscallError{Syscall: "sysinfo", Err: err}
	}
	pidMax, err := readInt("/proc/sys/kernel/pid_max")
	if err != nil {
		return Limits{}, err
	}
	threadsMax, err := readInt("/proc/sys/kernel/threads-max")
	if err != nil {
		return Limits{}, err
	}
	return totalsFor(int64(si.Totalram)*int64(si.Unit), runtime.NumCPU(), pidMax, threadsMax), nil
}

// Headroom of the host beside its sandboxes, in totalsFor.
const (
	// serverMemory is what the server itself typically needs: its heap with a full
	// queue of request bodies and replies, the egress proxies, the file walks.
	serverMemory = 512 << 20
	// pidsCap bounds the processes and threads of all sandboxes: a thousand idle
	// sessions (an interpreter each) and sixteen executions at their 64-pid limit
	// come to about 2,000; four times that leaves room for busy sessions.
	pidsCap = 8192
)

// totalsFor computes the default totals for a machine with ram bytes of memory, cpus
// CPUs, and the kernel's pid_max and threads-max:
//   - memory: three quarters of RAM less what the server needs, the last quarter
//     staying with the kernel, the page cache (the image's libraries) and the rest of
//     the host; never less than half of RAM.
//   - pids: 8,192, and at most half of pid_max and of threads-max, so that the host
//     can always start a process.
//   - CPUs: all but a tenth of the cores (at least half a core, at most two) kept for
//     the server and the host, so that the API answers while every sandbox spins.
func totalsFor(ram int64, cpus int, pidMax, threadsMax int64) Limits {
	mem := max(ram*3/4-serverMemory, ram/2)
	pids := min(pidsCap, pidMax/2, threadsMax/2)
	keep := min(max(float64(cpus)/10, 0.5), 2)
	return Limits{MemoryBytes: mem, Pids: pids, CPUs: max(float64(cpus)-keep, 0.5)}
}
