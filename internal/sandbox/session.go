package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/cleanup"
	"github.com/codeexec/codeexec/internal/job"
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

// Session is a sandbox that lives across executions: a set of namespaces, a cgroup
// and a file system holding several processes — interpreter contexts (Run uses the
// default one; NewContext makes more) and commands (Start) — in a sandbox exactly like
// a single execution's. Its first process is its init, which forks the others and
// runs no user code. Variables and imports persist in a context from one run to the
// next, files in /work for every process. Between runs the session's processes are
// frozen (cgroup freezer) — a thread or process a run leaves behind gets no CPU until
// the next run — except while a command runs: a background command (a server, say)
// must keep running, and so does everything else of the session meanwhile. The
// creator must call Close.
type Session struct {
	r       *Runner
	limits  job.Limits
	s       *slot // its child is the session's init
	work    *workDir
	inputs  *inputWriter // writes uploads and input files, charged to s.g
	untrack func()       // removes the session from the runner's live set
	// oneRun marks a pooled Node sandbox (nodepool.go): its one JavaScript run ends
	// as a one-shot run does.
	oneRun bool

	wmu    sync.Mutex // serializes requests on the init's channel
	fileMu sync.Mutex // serializes reads and writes of the work dir's stamps

	mainMu sync.Mutex // held while the default context is made

	readerDone chan struct{} // closed when readInit has returned

	mu        sync.Mutex
	ended     error  // why the session is over, once it is
	endReason string // ended's reason code: a Status or an End* constant
	// frozen is set while the session's group is frozen. Reading and writing its
	// files from the host needs no thaw; anything that needs a process of the
	// session to run must hold the session first (begin or hold).
	frozen bool
	// active counts what needs the session's processes to run: runs, starts and
	// running commands. The session is frozen when it drops to 0.
	active   int
	procs    map[uint64]*proc
	nextID   uint64
	contexts []*Context
	main     *Context // the default context, once made
	// runs counts the operations in flight (runs, starts, file operations): the
	// teardown after the end waits for them.
	runs sync.WaitGroup
}

// liveSet is what a runner has made and not yet torn down — sessions and one-shot
// executions, cold and warm — so that Close can reach every one of them, as
// net/http's Server tracks its connections for Shutdown.
type liveSet struct {
	mu  sync.Mutex
	set map[*liveEntry]struct{}
	wg  sync.WaitGroup // one per entry, done when it is removed
}

type liveEntry struct{ stop func() }

// liveRun is a one-shot execution in the live set: stop kills its processes now, or
// as soon as they exist.
type liveRun struct {
	mu      sync.Mutex
	stopped bool
	kill    func()
}

func (l *liveRun) stop() {
	l.mu.Lock()
	l.stopped = true
	kill := l.kill
	l.mu.Unlock()
	if kill != nil {
		kill()
	}
}

// started gives the run's kill function once its processes exist.
func (l *liveRun) started(kill func()) {
	l.mu.Lock()
	l.kill = kill
	stopped := l.stopped
	l.mu.Unlock()
	if stopped {
		kill()
	}
}

// add records a sandbox that stop ends (it must lead its owner to call remove soon);
// the caller must call remove once the sandbox is torn down.
func (l *liveSet) add(stop func()) (remove func()) {
	e := &liveEntry{stop: stop}
	l.mu.Lock()
	if l.set == nil {
		l.set = map[*liveEntry]struct{}{}
	}
	l.set[e] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.set, e)
			l.mu.Unlock()
			l.wg.Done()
		})
	}
}

// stopAll ends every live sandbox — killing its processes, frozen ones too — and
// waits until their owners have removed them.
func (l *liveSet) stopAll() {
	l.mu.Lock()
	entries := make([]*liveEntry, 0, len(l.set))
	for e := range l.set {
		entries = append(entries, e)
	}
	l.mu.Unlock()
	for _, e := range entries {
		e.stop()
	}
	l.wg.Wait()
}

// NewSession starts a session whose memory, process, CPU and disk limits are l's
// for its whole life; each Run may lower the time and output limits. ctx bounds the
// start, a zygote's start included. The caller must call Close.
func (r *Runner) NewSession(ctx context.Context, l job.Limits) (*Session, error) {
	return r.NewSessionWith(ctx, l, SessionOptions{})
}

