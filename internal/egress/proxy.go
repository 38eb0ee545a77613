package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxHeaderBytes bounds a request's header from the sandbox.
	maxHeaderBytes = 64 << 10
	// readHeaderTimeout bounds how long a client may take to send a request header.
	readHeaderTimeout = 10 * time.Second
	// clientConnsPerUpstream sets how many client connections, per allowed upstream
	// connection, the proxy serves at once; the rest are closed on accept, so the
	// sandbox cannot spend the host's goroutines and file descriptors on idle
	// connections to the proxy.
	clientConnsPerUpstream = 4
)

// Resolver looks up the addresses of a host; *net.Resolver implements it. The
// proxy always passes a fully qualified name, ending in a dot, and network "ip".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options are the proxy's connections to the outside world; tests replace them.
type Options struct {
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
	// AddrAllowed reports whether an address may be dialled; nil means PublicAddr.
	AddrAllowed func(netip.Addr) bool
	// Dial connects to an IP address and port, never a name; nil means a
	// net.Dialer's DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives a line per refusal and per connection; nil discards them.
	Logger *slog.Logger
}

// Stats counts what a proxy did.
type Stats struct {
	Conns     int            // upstream connections opened
	Denied    map[string]int // refused requests, by code (see ErrorHeader)
	BytesUp   int64          // bytes sent to upstream hosts
	BytesDown int64          // bytes received from upstream hosts
	// LimitHits counts requests refused with CodeConnLimit or CodeByteLimit, plus
	// one when the byte cap cut the open connections.
	LimitHits int
}

// Proxy is an HTTP proxy that lets one execution reach the hosts of its Policy.
// Create it with New, run it with Serve and stop it with Close.
type Proxy struct {
	policy      Policy
	allow       []pattern
	resolver    Resolver
	addrAllowed func(netip.Addr) bool
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	log         *slog.Logger

	srv          *http.Server
	transport    *http.Transport
	ctx          context.Context // cancelled by Close
	cancel       context.CancelFunc
	errByteLimit *denial
	maxClients   int

	bytesUsed atomic.Int64 // spent from Policy.MaxBytes
	bytesUp   atomic.Int64
	bytesDown atomic.Int64

	// wg counts client connections, handlers and tunnel goroutines. Add is called
	// only under mu while closed is false, or while the caller already holds a
	// count, so that it never races with Close's Wait.
	wg sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	served     bool
	clients    map[net.Conn]struct{}  // client connections net/http serves
	tracked    map[io.Closer]struct{} // upstream connections, refused CONNECTs lingering
	active     int                    // upstream connections open
	total      int                    // upstream connections attempted
	opened     int                    // upstream connections made
	byteCapped bool                   // MaxBytes was reached
	denied     map[string]int
	limitHits  int
}

// New returns a proxy for p, which it validates. The caller must call Close.
func New(p Policy, opts Options) (*Proxy, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	p = p.withDefaults()
	px := &Proxy{
		policy:      p,
		resolver:    opts.Resolver,
		addrAllowed: opts.AddrAllowed,
		dial:        opts.Dial,
		log:         opts.Logger,
		maxClients:  clientConnsPerUpstream * p.MaxConns,
		clients:     make(map[net.Conn]struct{}),
		tracked:     make(map[io.Closer]struct{}),
		denied:      make(map[string]int),
		errByteLimit: deny(http.StatusTooManyRequests, CodeByteLimit,
			"this execution has used up its network transfer limit of %s", formatBytes(p.MaxBytes)),
	}
	for _, a := range p.Allow {
		pt, _ := parsePattern(a) // Validate checked it
		px.allow = append(px.allow, pt)
	}
	if px.resolver == nil {
		px.resolver = net.DefaultResolver
	}
	if px.addrAllowed == nil {
		px.addrAllowed = PublicAddr
	}
	if px.dial == nil {
		px.dial = (&net.Dialer{}).DialContext
	}
	if px.log == nil {
		px.log = slog.New(slog.DiscardHandler)
	}
	px.ctx, px.cancel = context.WithCancel(context.Background())

	px.transport = &http.Transport{
		Proxy:       nil, // never a proxy from the environment: the host's proxy is not the sandbox's
		DialContext: px.dialForward,
		// One upstream connection per request keeps the connection caps exact:
		// pooled idle connections would hold MaxConns slots nobody uses.
		DisableKeepAlives: true,
		// Pass Accept-Encoding and the body through untouched.
		DisableCompression:     true,
		ResponseHeaderTimeout:  p.IdleTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true) // no h2c: HTTP/2 would need its own CONNECT and hijack handling
	px.srv = &http.Server{
		Handler:           http.HandlerFunc(px.serveHTTP),
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       p.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         px.connState,
		BaseContext:       func(net.Listener) context.Context { return px.ctx },
		ErrorLog:          slog.NewLogLogger(px.log.Handler(), slog.LevelDebug),
	}
	return px, nil
}

// Policy returns the policy p enforces, with defaults filled in.
func (p *Proxy) Policy() Policy { return p.policy.withDefaults() }

// Serve serves ln until Close and then returns nil; it closes ln when it returns.
// It may be called once.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.served {
		p.mu.Unlock()
		return errors.New("egress: Serve already called")
	}
	p.served = true
	p.mu.Unlock()
	if err := p.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("egress: %w", err)
	}
	return nil
}

