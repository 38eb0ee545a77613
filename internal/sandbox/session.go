package sandbox

import (
	"context"
	"errors"
	"fmt"
	"github.com/codeexec/codeexec/internal/job"
	"io"
	"os"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"golang.org/x/sys/unix"
)

// ErrSessionEnded is returned by a Session whose interpreter is gone: closed, or
// killed by a limit. Its state is lost; make a new session.
var ErrSessionEnded = errors.New("sandbox: session ended")

// ErrNotAFile is returned for a path in a work dir that names a directory or
// another thing that is not a file.
var ErrNotAFile = errors.New("sandbox: not a regular file")

// ErrNotRunning is returned by Interrupt when the session runs nothing.
var ErrNotRunning = errors.New("sandbox: no execution is running in the session")

// ErrNoWarm is returned when a session is asked for but the warm path is disabled or
// its zygote cannot run. Sessions need the warm path.
var ErrNoWarm = errors.New("sandbox: sessions need the warm path")

// ErrSessionLimits is returned by Session.Run for limits a session cannot give one
// run: more time or output than the session's, or memory, process, CPU or disk
// limits other than the session's own.
var ErrSessionLimits = errors.New("sandbox: a session's limits are set when it is made")

// Reasons a session ended, as Session.EndReason reports them. A run that ends the
// session because of a limit gives that limit's Status (timeout, memory_limit,
// output_limit, killed).
const (
	EndExited       = "exited"        // the interpreter exited or crashed by itself
	EndFreezeFailed = "freeze_failed" // what the run left running could not be stopped
	EndClosed       = "closed"        // Close, or the runner's
	EndError        = "error"         // the sandbox failed
)

// Session is an interpreter kept alive between executions: variables, imports and
// files in /work persist from one Run to the next, in a sandbox exactly like a single
// execution's. Executions in a session run one at a time. Between them the session's
// processes are frozen (cgroup freezer): a thread or process a run leaves behind gets
// no CPU until the next run. The creator must call Close.
type Session struct {
	r      *Runner
	limits job.Limits

	mu        sync.Mutex // held for the whole of an execution
	s         *slot
	work      *workDir
	inputs    *inputWriter // writes uploads and input files, charged to s.g
	ended     error        // why the session is over, once it is; written under mu and runMu
	endReason string       // ended's reason code: a Status or an End* constant
	// frozen is set while the session's group is frozen. Reading and writing its
	// files from the host needs no thaw; anything that needs a process of the
	// session to run (its interpreter above all) must call thaw first.
	frozen bool

	// runMu guards running; it is never held across an execution, so that Interrupt
	// need not wait for the execution it is meant to stop.
	runMu   sync.Mutex
	running bool // the interpreter is running a program (from before it is sent)
}

// liveSessions are a runner's sessions that have not ended.
type liveSessions struct {
	mu  sync.Mutex
	set map[*Session]struct{}
}

func (l *liveSessions) add(s *Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set == nil {
		l.set = map[*Session]struct{}{}
	}
	l.set[s] = struct{}{}
}

func (l *liveSessions) remove(s *Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.set, s)
}

// killAll kills the processes of every live session, frozen ones too. The sessions
// still end, and release what they hold, when they are closed.
func (l *liveSessions) killAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.set {
		_ = s.s.g.Kill()
	}
}