// SessionOptions are a session's settings beyond its limits.
type SessionOptions struct {
	// Home shows the session's work dir at /home/user as well, and starts its
	// processes there: E2B's sandboxes, whose users and programs name that path,
	// and whose absolute paths (os.getcwd(), pwd) must be the ones its file calls
	// take. A tmpfs of the sandbox's own covers the image's /home for it. The
	// sandbox user (the same unprivileged uid) is named "user" there, as E2B's, in a
	// read-only view of /etc/passwd and /etc/group bound over the image's.
	Home bool
}

// NewSessionWith is NewSession with options o.
func (r *Runner) NewSessionWith(ctx context.Context, l job.Limits, o SessionOptions) (*Session, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if err := r.checkTotal(l); err != nil {
		return nil, err
	}
	if !r.cfg.Warm {
		return nil, ErrNoWarm
	}
	z, err := r.zygote(ctx, true)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrNoWarm, err)
	}
	return r.newSession(ctx, z, l, o)
}

func (r *Runner) newSession(ctx context.Context, z *zygote, l job.Limits, o SessionOptions) (*Session, error) {
	s, err := r.takeSlot(ctx, z, l)
	if err != nil {
		return nil, err
	}
	// A session's group goes with it rather than back to the pool: it lives long,
	// is frozen between runs, and what its programs left charged to it would be the
	// next one's. Executions, one after another, are what the pool is for.
	s.groups = nil
	// Torn down in the background: the caller need not wait for it.
	cu := cleanup.Make(func() { r.cleanupLater(s.release) })
	defer cu.Clean()
	work, err := s.c.workDir()
	if err != nil {
		return nil, fmt.Errorf("sandbox: open /work: %w", hostFree(err))
	}
	cu.Add(work.close)
	if err := s.c.seal(ctx, l, o); err != nil {
		return nil, err
	}
	cu.Release()
	sess := &Session{r: r, limits: l, s: s, work: work, inputs: r.inputWriter(s.g, l), procs: map[uint64]*proc{},
		readerDone: make(chan struct{})}
	sess.untrack = r.live.add(func() {
		sess.end(fmt.Errorf("%w: its runner was closed", ErrSessionEnded), EndClosed)
	})
	go sess.readInit()
	return sess, nil
}

// readInit delivers the init's reports of its processes' ends, until the init is
// gone; then every process of the session is: the kernel sends SIGKILL to all of a
// pid namespace when its init dies.
func (s *Session) readInit() {
	defer close(s.readerDone)
	c := s.s.c
	for {
		m, err := readCtl(c.ch)
		if err != nil {
			break
		}
		if m.Op != "exit" {
			continue
		}
		s.mu.Lock()
		p := s.procs[m.ID]
		s.mu.Unlock()
		switch {
		case p == nil:
		case m.Status != nil:
			p.finish(syscall.WaitStatus(*m.Status), nil)
		default:
			p.finish(0, fmt.Errorf("the session's init could not fork it: %s", clipText(m.Error, 512)))
		}
	}
	// A live init that broke the protocol must go too.
	c.kill()
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.finish(syscall.WaitStatus(syscall.SIGKILL), nil)
	}
}

// maxInitRequest is the largest request the init reads (zygote.py's recv_fds).
const maxInitRequest = 1 << 17

// request sends m with files to the init.
func (c *child) request(wmu *sync.Mutex, m ctlMsg, files ...*os.File) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode a request to the init: %w", err)
	}
	if len(data) > maxInitRequest {
		return fmt.Errorf("sandbox: the request takes %d bytes encoded; the limit is %d", len(data), maxInitRequest)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	wmu.Lock()
	defer wmu.Unlock()
	if _, _, err := c.ch.WriteMsgUnix(data, unix.UnixRights(fds...), nil); err != nil {
		return fmt.Errorf("send a request to the session's init: %w", err)
	}
	return nil
}

// Limits are the session's limits, fixed when it was made.
func (s *Session) Limits() job.Limits { return s.limits }

