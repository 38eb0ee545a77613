package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"golang.org/x/sys/unix"
)

// The processes of a session: interpreter contexts and commands, each forked by the
// session's init on request (see zygote.py) and each a process of its own — with its
// own id, pidfd, stdio and exit status — in the session's namespaces, cgroup and file
// system, as runc's Container.Run(process) and gVisor's Execute/WaitPID/SignalProcess
// put processes in a container.

// ErrContextEnded is returned by a Context whose interpreter is gone: closed, or
// killed by a limit. Its variables are lost; the session's files are not.
var ErrContextEnded = errors.New("sandbox: context ended")

// ErrProcessDone is returned by Process.Signal once the process has exited.
var ErrProcessDone = errors.New("sandbox: process already finished")

// Process kinds, as ProcessInfo.Kind reports them.
const (
	KindContext = "context"
	KindCommand = "command"
)

// processStartTimeout bounds the start of a context or command: a fork and two
// messages, unless the sandbox is starved of CPU or memory.
const processStartTimeout = 30 * time.Second

// commandOutputGrace is how long Process.Wait waits, once the command has exited,
// for its stdout and stderr to reach EOF: a process it left running (`server &`) may
// hold them open for ever. What that process writes later is not read.
const commandOutputGrace = time.Second

// proc is one process of a session that the session started. Its end is reported
// by the init (the process is the init's child), or, if the init dies first, is the
// SIGKILL the kernel sends every process of a pid namespace whose init is gone.
type proc struct {
	id   uint64
	kind string
	args []string // a command's argv

	// nspid is the process's pid in the session's pid namespace, as the kernel
	// reported it at the start (0 before).
	nspid int

	mu     sync.Mutex
	pidfd  int // -1 before the start and once the process has ended
	done   chan struct{}
	status syscall.WaitStatus
	err    error // why the process could not be started
}

func newProc(id uint64, kind string, args []string) *proc {
	return &proc{id: id, kind: kind, args: args, pidfd: -1, done: make(chan struct{})}
}

// finish records the process's end; only the first call counts.
func (p *proc) finish(ws syscall.WaitStatus, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return
	default:
	}
	p.status, p.err = ws, err
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	close(p.done)
}

// ended reports whether the process's end is known.
func (p *proc) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig through the process's pidfd, which no recycled pid can stand for.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd < 0 {
		return ErrProcessDone
	}
	if err := unix.PidfdSendSignal(p.pidfd, sig, nil, 0); err != nil && err != unix.ESRCH {
		return &os.SyscallError{Syscall: "pidfd_send_signal", Err: err}
	}
	return nil
}

// wait returns the process's wait status once it has ended, waiting at most d.
func (p *proc) wait(d time.Duration) (syscall.WaitStatus, error) {
	select {
	case <-p.done:
	case <-time.After(d):
		return 0, fmt.Errorf("sandbox: %s %d was not reaped", p.kind, p.id)
	}
	return p.status, p.err
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code, or 128 + the signal's number when a signal ended it (as a
	// shell reports it).
	Code int
	// Signal is the signal that ended the process; 0 when it exited.
	Signal syscall.Signal
}

