package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/codeexec/codeexec/internal/job"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
	"golang.org/x/sys/unix"
)

// Limits of the zygote itself. Its children count against them only until they are
// moved into their execution's cgroup, i.e. for the milliseconds of their setup.
const (
	zygoteMemoryBytes  = 1 << 30
	zygotePids         = 1024
	zygoteTmpBytes     = 16 << 20
	zygoteStartTimeout = 2 * time.Minute // a cold page cache makes the imports slow
	childReadyTimeout  = 30 * time.Second
	outputGrace        = 50 * time.Millisecond
)

// ErrZygoteGone means the zygote exited; the runner restarts it on the next use.
var ErrZygoteGone = errors.New("sandbox: zygote exited")

// ctlMsg is one message on the zygote's control socket or a child's channel (see
// the protocol in zygote.py). Every field that comes from the sandbox is untrusted.
type ctlMsg struct {
	Op        string        `json:"op"`
	ID        uint64        `json:"id,omitempty"`
	Status    *int          `json:"status,omitempty"`
	Error     string        `json:"error,omitempty"`
	ExitCode  int           `json:"exit_code,omitempty"`
	TmpBytes  int64         `json:"tmp_bytes,omitempty"`
	WorkBytes int64         `json:"work_bytes,omitempty"`
	FileBytes int64         `json:"file_bytes,omitempty"`
	OpenFiles uint64        `json:"open_files,omitempty"`
	Seccomp   []byte        `json:"seccomp,omitempty"` // base64 in JSON
	Landlock  *landlockPlan `json:"landlock,omitempty"`
	Env       []string      `json:"env,omitempty"`  // a run's proxy variables
	Last      bool          `json:"last,omitempty"` // the child exits after this run
	// The /proc paths a child makes read-only and masks (spawn only, never empty).
	ProcReadOnly []string `json:"proc_read_only,omitempty"`
	ProcMasked   []string `json:"proc_masked,omitempty"`

	Argv  []string `json:"argv,omitempty"`  // a run's name and arguments
	Stdin bool     `json:"stdin,omitempty"` // a run's stdin pipe follows its fds
}

// zygote is a running fork server: a Python process, sandboxed like any execution,
// that has imported the scientific stack and forks a child per execution.
type zygote struct {
	r   *Runner
	cmd *exec.Cmd
	ctl *net.UnixConn
	g   *cgroup.Group
	log *capWriter // the zygote's own stderr, for diagnostics

	wmu     sync.Mutex // serializes writes on ctl
	mu      sync.Mutex
	waiters map[uint64]chan ctlMsg
	nextID  atomic.Uint64
	dead    chan struct{} // closed once the zygote has exited and been reaped
}

// startZygote starts a zygote and waits until it has imported everything. The
// caller must call close.
func (r *Runner) startZygote() (*zygote, error) {
	ours, theirs, err := seqpacketPair()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	g, err := r.cg.New(r.inst.id+"-zygote"+strconv.FormatUint(r.seq.Add(1), 10), cgroup.Limits{MemoryBytes: zygoteMemoryBytes, Pids: zygotePids})
	if err != nil {
		ours.Close()
		return nil, err
	}
	log := &capWriter{limit: 64 << 10, onLimit: func() {}}
	spec := &initSpec{
		Rootfs:   r.cfg.Rootfs,
		TmpBytes: zygoteTmpBytes,
		Env:      sandboxEnv(job.DefaultLimits()),
		Args:     append([]string{"/usr/bin/python3", "-B", "-s", "-c", harness.ZygoteSource}, r.cfg.Preload...),
		Zygote:   true,
	}
	cmd, err := r.startInit(spec, theirs, nil, log, log, g, nil)
	if err != nil {
		ours.Close()
		g.Destroy()
		return nil, err
	}
	// The zygote has its own copy. Ours closed, a zygote that dies during its imports
	// ends the read below at once (EOF) instead of at zygoteStartTimeout.
	theirs.Close()
	z := &zygote{r: r, cmd: cmd, ctl: ours, g: g, log: log, waiters: map[uint64]chan ctlMsg{}, dead: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(z.dead)
	}()
	ours.SetReadDeadline(time.Now().Add(zygoteStartTimeout))
	msg, err := readCtl(ours)
	if err != nil || msg.Op != "ready" {
		z.close()
		return nil, fmt.Errorf("sandbox: zygote did not start (%v): %s", err, log.String())
	}
	ours.SetReadDeadline(time.Time{})
	go z.readLoop()
	return z, nil
}