// Run executes req in the session's default context, made at the first Run. A zero
// field of req.Limits means the session's. Timeout and OutputBytes may lower the
// session's for this run. The other limits are the session's for its whole life: a
// memory limit in particular bounds the state that every run leaves, so one run
// cannot have another (a cut below what the state holds would make the kernel kill
// the interpreter), and req.Limits may only repeat them. Anything else is refused
// with ErrSessionLimits, never ignored. If the program exceeds a limit or kills the
// interpreter, the session ends — every process of it — and the Result says why.
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
	// Held from here, so that the session is not frozen between making the default
	// context and running the program in it.
	if err := s.begin(); err != nil {
		return nil, err
	}
	c, err := s.mainContext(ctx)
	if err != nil {
		s.release()
		s.leave()
		return nil, err
	}
	return c.run(ctx, &call, true)
}

// mainContext returns the default context, starting it at the first call. The
// session must be held (begin).
func (s *Session) mainContext(ctx context.Context) (*Context, error) {
	s.mainMu.Lock()
	defer s.mainMu.Unlock()
	s.mu.Lock()
	c := s.main
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := s.startContext(ctx, true)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.main = c
	s.mu.Unlock()
	return c, nil
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

// endReason names why a run ended its session, from the run's status.
func endReason(st job.Status) string {
	switch st {
	case job.StatusTimeout, job.StatusMemoryLimit, job.StatusOutputLimit, job.StatusKilled:
		return string(st)
	}
	return EndExited
}

// begin holds the session for an operation that needs its processes to run: it
// thaws the session, and the teardown after an end waits for the operation. The
// caller must call release and leave.
func (s *Session) begin() error {
	if err := s.enter(); err != nil {
		return err
	}
	if !s.s.c.running() {
		// The init was killed while the session was idle: by the runner's Close, or
		// by the kernel when all sandboxes together ran out of memory (a frozen
		// process can still be chosen, and dies).
		reason := EndExited
		if st, err := s.s.g.Stats(); err == nil && st.OOMKills > 0 {
			reason = string(job.StatusMemoryLimit)
		}
		s.leave()
		s.end(fmt.Errorf("%w: the interpreter was killed between runs (%s)", ErrSessionEnded, reason), reason)
		return s.endErr()
	}
	s.mu.Lock()
	err := s.hold()
	s.mu.Unlock()
	if err != nil {
		s.leave()
		s.end(err, EndError)
		return err
	}
	return nil
}

// enter counts an operation in flight, unless the session has ended; the caller must
// call leave.
func (s *Session) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return s.ended
	}
	s.runs.Add(1)
	return nil
}

// leave ends an operation counted by enter.
func (s *Session) leave() { s.runs.Done() }

// endErr is why the session ended; nil while it has not.
func (s *Session) endErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// hold keeps the session thawed until the matching release. s.mu must be held.
func (s *Session) hold() error {
	s.active++
	if s.active == 1 && s.frozen {
		if err := s.s.g.Thaw(); err != nil {
			s.active--
			return fmt.Errorf("sandbox: resume the session: %w", err)
		}
		s.frozen = false
	}
	return nil
}

// release undoes a hold; the last one freezes the session. Should the freeze fail,
// the session ends (EndFreezeFailed), and the error says why.
func (s *Session) release() error {
	s.mu.Lock()
	s.active--
	if s.active > 0 || s.ended != nil {
		s.mu.Unlock()
		return nil
	}
	err := s.s.g.Freeze()
	if err == nil {
		s.frozen = true
	}
	s.mu.Unlock()
	if err != nil {
		s.r.log.Warn("a session could not be frozen between runs; ending it", "err", err)
		s.end(fmt.Errorf("%w: the interpreter stopped (%s)", ErrSessionEnded, EndFreezeFailed), EndFreezeFailed)
		return fmt.Errorf("sandbox: pause the session: %w", err)
	}
	return nil
}

// kill kills every process of the session, frozen ones too.
func (s *Session) kill() {
	// Through the group first: a frozen process dies only when the group that froze
	// it kills and thaws it. Then the init, whose death takes every process of its
	// pid namespace with it.
	_ = s.s.g.Kill()
	s.s.c.kill()
}

