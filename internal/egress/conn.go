package egress

import (
	"bufio"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// upstreamConn is a connection to an allowed host. Its reads and writes spend the
// proxy's byte budget, it closes itself after Policy.IdleTimeout without traffic,
// and closing it gives its connection slot back and closes the client bound to it.
type upstreamConn struct {
	net.Conn
	p    *Proxy
	idle *idleTimer

	mu     sync.Mutex
	closed bool
	client net.Conn // closed with c; see bind
}

// newUpstreamConn wraps c, which holds a slot from Proxy.acquire; Close releases it.
func newUpstreamConn(p *Proxy, c net.Conn) *upstreamConn {
	uc := &upstreamConn{Conn: c, p: p}
	uc.idle = startIdleTimer(p.policy.IdleTimeout, func() { uc.Close() })
	return uc
}

// Read reads at most what is left of the byte budget, plus one byte to tell a peer
// that has finished from one that would exceed it.
func (c *upstreamConn) Read(b []byte) (int, error) {
	if left := max(c.p.bytesLeft(), 1); int64(len(b)) > left {
		b = b[:left]
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.idle.touch()
		got := c.p.spend(n)
		c.p.bytesDown.Add(int64(got))
		if got < n {
			c.p.hitByteLimit(c)
			return got, c.p.errByteLimit
		}
	}
	return n, err
}

// Write writes what the byte budget allows of b.
func (c *upstreamConn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return c.Conn.Write(b)
	}
	// Count before writing: once the peer has the bytes it may answer, and the
	// answer must not be counted before the question.
	k := c.p.spend(len(b))
	c.p.bytesUp.Add(int64(k))
	n, err := c.Conn.Write(b[:k])
	if n < k {
		c.p.bytesUsed.Add(int64(n - k))
		c.p.bytesUp.Add(int64(n - k))
	}
	if n > 0 {
		c.idle.touch()
	}
	if err == nil && k < len(b) {
		c.p.hitByteLimit(c)
		err = c.p.errByteLimit
	}
	return n, err
}

// CloseWrite half-closes the connection if it supports that, and closes it if not.
func (c *upstreamConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// Close closes the connection and the client bound to it, and releases its slot.
// It may be called more than once, from any goroutine.
func (c *upstreamConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	client := c.client
	c.mu.Unlock()

	c.idle.stop()
	err := c.Conn.Close()
	if client != nil {
		client.Close()
	}
	c.p.untrack(c)
	c.p.release()
	return err
}

// bind makes Close close client too, so that a tunnel ends as one: whatever closes
// the upstream side (idle timer, byte cap, Proxy.Close) also frees the client side.
// It reports false, having closed client, if c is already closed.
func (c *upstreamConn) bind(client net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		client.Close()
		return false
	}
	c.client = client
	return true
}

// idleTimer calls onIdle once no touch has come for d. Touching is one atomic store;
// the rejected alternative, a read deadline per Read, would end a long download
// while the other direction is quiet.
type idleTimer struct {
	d      time.Duration
	start  time.Time
	last   atomic.Int64 // time from start to the latest touch, in nanoseconds
	onIdle func()

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func startIdleTimer(d time.Duration, onIdle func()) *idleTimer {
	t := &idleTimer{d: d, start: time.Now(), onIdle: onIdle}
	t.mu.Lock()
	t.t = time.AfterFunc(d, t.fire)
	t.mu.Unlock()
	return t
}

func (t *idleTimer) touch() { t.last.Store(int64(time.Since(t.start))) }

func (t *idleTimer) fire() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	if idle := time.Since(t.start) - time.Duration(t.last.Load()); idle < t.d {
		t.t.Reset(t.d - idle)
		t.mu.Unlock()
		return
	}
	t.stopped = true
	t.mu.Unlock()
	t.onIdle()
}

func (t *idleTimer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.t.Stop()
}

// splice copies bytes both ways between a hijacked client and up, which is bound to
// it, and returns when both directions have ended; then both are closed. A direction
// that ends cleanly half-closes its destination, so protocols that shut down one side
// first still work; one that fails closes both.
func (p *Proxy) splice(client net.Conn, fromClient *bufio.Reader, up *upstreamConn) {
	defer up.Close()
	done := make(chan struct{})
	// The caller's handler holds a count on p.wg, so this Add cannot race with Wait.
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(done)
		copyHalf(up, fromClient, up)
	}()
	copyHalf(client, up, up)
	<-done
}

func copyHalf(dst net.Conn, src io.Reader, up *upstreamConn) {
	if _, err := io.Copy(dst, src); err != nil {
		up.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		return
	}
	up.Close()
}
