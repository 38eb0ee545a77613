package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Charge moves process pid into the group for its memory only, so that the pages it
// allocates from then on — the tmpfs pages of a file it writes among them — are
// charged to the group and count against its limit. On v1 the process joins the
// group's memory controller alone: the group's pids limit, CPU quota and freezer
// state do not apply to it, so a sandbox that exhausted its pids or is frozen does
// not block it. On v2 a process belongs to one group for every controller, so
// Charge is Add; moving a process ignores pids.max there, but a frozen group
// freezes it too.
func (g *Group) Charge(pid int) error {
	if g.h.version == V2 {
		return g.Add(pid)
	}
	return g.write("memory", "cgroup.procs", strconv.Itoa(pid))
}

// PauseOOMKiller keeps the kernel's OOM killer from killing the group's processes
// until the returned function restores it, as far as the cgroup version allows. It
// is for the time a helper process placed in the group with Charge writes into it:
// the helper's write that does not fit must fail, not cost the sandbox a process.
//
// On v1 it sets oom_kill_disable: a charge the group cannot take in a system call —
// the helper's write(2) or splice(2) — then fails with ENOMEM, and a page fault that
// cannot be charged waits until memory is freed or the killer is back (restoring
// wakes it, and the killer then acts as usual). v2 cannot disable the killer; there it
// turns memory.oom.group off, so that an OOM kill takes the one process the kernel
// picks (by size and oom_score_adj) rather than the whole group. The caller must call
// the returned function.
func (g *Group) PauseOOMKiller() (restore func() error, err error) {
	nothing := func() error { return nil }
	if g.h.version == V1 {
		p := filepath.Join(g.dir("memory"), "memory.oom_control")
		was, err := readKeyed(p, "oom_kill_disable")
		if err != nil {
			return nil, err
		}
		if was == 1 {
			return nothing, nil
		}
		if err := g.write("memory", "memory.oom_control", "1"); err != nil {
			return nil, err
		}
		return func() error { return g.write("memory", "memory.oom_control", "0") }, nil
	}
	if !g.exists("memory", "memory.oom.group") {
		return nothing, nil
	}
	old, err := os.ReadFile(filepath.Join(g.dir("memory"), "memory.oom.group"))
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(old)) == "0" {
		return nothing, nil
	}
	if err := g.write("memory", "memory.oom.group", "0"); err != nil {
		return nil, err
	}
	return func() error { return g.write("memory", "memory.oom.group", "1") }, nil
}