func exitStatus(ws syscall.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

func (e ExitStatus) String() string {
	if e.Signal != 0 {
		return "killed by signal " + e.Signal.String()
	}
	return "exit status " + strconv.Itoa(e.Code)
}

// ProcessInfo describes a process of a session.
type ProcessInfo struct {
	ID      uint64
	Kind    string   // KindContext or KindCommand
	Args    []string // a command's argv
	Running bool
	Exit    *ExitStatus // once it has ended
}

// Processes lists the session's contexts and commands, the default context among
// them once it exists, in the order they were started; ended ones stay listed.
func (s *Session) Processes() []ProcessInfo {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	slices.SortFunc(procs, func(a, b *proc) int { return int(a.id) - int(b.id) })
	infos := make([]ProcessInfo, 0, len(procs))
	for _, p := range procs {
		info := ProcessInfo{ID: p.id, Kind: p.kind, Args: slices.Clone(p.args), Running: !p.ended()}
		if !info.Running && p.err == nil {
			es := exitStatus(p.status)
			info.Exit = &es
		}
		infos = append(infos, info)
	}
	return infos
}

// startProc asks the init to fork a process of kind with the request m and the
// descriptors extra, after the channel the process gets; it returns once the process
// exists and the runner holds a pidfd on it, with the runner's end of its channel.
// The session must be held (begin).
func (s *Session) startProc(ctx context.Context, kind string, args []string, m ctlMsg, extra ...*os.File) (*proc, *net.UnixConn, error) {
	ours, theirs, err := seqpacketPair()
	if err != nil {
		return nil, nil, err
	}
	defer theirs.Close()
	if err := passCred(ours); err != nil {
		ours.Close()
		return nil, nil, err
	}
	s.mu.Lock()
	s.nextID++
	p := newProc(s.nextID, kind, args)
	s.procs[p.id] = p
	s.mu.Unlock()
	m.ID = p.id
	fail := func(err error) (*proc, *net.UnixConn, error) {
		ours.Close() // a process still waiting for "attached" exits
		p.finish(0, err)
		s.mu.Lock()
		delete(s.procs, p.id)
		s.mu.Unlock()
		return nil, nil, err
	}
	if err := s.s.c.request(&s.wmu, m, append([]*os.File{theirs}, extra...)...); err != nil {
		return fail(err)
	}
	theirs.Close()
	// The start is cut short by ctx, or by the init's end (our read then sees EOF:
	// the init's copy of the channel is gone, and the process never had one).
	stop := context.AfterFunc(ctx, func() { ours.SetReadDeadline(time.Now()) })
	defer stop()
	ours.SetReadDeadline(time.Now().Add(processStartTimeout))
	pid, err := readHello(ours)
	if err != nil {
		if ctx.Err() == nil {
			// The init's word on why may still be on its way.
			_, _ = p.wait(time.Second)
		}
		if p.ended() && p.err != nil {
			return fail(fmt.Errorf("start a %s: %w", kind, p.err))
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fail(fmt.Errorf("start a %s: %w", kind, err))
	}
	if err := s.adopt(p, pid); err != nil {
		return fail(fmt.Errorf("start a %s: %w", kind, err))
	}
	if _, err := ours.Write([]byte("attached")); err != nil {
		return fail(fmt.Errorf("start a %s: %w", kind, err))
	}
	ours.SetReadDeadline(time.Time{})
	return p, ours, nil
}

// adopt opens a pidfd on host pid for p, once sure that pid is a process of the
// session: the pid came from the kernel, but the process could have died and its pid
// been reused on the host before the pidfd was opened.
func (s *Session) adopt(p *proc, pid int) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return &os.SyscallError{Syscall: "pidfd_open", Err: err}
	}
	procs, err := s.s.g.Procs()
	var nspid int
	if err == nil {
		nspid, err = namespacePid(pid)
	}
	// Alive after the check: the pid named the same process all along.
	if err != nil || !slices.Contains(procs, pid) || unix.PidfdSendSignal(pidfd, 0, nil, 0) != nil {
		unix.Close(pidfd)
		return fmt.Errorf("process %d is not the session's (%v)", pid, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended() {
		unix.Close(pidfd)
		return fmt.Errorf("process %d ended before it started", pid)
	}
	p.pidfd, p.nspid = pidfd, nspid
	return nil
}

// namespacePid returns the pid that host pid has in its own (innermost) pid
// namespace: the last number of the NSpid line of its /proc status, the kernel's
// word. The caller checks afterwards that pid still names the same process.
func namespacePid(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read the status of process %d: %w", pid, err)
	}
	return parseNSpid(data)
}

// parseNSpid reads the innermost pid from the NSpid line of a /proc/PID/status.
func parseNSpid(status []byte) (int, error) {
	for line := range strings.SplitSeq(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "NSpid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		n, err := strconv.Atoi(f[len(f)-1])
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("NSpid %q is not a pid list", strings.TrimSpace(rest))
		}
		return n, nil
	}
	return 0, errors.New("the process status has no NSpid line")
}

// Context is an interpreter context of a session: a Python process, forked from the
// session's init, whose variables and imports persist from one Run to the next.
// Contexts of a session share its files, processes, network and limits; each keeps
// its own state. Runs in one context happen one at a time; runs in different contexts
// may overlap. The creator must call Close, or close the session.
type Context struct {
	s *Session
	p *proc
	// main is the session's default context (Session.Run): its end ends the session,
	// and a limit it meets stops the whole session, as a session has always done.
	main bool

	mu sync.Mutex // held for a whole run
	ch *net.UnixConn

	// runMu guards the fields below; it is never held across a run, so that
	// Interrupt need not wait for the run it is meant to stop.
	runMu   sync.Mutex
	w       *watch // the running program's, from before it is sent
	running bool
	ended   error
}

