// Package container fits a container's mount namespace for nesting codeexec's
// sandboxes, and tells whether codeexec runs in a container at all.
//
// A container runtime hands its process a /proc with masked and read-only paths and
// read-only cgroup hierarchies. A sandbox mounts a fresh /proc inside a user namespace
// of its own, which the kernel allows only where the existing /proc is fully visible
// (the runtime's masks become locked mounts in that namespace and forbid it), and
// creates cgroups under the container's own. Prepare removes the masks and makes the
// container's cgroup subtree writable; it needs CAP_SYS_ADMIN in the host's user
// namespace, which codeexec's container is given for the sandboxes' mounts anyway.
// The sandboxes themselves never see any of this: each mounts its own /proc with its
// own masks, has no /sys and no capabilities.
package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/mountinfo"
)

// Runtime names what runs codeexec, as far as markers tell.
type Runtime string

// The runtimes Detect tells apart; None is a host (or a container without markers).
const (
	None       Runtime = ""
	Kubernetes Runtime = "kubernetes"
	Podman     Runtime = "podman"
	Docker     Runtime = "docker"
)

// Detect reports the runtime from its markers below root ("/" for this process): the
// variable every Kubernetes pod gets, podman's /run/.containerenv and Docker's
// /.dockerenv. getenv is os.Getenv outside tests.
func Detect(root string, getenv func(string) string) Runtime {
	switch {
	case getenv("KUBERNETES_SERVICE_HOST") != "":
		return Kubernetes
	case exists(filepath.Join(root, "run/.containerenv")):
		return Podman
	case exists(filepath.Join(root, ".dockerenv")):
		return Docker
	}
	return None
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// Step is one change Prepare made, for the log.
type Step string

// Prepare fits this process's mount namespace and cgroup for sandboxes: it detaches
// the mounts the runtime stacked on /proc (its masks and read-only paths), remounts
// read-only cgroup hierarchies read-write, and on cgroup v2 delegates the memory, pids
// and cpu controllers below the container's cgroup. A namespace that needs none of it
// (a host, a privileged container) is left as it is. It returns what it changed; an
// error names the step that failed, and the steps before it stay done.
func Prepare() ([]Step, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	var done []Step
	steps := []func([]mountinfo.Mount) ([]Step, error){unmaskProc, writableCgroups, delegateV2}
	for _, step := range steps {
		s, err := step(mounts)
		done = append(done, s...)
		if err != nil {
			return done, err
		}
		if len(s) > 0 {
			if mounts, err = mountinfo.Read(); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// ProcMasks lists the mount points stacked on /proc, deepest first: the runtime's
// masked paths (/proc/kcore, …) and read-only paths (/proc/sys, …).
func ProcMasks(mounts []mountinfo.Mount) []string {
	var out []string
	for _, p := range mountinfo.Under(mounts, "/proc") {
		if p != "/proc" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// unmaskProc detaches the mounts on /proc. A mount namespace made in a new user
// namespace locks the mounts it copies, and the kernel refuses a new proc mount there
// while a locked mount hides part of an existing one (mount_too_revealing): with the
// runtime's masks in place, no sandbox could mount its /proc. Kubernetes' equivalent,
// procMount: Unmasked, is admitted only with hostUsers: false, which the sandboxes'
// uid mapping (host uids 1100000 and up) does not fit.
func unmaskProc(mounts []mountinfo.Mount) ([]Step, error) {
	masks := ProcMasks(mounts)
	if len(masks) == 0 {
		return nil, nil
	}
	for _, p := range masks {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("unmask /proc: %w", &os.SyscallError{Syscall: "umount " + strconv.Quote(p), Err: err})
		}
	}
	return []Step{Step(fmt.Sprintf("detached %d masks on /proc (%s)", len(masks), strings.Join(masks, ", ")))}, nil
}

// ReadOnlyCgroups lists the cgroup and cgroup2 mount points that are mounted
// read-only, as a runtime mounts them in an unprivileged container.
func ReadOnlyCgroups(mounts []mountinfo.Mount) []string {
	var out []string
	for _, m := range mounts {
		if m.FSType != "cgroup" && m.FSType != "cgroup2" {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(m.Point, &st); err == nil && st.Flags&unix.ST_RDONLY != 0 && !slices.Contains(out, m.Point) {
			out = append(out, m.Point)
		}
	}
	return out
}

// remountFlags are the per-mount flags a remount keeps; leaving one out would be
// refused for a mount that has it locked, and would loosen it otherwise.
const remountFlags = unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC | unix.ST_NOATIME | unix.ST_NODIRATIME | unix.ST_RELATIME

// writableCgroups remounts read-only cgroup hierarchies read-write. The runtime mounts
// only the container's own group there (its cgroup namespace's root, or a bind of its
// group on cgroup v1), so what becomes writable is the container's subtree: the groups
// codeexec makes below it stay within the pod's limits.
func writableCgroups(mounts []mountinfo.Mount) ([]Step, error) {
	ro := ReadOnlyCgroups(mounts)
	if len(ro) == 0 {
		return nil, nil
	}
	for _, p := range ro {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil {
			return nil, &os.SyscallError{Syscall: "statfs " + strconv.Quote(p), Err: err}
		}
		flags := uintptr(unix.MS_REMOUNT|unix.MS_BIND) | uintptr(st.Flags&remountFlags)
		if err := unix.Mount("", p, "", flags, ""); err != nil {
			return nil, fmt.Errorf("make the cgroups writable: %w", &os.SyscallError{Syscall: "remount " + strconv.Quote(p) + " read-write", Err: err})
		}
	}
	return []Step{Step("remounted read-write: " + strings.Join(ro, ", "))}, nil
}

// initGroup is the child group the container's processes move to on cgroup v2, so
// that its root may delegate controllers (no internal processes: a v2 group with
// processes cannot enable controllers for children). dockerd's dind script does the same.
const initGroup = "init"

// delegateV2 enables memory, pids and cpu for the children of a cgroup2 mount that is
// this process's cgroup namespace root and does not delegate them yet.
func delegateV2(mounts []mountinfo.Mount) ([]Step, error) {
	_, v2 := cgroup.FromMounts(mounts)
	if len(v2) == 0 {
		return nil, nil
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	// Only the namespace's root, which is the container's group: a host's root
	// delegates already, and any other group is not the container's to rearrange.
	if !slices.Contains(strings.Split(strings.TrimSpace(string(self)), "\n"), "0::/") {
		return nil, nil
	}
	return Delegate(v2[0])
}

// Delegate moves the processes of the cgroup2 group dir into its child initGroup and
// enables memory, pids and cpu in its cgroup.subtree_control, unless they are enabled
// already. dir must offer the controllers (cgroup.controllers).
func Delegate(dir string) ([]Step, error) {
	ctl, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return nil, err
	}
	enabled := strings.Fields(string(ctl))
	var lack []string
	for _, c := range cgroup.V2Controllers {
		if !slices.Contains(enabled, c) {
			lack = append(lack, c)
		}
	}
	if len(lack) == 0 {
		return nil, nil
	}
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	for _, c := range lack {
		if !slices.Contains(strings.Fields(string(avail)), c) {
			return nil, fmt.Errorf("cgroup v2 at %q does not offer the %s controller to the container: the node must delegate memory, pids and cpu to pods", dir, c)
		}
	}
	var steps []Step
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	if pids := strings.Fields(string(procs)); len(pids) > 0 {
		to := filepath.Join(dir, initGroup)
		if err := os.Mkdir(to, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("delegate cgroups: %w", err)
		}
		for _, pid := range pids {
			// A process that exited meanwhile is ESRCH; nothing to move.
			if err := writeCgroupFile(filepath.Join(to, "cgroup.procs"), pid); err != nil && !errors.Is(err, unix.ESRCH) {
				return nil, fmt.Errorf("delegate cgroups: move process %s to %q: %w", pid, to, err)
			}
		}
		steps = append(steps, Step(fmt.Sprintf("moved %d processes to %s", len(pids), to)))
	}
	var plus []string
	for _, c := range lack {
		plus = append(plus, "+"+c)
	}
	if err := writeCgroupFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(plus, " ")); err != nil {
		return steps, fmt.Errorf("delegate cgroups: enable %s in %q: %w", strings.Join(lack, ", "), dir, err)
	}
	return append(steps, Step("enabled "+strings.Join(plus, " ")+" in "+dir)), nil
}

// writeCgroupFile writes value to an existing control file in one write, as the
// kernel wants it.
func writeCgroupFile(p, value string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
