package doctor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/container"
	"github.com/codeexec/codeexec/internal/mountinfo"
)

// cgroupParent is the parent group doctor makes, and removes, to test the hierarchy; it
// is not the server's, so a running server is not disturbed.
const cgroupParent = "codeexec-doctor"

// The controllers cgroup.Open needs.
var (
	v2Controllers = cgroup.V2Controllers
	v1Controllers = cgroup.V1Controllers
)

// cgroupProbe is what opening a cgroup hierarchy showed. Two checks read it.
type cgroupProbe struct {
	version cgroup.Version
	paths   []string
	err     error // from cgroup.Open
	// diagnosis and fix explain err.
	diagnosis, fix string
	// swapFile is the file that limits swap in this version, and swapLimited whether
	// the test group had it.
	swapFile    string
	swapLimited bool
	// cleanupErr is set if a directory doctor created could not be removed.
	cleanupErr error
	// totals are serve's default limits of all sandboxes together on this machine;
	// zero if they could not be worked out.
	totals cgroup.Limits
}

// cgroupMounts is what /proc/self/mountinfo says about cgroup file systems.
type cgroupMounts struct {
	v1 map[string]string // controller → mount point
	v2 []string          // cgroup2 mount points
}

// parseCgroupMounts reads a mountinfo table for its cgroup file systems.
func parseCgroupMounts(r io.Reader) (cgroupMounts, error) {
	mounts, err := mountinfo.Parse(r)
	if err != nil {
		return cgroupMounts{}, err
	}
	v1, v2 := cgroup.FromMounts(mounts)
	return cgroupMounts{v1: v1, v2: v2}, nil
}

// mountPoints lists each distinct cgroup mount point once.
func (m cgroupMounts) mountPoints() []string {
	pts := slices.Clone(m.v2)
	for _, p := range m.v1 {
		if !slices.Contains(pts, p) {
			pts = append(pts, p)
		}
	}
	return pts
}

// probeCgroups opens the hierarchy as a server would, with parent group parent, and then
// removes every directory that made. euid is the effective uid doctor runs as.
func probeCgroups(parent string, euid int) cgroupProbe {
	var p cgroupProbe
	var mounts cgroupMounts
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		mounts, _ = parseCgroupMounts(f)
		f.Close()
	}
	// cgroup.Open can fail after making some directories; remember which exist now so
	// that those it makes are removed on every path.
	var fresh []string
	for _, mp := range mounts.mountPoints() {
		dir := filepath.Join(mp, parent)
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			fresh = append(fresh, dir)
		}
	}
	h, err := cgroup.Open(parent)
	if err != nil {
		p.err = err
		p.diagnosis, p.fix = diagnoseCgroups(mounts, readV2Controllers(mounts), err)
		// cgroup.Open formats, not wraps, the mkdir error, so EACCES cannot be told
		// apart; but only root may create these cgroups anyway.
		if euid != 0 {
			p.fix = "run as root: only root may create cgroups"
		}
	} else {
		p.version, p.paths = h.Version(), h.Paths()
		slices.Sort(p.paths)
		p.swapFile = "memory.swap.max"
		if p.version == cgroup.V1 {
			p.swapFile = "memory.memsw.limit_in_bytes"
		}
		for _, dir := range p.paths {
			if _, err := os.Stat(filepath.Join(dir, p.swapFile)); err == nil {
				p.swapLimited = true
			}
		}
	}
	var errs []error
	for _, dir := range append(slices.Clone(p.paths), fresh...) {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, &os.PathError{Op: "rmdir", Path: dir, Err: err})
		}
	}
	p.cleanupErr = errors.Join(errs...)
	p.totals, _ = cgroup.MachineTotals()
	return p
}

