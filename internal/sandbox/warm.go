package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/cleanup"
	"github.com/codeexec/codeexec/internal/job"
)

// pooledGroups is how many emptied cgroups a Runner keeps for its warm children: as
// many as run at once at a high concurrency, and the pool.
const pooledGroups = 64

// slot is a child forked ahead of demand: namespaces made, work dir mounted, already
// in a cgroup of its own, waiting for a program.
type slot struct {
	c      *child
	g      *cgroup.Group
	groups *cgroup.Pool // where g goes back; nil: g is removed (a session's)
	limits job.Limits   // what its mounts and cgroup were made for
	// unreserve gives the slot's share of the storage budget back; idempotent.
	unreserve func()
}

// release kills the slot's child, waits until it is reaped (and with it, as pid 1
// of its namespace, every process it started), and gives its cgroup back to the pool,
// which keeps it only if it is empty. The caller must have closed the child's work
// dir before: the tmpfs it holds open is charged to the group.
func (s *slot) release() {
	s.c.close()
	if s.groups != nil {
		_ = s.groups.Put(s.g)
	} else {
		_ = s.g.Destroy()
	}
	s.unreserve()
}

// newSlot takes a cgroup with limits l from the pool and forks a child from z into it.
func (r *Runner) newSlot(ctx context.Context, z *zygote, l job.Limits) (*slot, error) {
	unreserve, err := r.storage.reserve(l)
	if err != nil {
		return nil, err
	}
	cu := cleanup.Make(unreserve)
	defer cu.Clean()
	g, err := r.groups.Get(cgroupLimits(l))
	if err != nil {
		return nil, fmt.Errorf("make a warm child's cgroup: %w", err)
	}
	// The child, if any, is gone by now (spawn's own cleanup): an empty group goes back.
	cu.Add(func() { _ = r.groups.Put(g) })
	c, err := z.spawn(ctx, l, g)
	if err != nil {
		return nil, err
	}
	cu.Release()
	return &slot{c: c, g: g, groups: r.groups, limits: l, unreserve: unreserve}, nil
}

// prefork keeps r.slots full of ready children until ctx ends. When the zygote
// cannot run it waits and tries again; executions meanwhile fork on demand or run
// cold.
func (r *Runner) prefork(ctx context.Context) {
	defer r.bg.Done()
	l := job.DefaultLimits()
	for {
		z, err := r.zygote(ctx, true)
		var s *slot
		if err == nil {
			s, err = r.newSlot(ctx, z, l)
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
func (r *Runner) takeSlot(ctx context.Context, z *zygote, l job.Limits) (*slot, error) {
	for {
		var s *slot
		select {
		case s = <-r.slots:
		default:
			return r.newSlot(ctx, z, l)
		}
		if !s.c.running() || s.limits.TmpBytes != l.TmpBytes || s.limits.WorkBytes != l.WorkBytes {
			// Dead with an old zygote, or mounts of the wrong size: not for this run.
			// Its storage is free for the new slot now, not once it is torn down.
			s.unreserve()
			r.cleanupLater(s.release)
			if !s.c.running() {
				continue
			}
			return r.newSlot(ctx, z, l)
		}
		// Its group was made for the default limits: set this run's, raising or
		// lowering each. Should the kernel refuse (a cut below what the idle child
		// holds), a group made for l from the start takes its place. The group has
		// them already when they are the same (most runs): no write.
		if cgroupLimits(l) == cgroupLimits(s.limits) {
			s.limits = l
			return s, nil
		}
		if err := s.g.Set(cgroupLimits(l)); err != nil {
			r.log.Warn("a preforked child could not take the run's limits; forking another", "err", err)
			r.cleanupLater(s.release)
			return r.newSlot(ctx, z, l)
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
// imports. It is a sandbox with one process, which ends: the child runs the program
// itself (as a session's init never does) and exits after it.
func (r *Runner) runWarm(ctx context.Context, req *job.Request, z *zygote) (*job.Result, error) {
	l := req.Limits
	// Out of the live set last, once its teardown is counted (cleanupLater).
	live := &liveRun{}
	defer r.live.add(live.stop)()
	s, err := r.takeSlot(ctx, z, l)
	if err != nil {
		return nil, err
	}
	c, g := s.c, s.g
	work, err := c.workDir()
	if err != nil {
		r.cleanupLater(s.release)
		return nil, fmt.Errorf("sandbox: open /work: %w", hostFree(err))
	}
	kill := func() { c.kill(); _ = g.Kill() }
	live.started(kill)
	defer r.cleanupLater(func() {
		work.close() // first: its tmpfs is charged to the group that goes back
		s.release()
	})
	if err := work.writeInputs(req.Files, r.inputWriter(g, l)); err != nil {
		return nil, err
	}
	// The counters of a preforked child's group include its setup: this run's share
	// is the difference from here (after the input files, whose writer's OOM kill, if
	// any, is not the program's).
	before, beforeErr := g.Counters()
	o, w, done, err := r.runOn(ctx, interpreter{ch: c.ch, netns: c.pidfd, last: true, pidfd: c.pidfd, kill: kill, freeze: g.Freeze}, req)
	o.bare, o.node = req.Language == job.LangBash, req.Language == job.LangJavaScript
	if err != nil {
		if w != nil {
			w.tee.finish() // no Result comes: stop streaming
		}
		return nil, err
	}
	if !done {
		// The child is gone (or must be): its wait status says how.
		c.kill()
		ws, err := c.wait()
		if err != nil {
			w.tee.finish()
			return nil, err
		}
		o.signaled, o.signal, o.exitCode = ws.Signaled(), ws.Signal(), ws.ExitStatus()
	}
	// The work dir is held open: it can be read though the child is gone.
	files, filesTruncated, filesErr := work.produced()
	c.kill()
	if o.frozen {
		// Listed frozen, the files are final: now nothing of the run is left to
		// run again. The processes die as they wake, after the reply.
		if err := g.KillFrozen(c.pid); err != nil {
			r.log.Warn("killing a frozen run", "err", err)
			_ = g.Kill() // kills and thaws, and waits for the group to empty
		}
	}
	o.report = w.waitOutput(5 * time.Second) // the kill closes every pipe
	o.stats, o.statsErr = g.Stats()
	o.stats, o.statsErr = o.stats.Since(before), errors.Join(o.statsErr, beforeErr)
	res := o.result(l, w)
	if filesErr != nil {
		return nil, fmt.Errorf("sandbox: collect files: %w", filesErr)
	}
	res.Files, res.FilesTruncated = files, filesTruncated
	saveOutputs(work, res, req.OutputDir)
	return res, nil
}
