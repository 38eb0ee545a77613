package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// ConnLimits bound what one client can hold of the server: how long each part of a
// request may take, and how many connections it may keep open. Zero turns a limit
// off. None of them limits how long a handler runs: an execution may take its whole
// timeout, and a stream may stay silent while the model thinks.
type ConnLimits struct {
	// HeaderTimeout is the time a request's line and header may take to arrive.
	HeaderTimeout time.Duration
	// BodyTimeout is the time a request body may take to arrive, plus one second for
	// every BodyMinRate bytes that do arrive: a silent or trickling client is dropped
	// after about BodyTimeout, a client sending at least BodyMinRate per second is
	// never cut off (MaxBodyBytes bounds it).
	BodyTimeout time.Duration
	BodyMinRate int64
	// SendTimeout is the longest a reply may wait for the client to take more of it.
	SendTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long between requests.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and header (0: Go's 1 MiB).
	MaxHeaderBytes int
	// MaxConns bounds the open connections; MaxConnsPerClient those of one client
	// address (an IPv6 client is its /64, which one host usually holds whole).
	// Connections beyond either are answered at once with 503 or 429 and closed.
	MaxConns          int
	MaxConnsPerClient int
}

// DefaultConnLimits are the connection limits unless configured otherwise.
func DefaultConnLimits() ConnLimits {
	return ConnLimits{
		HeaderTimeout:     10 * time.Second,
		BodyTimeout:       60 * time.Second,
		BodyMinRate:       64 << 10,
		SendTimeout:       60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		MaxConns:          1024,
		MaxConnsPerClient: 128,
	}
}

// Validate refuses negative limits.
func (l ConnLimits) Validate() error {
	for _, d := range []struct {
		name string
		v    int64
	}{
		{"header_timeout", int64(l.HeaderTimeout)}, {"body_timeout", int64(l.BodyTimeout)},
		{"body_min_rate", l.BodyMinRate}, {"send_timeout", int64(l.SendTimeout)},
		{"idle_timeout", int64(l.IdleTimeout)}, {"max_header_bytes", int64(l.MaxHeaderBytes)},
		{"max_conns", int64(l.MaxConns)}, {"max_conns_per_client", int64(l.MaxConnsPerClient)},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative (0 turns it off)", d.name)
		}
	}
	return nil
}

// HTTPServer returns the http.Server of the API, with the header, idle and header
// size limits of its config; requests run under base. Serve it on a listener from
// LimitListener. Its ReadTimeout and WriteTimeout stay off on purpose: a ReadTimeout
// is one fixed time for header and body, which either cuts a large upload over a
// slow but steady link or lets a trickle hold the connection long; a WriteTimeout
// runs from the end of the header, through the handler, so it would cut the reply
// of a long execution and any stream. The handler sets body and send deadlines
// that move with the data instead.
func (s *Server) HTTPServer(base context.Context) *http.Server {
	l := s.cfg.Conn
	hs := &http.Server{
		Handler:           s.Handler(),
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: l.HeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	// MCP sessions hold streams open, and their calls run apart from any request:
	// Shutdown closes the sessions as their calls finish, and cancelling base stops
	// the calls, as it stops the executions of requests.
	hs.RegisterOnShutdown(s.MCP().Shutdown)
	context.AfterFunc(base, s.MCP().Stop)
	return hs
}

// bodyDeadlines gives each request body its deadline. Once the body has arrived the
// server lifts the read deadline itself, so that it never cuts the handler that
// runs after; it clears the write deadline after each request as well.
func (s *Server) bodyDeadlines(next http.Handler) http.Handler {
	l := s.cfg.Conn
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.BodyTimeout > 0 && r.Body != nil && r.Body != http.NoBody {
			b := &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(), timeout: l.BodyTimeout, rate: l.BodyMinRate}
			// Unsupported (not an HTTP/1 connection): the body has no deadline.
			if b.extend() == nil {
				r.Body = b
			}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody is a request body whose connection's read deadline moves with it:
// start+timeout, one second later for every rate bytes read.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	start   time.Time
	timeout time.Duration
	rate    int64
	read    int64
	done    bool
}

func (b *deadlineBody) extend() error {
	d := b.start.Add(b.timeout)
	if b.rate > 0 {
		d = d.Add(time.Duration(float64(b.read) / float64(b.rate) * float64(time.Second)))
	}
	return b.rc.SetReadDeadline(d)
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.done {
		return n, err
	}
	b.read += int64(n)
	switch {
	case err != nil:
		// At EOF the server has lifted the deadline itself, to wait for the client's
		// next byte as long as the handler runs. After an error the deadline stays:
		// the server discards what is left of the body, and must not wait forever.
		b.done = true
	case n > 0:
		_ = b.extend()
	}
	return n, err
}

// isDeadline reports whether err is a read that ran out of time.
func isDeadline(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// LimitListener bounds the connections ln hands to the server: at most MaxConns in
// all and MaxConnsPerClient from one client address. One beyond is answered at once
// (429 too_many_connections from a client at its cap, 503 server_busy when all are
// taken) and closed, rather than left waiting in the kernel's backlog: a client
// learns why, and Accept never blocks behind a flood.
func (s *Server) LimitListener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, s: s, max: s.cfg.Conn.MaxConns, perClient: s.cfg.Conn.MaxConnsPerClient,
		byClient: map[netip.Prefix]int{}, refusing: make(chan struct{}, maxRefusing)}
}

