package sandbox

import (
	"context"
	"fmt"
	"github.com/codeexec/codeexec/internal/job"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
)

// slot is a child forked ahead of demand: namespaces made, work dir mounted, already
// in a cgroup of its own, waiting for a program.
type slot struct {
	c      *child
	g      *cgroup.Group
	limits job.Limits // what its mounts and cgroup were made for
	// unreserve gives the slot's share of the storage budget back; idempotent.
	unreserve func()
}

// release kills the slot's child and removes its cgroup.
func (s *slot) release() {
	s.c.close()
	_ = s.g.Destroy()
	s.unreserve()
}

// newSlot makes a cgroup with limits l and forks a child from z into it.
func (r *Runner) newSlot(z *zygote, l job.Limits) (*slot, error) {
	unreserve, err := r.storage.reserve(l)
	if err != nil {
		return nil, err
	}
	g, err := r.cg.New(r.nextName(), cgroupLimits(l))
	if err != nil {
		unreserve()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	c, err := z.spawn(l, g)
	if err != nil {
		_ = g.Destroy()
		unreserve()
		return nil, err
	}
	return &slot{c: c, g: g, limits: l, unreserve: unreserve}, nil
}

// prefork keeps r.slots full of ready children until ctx ends. When the zygote
// cannot run it waits and tries again; executions meanwhile fork on demand or run
// cold.
func (r *Runner) prefork(ctx context.Context) {
	defer r.bg.Done()
	l := job.DefaultLimits()
	for {
		z, err := r.zygote()
		var s *slot
		if err == nil {
			s, err = r.newSlot(z, l)
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		select {
		case r.slots <- s:
		case <-ctx.Done():
			s.release()
			return
		}
	}
}

// takeSlot returns a ready child for l: a preforked one when one fits, else a new one.
func (r *Runner) takeSlot(z *zygote, l job.Limits) (*slot, error) {
	for {
		var s *slot
		select {
		case s = <-r.slots:
		default:
			return r.newSlot(z, l)
		}
		if !s.c.running() || s.limits.TmpBytes != l.TmpBytes || s.limits.WorkBytes != l.WorkBytes {
			// Dead with an old zygote, or mounts of the wrong size: not for this run.
			// Its storage is free for the new slot now, not once it is torn down.
			s.unreserve()
			r.cleanupLater(s.release)
			if !s.c.running() {
				continue
			}
			return r.newSlot(z, l)
		}
		// Its group was made for the default limits: set this run's, raising or
		// lowering each. Should the kernel refuse (a cut below what the idle child
		// holds), a group made for l from the start takes its place.
		if err := s.g.Set(cgroupLimits(l)); err != nil {
			r.log.Warn("a preforked child could not take the run's limits; forking another", "err", err)
			r.cleanupLater(s.release)
			return r.newSlot(z, l)
		}
		s.limits = l
		return s, nil
	}
}

// cleanupLater runs f in the background; Close waits for it. Tearing down a child
// and its cgroup takes milliseconds the caller need not wait for.
func (r *Runner) cleanupLater(f func()) {
	r.cleanups.Add(1)
	go func() {
		defer r.cleanups.Done()
		f()
	}()
}

// runWarm runs req in a child forked from the zygote: the same namespaces, limits and
// unprivileged uid as the cold path, without paying for the interpreter's start and
// imports. It is a session of one execution.
func (r *Runner) runWarm(ctx context.Context, req *job.Request, z *zygote) (*job.Result, error) {
	sess, err := r.newSession(z, req.Limits)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	return sess.run(ctx, req, true)
}
