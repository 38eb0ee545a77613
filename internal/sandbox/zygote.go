package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/cleanup"
	"github.com/codeexec/codeexec/internal/job"
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

// zygoteMallocEnv puts the zygote's heap where it can be collapsed into transparent
// huge pages (zygote.py collapse_heap): Python's objects from glibc's malloc rather
// than pymalloc's 1 MiB arenas, glibc's heap advised for THP, and allocations up to
// 32 MiB from that heap rather than mmaps of their own. The zygote only: it removes
// them from its environment once read, so that nothing it forks passes them on.
var zygoteMallocEnv = []string{
	"PYTHONMALLOC=malloc",
	"GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432",
}

// ZygoteMallocEnv returns the environment the zygote starts with for its heap on
// huge pages (for the benchmark's model of it).
func ZygoteMallocEnv() []string { return slices.Clone(zygoteMallocEnv) }

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
	Empty     bool          `json:"empty,omitempty"` // a bash run's "done": nothing else left (bash_alone)
	TmpBytes  int64         `json:"tmp_bytes,omitempty"`
	WorkBytes int64         `json:"work_bytes,omitempty"`
	Rlimits   [][2]uint64   `json:"rlimits,omitempty"` // a one-shot run's or a seal's (sandboxRlimits)
	Seccomp   []byte        `json:"seccomp,omitempty"` // base64 in JSON
	Landlock  *landlockPlan `json:"landlock,omitempty"`
	Env       []string      `json:"env,omitempty"`  // a run's proxy variables and NODE_OPTIONS
	Last      bool          `json:"last,omitempty"` // the child exits after this run
	// The /proc paths a child makes read-only and masks (spawn only, never empty).
	ProcReadOnly []string `json:"proc_read_only,omitempty"`
	ProcMasked   []string `json:"proc_masked,omitempty"`

	Steps []string `json:"steps,omitempty"` // the zygote's ready: its children's setup steps

	Argv  []string `json:"argv,omitempty"`  // a run's name and arguments
	Lang  string   `json:"lang,omitempty"`  // a run's language: "" for Python, "bash" or "javascript"
	Stdin bool     `json:"stdin,omitempty"` // a run's stdin pipe follows its fds
	Dir   string   `json:"dir,omitempty"`   // a command's working directory
	Home  bool     `json:"home,omitempty"`  // a seal's: the work dir at HOME_DIR too (SessionOptions.Home)

	// Drain, in a JavaScript run of a session context, ends the run as a one-shot run
	// ends, once Node's event loop is empty, and Node with it (a pooled sandbox's run).
	Drain bool `json:"drain,omitempty"`
}

// zygote is a running fork server: a Python process, sandboxed like any execution,
// that has imported the scientific stack and forks a child per execution.
type zygote struct {
	r   *Runner
	cmd *exec.Cmd
	ctl *net.UnixConn
	g   *cgroup.Group
	log *capWriter // the zygote's own stderr, for diagnostics
	// steps are the names of a child's setup steps, in order, as the zygote reported
	// them (zygote.py's CHILD_STEPS).
	steps []string

	wmu     sync.Mutex // serializes writes on ctl
	mu      sync.Mutex
	waiters map[uint64]chan ctlMsg
	nextID  atomic.Uint64
	dead    chan struct{} // closed once the zygote has exited and been reaped
}

