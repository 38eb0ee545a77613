package cgroup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Pool keeps emptied groups for reuse. Making and removing a group costs a mkdir and
// an rmdir in every v1 hierarchy, and the kernel's offlining of the memory cgroup
// after: half a millisecond of CPU per execution, against a few writes to reset a
// kept one. A group is reused by one execution after another, never by two at once:
// it returns to the pool only once no task is left in it, and its next user gets it
// with the peak of memory restarted, the counters read from zero and its limits set
// anew. The pool's owner must call Close, which removes every kept group.
type Pool struct {
	h    *Hierarchy
	name func() string // a new group's name
	max  int           // groups kept at most

	mu     sync.Mutex
	free   []*Group
	closed bool
}

// poolMaxLeftover is the memory an empty group may still be charged for and be kept:
// the kernel's own objects (dentries, inodes) that outlive the processes. A group
// charged for more (page cache of a large file a program read, a tmpfs that some
// reference keeps alive) is removed instead, so that no execution starts with another's
// memory counted against its limit.
const poolMaxLeftover = 1 << 20

// NewPool returns a pool that makes its groups under h, named by name, and keeps at
// most max of them. The caller must call Close.
func (h *Hierarchy) NewPool(name func() string, max int) *Pool {
	return &Pool{h: h, name: name, max: max}
}

// Get returns an empty group with limits l: a kept one, reset, or a new one. The
// caller must give it back with Put or remove it with Destroy.
func (p *Pool) Get(l Limits) (*Group, error) {
	for {
		p.mu.Lock()
		n := len(p.free)
		if n == 0 {
			p.mu.Unlock()
			return p.h.New(p.name(), l)
		}
		g := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		if err := g.reset(l); err != nil {
			_ = g.Destroy() // not fit for reuse: the next one, or a new one
			continue
		}
		return g, nil
	}
}

// Put takes back a group from Get whose processes the caller has killed and waited
// for. It keeps the group if no task is left in it and it holds no more than
// poolMaxLeftover of memory, and removes it otherwise (or when the pool is full or
// closed).
func (p *Pool) Put(g *Group) error {
	if ok, err := g.reusable(); err != nil || !ok {
		return errors.Join(err, g.Destroy())
	}
	p.mu.Lock()
	if !p.closed && len(p.free) < p.max {
		p.free = append(p.free, g.handOver())
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return g.Destroy()
}

// handOver returns a new handle on g's directories and leaves g with none: a caller
// that kept g (to kill or read it late) reaches nothing of the group's next user.
func (g *Group) handOver() *Group {
	g.mu.Lock()
	defer g.mu.Unlock()
	next := &Group{h: g.h, name: g.name, dirs: g.dirs, peak: g.peak, froze: g.froze}
	g.dirs, g.peak = map[string]string{}, nil
	return next
}

// Kept reports how many groups the pool holds.
func (p *Pool) Kept() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// Close removes every kept group; a Put after it removes its group. Groups out of the
// pool remain their holders' to Put or Destroy.
func (p *Pool) Close() error {
	p.mu.Lock()
	free := p.free
	p.free, p.closed = nil, true
	p.mu.Unlock()
	var errs []error
	for _, g := range free {
		errs = append(errs, g.Destroy())
	}
	return errors.Join(errs...)
}

// empty reports whether no task is in the group, in any of its hierarchies.
func (g *Group) empty() (bool, error) {
	if g.h.version == V2 {
		// populated counts the processes of nested groups too, and zombies not.
		populated, err := readKeyed(filepath.Join(g.dir(""), "cgroup.events"), "populated")
		return populated == 0, err
	}
	seen := map[string]bool{}
	for _, c := range g.controllers() {
		d := g.dir(c)
		if seen[d] {
			continue
		}
		seen[d] = true
		// tasks lists every thread: cgroup.procs can omit a process whose leader has
		// exited while other threads of it still run.
		data, err := os.ReadFile(filepath.Join(d, "tasks"))
		if err != nil {
			return false, err
		}
		if len(strings.TrimSpace(string(data))) > 0 {
			return false, nil
		}
	}
	return true, nil
}

// reusable reports whether g can go back to the pool: no task left, and at most
// poolMaxLeftover of memory still charged.
func (g *Group) reusable() (bool, error) {
	if len(g.controllers()) == 0 {
		return false, nil // destroyed
	}
	empty, err := g.empty()
	if err != nil || !empty {
		return false, err
	}
	file := "memory.usage_in_bytes"
	if g.h.version == V2 {
		file = "memory.current"
	}
	used, err := readInt(filepath.Join(g.dir("memory"), file))
	if err != nil {
		return false, err
	}
	return used <= poolMaxLeftover, nil
}

// reset readies an empty group for its next user: thawed, its limits l set anew,
// the peak of memory restarted from the current use, and the counters (CPU time, OOM
// kills, hits of the limit) read from zero. The counters that the kernel lets reset
// are reset; the others become the baseline that Stats subtracts.
func (g *Group) reset(l Limits) error {
	g.mu.Lock()
	froze := g.froze
	g.mu.Unlock()
	if froze {
		if err := g.Thaw(); err != nil {
			return err
		}
	}
	if err := g.Set(l); err != nil {
		return err
	}
	if g.h.version == V2 {
		if err := g.resetPeakV2(); err != nil {
			return err
		}
	} else if err := g.write("memory", "memory.max_usage_in_bytes", "0"); err != nil {
		return err
	}
	base, err := g.counters()
	if err != nil {
		return fmt.Errorf("cgroup: read the counters of a reused group: %w", err)
	}
	g.mu.Lock()
	g.base = base
	g.mu.Unlock()
	return nil
}

// resetPeakV2 restarts the group's memory.peak. On v2 a write resets the peak only as
// read through the same open file (Linux 6.12), so the group keeps that file and
// Stats reads the peak from it. A kernel that refuses the write fails the reset: the
// group is not reused.
func (g *Group) resetPeakV2() error {
	g.mu.Lock()
	f := g.peak
	g.mu.Unlock()
	if f == nil {
		var err error
		if f, err = os.OpenFile(filepath.Join(g.dir("memory"), "memory.peak"), os.O_RDWR, 0); err != nil {
			return fmt.Errorf("cgroup: open memory.peak: %w", err)
		}
		g.mu.Lock()
		g.peak = f
		g.mu.Unlock()
	}
	if _, err := f.WriteAt([]byte("reset\n"), 0); err != nil {
		return fmt.Errorf("cgroup: reset memory.peak: %w", err)
	}
	return nil
}

// readPeakV2 reads the peak through the file that reset it, if there is one.
func (g *Group) readPeakV2() (int64, error) {
	g.mu.Lock()
	f := g.peak
	g.mu.Unlock()
	if f == nil {
		return readInt(filepath.Join(g.dir("memory"), "memory.peak"))
	}
	buf := make([]byte, 32)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("cgroup: read memory.peak: %w", err)
	}
	return parseInt(buf[:n])
}