// NewSession starts a session whose memory, process, CPU and disk limits are l's
// for its whole life; each Run may lower the time and output limits. The caller must
// call Close.
func (r *Runner) NewSession(l job.Limits) (*Session, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if err := r.checkTotal(l); err != nil {
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

func (r *Runner) newSession(z *zygote, l job.Limits) (*Session, error) {
	s, err := r.takeSlot(z, l)
	if err != nil {
		return nil, err
	}
	work, err := s.c.workDir()
	if err != nil {
		r.cleanupLater(s.release)
		return nil, fmt.Errorf("sandbox: open /work: %w", hostFree(err))
	}
	sess := &Session{r: r, limits: l, s: s, work: work, inputs: r.inputWriter(s.g, l)}
	r.live.add(sess)
	return sess, nil
}

// Limits are the session's limits, fixed when it was made.
func (s *Session) Limits() job.Limits { return s.limits }

// Run executes req in the session. A zero field of req.Limits means the session's.
// Timeout and OutputBytes may lower the session's for this run. The other limits are
// the session's for its whole life: a memory limit in particular bounds the state
// that every run leaves, so one run cannot have another (a cut below what the state
// holds would make the kernel kill the interpreter), and req.Limits may only repeat
// them. Anything else is refused with ErrSessionLimits, never ignored. If the program
// exceeds a limit or kills the interpreter, the session ends and the Result says why.
func (s *Session) Run(ctx context.Context, req *job.Request) (*job.Result, error) {
	l, err := s.runLimits(req.Limits)
	if err != nil {
		return nil, err
	}
	call := *req
	call.Limits = l
	if err := call.Validate(); err != nil {
		return nil, err
	}
	return s.run(ctx, &call, false)
}

// runLimits merges a run's limits asked into the session's, or says which cannot be.
func (s *Session) runLimits(ask job.Limits) (job.Limits, error) {
	l := s.limits
	if ask.Timeout != 0 {
		if ask.Timeout > l.Timeout {
			return job.Limits{}, fmt.Errorf("%w: timeout %v is more than the session's %v", ErrSessionLimits, ask.Timeout, l.Timeout)
		}
		l.Timeout = ask.Timeout
	}
	if ask.OutputBytes != 0 {
		if ask.OutputBytes > l.OutputBytes {
			return job.Limits{}, fmt.Errorf("%w: output %d bytes is more than the session's %d", ErrSessionLimits, ask.OutputBytes, l.OutputBytes)
		}
		l.OutputBytes = ask.OutputBytes
	}
	fixed := []struct {
		name      string
		ask, have any
		zero      bool
	}{
		{"memory", ask.MemoryBytes, l.MemoryBytes, ask.MemoryBytes == 0},
		{"pids", ask.Pids, l.Pids, ask.Pids == 0},
		{"cpus", ask.CPUs, l.CPUs, ask.CPUs == 0},
		{"work dir bytes", ask.WorkBytes, l.WorkBytes, ask.WorkBytes == 0},
		{"tmp bytes", ask.TmpBytes, l.TmpBytes, ask.TmpBytes == 0},
		{"file bytes", ask.FileBytes, l.FileBytes, ask.FileBytes == 0},
		{"open files", ask.OpenFiles, l.OpenFiles, ask.OpenFiles == 0},
	}
	for _, f := range fixed {
		if !f.zero && f.ask != f.have {
			return job.Limits{}, fmt.Errorf("%w: %s %v differs from the session's %v", ErrSessionLimits, f.name, f.ask, f.have)
		}
	}
	return l, nil
}

// run executes req; with last, the interpreter is killed afterwards.
func (s *Session) run(ctx context.Context, req *job.Request, last bool) (*job.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return nil, s.ended
	}
	c, g := s.s.c, s.s.g
	if !c.running() {
		// Killed while idle: by the runner's Close, or by the kernel when all
		// sandboxes together ran out of memory (a frozen process can still be
		// chosen, and dies).
		reason := EndExited
		if st, err := g.Stats(); err == nil && st.OOMKills > 0 {
			reason = string(job.StatusMemoryLimit)
		}
		s.end(fmt.Errorf("%w: the interpreter was killed between runs (%s)", ErrSessionEnded, reason), reason)
		return nil, s.ended
	}
	// Thawed first: on cgroup v2 the writer of the input files joins the session's
	// group, and would freeze with it.
	if err := s.thaw(); err != nil {
		s.end(err, EndError)
		return nil, err
	}
	if err := s.work.writeInputs(req.Files, s.inputs); err != nil {
		if ferr := s.freeze(); ferr != nil {
			s.end(ferr, EndFreezeFailed)
		}
		return nil, err
	}
	// The group's counters run for the session's whole life: this run's share is
	// the difference from here (after the input files, whose writer's OOM kill, if
	// any, is not the program's).
	before, beforeErr := g.Stats()
	s.setRunning(true)
	o, w, alive, err := c.exec(ctx, req, g, last)
	s.setRunning(false)
	if err != nil {
		if w != nil {
			w.tee.finish() // no Result comes: stop streaming
		}
		s.end(err, EndError)
		return nil, err
	}
	// The work dir is held open: it can be read even when the child is gone. A
	// session's background processes may still change it, racing this listing.
	files, filesTruncated, filesErr := s.work.produced()
	grace := outputGrace
	if last || !alive {
		c.kill()
		grace = 5 * time.Second // the kill closes every pipe
	}
	o.report = w.waitOutput(grace)
	var freezeErr error
	if alive && !last {
		// Stop whatever the program left running until the next run. Last, so that
		// the interpreter has gone back to waiting for its next program: a process
		// asleep freezes at once, a running one only when it next gets a CPU.
		if freezeErr = s.freeze(); freezeErr != nil {
			s.r.log.Warn("a session could not be frozen between runs; ending it", "err", freezeErr)
			c.kill()
			alive = false
		}
	}
	o.stats, o.statsErr = g.Stats()
	o.stats, o.statsErr = o.stats.Since(before), errors.Join(o.statsErr, beforeErr)
	res := o.result(req.Limits, w)
	if filesErr == nil {
		res.Files, res.FilesTruncated = files, filesTruncated
		// Before end, which releases the work dir.
		saveOutputs(s.work, res, req.OutputDir)
	}
	if !alive && !last {
		reason := endReason(res.Status)
		if freezeErr != nil {
			reason = EndFreezeFailed
		}
		s.end(fmt.Errorf("%w: the interpreter stopped (%s)", ErrSessionEnded, reason), reason)
		if res.Error != nil {
			res.Error.Message += "; the session has ended with it: its variables and files are gone"
		}
	}
	if filesErr != nil {
		return nil, fmt.Errorf("sandbox: collect files: %w", filesErr)
	}
	return res, nil
}

// endReason names why a run ended its session, from the run's status.
func endReason(st job.Status) string {
	switch st {
	case job.StatusTimeout, job.StatusMemoryLimit, job.StatusOutputLimit, job.StatusKilled:
		return string(st)
	}
	return EndExited
}

// freeze stops the session's processes until thaw. s.mu must be held.
func (s *Session) freeze() error {
	if err := s.s.g.Freeze(); err != nil {
		return fmt.Errorf("sandbox: pause the session: %w", err)
	}
	s.frozen = true
	return nil
}

// thaw lets the session's processes run again. s.mu must be held.
func (s *Session) thaw() error {
	if !s.frozen {
		return nil
	}
	if err := s.s.g.Thaw(); err != nil {
		return fmt.Errorf("sandbox: resume the session: %w", err)
	}
	s.frozen = false
	return nil
}

// end marks the session over for reason (code: see EndReason) and releases its
// interpreter in the background. s.mu must be held.
func (s *Session) end(reason error, code string) {
	if s.ended != nil {
		return
	}
	s.runMu.Lock()
	s.ended, s.endReason = reason, code
	s.runMu.Unlock()
	s.r.live.remove(s)
	s.r.cleanupLater(func() {
		// Through the group first: a frozen process dies only when the group that
		// froze it kills and thaws it.
		_ = s.s.g.Kill()
		s.s.release()
		s.work.close()
	})
}

func (s *Session) setRunning(b bool) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	s.running = b
}