// Close stops accepting, closes every client and upstream connection and waits for
// the proxy's goroutines to end. Later calls wait too and return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	tracked := make([]io.Closer, 0, len(p.tracked))
	for c := range p.tracked {
		tracked = append(tracked, c)
	}
	p.mu.Unlock()

	p.cancel()
	err := p.srv.Close() // listener and the client connections it has not handed over
	for _, c := range tracked {
		c.Close() // upstream connections close their tunnels' clients
	}
	p.transport.CloseIdleConnections()
	p.wg.Wait()
	return err
}

// Stats returns what the proxy has done so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Conns:     p.opened,
		Denied:    maps.Clone(p.denied),
		BytesUp:   p.bytesUp.Load(),
		BytesDown: p.bytesDown.Load(),
		LimitHits: p.limitHits,
	}
}

// connState counts the client connections net/http serves, on p.wg and against
// maxClients; one that comes after Close, or over the cap, is closed at once.
func (p *Proxy) connState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		p.mu.Lock()
		if p.closed || len(p.clients) >= p.maxClients {
			full := !p.closed
			p.mu.Unlock()
			if full {
				p.log.Warn("too many client connections to the egress proxy; closing one", "max", p.maxClients)
			}
			c.Close()
			return
		}
		p.clients[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		p.mu.Lock()
		_, ok := p.clients[c]
		delete(p.clients, c)
		p.mu.Unlock()
		if ok {
			p.wg.Done()
		}
	}
}

// enter counts a handler on p.wg; it reports false once the proxy is closed.
func (p *Proxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

// track adds c to what Close closes. It reports false, having closed c, if the proxy
// is closed already.
func (p *Proxy) track(c io.Closer) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return false
	}
	p.tracked[c] = struct{}{}
	p.mu.Unlock()
	return true
}

func (p *Proxy) untrack(c io.Closer) {
	p.mu.Lock()
	delete(p.tracked, c)
	p.mu.Unlock()
}

// acquire takes an upstream connection slot; release gives it back.
func (p *Proxy) acquire() *denial {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.byteCapped:
		return p.errByteLimit
	case p.active >= p.policy.MaxConns:
		return deny(http.StatusTooManyRequests, CodeConnLimit,
			"this execution may have only %d connections open at once", p.policy.MaxConns)
	case p.total >= p.policy.MaxTotalConns:
		return deny(http.StatusTooManyRequests, CodeConnLimit,
			"this execution has used all %d connections it may open", p.policy.MaxTotalConns)
	}
	p.active++
	p.total++
	return nil
}

func (p *Proxy) release() {
	p.mu.Lock()
	p.active--
	p.mu.Unlock()
}

// bytesLeft is what remains of the byte budget.
func (p *Proxy) bytesLeft() int64 { return p.policy.MaxBytes - p.bytesUsed.Load() }

// spend takes up to n bytes from the budget and returns how many it took. The
// budget is never overdrawn, however many connections spend at once.
func (p *Proxy) spend(n int) int {
	for {
		used := p.bytesUsed.Load()
		take := min(int64(n), p.policy.MaxBytes-used)
		if take <= 0 {
			return 0
		}
		if p.bytesUsed.CompareAndSwap(used, used+take) {
			return int(take)
		}
	}
}

// hitByteLimit closes every upstream connection but self, and with them the tunnels:
// a tunnel carries the client's own bytes, so it has no way left to carry an error
// message. Self is closed by its caller, after passing on the bytes it was allowed.
func (p *Proxy) hitByteLimit(self *upstreamConn) {
	p.mu.Lock()
	first := !p.byteCapped
	if first {
		p.byteCapped = true
		p.limitHits++
	}
	var conns []io.Closer
	for c := range p.tracked {
		if uc, ok := c.(*upstreamConn); ok && uc != self {
			conns = append(conns, uc)
		}
	}
	p.mu.Unlock()
	if first {
		p.log.Warn("egress byte limit reached; closing connections", "max_bytes", p.policy.MaxBytes)
	}
	for _, c := range conns {
		c.Close()
	}
}

// refused counts and logs d.
func (p *Proxy) refused(r *http.Request, d *denial) {
	p.mu.Lock()
	p.denied[d.code]++
	if d.code == CodeConnLimit || d.code == CodeByteLimit {
		p.limitHits++
	}
	p.mu.Unlock()
	p.log.Info("egress request refused", "method", r.Method, "target", r.RequestURI, "code", d.code, "reason", d.msg)
}

func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.enter() {
		// Never the empty 200 net/http would send: to a CONNECT that means "tunnel open".
		writeDenial(w, errClosed)
		return
	}
	defer p.wg.Done()
	if r.Method == http.MethodConnect {
		p.serveConnect(w, r)
		return
	}
	p.serveForward(w, r)
}

// serveConnect opens a tunnel to the authority-form target of a CONNECT.
func (p *Proxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	// r.RequestURI, not r.Host: for a CONNECT with a path net/http takes r.Host
	// from the Host header, which names nothing the client is asking to reach.
	t, d := p.check(r.RequestURI, 0)
	var up *upstreamConn
	if d == nil {
		up, d = p.connect(r.Context(), t)
	}
	client, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Cannot happen with HTTP/1 on a plain listener; answer the plain way.
		if up != nil {
			up.Close()
			d = badRequest("CONNECT needs an HTTP/1.1 connection")
		}
		p.refused(r, d)
		writeDenial(w, d)
		return
	}
	if d != nil {
		p.refused(r, d)
		if p.track(client) {
			writeConnectDenial(client, rw, d)
			p.untrack(client)
			client.Close()
		}
		return
	}
	if !up.bind(client) {
		return
	}
	// net/http may have left its header timeout on the connection.
	client.SetDeadline(time.Time{})
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		return
	}
	p.log.Debug("egress tunnel opened", "target", t.String())
	p.splice(client, rw.Reader, up)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