// readV2Controllers reads cgroup.controllers of the first cgroup2 mount, or returns nil.
func readV2Controllers(m cgroupMounts) []string {
	if len(m.v2) == 0 {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(m.v2[0], "cgroup.controllers"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(data))
}

func missing(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// diagnoseCgroups explains why cgroup.Open failed with err, given the cgroup mounts and
// the controllers listed in the first cgroup2 mount's cgroup.controllers.
func diagnoseCgroups(m cgroupMounts, v2Have []string, err error) (detail, fix string) {
	const toV2 = "or switch to cgroup v2: add the kernel parameter systemd.unified_cgroup_hierarchy=1 and reboot"
	var v1Have []string
	for c := range m.v1 {
		v1Have = append(v1Have, c)
	}
	switch {
	case len(m.v2) == 0 && len(m.v1) == 0:
		return fmt.Sprintf("no cgroup file system is mounted: %v", err),
			"mount cgroup v2: `mount -t cgroup2 none /sys/fs/cgroup`"

	case len(m.v2) == 0 || len(missing(v1Controllers, v1Have)) < len(v1Controllers):
		// No cgroup2, or some needed controller has a v1 hierarchy: a v1 or hybrid
		// host, where a controller bound to v1 cannot also be used in v2.
		lack := missing(v1Controllers, v1Have)
		if len(lack) == 0 {
			return fmt.Sprintf("cgroup v1 has %s mounted but is unusable: %v", strings.Join(v1Controllers, ", "), err),
				"make the hierarchies under /sys/fs/cgroup writable by root (in a container: run it with --privileged)"
		}
		var cmds []string
		for _, c := range lack {
			dir := "/sys/fs/cgroup/" + c
			cmds = append(cmds, fmt.Sprintf("mkdir -p %s && mount -t cgroup -o %s cgroup %s", dir, c, dir))
		}
		return fmt.Sprintf("cgroup v1 needs %s hierarchies; not mounted: %s", strings.Join(v1Controllers, ", "), strings.Join(lack, ", ")),
			"mount them: `" + strings.Join(cmds, " && ") + "`, " + toV2

	default:
		root := m.v2[0]
		if lack := missing(v2Controllers, v2Have); len(lack) > 0 {
			return fmt.Sprintf("cgroup v2 at %q lacks %s in cgroup.controllers (it needs memory, pids and cpu)", root, strings.Join(lack, ", ")),
				"boot without cgroup_disable= for them and with systemd.unified_cgroup_hierarchy=1; in a container, give it its own cgroup namespace with those controllers delegated"
		}
		return fmt.Sprintf("cgroup v2 at %q has memory, pids and cpu but cannot delegate them, or lacks the freezer (cgroup.freeze, Linux 5.2): %v", root, err),
			fmt.Sprintf("`echo +memory +pids +cpu > %s`; if that says \"device or resource busy\", move the processes in that group into a child group first",
				filepath.Join(root, "cgroup.subtree_control"))
	}
}

// checkCgroups judges the probe; rt is the container runtime doctor runs under, whose
// terms the fix uses.
func checkCgroups(p cgroupProbe, rt container.Runtime) Check {
	c := Check{Name: "cgroups"}
	if p.err != nil {
		c.Status, c.Detail, c.Fix = Fail, p.diagnosis, p.fix
		if rt != container.None {
			c.Fix = cgroupContainerFix(rt, p.err)
		}
		return c
	}
	if p.cleanupErr != nil {
		c.Status = Warn
		c.Detail = fmt.Sprintf("cgroup v%d works, but doctor could not remove its test group: %v", p.version, p.cleanupErr)
		c.Fix = "remove the directories named above with rmdir"
		return c
	}
	// Name the hierarchies, not the test group in them, which is gone by now.
	var roots []string
	for _, dir := range p.paths {
		roots = append(roots, filepath.Dir(dir))
	}
	c.Status = OK
	c.Detail = fmt.Sprintf("cgroup v%d: %s", p.version, strings.Join(roots, ", "))
	if t := p.totals; t != (cgroup.Limits{}) {
		c.Detail += fmt.Sprintf("; serve caps all sandboxes together at %.1f GiB, %d processes and %g CPUs unless told otherwise (--max-total-*)",
			float64(t.MemoryBytes)/(1<<30), t.Pids, t.CPUs)
	}
	return c
}

// cgroupContainerFix is the fix for cgroups that failed with err inside a container of
// runtime rt: the container's own cgroup subtree must be writable (and on v2 have
// memory, pids and cpu delegated), which the image's entrypoint arranges when it may.
func cgroupContainerFix(rt container.Runtime, err error) string {
	why := "the container's cgroup must be writable"
	// cgroup.Open formats the mkdir error rather than wrapping it.
	if errors.Is(err, syscall.EROFS) || strings.Contains(err.Error(), "read-only file system") {
		why = "the cgroups are mounted read-only"
	}
	fix := why + ": start the container through the image's entrypoint, `codeexec container-init -- …`, " +
		"which remounts them read-write and on cgroup v2 delegates memory, pids and cpu below the container's group; it needs SYS_ADMIN"
	if rt == container.Kubernetes {
		return fix + " (securityContext.capabilities.add: [SYS_ADMIN, …]); on cgroup v2 nodes the pod's cgroup namespace is private, as the runtime makes it by default"
	}
	return fix + " (--cap-add SYS_ADMIN); on cgroup v2 also --cgroupns=private"
}

// countSwaps returns how many swap areas /proc/swaps lists below its header line.
func countSwaps(data string) int {
	n := 0
	for i, line := range strings.Split(data, "\n") {
		if i > 0 && strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}

func checkSwap(p cgroupProbe, procDir string) Check {
	swaps := -1 // unknown
	if data, err := os.ReadFile(filepath.Join(procDir, "swaps")); err == nil {
		swaps = countSwaps(string(data))
	}
	return swapCheck(p, swaps)
}

// swapCheck judges swap limiting; swaps is the number of active swap areas, or -1 if
// unknown.
func swapCheck(p cgroupProbe, swaps int) Check {
	c := Check{Name: "swap limit"}
	switch {
	case p.err != nil:
		c.Status, c.Detail, c.Fix = Warn, "not checked: cgroups are unusable", "fix the cgroups check first"
	case p.swapLimited:
		c.Status, c.Detail = OK, fmt.Sprintf("%s present: a sandbox's swap is limited with its memory", p.swapFile)
	case swaps == 0:
		c.Status, c.Detail = OK, fmt.Sprintf("no %s, but the host has no swap", p.swapFile)
	default:
		c.Status = Warn
		c.Detail = fmt.Sprintf("no %s: swap is not limited, so a sandbox can use swap beyond its memory limit", p.swapFile)
		if swaps > 0 {
			c.Detail += fmt.Sprintf(" (the host has %d swap area(s))", swaps)
		}
		c.Fix = "add the kernel parameter swapaccount=1 and reboot, or turn swap off with `swapoff -a`"
	}
	return c
}
