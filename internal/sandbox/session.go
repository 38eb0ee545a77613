package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrSessionEnded is returned by a Session whose interpreter is gone: closed, or
// killed by a limit. Its state is lost; make a new session.
var ErrSessionEnded = errors.New("sandbox: session ended")

// ErrNoWarm is returned when a session is asked for but the warm path is disabled or
// its zygote cannot run. Sessions need the warm path.
var ErrNoWarm = errors.New("sandbox: sessions need the warm path")

// Session is an interpreter kept alive between executions: variables, imports and
// files in /work persist from one Run to the next, in a sandbox exactly like a single
// execution's. Executions in a session run one at a time. The creator must call
// Close.
type Session struct {
	r      *Runner
	limits Limits

	mu     sync.Mutex // held for the whole of an execution
	s      *slot
	work   *workDir
	inputs *inputWriter // writes uploads and input files, charged to s.g
	ended  error        // why the session is over, once it is
	cpuUse time.Duration
}

// NewSession starts a session whose memory, process, CPU and disk limits are l's
// for its whole life; each Run may lower the time and output limits. The caller must
// call Close.
func (r *Runner) NewSession(l Limits) (*Session, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if !r.cfg.Warm {
		return nil, ErrNoWarm
	}
	z, err := r.zygote()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoWarm, err)
	}
	return r.newSession(z, l)
}

func (r *Runner) newSession(z *zygote, l Limits) (*Session, error) {
	s, err := r.takeSlot(z, l)
	if err != nil {
		return nil, err
	}
	work, err := s.c.workDir()
	if err != nil {
		r.cleanupLater(s.release)
		return nil, fmt.Errorf("sandbox: open /work: %w", hostFree(err))
	}
	return &Session{r: r, limits: l, s: s, work: work, inputs: r.inputWriter(s.g, l)}, nil
}

// Run executes req in the session. req.Limits may lower the session's timeout and
// output limits; the others are the session's. If the program exceeds a limit or
// kills the interpreter, the session ends and the Result says why.
func (s *Session) Run(ctx context.Context, req *Request) (*Result, error) {
	l := s.limits
	l.Timeout = min(l.Timeout, req.Limits.Timeout)
	l.OutputBytes = min(l.OutputBytes, req.Limits.OutputBytes)
	call := *req
	call.Limits = l
	if err := call.Validate(); err != nil {
		return nil, err
	}
	return s.run(ctx, &call, false)
}

// run executes req; with last, the interpreter is killed afterwards.
func (s *Session) run(ctx context.Context, req *Request, last bool) (*Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return nil, s.ended
	}
	c, g := s.s.c, s.s.g
	if err := s.work.writeInputs(req.Files, s.inputs); err != nil {
		return nil, err
	}
	o, w, alive, err := c.exec(ctx, req, g, last)
	if err != nil {
		s.end(err)
		return nil, err
	}
	// The work dir is held open: it can be read even when the child is gone. A
	// session's background processes may still change it, racing this listing.
	files, filesTruncated, filesErr := s.work.produced(req.OutputDir)
	grace := outputGrace
	if last || !alive {
		c.kill()
		grace = 5 * time.Second // the kill closes every pipe
	}
	o.report = w.waitOutput(grace)
	o.stats, o.statsErr = g.Stats()
	o.stats.OOMKills -= s.inputs.oomKills // a writer's, not the program's
	// CPU time is the group's total; report this execution's share.
	total := o.stats.CPUTime
	o.stats.CPUTime -= s.cpuUse
	s.cpuUse = total
	res := o.result(req.Limits, w)
	if !alive {
		s.end(fmt.Errorf("%w: the interpreter stopped (%s)", ErrSessionEnded, res.Status))
	}
	if filesErr != nil {
		return nil, fmt.Errorf("sandbox: collect files: %w", filesErr)
	}
	if files != nil {
		res.Files, res.FilesTruncated = files, filesTruncated
	}
	if err := saveImages(res.Images, req.OutputDir); err != nil {
		return nil, fmt.Errorf("sandbox: save figures: %w", err)
	}
	return res, nil
}

// end marks the session over for reason and releases its interpreter in the
// background. s.mu must be held.
func (s *Session) end(reason error) {
	if s.ended != nil {
		return
	}
	s.ended = reason
	s.r.cleanupLater(func() {
		s.s.release()
		s.work.close()
	})
}

// Close ends the session: its processes and files are gone. It waits for a running
// execution to finish.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.end(fmt.Errorf("%w: closed", ErrSessionEnded))
}

// Alive reports whether the session can still run code.
func (s *Session) Alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended == nil && s.s.c.running()
}

// MemoryBytes is the memory the session's processes use now, as its cgroup counts it.
// It does not wait for a running execution.
func (s *Session) MemoryBytes() (int64, error) {
	st, err := s.s.g.Stats()
	return st.MemoryBytes, err
}

// WriteFile puts data at p in the session's work dir, whole or not at all. Its pages
// count against the session's memory limit; data that does not fit is an
// ErrStorageLimit.
func (s *Session) WriteFile(p string, data []byte) error {
	clean, err := CleanInputPath(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return s.ended
	}
	return s.work.writeInputs([]InputFile{{Path: clean, Data: data}}, s.inputs)
}

// ReadFile returns the content of the regular file p in the session's work dir, at
// most max bytes of it; symlinks are not followed.
func (s *Session) ReadFile(p string, max int64) ([]byte, error) {
	clean, err := CleanInputPath(p)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return nil, s.ended
	}
	root, release, err := s.work.open()
	if err != nil {
		return nil, err
	}
	defer release()
	// The program may swap the file under us: check what was opened, not the path.
	f, err := root.OpenFile(clean, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Errors of f name the host's path to the work dir: keep them to the sandbox's.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %q: %w", clean, hostFree(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sandbox: %q is not a regular file", clean)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("sandbox: read %q: %w", clean, hostFree(err))
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("sandbox: %q has more than the %d bytes allowed", clean, max)
	}
	return data, nil
}

// Files lists the regular files in the session's work dir.
func (s *Session) Files() ([]FileInfo, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return nil, false, s.ended
	}
	all := &workDir{dir: s.work.dir, root: s.work.root, inputs: map[string]fileStamp{}}
	return all.produced("")
}