// seqpacketPair makes a connected SOCK_SEQPACKET pair: message boundaries and
// SCM_RIGHTS, which a pipe lacks. The second end is for the sandbox.
func seqpacketPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &os.SyscallError{Syscall: "socketpair", Err: err}
	}
	f := os.NewFile(uintptr(fds[0]), "seqpacket")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "seqpacket-peer"), nil
}

// readCtl reads one JSON message.
func readCtl(c *net.UnixConn) (ctlMsg, error) {
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return ctlMsg{}, err
	}
	if n == 0 {
		return ctlMsg{}, io.EOF
	}
	return parseCtl(buf[:n])
}

// parseCtl decodes one message from a zygote or a child: untrusted bytes.
func parseCtl(data []byte) (ctlMsg, error) {
	var m ctlMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return ctlMsg{}, fmt.Errorf("bad message from sandbox: %w", err)
	}
	return m, nil
}

func (z *zygote) send(m ctlMsg, files ...*os.File) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	z.wmu.Lock()
	defer z.wmu.Unlock()
	_, _, err = z.ctl.WriteMsgUnix(data, unix.UnixRights(fds...), nil)
	return err
}

// readLoop delivers the zygote's exit reports to the waiting children until the
// zygote is gone.
func (z *zygote) readLoop() {
	for {
		m, err := readCtl(z.ctl)
		if err != nil {
			z.mu.Lock()
			for id, ch := range z.waiters {
				ch <- ctlMsg{Op: "exit", ID: id, Error: ErrZygoteGone.Error()}
				delete(z.waiters, id)
			}
			z.mu.Unlock()
			return
		}
		if m.Op != "exit" {
			continue
		}
		z.mu.Lock()
		ch, ok := z.waiters[m.ID]
		delete(z.waiters, m.ID)
		z.mu.Unlock()
		if ok {
			ch <- m
		}
	}
}

// alive reports whether the zygote is still running.
func (z *zygote) alive() bool {
	select {
	case <-z.dead:
		return false
	default:
		return true
	}
}

// close kills the zygote and everything it forked, and removes its cgroup.
func (z *zygote) close() {
	_ = z.cmd.Process.Kill()
	<-z.dead
	z.ctl.Close()
	_ = z.g.Destroy()
}

// child is one forked interpreter with its own namespaces and work dir. The owner
// must call close.
type child struct {
	z     *zygote
	id    uint64
	pid   int // in the host's pid namespace
	pidfd int
	ch    *net.UnixConn
	exit  chan ctlMsg // the zygote's report of the child's end
}

// spawn forks a child sized for l, moves it into g before it does anything, and
// waits until its namespaces and mounts are ready. An error because the zygote died
// wraps ErrZygoteGone, so that the caller can restart it or run cold.
func (z *zygote) spawn(l job.Limits, g *cgroup.Group) (*child, error) {
	c, err := z.spawnChild(l, g)
	if err != nil && !errors.Is(err, ErrZygoteGone) && z.diedBy(time.Second) {
		err = fmt.Errorf("%w: %v", ErrZygoteGone, err)
	}
	return c, err
}

// diedBy reports whether the zygote has exited, waiting up to d for the exit to be
// observed: a broken socket can come before the wait status.
func (z *zygote) diedBy(d time.Duration) bool {
	select {
	case <-z.dead:
		return true
	case <-time.After(d):
		return false
	}
}

