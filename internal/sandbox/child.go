package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/job"
	"golang.org/x/sys/unix"
)

// child is one process forked from the zygote: pid 1 of a sandbox of its own, with
// its own namespaces and work dir. Its first message decides what it becomes: a
// one-shot execution's interpreter (run with last), or a session's init, which forks
// the session's contexts and commands (seal). The owner must call close.
type child struct {
	z    *zygote
	id   uint64
	pid  int // in the host's pid namespace
	ch   *net.UnixConn
	exit chan ctlMsg // the zygote's report of the child's end
	// pidfd is the child's; kill may race close, which closes it (and its number
	// could then name another process's pidfd): both hold pmu. Everything else uses
	// it only while the child is in use, before close.
	pmu   sync.Mutex
	pidfd int
}

// attach learns the child's pid from its first message, moves it into g, and waits
// for it to be ready.
func (c *child) attach(ctx context.Context, g *cgroup.Group) error {
	c.ch.SetReadDeadline(time.Now().Add(childReadyTimeout))
	defer c.ch.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { c.ch.SetReadDeadline(time.Now()) })
	defer stop()
	if err := c.readPid(); err != nil {
		return err
	}
	if err := g.Add(c.pid); err != nil {
		return fmt.Errorf("move the child into its cgroup: %w", err)
	}
	if err := setOOMScoreAdj(c.pid); err != nil {
		return err
	}
	if _, err := c.ch.Write([]byte("attached")); err != nil {
		return fmt.Errorf("tell the child it is attached: %w", err)
	}
	buf := make([]byte, 16)
	n, err := c.ch.Read(buf)
	if ctx.Err() != nil {
		return fmt.Errorf("wait for the child: %w", ctx.Err())
	}
	if err != nil || string(buf[:n]) != "ready" {
		c.z.r.log.Warn("a warm child did not get ready", "err", err, "zygote_stderr", c.z.log.String())
		return fmt.Errorf("sandbox: child did not get ready (%v)", err)
	}
	return nil
}

// readPid reads the child's first message and the host pid the kernel attached.
func (c *child) readPid() error {
	pid, err := readHello(c.ch)
	if err != nil {
		select {
		case m := <-c.exit:
			c.exit <- m
			c.z.r.log.Warn("a warm child did not start", "err", m.Error, "zygote_stderr", c.z.log.String())
			return fmt.Errorf("sandbox: child did not start: %s", m.Error)
		case <-time.After(time.Second):
		}
		return fmt.Errorf("sandbox: child did not start: %w", err)
	}
	c.pid = pid
	// A pidfd names this process for good: no signal can reach a recycled pid.
	if c.pidfd, err = unix.PidfdOpen(c.pid, 0); err != nil {
		return &os.SyscallError{Syscall: "pidfd_open", Err: err}
	}
	return nil
}

// readHello reads a process's "hello" from ch, whose receiving end has SO_PASSCRED,
// and returns the host pid the kernel attached to it: the pid comes from the kernel,
// not from the process's word.
func readHello(ch *net.UnixConn) (int, error) {
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := ch.ReadMsgUnix(buf, oob)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("read hello: %w", unix.ECONNRESET)
	}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(scms) != 1 {
		return 0, fmt.Errorf("read hello: no credentials")
	}
	cred, err := unix.ParseUnixCredentials(&scms[0])
	if err != nil {
		return 0, fmt.Errorf("read hello credentials: %w", err)
	}
	return int(cred.Pid), nil
}

// passCred makes the kernel attach the sender's credentials to what ch receives.
func passCred(ch *net.UnixConn) error {
	raw, err := ch.SyscallConn()
	if err != nil {
		return fmt.Errorf("SO_PASSCRED: %w", err)
	}
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return fmt.Errorf("SO_PASSCRED: %w", err)
	}
	if sockErr != nil {
		return &os.SyscallError{Syscall: "setsockopt(SO_PASSCRED)", Err: sockErr}
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
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.pidfd >= 0 {
		_ = unix.PidfdSendSignal(c.pidfd, unix.SIGKILL, nil, 0)
	}
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
	c.pmu.Lock()
	pidfd := c.pidfd
	c.pmu.Unlock()
	if pidfd >= 0 {
		_, _ = c.wait()
		c.pmu.Lock()
		unix.Close(c.pidfd)
		c.pidfd = -1
		c.pmu.Unlock()
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

// seal makes the child a session's init: it drops its privileges for good, with the
// session's rlimits, and from then on forks the processes the session asks for and
// runs nothing itself.
func (c *child) seal(ctx context.Context, l job.Limits, o SessionOptions) error {
	data, _ := json.Marshal(ctlMsg{Op: "seal", Rlimits: sandboxRlimits(l.FileBytes, l.OpenFiles), Home: o.Home})
	if _, err := c.ch.Write(data); err != nil {
		return fmt.Errorf("seal the sandbox: %w", err)
	}
	c.ch.SetReadDeadline(time.Now().Add(childReadyTimeout))
	defer c.ch.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { c.ch.SetReadDeadline(time.Now()) })
	defer stop()
	m, err := readCtl(c.ch)
	if ctx.Err() != nil {
		return fmt.Errorf("seal the sandbox: %w", ctx.Err())
	}
	if err != nil || m.Op != "sealed" {
		return fmt.Errorf("sandbox: the session's init did not seal itself (%v)", err)
	}
	return nil
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
