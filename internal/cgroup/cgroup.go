// Package cgroup places sandbox processes in a Linux control group with memory, pids and
// cpu limits, freezes them between uses, and reads back what they used, on cgroup v1
// and v2 alike.
//
// containerd/cgroups was considered and not used: its v1 manager creates the group in
// every mounted hierarchy and pulls in systemd and runtime-spec dependencies, while an
// execution needs three controllers and a dozen file writes on its hot path.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Limits are the resource limits of one group. Zero means "not limited".
type Limits struct {
	MemoryBytes int64   // RAM; swap is disabled for the group where the kernel allows
	Pids        int64   // processes and threads
	CPUs        float64 // CPU bandwidth in cores, e.g. 1.5
}

// Stats is what a group has used.
type Stats struct {
	CPUTime        time.Duration
	MemoryBytes    int64 // in use now
	MaxMemoryBytes int64 // the peak
	OOMKills       int64
	// MemoryLimitHits counts the times the group reached its own memory limit. An OOM
	// kill without one came from an ancestor's limit: the sum of all groups ran out.
	MemoryLimitHits int64
}

// Since returns what was used between before and s, two readings of one group: the
// counters become differences; the gauges (memory now, peak) stay as in s.
func (s Stats) Since(before Stats) Stats {
	s.CPUTime -= before.CPUTime
	s.OOMKills -= before.OOMKills
	s.MemoryLimitHits -= before.MemoryLimitHits
	return s
}

// Version is the cgroup interface version in use.
type Version int

// Versions of the cgroup interface.
const (
	V1 Version = 1
	V2 Version = 2
)

// ErrUnavailable means no usable cgroup hierarchy with the needed controllers exists.
var ErrUnavailable = errors.New("cgroup: no usable hierarchy with memory, pids, cpu and freezer controllers")

// Hierarchy is the parent group under which per-execution groups are made.
type Hierarchy struct {
	version Version
	// dirs maps a controller name to the parent directory for it (v1), or "" to the
	// single unified directory (v2).
	dirs map[string]string
}

// V1Controllers are the v1 hierarchies a group is created in. The freezer stops a
// session's processes between its runs.
var V1Controllers = []string{"memory", "pids", "cpu", "cpuacct", "freezer"}

// V2Controllers are the controllers a v2 group needs delegated; v2's freezer is built
// in (cgroup.freeze, Linux 5.2).
var V2Controllers = []string{"memory", "pids", "cpu"}

// Open finds the cgroup hierarchy, preferring v2 when it has the controllers, and
// makes the parent group named by parent (e.g. "codeexec") in it.
func Open(parent string) (*Hierarchy, error) {
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	if root, ok := mounts.unified(); ok {
		if h, err := openV2(root, parent); err == nil {
			return h, nil
		}
	}
	return openV1(mounts, parent)
}

// Version reports whether the hierarchy is cgroup v1 or v2.
func (h *Hierarchy) Version() Version { return h.version }

// Paths lists the parent directories of this hierarchy, for diagnostics.
func (h *Hierarchy) Paths() []string {
	var out []string
	for _, d := range h.dirs {
		out = append(out, d)
	}
	return out
}

func openV2(root, parent string) (*Hierarchy, error) {
	avail, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	have := strings.Fields(string(avail))
	for _, c := range V2Controllers {
		if !slices.Contains(have, c) {
			return nil, fmt.Errorf("cgroup v2 at %q lacks the %s controller", root, c)
		}
	}
	dir := filepath.Join(root, parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Children of dir can use a controller only when every ancestor delegates it.
	for d := root; ; {
		if err := enableV2(d); err != nil {
			return nil, err
		}
		if d == dir {
			break
		}
		rel, _ := filepath.Rel(d, dir)
		d = filepath.Join(d, strings.Split(rel, string(filepath.Separator))[0])
	}
	// Only a non-root group has cgroup.freeze, and only from Linux 5.2.
	if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err != nil {
		return nil, fmt.Errorf("cgroup v2 at %q has no freezer (cgroup.freeze needs Linux 5.2): %w", root, err)
	}
	return &Hierarchy{version: V2, dirs: map[string]string{"": dir}}, nil
}

func enableV2(dir string) error {
	err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0)
	if err != nil {
		return fmt.Errorf("enable controllers in %q: %w", dir, err)
	}
	return nil
}

func openV1(mounts mountTable, parent string) (*Hierarchy, error) {
	h := &Hierarchy{version: V1, dirs: map[string]string{}}
	for _, c := range V1Controllers {
		root, ok := mounts.v1[c]
		if !ok {
			return nil, fmt.Errorf("%w: no v1 %s hierarchy mounted", ErrUnavailable, c)
		}
		dir := filepath.Join(root, parent)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		h.dirs[c] = dir
	}
	return h, nil
}