func (z *zygote) spawnChild(l job.Limits, g *cgroup.Group) (*child, error) {
	if !z.alive() {
		return nil, ErrZygoteGone
	}
	ours, theirs, err := seqpacketPair()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	raw, err := ours.SyscallConn()
	if err != nil {
		ours.Close()
		return nil, err
	}
	// The kernel then attaches the child's credentials, its host pid among them, to
	// what it sends: the pid comes from the kernel, not from the child's word.
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || sockErr != nil {
		ours.Close()
		return nil, fmt.Errorf("sandbox: SO_PASSCRED: %v %v", err, sockErr)
	}
	c := &child{z: z, id: z.nextID.Add(1), pidfd: -1, ch: ours, exit: make(chan ctlMsg, 1)}
	z.mu.Lock()
	z.waiters[c.id] = c.exit
	z.mu.Unlock()
	if err := z.send(ctlMsg{Op: "spawn", ID: c.id, TmpBytes: l.TmpBytes, WorkBytes: l.WorkBytes, Seccomp: z.r.filter, Landlock: z.r.landlock,
		ProcReadOnly: procReadOnly, ProcMasked: procMasked}, theirs); err != nil {
		c.forget()
		return nil, fmt.Errorf("sandbox: zygote: %w", err)
	}
	theirs.Close()
	if err := c.attach(g); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// attach learns the child's pid from its first message, moves it into g, and waits
// for it to be ready.
func (c *child) attach(g *cgroup.Group) error {
	c.ch.SetReadDeadline(time.Now().Add(childReadyTimeout))
	defer c.ch.SetReadDeadline(time.Time{})
	if err := c.readPid(); err != nil {
		return err
	}
	if err := g.Add(c.pid); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := setOOMScoreAdj(c.pid); err != nil {
		return err
	}
	if _, err := c.ch.Write([]byte("attached")); err != nil {
		return fmt.Errorf("sandbox: child: %w", err)
	}
	buf := make([]byte, 16)
	n, err := c.ch.Read(buf)
	if err != nil || string(buf[:n]) != "ready" {
		return fmt.Errorf("sandbox: child did not get ready (%v): %s", err, c.z.log.String())
	}
	return nil
}

// readPid reads the child's first message and the host pid the kernel attached.
func (c *child) readPid() error {
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := c.ch.ReadMsgUnix(buf, oob)
	if err != nil || n == 0 {
		select {
		case m := <-c.exit:
			c.exit <- m
			return fmt.Errorf("sandbox: child did not start: %s%s", m.Error, c.z.log.String())
		case <-time.After(time.Second):
		}
		return fmt.Errorf("sandbox: child did not start: %v", err)
	}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(scms) != 1 {
		return fmt.Errorf("sandbox: child sent no credentials")
	}
	cred, err := unix.ParseUnixCredentials(&scms[0])
	if err != nil {
		return fmt.Errorf("sandbox: child credentials: %w", err)
	}
	c.pid = int(cred.Pid)
	// A pidfd names this process for good: no signal can reach a recycled pid.
	if c.pidfd, err = unix.PidfdOpen(c.pid, 0); err != nil {
		return &os.SyscallError{Syscall: "pidfd_open", Err: err}
	}
	return nil
}

// running reports whether the child has not yet been reported dead.
func (c *child) running() bool {
	select {
	case m := <-c.exit:
		c.exit <- m
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to the child; as pid 1 of its namespace, it takes every process
// it started with it.
func (c *child) kill() {
	if c.pidfd >= 0 {
		_ = unix.PidfdSendSignal(c.pidfd, unix.SIGKILL, nil, 0)
	}
}

// signal sends sig to the child through its pidfd, which no recycled pid can stand
// for. A child that has already exited is no error: its end is reported anyway.
func (c *child) signal(sig unix.Signal) error {
	if c.pidfd < 0 {
		return nil
	}
	if err := unix.PidfdSendSignal(c.pidfd, sig, nil, 0); err != nil && err != unix.ESRCH {
		return &os.SyscallError{Syscall: "pidfd_send_signal", Err: err}
	}
	return nil
}

// wait returns the child's wait status once the zygote has reaped it.
func (c *child) wait() (syscall.WaitStatus, error) {
	select {
	case m := <-c.exit:
		c.exit <- m // keep it for a second caller
		if m.Status == nil {
			return 0, fmt.Errorf("sandbox: child %d: %s", c.id, m.Error)
		}
		return syscall.WaitStatus(*m.Status), nil
	case <-time.After(10 * time.Second):
		return 0, fmt.Errorf("sandbox: child %d was not reaped", c.id)
	}
}

func (c *child) forget() {
	c.z.mu.Lock()
	delete(c.z.waiters, c.id)
	c.z.mu.Unlock()
	c.ch.Close()
}

// close kills the child if it still runs and releases everything of it.
func (c *child) close() {
	c.kill()
	c.ch.Close()
	if c.pidfd >= 0 {
		_, _ = c.wait()
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
	c.forget()
}

// workDir opens the child's /work as the host reaches it, before any program of the
// child runs; the caller must close it.
func (c *child) workDir() (*workDir, error) {
	dir := "/proc/" + strconv.Itoa(c.pid) + "/root" + sandboxWorkDir
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &workDir{dir: dir, root: root, uid: c.z.r.cfg.HostUID + sandboxUID, inputs: newStamps()}, nil
}

// exec runs one program in the child, which must already be in its cgroup g. It
// returns when the program has finished (alive: the child waits for more) or the
// child has died. The output readers may still run; call w.waitOutput.
func (c *child) exec(ctx context.Context, req *job.Request, g *cgroup.Group, last bool) (o outcome, w *watch, alive bool, err error) {
	l := req.Limits
	code, err := memfdWith("code", req.Code)
	if err != nil {
		return o, nil, false, err
	}
	defer code.Close()
	run := ctlMsg{Op: "run", FileBytes: l.FileBytes, OpenFiles: l.OpenFiles, Last: last,
		Argv: append([]string{req.Name}, req.Args...)}
	if req.Network != nil {
		// The proxy serves this run only; its connections end with it.
		link, err := c.z.r.openEgress(c.pidfd, req.Network)
		if err != nil {
			return o, nil, false, err
		}
		defer func() { o.network = link.close() }()
		run.Env = proxyEnv(link.addr)
	}
	var ends []*os.File
	defer func() {
		for _, f := range ends {
			f.Close()
		}
	}()
	pipe := func() (*os.File, *os.File) {
		r, w, e := os.Pipe()
		if e != nil {
			err = e
			return nil, nil
		}
		ends = append(ends, w)
		return r, w
	}
	outR, outW := pipe()
	errR, errW := pipe()
	repR, repW := pipe()
	if err != nil {
		for _, f := range []*os.File{outR, errR, repR} {
			if f != nil {
				f.Close()
			}
		}
		return o, nil, false, err
	}
	stdin, err := newStdinFeed(req.Stdin)
	if err != nil {
		for _, f := range []*os.File{outR, errR, repR} {
			f.Close()
		}
		return o, nil, false, fmt.Errorf("sandbox: stdin: %w", err)
	}
	defer stdin.close()
	fds := []int{int(code.Fd()), int(outW.Fd()), int(errW.Fd()), int(repW.Fd())}
	if stdin != nil {
		run.Stdin = true
		fds = append(fds, int(stdin.file().Fd()))
	}
	w = newWatch(l)
	w.readOutput(outR, errR, repR)
	start := time.Now()
	data, _ := json.Marshal(run)
	if _, _, err := c.ch.WriteMsgUnix(data, unix.UnixRights(fds...), nil); err != nil {
		c.kill()
		w.disarm()
		return o, w, false, fmt.Errorf("sandbox: send program: %w", err)
	}
	for _, f := range ends {
		f.Close()
	}
	ends = nil
	stdin.start()
	w.tee = newTee(w, req.Stdout, req.Stderr) // from the first byte kept, whenever it came
	w.start(ctx, func() { c.kill(); _ = g.Kill() })
	m, rerr := readCtl(c.ch)
	o.duration = time.Since(start)
	if last {
		// The harness exits right after "done". The program could forge the message
		// and carry on, so the run is over only once the child has exited; until
		// then the watch still enforces every limit.
		waitExit(c.pidfd)
	}
	w.disarm()
	o.stopped = w.reason()
	if rerr == nil && m.Op == "done" && o.stopped == "" {
		o.exitCode = m.ExitCode
		return o, w, !last, nil
	}
	// The child is gone (or must be): its wait status says how.
	c.kill()
	ws, werr := c.wait()
	if werr != nil {
		return o, w, false, werr
	}
	o.signaled, o.signal, o.exitCode = ws.Signaled(), ws.Signal(), ws.ExitStatus()
	return o, w, false, nil
}

// waitExit returns once the process pidfd refers to has exited (not necessarily
// been reaped).
func waitExit(pidfd int) {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			return
		}
	}
}

// memfdWith returns an anonymous file holding s, positioned at its start.
func memfdWith(name, s string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, &os.SyscallError{Syscall: "memfd_create", Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
