// Package cgroup places sandbox processes in a Linux control group with memory, pids and
// cpu limits, and reads back what they used, on cgroup v1 and v2 alike.
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
}

// Version is the cgroup interface version in use.
type Version int

// Versions of the cgroup interface.
const (
	V1 Version = 1
	V2 Version = 2
)

// ErrUnavailable means no usable cgroup hierarchy with the needed controllers exists.
var ErrUnavailable = errors.New("cgroup: no usable hierarchy with memory, pids and cpu controllers")

// Hierarchy is the parent group under which per-execution groups are made.
type Hierarchy struct {
	version Version
	// dirs maps a controller name to the parent directory for it (v1), or "" to the
	// single unified directory (v2).
	dirs map[string]string
}

// v1Controllers are the v1 hierarchies a group is created in.
var v1Controllers = []string{"memory", "pids", "cpu", "cpuacct"}

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
	for _, c := range []string{"memory", "pids", "cpu"} {
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
	for _, c := range v1Controllers {
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
	mu   sync.Mutex
	// dirs are the group's directories, one per v1 controller or the single v2 one;
	// Destroy removes the entries of those it deleted.
	dirs map[string]string
}

// New creates the group name with limits under the hierarchy's parent. The caller must
// call Destroy on the returned group.
func (h *Hierarchy) New(name string, l Limits) (*Group, error) {
	g := &Group{h: h, name: name, dirs: map[string]string{}}
	for c, parent := range h.dirs {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			g.Destroy()
			return nil, fmt.Errorf("create cgroup: %w", err)
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
	p := filepath.Join(g.dir(controller), file)
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("cgroup: write %q to %s: %w", value, p, err)
	}
	return nil
}

func (g *Group) exists(controller, file string) bool {
	_, err := os.Stat(filepath.Join(g.dir(controller), file))
	return err == nil
}

// Set changes the group's limits. A limit of zero is left as it is.
func (g *Group) Set(l Limits) error {
	const period = 100000 // µs
	if g.h.version == V2 {
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
			if g.exists("memory", "memory.oom.group") {
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
			quota := int64(l.CPUs * period)
			if err := g.write("cpu", "cpu.max", fmt.Sprintf("%d %d", quota, period)); err != nil {
				return err
			}
		}
		return nil
	}
	if l.MemoryBytes > 0 {
		v := strconv.FormatInt(l.MemoryBytes, 10)
		if err := g.write("memory", "memory.limit_in_bytes", v); err != nil {
			return err
		}
		// memsw exists only with swap accounting; without it there is no swap to limit.
		if g.exists("memory", "memory.memsw.limit_in_bytes") {
			if err := g.write("memory", "memory.memsw.limit_in_bytes", v); err != nil {
				return err
			}
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
		if err := g.write("cpu", "cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
			return err
		}
		if err := g.write("cpu", "cpu.cfs_quota_us", strconv.FormatInt(int64(l.CPUs*period), 10)); err != nil {
			return err
		}
	}
	return nil
}

// Add moves process pid (and its future children) into the group.
func (g *Group) Add(pid int) error {
	v := strconv.Itoa(pid)
	for _, c := range g.controllers() {
		if err := g.write(c, "cgroup.procs", v); err != nil {
			return err
		}
	}
	return nil
}

// Stats reads the group's usage. It is meaningful after the processes have exited too.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	var err error
	if g.h.version == V2 {
		cpu, e1 := readKeyed(filepath.Join(g.dir("cpu"), "cpu.stat"), "usage_usec")
		s.CPUTime = time.Duration(cpu) * time.Microsecond
		s.MaxMemoryBytes, err = readInt(filepath.Join(g.dir("memory"), "memory.peak"))
		s.MemoryBytes, _ = readInt(filepath.Join(g.dir("memory"), "memory.current"))
		s.OOMKills, _ = readKeyed(filepath.Join(g.dir("memory"), "memory.events"), "oom_kill")
		return s, errors.Join(e1, err)
	}
	ns, e1 := readInt(filepath.Join(g.dir("cpuacct"), "cpuacct.usage"))
	s.CPUTime = time.Duration(ns)
	s.MaxMemoryBytes, err = readInt(filepath.Join(g.dir("memory"), "memory.max_usage_in_bytes"))
	s.MemoryBytes, _ = readInt(filepath.Join(g.dir("memory"), "memory.usage_in_bytes"))
	s.OOMKills, _ = readKeyed(filepath.Join(g.dir("memory"), "memory.oom_control"), "oom_kill")
	return s, errors.Join(e1, err)
}

// Procs lists the processes in the group.
func (g *Group) Procs() ([]int, error) {
	data, err := os.ReadFile(filepath.Join(g.dir("pids"), "cgroup.procs"))
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

// Kill sends SIGKILL to every process in the group.
func (g *Group) Kill() error {
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
		time.Sleep(time.Millisecond)
	}
	return nil
}

// Destroy kills what is left in the group and removes it. It is safe to call on a
// partly created group and more than once.
func (g *Group) Destroy() error {
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

// destroyTree removes group name and any groups nested in it, deepest first.
func (h *Hierarchy) destroyTree(name string) error {
	var errs []error
	for c, parent := range h.dirs {
		root := filepath.Join(parent, name)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			g := &Group{h: h, dirs: map[string]string{c: dirs[i]}}
			if h.version == V2 {
				g.dirs = map[string]string{"": dirs[i]}
			}
			if err := g.Destroy(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
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
