package sandbox

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"golang.org/x/sys/unix"
)

// proxyListenAddr is where a sandbox with limited network finds the egress proxy: on
// its own loopback, at a port the kernel picks, so that a program (of an earlier run
// in a session, say) holding some port cannot stand in the way. The listening socket
// lives in the sandbox's network namespace but is served by the server, outside the
// sandbox: no route to anywhere else exists.
const proxyListenAddr = "127.0.0.1:0"

// proxyVars are the variables proxyEnv sets; a warm interpreter clears them before
// each run, so that only a run with limited network has them.
var proxyVars = []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"}

// proxyEnv points Python's HTTP libraries (requests, urllib) at the egress proxy at
// addr; loopback inside the sandbox stays direct.
func proxyEnv(addr string) []string {
	url := "http://" + addr
	vals := map[string]string{"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url,
		"NO_PROXY": "localhost,127.0.0.1,::1", "no_proxy": "localhost,127.0.0.1,::1"}
	env := make([]string, 0, len(proxyVars))
	for _, k := range proxyVars {
		env = append(env, k+"="+vals[k])
	}
	return env
}

// egressLink is one execution's egress proxy; close stops it and cuts its connections.
type egressLink struct {
	p    *egress.Proxy
	addr string // inside the sandbox
	done chan struct{}
}

// openEgress serves policy on a listener on the loopback of the network namespace
// nsfd refers to (a pidfd or an nsfs file).
func (r *Runner) openEgress(nsfd int, policy *egress.Policy) (*egressLink, error) {
	ln, err := listenInNetns(nsfd, proxyListenAddr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: egress proxy: %w", err)
	}
	opts := r.cfg.Egress
	if opts.Logger == nil {
		opts.Logger = r.log
	}
	p, err := egress.New(*policy, opts)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("sandbox: egress proxy: %w", err)
	}
	l := &egressLink{p: p, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		_ = p.Serve(ln)
	}()
	return l, nil
}

// close stops the proxy and returns what went through it; nil for no link.
func (l *egressLink) close() *job.NetworkUsage {
	if l == nil {
		return nil
	}
	_ = l.p.Close()
	<-l.done
	st := l.p.Stats()
	u := &job.NetworkUsage{Connections: st.Conns, BytesSent: st.BytesUp, BytesReceived: st.BytesDown}
	for _, n := range st.Denied {
		u.Denied += n
	}
	return u
}

// listenInNetns opens a TCP listener on addr in another network namespace. A socket
// keeps the namespace it was made in, so only the thread that makes it enters the
// namespace, and it returns to its own before any other goroutine may run on it.
// The thread must not simply be thrown away instead: a sandbox whose parent-death
// signal is tied to it would be killed (golang/go#27505).
func listenInNetns(nsfd int, addr string) (net.Listener, error) {
	runtime.LockOSThread()
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, &os.SyscallError{Syscall: "open own netns", Err: err}
	}
	defer unix.Close(own)
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, &os.SyscallError{Syscall: "setns(CLONE_NEWNET)", Err: err}
	}
	ln, err := listenHere(addr)
	if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
		// Stuck in the sandbox's namespace: the thread stays locked, so it ends
		// with this goroutine rather than serve another one there.
		if ln != nil {
			ln.Close()
		}
		return nil, &os.SyscallError{Syscall: "setns back to the host netns", Err: err}
	}
	runtime.UnlockOSThread()
	return ln, err
}

// listenHere listens on addr in the calling thread's network namespace.
func listenHere(addr string) (net.Listener, error) {
	// The sandbox brings its loopback up itself, but perhaps not yet: 127.0.0.1
	// exists only on an interface that is up.
	if err := loopbackUp(); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp4", addr)
}

// pidNetns opens the network namespace of host pid as a file descriptor.
func pidNetns(pid int) (int, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.SyscallError{Syscall: "open netns", Err: err}
	}
	return fd, nil
}