// NewContext starts a new interpreter context in the session. ctx bounds the start
// only. The caller must call Close, or close the session.
func (s *Session) NewContext(ctx context.Context) (*Context, error) {
	return s.newContext(ctx, false)
}

func (s *Session) newContext(ctx context.Context, main bool) (*Context, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.leave()
	defer s.release()
	return s.startContext(ctx, main)
}

// startContext starts a context; the session must be held (begin).
func (s *Session) startContext(ctx context.Context, main bool) (*Context, error) {
	p, ch, err := s.startProc(ctx, KindContext, nil, ctlMsg{Op: "context"})
	if err != nil {
		return nil, err
	}
	c := &Context{s: s, p: p, main: main, ch: ch}
	s.mu.Lock()
	s.contexts = append(s.contexts, c)
	s.mu.Unlock()
	return c, nil
}

// ID identifies the context among the session's processes.
func (c *Context) ID() uint64 { return c.p.id }

// Run executes req in the context, with the session's limits lowered as
// Session.Run describes. A program that exceeds a limit or kills the interpreter
// ends the context (and, for the session's default context, the session); the
// Result says why.
func (c *Context) Run(ctx context.Context, req *job.Request) (*job.Result, error) {
	l, err := c.s.runLimits(req.Limits)
	if err != nil {
		return nil, err
	}
	call := *req
	call.Limits = l
	if err := call.Validate(); err != nil {
		return nil, err
	}
	return c.run(ctx, &call, false)
}

// run executes req, whose limits are final. held says the caller has held the
// session (begin) for it: run then releases it, as it would its own hold.
func (c *Context) run(ctx context.Context, req *job.Request, held bool) (*job.Result, error) {
	s := c.s
	if !held {
		if err := s.begin(); err != nil {
			return nil, err
		}
	}
	defer s.leave()
	released := false
	release := func() error {
		if released {
			return nil
		}
		released = true
		return s.release()
	}
	defer release()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(); err != nil {
		return nil, err
	}
	if err := s.writeInputs(req.Files); err != nil {
		return nil, err
	}
	g := s.s.g
	// The group's counters run for the session's whole life: this run's share is
	// the difference from here (after the input files, whose writer's OOM kill, if
	// any, is not the program's). With commands running, it includes theirs.
	before, beforeErr := g.Stats()
	kill := func() { _ = c.p.signal(syscall.SIGKILL) }
	if c.main {
		kill = s.kill
	}
	o, w, done, err := s.r.runOn(ctx, interpreter{ch: c.ch, netns: s.s.c.pidfd, kill: kill, watching: c.setWatch, drain: s.oneRun}, req)
	o.bare, o.node = req.Language == job.LangBash, req.Language == job.LangJavaScript
	c.setWatch(nil)
	if err != nil {
		if w != nil {
			w.tee.finish() // no Result comes: stop streaming
		}
		c.end(err)
		return nil, err
	}
	if !done {
		// The interpreter is gone (or must be): its wait status says how. One that
		// was not stopped closed its channel: it has exited by itself, and its own
		// status comes first — unless it lives on, having closed fd 3 itself.
		if o.stopped == "" {
			_, _ = c.p.wait(time.Second)
		}
		kill()
		ws, err := c.p.wait(10 * time.Second)
		if err != nil {
			w.tee.finish()
			c.end(err)
			return nil, err
		}
		o.signaled, o.signal, o.exitCode = ws.Signaled(), ws.Signal(), ws.ExitStatus()
	}
	// A session's background processes may still change the work dir, racing this
	// listing.
	files, filesTruncated, filesErr := s.produced()
	grace := outputGrace
	if !done {
		grace = 5 * time.Second // the kill closes every pipe, but those of the context's children
	}
	o.report = w.waitOutput(grace)
	// Stop whatever the program left running until the next run (unless a command
	// runs). Last, so that the interpreter has gone back to waiting for its next
	// program: a process asleep freezes at once, a running one only when it next
	// gets a CPU.
	freezeErr := release()
	o.stats, o.statsErr = g.Stats()
	o.stats, o.statsErr = o.stats.Since(before), errors.Join(o.statsErr, beforeErr)
	res := o.result(req.Limits, w)
	if filesErr == nil {
		res.Files, res.FilesTruncated = files, filesTruncated
		// Before the session can end, which releases the work dir.
		saveOutputs(s.work, res, req.OutputDir)
	}
	switch {
	case freezeErr != nil:
		// The session has ended: release ended it.
		if res.Error != nil {
			res.Error.Message += "; the session has ended with it: its variables and files are gone"
		}
	case !done && c.main:
		reason := endReason(res.Status)
		s.end(fmt.Errorf("%w: the interpreter stopped (%s)", ErrSessionEnded, reason), reason)
		if res.Error != nil {
			res.Error.Message += "; the session has ended with it: its variables and files are gone"
		}
	case !done:
		c.end(fmt.Errorf("%w: the interpreter stopped (%s)", ErrContextEnded, endReason(res.Status)))
		if res.Error != nil {
			res.Error.Message += "; the context has ended with it: its variables are gone"
		}
	}
	if filesErr != nil {
		return nil, fmt.Errorf("sandbox: collect files: %w", filesErr)
	}
	return res, nil
}