// startZygote starts a zygote and waits until it has imported everything. The
// caller must call close.
func (r *Runner) startZygote(ctx context.Context) (*zygote, error) {
	cu := cleanup.Cleanup{}
	defer cu.Clean()
	ours, theirs, err := seqpacketPair()
	if err != nil {
		return nil, err
	}
	cu.Add(func() { ours.Close() })
	defer theirs.Close()
	g, err := r.cg.New(r.inst.id+"-zygote"+strconv.FormatUint(r.seq.Add(1), 10), cgroup.Limits{MemoryBytes: zygoteMemoryBytes, Pids: zygotePids})
	if err != nil {
		return nil, fmt.Errorf("make the zygote's cgroup: %w", err)
	}
	cu.Add(func() { _ = g.Destroy() })
	log := &capWriter{limit: 64 << 10, onLimit: func() {}}
	spec := &initSpec{
		Rootfs:   r.cfg.Rootfs,
		TmpBytes: zygoteTmpBytes,
		Env:      append(sandboxEnv(job.DefaultLimits()), zygoteMallocEnv...),
		Args:     append([]string{"/usr/bin/python3", "-B", "-s", "-c", zygoteProgram}, r.cfg.Preload...),
		Zygote:   true,
	}
	cmd, err := r.startInit(spec, theirs, nil, log, log, g, nil)
	if err != nil {
		return nil, &ZygoteStartError{Err: err, Stderr: log.String()}
	}
	// The zygote has its own copy. Ours closed, a zygote that dies during its imports
	// ends the read below at once (EOF) instead of at zygoteStartTimeout.
	theirs.Close()
	z := &zygote{r: r, cmd: cmd, ctl: ours, g: g, log: log, waiters: map[uint64]chan ctlMsg{}, dead: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(z.dead)
	}()
	// z.close kills and waits for the zygote, then does what the steps above undo.
	cu = cleanup.Make(z.close)
	ours.SetReadDeadline(time.Now().Add(zygoteStartTimeout))
	stop := context.AfterFunc(ctx, func() { ours.SetReadDeadline(time.Now()) })
	msg, err := readCtl(ours)
	stop()
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("start the zygote: %w", ctx.Err())
	case err != nil:
		return nil, &ZygoteStartError{Err: fmt.Errorf("wait for its imports: %w", err), Stderr: log.String()}
	case msg.Op != "ready":
		return nil, &ZygoteStartError{Err: fmt.Errorf("it sent %q before ready", msg.Op), Stderr: log.String()}
	}
	ours.SetReadDeadline(time.Time{})
	z.steps = msg.Steps
	go z.readLoop()
	cu.Release()
	return z, nil
}

// ZygoteStartError is a zygote's failure to start. Its message says what failed;
// the zygote's own stderr (a Python traceback, which may name paths of the image or
// the host) is kept apart, for the operator's log: it never reaches a client.
type ZygoteStartError struct {
	Err    error
	Stderr string
}

func (e *ZygoteStartError) Error() string {
	return "sandbox: the zygote did not start: " + e.Err.Error()
}

func (e *ZygoteStartError) Unwrap() error { return e.Err }

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
		return fmt.Errorf("encode a message to the zygote: %w", err)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	z.wmu.Lock()
	defer z.wmu.Unlock()
	if _, _, err := z.ctl.WriteMsgUnix(data, unix.UnixRights(fds...), nil); err != nil {
		return fmt.Errorf("send to the zygote: %w", err)
	}
	return nil
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

// spawn forks a child sized for l, moves it into g before it does anything, and
// waits until its namespaces and mounts are ready. An error because the zygote died
// wraps ErrZygoteGone, so that the caller can restart it or run cold.
func (z *zygote) spawn(ctx context.Context, l job.Limits, g *cgroup.Group) (*child, error) {
	c, err := z.spawnChild(ctx, l, g)
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

func (z *zygote) spawnChild(ctx context.Context, l job.Limits, g *cgroup.Group) (*child, error) {
	if !z.alive() {
		return nil, ErrZygoteGone
	}
	cu := cleanup.Cleanup{}
	defer cu.Clean()
	ours, theirs, err := seqpacketPair()
	if err != nil {
		return nil, err
	}
	cu.Add(func() { ours.Close() })
	defer theirs.Close()
	// The kernel then attaches the child's credentials, its host pid among them, to
	// what it sends: the pid comes from the kernel, not from the child's word.
	if err := passCred(ours); err != nil {
		return nil, err
	}
	c := &child{z: z, id: z.nextID.Add(1), pidfd: -1, ch: ours, exit: make(chan ctlMsg, 1)}
	z.mu.Lock()
	z.waiters[c.id] = c.exit
	z.mu.Unlock()
	// c.close kills and waits for the child once it exists, and forgets it.
	cu = cleanup.Make(c.forget)
	if err := z.send(ctlMsg{Op: "spawn", ID: c.id, TmpBytes: l.TmpBytes, WorkBytes: l.WorkBytes, Seccomp: z.r.filter, Landlock: z.r.landlock,
		ProcReadOnly: procReadOnly, ProcMasked: procMasked}, theirs); err != nil {
		return nil, fmt.Errorf("ask the zygote for a child: %w", err)
	}
	theirs.Close()
	cu = cleanup.Make(c.close)
	if err := c.attach(ctx, g); err != nil {
		return nil, err
	}
	cu.Release()
	return c, nil
}