// Interrupt stops the running execution as Ctrl-C would, and keeps the session: it
// sends SIGINT to the interpreter, Python raises KeyboardInterrupt in the program's
// code, and the Result reports that error. Processes the program started are not
// signalled (Python's subprocess.run kills its child when interrupted). Code that
// catches KeyboardInterrupt carries on, within the execution's time limit; a SIGINT
// that comes while no program code runs (just before it starts, or while the
// harness reports) is ignored. It returns ErrNotRunning when nothing runs, and the
// reason the session ended when it has.
func (s *Session) Interrupt() error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	switch {
	case s.ended != nil:
		return s.ended
	case !s.running:
		return ErrNotRunning
	}
	// The child outlives this call: it is released only after running is cleared.
	return s.s.c.signal(unix.SIGINT)
}

// Close ends the session: its processes and files are gone. It waits for a running
// execution to finish.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.end(fmt.Errorf("%w: closed", ErrSessionEnded), EndClosed)
}

// EndReason says why the session ended: "" while it has not, else the Status of the
// run that ended it (timeout, memory_limit, output_limit, killed), or EndExited,
// EndFreezeFailed, EndClosed or EndError.
func (s *Session) EndReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endReason
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
	clean, err := job.CleanInputPath(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return s.ended
	}
	if s.r.cg.Version() == cgroup.V2 && s.frozen {
		// The writer joins the session's whole group on v2 (one hierarchy), and
		// would freeze with it: thaw for the write. On v1 it joins only the memory
		// controller, and the freezer's group does not hold it.
		if err := s.thaw(); err != nil {
			s.end(err, EndError)
			return err
		}
		defer func() {
			if err := s.freeze(); err != nil {
				s.end(err, EndFreezeFailed)
			}
		}()
	}
	return s.work.writeInputs([]job.InputFile{{Path: clean, Data: data}}, s.inputs)
}

// ReadFile returns the content of the regular file p in the session's work dir, at
// most max bytes of it; symlinks are not followed.
func (s *Session) ReadFile(p string, max int64) ([]byte, error) {
	clean, err := job.CleanInputPath(p)
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
		return nil, fmt.Errorf("%w: %q", ErrNotAFile, clean)
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

// RemoveFile deletes p from the session's work dir: a file, or a symlink (never
// followed); a directory is ErrNotAFile. It waits for a running execution.
func (s *Session) RemoveFile(p string) error {
	clean, err := job.CleanInputPath(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return s.ended
	}
	// As the sandbox user: the server removes nothing the program could not.
	return asFSUser(s.work.uid, func() error {
		root, release, err := s.work.open()
		if err != nil {
			return err
		}
		defer release()
		fi, err := root.Lstat(clean)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return fmt.Errorf("%w: %q is a directory", ErrNotAFile, clean)
		}
		if err := root.Remove(clean); err != nil {
			return err
		}
		s.work.inputs.remove(clean)
		return nil
	})
}

// Files lists the regular files in the session's work dir: at most maxListedFiles,
// within the walk budgets; the bool says when some were left out.
func (s *Session) Files() ([]job.FileInfo, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return nil, false, s.ended
	}
	files, _, truncated, err := s.work.list(s.work.inputs.fresh())
	return files, truncated, err
}