// check returns why the context cannot run, if it cannot.
func (c *Context) check() error {
	c.runMu.Lock()
	ended := c.ended
	c.runMu.Unlock()
	if ended != nil {
		return ended
	}
	if !c.p.ended() {
		return nil
	}
	// Killed while idle: by the session's end, or by the kernel when the session or
	// all sandboxes together ran out of memory (a frozen process can still be chosen,
	// and dies).
	reason := EndExited
	if st, err := c.s.s.g.Stats(); err == nil && st.OOMKills > 0 {
		reason = string(job.StatusMemoryLimit)
	}
	if c.main {
		err := fmt.Errorf("%w: the interpreter was killed between runs (%s)", ErrSessionEnded, reason)
		c.s.end(err, reason)
		return c.s.endErr()
	}
	err := fmt.Errorf("%w: the interpreter was killed between runs (%s)", ErrContextEnded, reason)
	c.end(err)
	return err
}

// setWatch records the running program's watch (nil: none runs).
func (c *Context) setWatch(w *watch) {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	c.w, c.running = w, w != nil
}

// end marks the context over and kills its interpreter; the first reason stays.
func (c *Context) end(reason error) {
	c.runMu.Lock()
	if c.ended == nil {
		c.ended = reason
	}
	c.runMu.Unlock()
	_ = c.p.signal(syscall.SIGKILL)
}

// stop stops the running program, if any, for reason st: the Result then says st.
func (c *Context) stop(st job.Status) {
	c.runMu.Lock()
	w := c.w
	c.runMu.Unlock()
	if w != nil {
		w.stop(st)
	}
}

// Interrupt stops the context's running program as Ctrl-C would, and keeps the
// context: see Session.Interrupt. It returns ErrNotRunning when nothing runs, and
// the reason the context ended when it has.
func (c *Context) Interrupt() error {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	switch {
	case c.ended != nil:
		return c.ended
	case !c.running:
		return ErrNotRunning
	}
	// The process outlives this call: its pidfd is closed only after running is
	// cleared... or once it has ended, when the signal has nowhere to go.
	if err := c.p.signal(syscall.SIGINT); err != nil && !errors.Is(err, ErrProcessDone) {
		return err
	}
	return nil
}

// Close ends the context: its interpreter is killed and its variables are gone; a
// running program is stopped (its Run returns StatusKilled) and waited for. Closing
// the session's default context ends the session.
func (c *Context) Close() {
	if c.main {
		c.s.Close()
		return
	}
	c.stop(job.StatusKilled)
	c.end(fmt.Errorf("%w: closed", ErrContextEnded))
	c.mu.Lock() // the run, if any, has returned
	c.ch.Close()
	c.mu.Unlock()
}

// Command is a program to start in a session, as exec.Cmd describes one.
type Command struct {
	// Args is the program and its arguments; Args[0] is searched in the PATH of Env
	// (or the session's), e.g. {"/bin/bash", "-c", "echo hi"}.
	Args []string
	// Env adds "KEY=value" variables to the session's environment (PATH, HOME, LANG,
	// …), replacing those of the same name.
	Env []string
	// Dir is the working directory, an absolute path in the sandbox; "" is /work.
	Dir string
	// Stdin, when set, is copied into the program's standard input until it ends or
	// CloseStdin is called; nil gives it an empty one. A Read still in progress when
	// the program ends is abandoned.
	Stdin io.Reader
	// Stdout and Stderr, when set, receive the program's output as it arrives, each
	// from one goroutine: unlike a context's run, nothing is kept or capped here, and
	// a writer that blocks holds the program up once the pipe is full. nil discards.
	Stdout, Stderr io.Writer
	// Network, when set, gives the command egress through a proxy of this policy,
	// as a run's Network does: it listens on the sandbox's loopback from the start
	// until the command ends, and the command gets the proxy variables (before Env,
	// which may replace them). Processes the command leaves running lose it then.
	Network *egress.Policy
}