// end marks the session over for reason (code: see EndReason) and kills its
// processes at once: a running program's Result says it was killed. Its sandbox is
// torn down in the background once the operations in flight have returned. The
// first reason stays.
func (s *Session) end(reason error, code string) {
	s.mu.Lock()
	if s.ended != nil {
		s.mu.Unlock()
		return
	}
	s.ended, s.endReason = reason, code
	contexts := slices.Clone(s.contexts)
	s.mu.Unlock()
	// Kill first: a running program's watch kills the session and its Run reports
	// it; an idle session's init is killed now, its death taking every process of
	// its pid namespace with it, and the teardown's group kill, which waits for the
	// group to be empty (and thaws a frozen one), makes sure in the background.
	for _, c := range contexts {
		c.stop(job.StatusKilled)
	}
	s.s.c.kill()
	// The teardown is counted (cleanupLater) before the session leaves the live
	// set, so that the runner's Close, which waits for the one and then the other,
	// cannot miss it.
	defer s.untrack()
	s.r.cleanupLater(func() {
		_ = s.s.g.Kill()
		s.runs.Wait()
		for _, c := range contexts {
			c.ch.Close()
		}
		// The reader goes first: it may still kill the init through its pidfd, which
		// release closes (and the number could name another process's pidfd next).
		s.s.c.ch.Close()
		<-s.readerDone
		s.s.release()
		s.work.close()
	})
}

// Interrupt stops the program running in the session's default context as Ctrl-C
// would, and keeps the session: it sends SIGINT to the interpreter, Python raises
// KeyboardInterrupt in the program's code, and the Result reports that error.
// Processes the program started are not signalled (Python's subprocess.run kills its
// child when interrupted). Code that catches KeyboardInterrupt carries on, within the
// execution's time limit; a SIGINT that comes while no program code runs (just
// before it starts, or while the harness reports) is ignored. It returns
// ErrNotRunning when nothing runs, and the reason the session ended when it has.
func (s *Session) Interrupt() error {
	s.mu.Lock()
	ended, c := s.ended, s.main
	s.mu.Unlock()
	switch {
	case ended != nil:
		return ended
	case c == nil:
		return ErrNotRunning
	}
	return c.Interrupt()
}

// Close ends the session: it kills every process of it at once — a running
// program's Run returns StatusKilled — then waits for the runs and other operations
// in flight to return. Its files are gone.
func (s *Session) Close() {
	s.end(fmt.Errorf("%w: closed", ErrSessionEnded), EndClosed)
	s.runs.Wait()
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
	ended, main := s.ended, s.main
	s.mu.Unlock()
	return ended == nil && s.s.c.running() && (main == nil || !main.p.ended())
}

// MemoryBytes is the memory the session's processes use now, as its cgroup counts it.
// It does not wait for a running execution.
func (s *Session) MemoryBytes() (int64, error) {
	st, err := s.s.g.Stats()
	return st.MemoryBytes, err
}

// writeInputs places a run's input files in the work dir.
func (s *Session) writeInputs(files []job.InputFile) error {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	return s.work.writeInputs(files, s.inputs)
}

// produced lists the files changed since the last listing.
func (s *Session) produced() ([]job.FileInfo, bool, error) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	return s.work.produced()
}

// WriteFile puts data at p in the session's work dir, whole or not at all. Its pages
// count against the session's memory limit; data that does not fit is an
// ErrStorageLimit.
func (s *Session) WriteFile(p string, data []byte) error {
	clean, err := job.CleanInputPath(p)
	if err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if s.r.cg.Version() == cgroup.V2 {
		// The writer joins the session's whole group on v2 (one hierarchy), and
		// would freeze with it: hold the session thawed for the write. On v1 it joins
		// only the memory controller, and the freezer's group does not hold it.
		s.mu.Lock()
		err := s.hold()
		s.mu.Unlock()
		if err != nil {
			s.end(err, EndError)
			return err
		}
		defer s.release()
	}
	return s.writeInputs([]job.InputFile{{Path: clean, Data: data}})
}

// ReadFile returns the content of the regular file p in the session's work dir, at
// most max bytes of it; symlinks are not followed.
func (s *Session) ReadFile(p string, max int64) ([]byte, error) {
	clean, err := job.CleanInputPath(p)
	if err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
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
// followed); a directory is ErrNotAFile.
func (s *Session) RemoveFile(p string) error {
	clean, err := job.CleanInputPath(p)
	if err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
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
	if err := s.enter(); err != nil {
		return nil, false, err
	}
	defer s.leave()
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	files, _, truncated, err := s.work.list(s.work.inputs.fresh())
	return files, truncated, err
}
