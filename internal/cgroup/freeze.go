package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// freezeTimeout bounds how long Freeze waits for every process to stop.
var freezeTimeout = 5 * time.Second

// ErrFreeze means a group's processes could not all be stopped; the group is left
// thawed.
var ErrFreeze = errors.New("cgroup: could not freeze the group")

// Freeze stops every process of the group until Thaw: they keep their memory and
// state but get no CPU, and cannot be scheduled even by a timer of their own. It
// returns once all of them are stopped. On error the group is left thawed.
//
// A frozen group can still be killed (Kill, Destroy) and its files read from outside;
// a process moved into it freezes too.
func (g *Group) Freeze() error {
	g.mu.Lock()
	g.froze = true // a reuse must thaw it (Pool)
	g.mu.Unlock()
	if g.h.version == V2 {
		return g.freezeV2()
	}
	return g.freezeV1()
}

// Thaw lets the processes of a frozen group run again. Thawing a group that is not
// frozen does nothing.
func (g *Group) Thaw() error {
	if g.h.version == V2 {
		// The processes resume as the scheduler gets to them; nothing waits for that.
		return g.write("", "cgroup.freeze", "0")
	}
	// v1 thaws synchronously: every task is woken before the write returns.
	return g.write("freezer", "freezer.state", "THAWED")
}

// KillFrozen sends SIGKILL to every process of a group that Freeze has stopped, but
// the one with host pid skip (which the caller kills through a pidfd: its parent,
// outside the group, could reap it and its pid be reused), and thaws the group
// without waiting for the processes to end. Frozen, none can fork or be reaped by a
// parent in the group, so one pass reaches them all, and each dies on waking,
// before it runs again: this is Kill without Kill's wait for the group to empty,
// which lasts as long as the processes' exits (the teardown of their memory).
func (g *Group) KillFrozen(skip int) error {
	pids, err := g.Procs()
	if err != nil {
		return fmt.Errorf("cgroup: list the frozen group's processes: %w", err)
	}
	for _, p := range pids {
		if p != skip {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	return g.Thaw()
}

// freezeV1 freezes through the v1 freezer. A v1 cgroup can stay FREEZING while new
// processes keep appearing in it (a fork inside, or a move in); as runc's fs freezer
// does, write FROZEN again until the state reads FROZEN, thawing and pausing now and
// then to let the stragglers settle.
func (g *Group) freezeV1() error {
	state := filepath.Join(g.dir("freezer"), "freezer.state")
	deadline := time.Now().Add(freezeTimeout)
	for i := 0; ; i++ {
		if i%50 == 49 {
			_ = writeFile(state, "THAWED")
			time.Sleep(10 * time.Millisecond)
		}
		if err := writeFile(state, "FROZEN"); err != nil {
			return err
		}
		data, err := os.ReadFile(state)
		if err != nil {
			_ = writeFile(state, "THAWED")
			return fmt.Errorf("cgroup: read %s: %w", state, err)
		}
		switch s := strings.TrimSpace(string(data)); s {
		case "FROZEN":
			return nil
		case "FREEZING":
		default:
			_ = writeFile(state, "THAWED")
			return fmt.Errorf("%w: %s reads %q", ErrFreeze, state, s)
		}
		if time.Now().After(deadline) {
			_ = writeFile(state, "THAWED")
			return fmt.Errorf("%w: still freezing after %v", ErrFreeze, freezeTimeout)
		}
		if i >= 10 {
			time.Sleep(100 * time.Microsecond) // spin briefly, then do not burn a core
		}
	}
}

// freezeV2 writes cgroup.freeze and waits for cgroup.events to say "frozen 1". The
// kernel freezes asynchronously; the wait polls with a growing pause (a frozen-state
// change could also be awaited with poll(2) on cgroup.events, for a few microseconds
// less).
func (g *Group) freezeV2() error {
	dir := g.dir("")
	if err := writeFile(filepath.Join(dir, "cgroup.freeze"), "1"); err != nil {
		return err
	}
	events := filepath.Join(dir, "cgroup.events")
	deadline := time.Now().Add(freezeTimeout)
	for pause := 20 * time.Microsecond; ; pause = min(2*pause, 10*time.Millisecond) {
		frozen, err := readKeyed(events, "frozen")
		if err != nil {
			_ = writeFile(filepath.Join(dir, "cgroup.freeze"), "0")
			return fmt.Errorf("cgroup: read %s: %w", events, err)
		}
		if frozen == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			_ = writeFile(filepath.Join(dir, "cgroup.freeze"), "0")
			return fmt.Errorf("%w: %s did not say frozen within %v", ErrFreeze, events, freezeTimeout)
		}
		time.Sleep(pause)
	}
}

// HoldFreezer makes an empty group name and keeps it frozen, until the caller
// destroys it; on cgroup v2 it does nothing and returns nil. The v1 freezer switches a
// kernel static key on when the first group on the machine freezes and off when the
// last thaws, patching the kernel's code each time: about 80 µs a switch (Linux 6.18,
// measured here), twice per session run when no other group is frozen. With one group
// held frozen, a session's freeze and thaw cost a few µs each.
func (h *Hierarchy) HoldFreezer(name string) (*Group, error) {
	if h.version != V1 {
		return nil, nil
	}
	g, err := h.New(name, Limits{})
	if err != nil {
		return nil, err
	}
	if err := g.Freeze(); err != nil {
		_ = g.Destroy()
		return nil, err
	}
	return g, nil
}