// maxRefusing bounds the refusals being written at once; beyond, a connection is
// closed without a word, so that a flood costs no more than a few goroutines.
const maxRefusing = 64

type limitListener struct {
	net.Listener
	s              *Server
	max, perClient int
	refusing       chan struct{}

	mu       sync.Mutex
	open     int
	byClient map[netip.Prefix]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := clientPrefix(c.RemoteAddr())
		reason := l.admit(client)
		if reason == "" {
			l.s.metrics.connsOpen.Inc()
			return &limitedConn{Conn: c, l: l, client: client}, nil
		}
		l.s.metrics.connsRefused.WithLabelValues(reason).Inc()
		l.refuse(c, reason)
	}
}

// admit counts a connection from client in, or says why not.
func (l *limitListener) admit(client netip.Prefix) (refused string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perClient > 0 && l.byClient[client] >= l.perClient {
		return "per_client"
	}
	if l.max > 0 && l.open >= l.max {
		return "total"
	}
	l.open++
	l.byClient[client]++
	return ""
}

func (l *limitListener) release(client netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byClient[client]--; l.byClient[client] <= 0 {
		delete(l.byClient, client)
	}
}

// refuse answers a connection over a cap and closes it, in the background: a peer
// that takes nothing must not stall Accept.
func (l *limitListener) refuse(c net.Conn, reason string) {
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		status, code, msg := http.StatusServiceUnavailable, "server_busy",
			fmt.Sprintf("the server has %d connections open, its limit; retry shortly", l.max)
		if reason == "per_client" {
			status, code, msg = http.StatusTooManyRequests, "too_many_connections",
				fmt.Sprintf("your address has %d connections open, the limit per client; reuse or close one", l.perClient)
		}
		body, _ := json.Marshal(errorBody{Error: apiError{Message: msg, Type: errorType(status), Code: code}})
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
			status, http.StatusText(status), len(body), body)
	}()
}

// clientPrefix is the address a client is counted by: its IPv4 address, or the /64
// of its IPv6 address. Other addresses (a unix socket) count as one client.
func clientPrefix(a net.Addr) netip.Prefix {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr().Unmap()
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Prefix{}
		}
		ip = ap.Addr().Unmap()
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// limitedConn gives its place back when closed, once.
type limitedConn struct {
	net.Conn
	l      *limitListener
	client netip.Prefix
	once   sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.release(c.client)
		c.l.s.metrics.connsOpen.Dec()
	})
	return err
}

// sendDeadline sets the connection's write deadline before each piece of a reply,
// so that a reply waits at most timeout for the client to take more; large writes
// go in pieces, so that a big download by a slow but steady client is not cut.
type sendDeadline struct {
	rc      *http.ResponseController
	timeout time.Duration
}

// sendPiece is how much of a reply one deadline covers.
const sendPiece = 64 << 10

func (d *sendDeadline) arm() {
	if d != nil {
		_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	}
}