// Group is one execution's control group, safe for concurrent use (a session's
// statistics may be read while it is torn down). The creator must call Destroy.
type Group struct {
	h    *Hierarchy
	name string
	// parent marks the hierarchy's parent group itself (see Hierarchy.SetLimits),
	// which is never destroyed and whose limits cover every group.
	parent bool
	mu     sync.Mutex
	// dirs are the group's directories, one per v1 controller or the single v2 one;
	// Destroy removes the entries of those it deleted.
	dirs map[string]string
	// base holds the counters a reused group had when its present user got it
	// (Pool.Get), which Stats subtracts.
	base Stats
	// peak is v2's memory.peak held open once a reuse has reset it (resetPeakV2).
	peak *os.File
	// froze is set once the group has been frozen: a reuse thaws it first.
	froze bool
}

// New creates the group name with limits under the hierarchy's parent. The caller must
// call Destroy on the returned group.
func (h *Hierarchy) New(name string, l Limits) (*Group, error) {
	g := &Group{h: h, name: name, dirs: map[string]string{}}
	made := map[string]bool{}
	for c, parent := range h.dirs {
		dir := filepath.Join(parent, name)
		// Controllers mounted together (v1's usual cpu,cpuacct) share a directory.
		if !made[dir] {
			if err := os.Mkdir(dir, 0o755); err != nil {
				g.Destroy()
				return nil, fmt.Errorf("create cgroup: %w", err)
			}
			made[dir] = true
		}
		g.dirs[c] = dir
	}
	if err := g.Set(l); err != nil {
		g.Destroy()
		return nil, err
	}
	return g, nil
}

func (g *Group) dir(controller string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.h.version == V2 {
		return g.dirs[""]
	}
	return g.dirs[controller]
}

// anyDir returns one of the group's directories, the pids one if it has it: every v1
// hierarchy lists the same processes (a group being swept may lack some).
func (g *Group) anyDir() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d, ok := g.dirs["pids"]; ok {
		return d
	}
	for _, d := range g.dirs {
		return d
	}
	return ""
}

// Paths lists the group's directories, for diagnostics.
func (g *Group) Paths() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, d := range g.dirs {
		out = append(out, d)
	}
	return out
}

// controllers lists the group's controllers.
func (g *Group) controllers() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var cs []string
	for c := range g.dirs {
		cs = append(cs, c)
	}
	return cs
}

func (g *Group) write(controller, file, value string) error {
	return writeFile(filepath.Join(g.dir(controller), file), value)
}

// writeFile writes value to the cgroup file p. Without O_CREAT: a file the kernel
// does not offer is an error, never a new regular file.
func writeFile(p, value string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(value)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // p is named below
		}
		return fmt.Errorf("cgroup: write %q to %s: %w", value, p, err)
	}
	return nil
}

func (g *Group) exists(controller, file string) bool {
	_, err := os.Stat(filepath.Join(g.dir(controller), file))
	return err == nil
}

// cpuPeriod is the CFS period the CPU quota is expressed in, µs.
const cpuPeriod = 100000

// Set changes the group's limits. A limit of zero is left as it is. A CPU limit above
// the parent group's is lowered to it: cgroup v2 enforces the lower of the two anyway,
// while v1 refuses a child quota above its parent's.
func (g *Group) Set(l Limits) error {
	if g.h.version == V2 {
		return g.setV2(l)
	}
	return g.setV1(l)
}