// maxCommandBytes bounds a command's argv, environment and dir together: the
// request that carries them is one message of at most maxInitRequest bytes once
// encoded (request checks that too, since JSON escapes can grow a string sixfold).
const maxCommandBytes = 64 << 10

// validate checks the command before anything is started.
func (cmd *Command) validate() error {
	if len(cmd.Args) == 0 || cmd.Args[0] == "" {
		return errors.New("sandbox: a command needs a program")
	}
	if cmd.Dir != "" && cmd.Dir[0] != '/' {
		return fmt.Errorf("sandbox: command dir %q is not an absolute path", cmd.Dir)
	}
	size := len(cmd.Dir)
	for _, list := range [][]string{cmd.Args, cmd.Env} {
		for _, a := range list {
			if err := argText(a); err != nil {
				return fmt.Errorf("sandbox: command: %w", err)
			}
			size += len(a) + 1
		}
	}
	for _, kv := range cmd.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("sandbox: command environment entry %q is not KEY=value", kv)
		}
	}
	if err := argText(cmd.Dir); err != nil {
		return fmt.Errorf("sandbox: command dir: %w", err)
	}
	if size > maxCommandBytes {
		return fmt.Errorf("sandbox: the command's arguments, environment and dir take %d bytes; the limit is %d", size, maxCommandBytes)
	}
	return nil
}

// Process is a command started in a session.
type Process struct {
	s *Session
	p *proc

	stdin  *stdinFeed
	copies sync.WaitGroup // stdout and stderr into the Command's writers
	outs   []*os.File     // our ends of the output pipes

	waitOnce sync.Once
	status   ExitStatus
	waitErr  error
}

// Start starts cmd in the session: a process of its own in the session's namespaces,
// cgroup and file system, as the sandbox user, with no capabilities and the same
// seccomp filter and Landlock rules as a context's programs. ctx bounds the start
// only: the process runs until it exits, is signalled or the session ends. The
// session is not frozen while a command runs. The caller must call Wait.
func (s *Session) Start(ctx context.Context, cmd *Command) (*Process, error) {
	if err := cmd.validate(); err != nil {
		return nil, err
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.leave()
	// The session stays held, and so not frozen, until the command ends.
	held := true
	defer func() {
		if held {
			s.release()
		}
	}()
	var files, ours []*os.File
	closeAll := func() {
		for _, f := range append(files, ours...) {
			f.Close()
		}
	}
	stdin, err := newStdinFeed(cmd.Stdin)
	if err != nil {
		return nil, fmt.Errorf("sandbox: command stdin: %w", err)
	}
	if stdin == nil {
		// An empty stdin: a pipe whose writer is already closed.
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("sandbox: command stdin: %w", err)
		}
		w.Close()
		files = append(files, r)
	} else {
		files = append(files, stdin.file())
	}
	for range 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			stdin.close()
			return nil, fmt.Errorf("sandbox: command output: %w", err)
		}
		files, ours = append(files, w), append(ours, r)
	}
	extra := cmd.Env
	var link *egressLink
	if cmd.Network != nil {
		link, err = s.r.openEgress(s.s.c.pidfd, cmd.Network)
		if err != nil {
			closeAll()
			stdin.close()
			return nil, err
		}
		extra = append(proxyEnv(link.addr), cmd.Env...)
	}
	env := commandEnv(s.limits, extra)
	p, ch, err := s.startProc(ctx, KindCommand, slices.Clone(cmd.Args),
		ctlMsg{Op: "command", Argv: cmd.Args, Env: env, Dir: cmd.Dir}, files...)
	for _, f := range files[1:] {
		f.Close()
	}
	if stdin == nil {
		files[0].Close()
	}
	if err != nil {
		for _, f := range ours {
			f.Close()
		}
		stdin.close()
		link.close()
		return nil, err
	}
	defer ch.Close()
	// The proxy serves the command until it ends, however it ends.
	go func() {
		<-p.done
		link.close()
	}()
	proc := &Process{s: s, p: p, stdin: stdin, outs: ours}
	for i, dst := range []io.Writer{cmd.Stdout, cmd.Stderr} {
		if dst == nil {
			dst = io.Discard
		}
		proc.copies.Add(1)
		go func() {
			defer proc.copies.Done()
			// The wrapper hides ReadFrom: a plain loop, which closing the pipe ends.
			_, _ = io.Copy(struct{ io.Writer }{dst}, ours[i])
		}()
	}
	stdin.start()
	// The channel is closed by a successful exec; a message says why it failed.
	ch.SetReadDeadline(time.Now().Add(processStartTimeout))
	m, err := readCtl(ch)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		_ = p.signal(syscall.SIGKILL)
		proc.Wait()
		return nil, fmt.Errorf("sandbox: start %q: no exec within %v", cmd.Args[0], processStartTimeout)
	}
	if err == nil {
		_ = p.signal(syscall.SIGKILL)
		proc.Wait()
		if m.Op != "error" {
			return nil, fmt.Errorf("sandbox: start %q: unexpected %q from the command", cmd.Args[0], m.Op)
		}
		return nil, fmt.Errorf("sandbox: start %q: %s", cmd.Args[0], clipText(m.Error, 512))
	}
	held = false
	go func() {
		<-p.done
		s.release()
	}()
	return proc, nil
}

// commandEnv is a command's environment: the sandbox's (without what only the
// harness needs) with extra's variables in place of those of the same name.
func commandEnv(l job.Limits, extra []string) []string {
	env := []string{}
	for _, kv := range sandboxEnv(l) {
		if k, _, _ := strings.Cut(kv, "="); !isHarnessVar(k) {
			env = append(env, kv)
		}
	}
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		env = slices.DeleteFunc(env, func(e string) bool { ek, _, _ := strings.Cut(e, "="); return ek == k })
		env = append(env, kv)
	}
	return env
}

// ID identifies the process among the session's processes.
func (p *Process) ID() uint64 { return p.p.id }

// Pid is the process's pid inside the session, as its programs see it (ps, $!,
// kill): its pid namespace's number, not the host's. It names the process only
// while it runs; Signal, not a kill by this number, is how the server reaches it.
func (p *Process) Pid() int { return p.p.nspid }

// Wait waits for the process to exit and for its output to be copied (at most
// commandOutputGrace after the exit: see there), and returns how it ended. An error
// means its end could not be learnt. Calls after the first return the same.
func (p *Process) Wait() (ExitStatus, error) {
	p.waitOnce.Do(func() {
		<-p.p.done
		if p.p.err != nil {
			p.waitErr = p.p.err
		}
		p.status = exitStatus(p.p.status)
		done := make(chan struct{})
		go func() { p.copies.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(commandOutputGrace):
			for _, f := range p.outs {
				f.Close()
			}
			<-done
		}
		for _, f := range p.outs {
			f.Close()
		}
		p.stdin.close()
	})
	return p.status, p.waitErr
}

// Exited returns a channel closed once the process has ended and been reaped: its
// pid is free then. Its output may still be on its way (Wait waits for that too).
func (p *Process) Exited() <-chan struct{} { return p.p.done }

// Signal sends sig to the process (not to processes it started). After the process
// has ended it returns ErrProcessDone.
func (p *Process) Signal(sig syscall.Signal) error { return p.p.signal(sig) }

// CloseStdin ends the process's standard input: it reads EOF once it has read what
// was already copied. A Read of Command.Stdin in progress is abandoned.
func (p *Process) CloseStdin() error {
	p.stdin.closeWriter()
	return nil
}

// argText checks that a is valid UTF-8 without NUL bytes: execve refuses NUL bytes,
// and the request carries its strings as JSON, which would alter invalid UTF-8.
func argText(a string) error {
	if strings.ContainsRune(a, 0) || !utf8.ValidString(a) {
		return fmt.Errorf("%q is not UTF-8 text without NUL bytes", clipText(a, 64))
	}
	return nil
}

// isHarnessVar reports whether k is a variable only the harness reads.
func isHarnessVar(k string) bool { return strings.HasPrefix(k, "CODEEXEC_") }

// clipText cuts s, which came from the sandbox, to at most n bytes on a rune
// boundary, marking the cut.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