func (g *Group) setV2(l Limits) error {
	if l.MemoryBytes > 0 {
		if err := g.write("memory", "memory.max", strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			return err
		}
		if g.exists("memory", "memory.swap.max") {
			if err := g.write("memory", "memory.swap.max", "0"); err != nil {
				return err
			}
		}
		// One OOM kill ends the whole execution rather than leaving a crippled tree.
		// Not on the parent: its OOM must take one sandbox, not all of them.
		if !g.parent && g.exists("memory", "memory.oom.group") {
			if err := g.write("memory", "memory.oom.group", "1"); err != nil {
				return err
			}
		}
	}
	if l.Pids > 0 {
		if err := g.write("pids", "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	if l.CPUs > 0 {
		if err := g.write("cpu", "cpu.max", fmt.Sprintf("%d %d", cpuQuota(l.CPUs), cpuPeriod)); err != nil {
			return err
		}
	}
	return nil
}

func (g *Group) setV1(l Limits) error {
	if l.MemoryBytes > 0 {
		if err := setMemoryV1(g.dir("memory"), l.MemoryBytes); err != nil {
			return err
		}
		if g.exists("memory", "memory.swappiness") {
			// Not fatal: the root group refuses swappiness on some kernels.
			_ = g.write("memory", "memory.swappiness", "0")
		}
	}
	if l.Pids > 0 {
		if err := g.write("pids", "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	if l.CPUs > 0 {
		cpus := l.CPUs
		if !g.parent {
			// v1 refuses (EINVAL) a quota above the parent's.
			if max, err := readCPUsV1(filepath.Dir(g.dir("cpu"))); err == nil && max > 0 {
				cpus = min(cpus, max)
			}
		}
		if err := g.write("cpu", "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)); err != nil {
			return err
		}
		if err := g.write("cpu", "cpu.cfs_quota_us", strconv.FormatInt(cpuQuota(cpus), 10)); err != nil {
			return err
		}
	}
	return nil
}

// cpuQuota is the CFS quota of cpus cores, in µs per cpuPeriod.
func cpuQuota(cpus float64) int64 { return int64(cpus * cpuPeriod) }

// setMemoryV1 sets the memory limit of the v1 group dir to bytes, swap included where
// the kernel accounts swap. The kernel keeps memory.limit_in_bytes at or below
// memory.memsw.limit_in_bytes at every step and answers EINVAL otherwise, so a raise
// writes memsw first and a cut writes the limit first (as runc's setMemoryAndSwap
// does). Writing them in one fixed order made every raise fail: a preforked group made
// for 512 MiB could not be given 600.
func setMemoryV1(dir string, bytes int64) error {
	limit := filepath.Join(dir, "memory.limit_in_bytes")
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	v := strconv.FormatInt(bytes, 10)
	// memsw exists only with swap accounting; without it there is no swap to limit.
	if _, err := os.Stat(memsw); err != nil {
		return setMemoryLimitV1(limit, v)
	}
	cur, err := readInt(limit)
	if err != nil {
		return fmt.Errorf("cgroup: read the memory limit: %w", err)
	}
	if bytes > cur {
		if err := writeFile(memsw, v); err != nil {
			return err
		}
		return setMemoryLimitV1(limit, v)
	}
	if err := setMemoryLimitV1(limit, v); err != nil {
		return err
	}
	return writeFile(memsw, v)
}

// setMemoryLimitV1 writes v to memory.limit_in_bytes at p, explaining EBUSY: the kernel
// could not reclaim enough to bring the group under the new limit.
func setMemoryLimitV1(p, v string) error {
	err := writeFile(p, v)
	if errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("%w (the group uses more than that now and it could not be reclaimed)", err)
	}
	return err
}

// readCPUsV1 reads the CPU limit of the v1 cpu group dir in cores; 0 means none.
func readCPUsV1(dir string) (float64, error) {
	quota, err := readInt(filepath.Join(dir, "cpu.cfs_quota_us"))
	if err != nil || quota <= 0 {
		return 0, err
	}
	period, err := readInt(filepath.Join(dir, "cpu.cfs_period_us"))
	if err != nil || period <= 0 {
		return 0, err
	}
	return float64(quota) / float64(period), nil
}

// Add moves process pid (and its future children) into the group.
func (g *Group) Add(pid int) error {
	v := strconv.Itoa(pid)
	done := map[string]bool{}
	for _, c := range g.controllers() {
		// Controllers mounted together (v1's cpu,cpuacct) share a directory: one
		// write moves the process in both.
		if d := g.dir(c); !done[d] {
			done[d] = true
			if err := writeFile(filepath.Join(d, "cgroup.procs"), v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Counters reads the group's counters since its present user got it (see Pool): CPU
// time, OOM kills, hits of the memory limit; the gauges are left zero. It reads
// fewer files than Stats, for a reading whose gauges would not be used (the one
// before a run, which Stats.Since subtracts).
func (g *Group) Counters() (Stats, error) {
	s, err := g.counters()
	g.mu.Lock()
	s = s.Since(g.base)
	g.mu.Unlock()
	return s, err
}

// Stats reads the group's usage since its present user got it (see Pool). It is
// meaningful after the processes have exited too.
func (g *Group) Stats() (Stats, error) {
	s, e1 := g.counters()
	var err error
	if g.h.version == V2 {
		s.MaxMemoryBytes, err = g.readPeakV2()
		s.MemoryBytes, _ = readInt(filepath.Join(g.dir("memory"), "memory.current"))
	} else {
		s.MaxMemoryBytes, err = readInt(filepath.Join(g.dir("memory"), "memory.max_usage_in_bytes"))
		s.MemoryBytes, _ = readInt(filepath.Join(g.dir("memory"), "memory.usage_in_bytes"))
	}
	g.mu.Lock()
	s = s.Since(g.base)
	g.mu.Unlock()
	return s, errors.Join(e1, err)
}

// counters reads the group's counters as the kernel has them (CPU time, OOM kills,
// hits of the memory limit); an error is the CPU time's.
func (g *Group) counters() (Stats, error) {
	var s Stats
	if g.h.version == V2 {
		cpu, err := readKeyed(filepath.Join(g.dir("cpu"), "cpu.stat"), "usage_usec")
		s.CPUTime = time.Duration(cpu) * time.Microsecond
		s.OOMKills, _ = readKeyed(filepath.Join(g.dir("memory"), "memory.events"), "oom_kill")
		s.MemoryLimitHits, _ = readKeyed(filepath.Join(g.dir("memory"), "memory.events"), "max")
		return s, err
	}
	ns, err := readInt(filepath.Join(g.dir("cpuacct"), "cpuacct.usage"))
	s.CPUTime = time.Duration(ns)
	s.OOMKills, _ = readKeyed(filepath.Join(g.dir("memory"), "memory.oom_control"), "oom_kill")
	s.MemoryLimitHits, _ = readInt(filepath.Join(g.dir("memory"), "memory.failcnt"))
	return s, err
}

// Procs lists the processes in the group.
func (g *Group) Procs() ([]int, error) {
	data, err := os.ReadFile(filepath.Join(g.anyDir(), "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// Kill sends SIGKILL to every process in the group, frozen or not; a frozen v1 group
// is thawed after the signals, so that its processes die before running again.
func (g *Group) Kill() error {
	if len(g.controllers()) == 0 {
		return nil // destroyed, or handed over to the group's next user (Pool.Put)
	}
	// v2's cgroup.kill and fatal signals reach frozen processes too.
	if g.h.version == V2 && g.exists("", "cgroup.kill") {
		return g.write("", "cgroup.kill", "1")
	}
	// v1 has no cgroup.kill. New processes can appear while we kill (a fork bomb), so
	// repeat until the group is empty; the pids limit bounds how many there can be.
	for i := 0; i < 100; i++ {
		pids, err := g.Procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		if i == 0 && g.h.version == V1 && g.dir("freezer") != "" {
			// A v1-frozen process cannot die until it is thawed (runc kills, then thaws).
			_ = g.write("freezer", "freezer.state", "THAWED")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Destroy kills what is left in the group and removes it. It is safe to call on a
// partly created group and more than once.
func (g *Group) Destroy() error {
	g.mu.Lock()
	if g.peak != nil {
		g.peak.Close()
		g.peak = nil
	}
	g.mu.Unlock()
	if len(g.controllers()) == 0 {
		return nil
	}
	_ = g.Kill()
	var errs []error
	for _, c := range g.controllers() {
		dir := g.dir(c)
		if err := rmdirRetry(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
			continue
		}
		g.mu.Lock()
		delete(g.dirs, c)
		g.mu.Unlock()
	}
	return errors.Join(errs...)
}

// rmdirRetry removes a cgroup directory, waiting for exiting tasks to be released;
// rmdir fails with EBUSY until the last task of the group is gone.
func rmdirRetry(dir string) error {
	var err error
	for delay := 100 * time.Microsecond; delay < 2*time.Second; delay *= 2 {
		err = syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return err
		}
		time.Sleep(delay)
	}
	return err
}

// Sweep removes child groups of the parent for which keep returns false, killing
// their processes first. It cleans up after a server that died without cleaning up.
func (h *Hierarchy) Sweep(keep func(name string) bool) error {
	names := map[string]bool{}
	for _, parent := range h.dirs {
		entries, err := os.ReadDir(parent)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.IsDir() && !keep(e.Name()) {
				names[e.Name()] = true
			}
		}
	}
	var errs []error
	for name := range names {
		if err := h.destroyTree(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// destroyTree removes group name and any groups nested in it, deepest first. Each is
// destroyed as one group across every hierarchy, so that a v1 group left frozen is
// thawed (freezer) while its processes are killed (the others).
func (h *Hierarchy) destroyTree(name string) error {
	seen := map[string]bool{}
	var rels []string
	for _, parent := range h.dirs {
		_ = filepath.WalkDir(filepath.Join(parent, name), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				if rel, rerr := filepath.Rel(parent, p); rerr == nil && !seen[rel] {
					seen[rel] = true
					rels = append(rels, rel)
				}
			}
			return nil
		})
	}
	slices.SortFunc(rels, func(a, b string) int {
		return strings.Count(b, string(filepath.Separator)) - strings.Count(a, string(filepath.Separator))
	})
	var errs []error
	for _, rel := range rels {
		g := &Group{h: h, name: rel, dirs: map[string]string{}}
		for c, parent := range h.dirs {
			if d := filepath.Join(parent, rel); dirExists(d) {
				g.dirs[c] = d
			}
		}
		if err := g.Destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseInt(data)
}

func parseInt(data []byte) (int64, error) {
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// readKeyed reads the value of key from a "key value" per line file.
func readKeyed(path, key string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == key {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %q", path, key)
}
