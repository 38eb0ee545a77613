package egress

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests connect only to servers on 127.0.0.1. The fake resolver maps test names
// to loopback, and the recording dialer refuses any address that is not 127.0.0.1.

// testTimeout keeps a broken test from hanging; no test expects anything to be fast.
const testTimeout = 30 * time.Second

var loopback = netip.MustParseAddr("127.0.0.1")

// onlyLoopback stands in for PublicAddr where a test must reach its own servers.
func onlyLoopback(a netip.Addr) bool { return a == loopback }

type fakeResolver struct {
	names map[string][]netip.Addr

	mu      sync.Mutex
	lookups []string
}

func newResolver() *fakeResolver {
	return &fakeResolver{names: map[string][]netip.Addr{
		"allowed.test": {loopback},
		"a.wild.test":  {loopback},
		"loop.test":    {loopback},
		"down.test":    {loopback},
		"mixed.test":   {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::1"), loopback},
		"private.test": {netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("::ffff:10.0.0.5")},
		"empty.test":   {},
	}}
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.lookups = append(r.lookups, host)
	r.mu.Unlock()
	if network != "ip" || !strings.HasSuffix(host, ".") {
		return nil, fmt.Errorf("LookupNetIP(%q, %q): want network ip and a fully qualified name", network, host)
	}
	if addrs, ok := r.names[strings.TrimSuffix(host, ".")]; ok {
		return addrs, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *fakeResolver) looked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lookups)
}

// dialRecorder is Options.Dial: it records every address and dials only loopback.
type dialRecorder struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	d.mu.Unlock()
	if ap, err := netip.ParseAddrPort(addr); err != nil || ap.Addr() != loopback {
		return nil, fmt.Errorf("test dialer: refusing %q, not a loopback address", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *dialRecorder) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.addrs)
}

type testProxy struct {
	*Proxy
	addr     string
	resolver *fakeResolver
	dials    *dialRecorder

	served    chan error
	closeOnce sync.Once
}

// startProxy serves a proxy for pol on a loopback listener until the test ends.
// addrAllowed nil means the default, PublicAddr.
func startProxy(t *testing.T, pol Policy, addrAllowed func(netip.Addr) bool) *testProxy {
	t.Helper()
	tp := &testProxy{resolver: newResolver(), dials: &dialRecorder{}, served: make(chan error, 1)}
	p, err := New(pol, Options{Resolver: tp.resolver, AddrAllowed: addrAllowed, Dial: tp.dials.dial})
	if err != nil {
		t.Fatalf("New(%+v) = %v", pol, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp.Proxy, tp.addr = p, ln.Addr().String()
	go func() { tp.served <- p.Serve(ln) }()
	t.Cleanup(func() { tp.close(t) })
	return tp
}

// close closes the proxy and checks that Serve returned nil.
func (tp *testProxy) close(t *testing.T) {
	tp.closeOnce.Do(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if err := <-tp.served; err != nil {
			t.Errorf("Serve() = %v after Close, want nil", err)
		}
	})
}

// client returns an HTTP client that uses the proxy, with proxy credentials.
func (tp *testProxy) client(tr *http.Transport) *http.Client {
	if tr == nil {
		tr = &http.Transport{}
	}
	tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: tp.addr, User: url.UserPassword("user", "secret")})
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// dial opens a connection to the proxy.
func (tp *testProxy) dial(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip sends a raw request head and reads the response and its body.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, method, target string) (*http.Response, string) {
	t.Helper()
	hostHeader := target[strings.LastIndex(target, "@")+1:]
	if u, err := url.Parse(target); err == nil && method != http.MethodConnect {
		hostHeader = cmp.Or(u.Host, "proxy.test")
	}
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method, target, hostHeader); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: reading response: %v", method, target, err)
	}
	body := ""
	if method != http.MethodConnect || resp.StatusCode != http.StatusOK {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: reading body: %v", method, target, err)
		}
		body = string(b)
	}
	return resp, body
}

// connect opens a tunnel through the proxy and fails the test if it is refused.
func (tp *testProxy) connect(t *testing.T, target string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br := tp.dial(t)
	resp, body := roundTrip(t, c, br, http.MethodConnect, target)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: got %s (%s), want 200", target, resp.Status, body)
	}
	return c, br
}

// echoServer is a TCP server on loopback that echoes what it reads.
type echoServer struct {
	port  int
	ended chan struct{} // receives when a connection ends
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{port: ln.Addr().(*net.TCPAddr).Port, ended: make(chan struct{}, 100)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
				c.Close()
				e.ended <- struct{}{}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return e
}

// echoOnce writes msg into a tunnel and checks that it comes back.
func echoOnce(t *testing.T, c net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("reading echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo of %q = %q", msg, got)
	}
}

// upstream answers "METHOD /uri BODY" and reports the request headers it got as
// X-Got-* response headers; it also sets response headers the proxy must drop.
func upstream(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := w.Header()
	h.Set("X-Got-Host", r.Host)
	h.Set("X-Got-Proxy-Authorization", r.Header.Get("Proxy-Authorization"))
	h.Set("X-Got-Hop", r.Header.Get("X-Hop"))
	h.Set("X-Got-Keep", r.Header.Get("X-Keep"))
	h.Set("Proxy-Authenticate", `Basic realm="upstream"`)
	h.Set(ErrorHeader, "forged")
	fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), body)
}

func port(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// closedPort returns a loopback port with nothing listening on it.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

func TestConnectTunnel(t *testing.T) {
	echo := startEcho(t)
	tp := startProxy(t, Policy{Allow: []string{"allowed.test", "*.wild.test"}, Ports: []int{echo.port}}, onlyLoopback)
	for _, host := range []string{"allowed.test", "ALLOWED.Test.", "a.wild.test"} {
		target := net.JoinHostPort(host, strconv.Itoa(echo.port))
		c, br := tp.connect(t, target)
		echoOnce(t, c, br, "hello from "+host)
		// A half-close reaches the server, whose close comes back as EOF.
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
			t.Errorf("CONNECT %s: after half-close read %q, %v; want EOF", target, rest, err)
		}
		<-echo.ended
	}
	st := tp.Stats()
	if st.Conns != 3 || len(st.Denied) != 0 {
		t.Errorf("Stats() = %+v, want 3 connections and no refusals", st)
	}
	if want := int64(len("hello from allowed.test") + len("hello from ALLOWED.Test.") + len("hello from a.wild.test")); st.BytesUp != want || st.BytesDown != want {
		t.Errorf("Stats() bytes up %d, down %d; want %d each", st.BytesUp, st.BytesDown, want)
	}
	a := "127.0.0.1:" + strconv.Itoa(echo.port)
	if got, want := tp.dials.dialed(), []string{a, a, a}; !slices.Equal(got, want) {
		t.Errorf("dialed %q, want %q", got, want)
	}
}

// TestConnectPipelined checks that bytes a client sends right after its CONNECT,
// before the answer, are not lost.
func TestConnectPipelined(t *testing.T) {
	echo := startEcho(t)
	tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{echo.port}}, onlyLoopback)
	c, br := tp.dial(t)
	target := fmt.Sprintf("allowed.test:%d", echo.port)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nearly bytes", target, target)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s = %v, %v; want 200", target, resp, err)
	}
	got := make([]byte, len("early bytes"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "early bytes" {
		t.Errorf("echo of pipelined bytes = %q, %v; want %q", got, err, "early bytes")
	}
}

func TestConnectTLS(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(upstream))
	defer ts.Close()
	tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{port(t, ts.URL)}}, onlyLoopback)
	tr := ts.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = "example.com" // in httptest's certificate
	c := tp.client(tr)
	defer tr.CloseIdleConnections()

	u := fmt.Sprintf("https://allowed.test:%d/secure?x=1", port(t, ts.URL))
	resp, err := c.Post(u, "text/plain", strings.NewReader("over tls"))
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "POST /secure?x=1 over tls" {
		t.Errorf("POST %s = %s %q, want 200 %q", u, resp.Status, body, "POST /secure?x=1 over tls")
	}
}

func TestForward(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(upstream))
	defer ts.Close()
	p := port(t, ts.URL)
	tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{p}}, onlyLoopback)
	c := tp.client(nil)
	base := fmt.Sprintf("http://allowed.test:%d", p)
	big := strings.Repeat("0123456789", 100_000)
	tests := []struct {
		method, path, body string
	}{
		{"GET", "/x?q=1&r=%20", ""},
		{"POST", "/upload", "hello world"},
		{"PUT", "/big", big},
		{"DELETE", "/thing/7", ""},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		if tt.body == "" {
			req.Body, req.ContentLength = nil, 0
		}
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "must not pass")
		req.Header.Set("X-Keep", "passes")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: reading body: %v", tt.method, tt.path, err)
		}
		want := tt.method + " " + tt.path + " " + tt.body
		if resp.StatusCode != http.StatusOK || string(got) != want {
			t.Errorf("%s %s = %s, body of %d bytes; want 200 and %d bytes", tt.method, tt.path, resp.Status, len(got), len(want))
		}
		h := resp.Header
		for name, want := range map[string]string{
			"X-Got-Host":                base[len("http://"):],
			"X-Got-Proxy-Authorization": "",
			"X-Got-Hop":                 "",
			"X-Got-Keep":                "passes",
			"Proxy-Authenticate":        "",
			ErrorHeader:                 "",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("%s %s: response header %s = %q, want %q", tt.method, tt.path, name, got, want)
			}
		}
	}
	if st := tp.Stats(); st.Conns != len(tests) || st.BytesDown < int64(len(big)) || st.BytesUp < int64(len(big)) {
		t.Errorf("Stats() = %+v, want %d connections and over %d bytes each way", st, len(tests), len(big))
	}
}

// TestForwardHostFromURL checks that the upstream's Host header is the checked URL's
// host, not a Host header the client chose.
func TestForwardHostFromURL(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(upstream))
	defer ts.Close()
	p := port(t, ts.URL)
	tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{p}}, onlyLoopback)
	c, br := tp.dial(t)
	fmt.Fprintf(c, "GET http://allowed.test:%d/h HTTP/1.1\r\nHost: internal.corp\r\n\r\n", p)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("X-Got-Host"), fmt.Sprintf("allowed.test:%d", p); got != want {
		t.Errorf("upstream got Host %q, want %q", got, want)
	}
}

func TestRefusals(t *testing.T) {
	echo := startEcho(t)
	down := closedPort(t)
	allow := []string{"allowed.test", "*.wild.test", "loop.test", "mixed.test", "private.test", "missing.test",
		"empty.test", "down.test", "10.9.8.7", "127.0.0.1"}
	ports := []int{echo.port, down}
	r := strings.NewReplacer("ECHO", strconv.Itoa(echo.port), "DOWN", strconv.Itoa(down))

	tests := []struct {
		name           string
		public         bool // AddrAllowed is the default, PublicAddr
		method, target string
		status         int
		code, msg      string
	}{
		{"host not allowed", false, "CONNECT", "evil.test:443", 403, CodeHostNotAllowed,
			`host "evil.test" is not in this execution's network allowlist (allowed: allowed.test, *.wild.test, loop.test`},
		{"wildcard does not allow apex", false, "CONNECT", "wild.test:ECHO", 403, CodeHostNotAllowed, `host "wild.test"`},
		{"suffix is not subdomain", false, "CONNECT", "evilwild.test:ECHO", 403, CodeHostNotAllowed, `host "evilwild.test"`},
		{"allowed name as suffix", false, "CONNECT", "allowed.test.evil.test:ECHO", 403, CodeHostNotAllowed, `host "allowed.test.evil.test"`},
		{"ip literal not listed", false, "CONNECT", "127.0.0.2:ECHO", 403, CodeHostNotAllowed, `host "127.0.0.2"`},
		{"ipv6 literal not listed", false, "CONNECT", "[::1]:ECHO", 403, CodeHostNotAllowed, `host "::1"`},
		{"port not allowed", false, "CONNECT", "allowed.test:22", 403, CodePortNotAllowed,
			`port 22 of host "allowed.test" is not allowed (allowed ports: ` + strconv.Itoa(echo.port) + ", " + strconv.Itoa(down) + ")"},
		{"loopback under PublicAddr", true, "CONNECT", "loop.test:ECHO", 403, CodeAddressNotAllowed,
			`host "loop.test" resolves only to private or local addresses (127.0.0.1)`},
		{"listed loopback ip under PublicAddr", true, "CONNECT", "127.0.0.1:ECHO", 403, CodeAddressNotAllowed,
			`address 127.0.0.1 is private or local`},
		{"listed private ip", true, "CONNECT", "10.9.8.7:ECHO", 403, CodeAddressNotAllowed, `address 10.9.8.7`},
		{"listed private ip, mapped", true, "CONNECT", "[::ffff:10.9.8.7]:ECHO", 403, CodeAddressNotAllowed, `address 10.9.8.7`},
		{"private addresses", false, "CONNECT", "private.test:ECHO", 403, CodeAddressNotAllowed,
			`host "private.test" resolves only to private or local addresses (10.1.2.3, 192.168.0.1, 10.0.0.5)`},
		{"no such host", false, "CONNECT", "missing.test:ECHO", 502, CodeDNSFailed, `cannot resolve host "missing.test": no such host`},
		{"no addresses", false, "CONNECT", "empty.test:ECHO", 502, CodeDNSFailed, `cannot resolve host "empty.test": no addresses`},
		{"connection refused", false, "CONNECT", "down.test:DOWN", 502, CodeDialFailed, `cannot connect to down.test:DOWN: `},
		{"no port", false, "CONNECT", "allowed.test", 400, CodeBadRequest, `has no port`},
		{"port out of range", false, "CONNECT", "allowed.test:99999", 400, CodeBadRequest, `invalid port "99999"`},
		{"port zero", false, "CONNECT", "allowed.test:0", 400, CodeBadRequest, `invalid port "0"`},
		{"bad character", false, "CONNECT", "bad!host.test:ECHO", 400, CodeBadRequest, `invalid host "bad!host.test": character '!' not allowed`},
		{"number as name", false, "CONNECT", "127.1:ECHO", 400, CodeBadRequest, `ends in a number`},
		{"userinfo", false, "CONNECT", "user@allowed.test:ECHO", 400, CodeBadRequest, `character '@' not allowed`},

		{"forward: host not allowed", false, "GET", "http://evil.test/", 403, CodeHostNotAllowed, `host "evil.test" is not in`},
		{"forward: default port not allowed", false, "GET", "http://allowed.test/", 403, CodePortNotAllowed, `port 80 of host "allowed.test"`},
		{"forward: port not allowed", false, "GET", "http://allowed.test:22/", 403, CodePortNotAllowed, `port 22`},
		{"forward: loopback under PublicAddr", true, "GET", "http://loop.test:ECHO/", 403, CodeAddressNotAllowed, `resolves only to private or local addresses`},
		{"forward: no such host", false, "POST", "http://missing.test:ECHO/", 502, CodeDNSFailed, `no such host`},
		{"forward: connection refused", false, "GET", "http://down.test:DOWN/", 502, CodeDialFailed, `cannot connect to down.test:DOWN`},
		{"forward: origin form", false, "GET", "/local", 400, CodeBadRequest, `send requests through it with a full URL`},
		{"forward: https", false, "GET", "https://allowed.test:ECHO/", 400, CodeBadRequest, `scheme "https" is not forwarded`},
		{"forward: ftp", false, "GET", "ftp://allowed.test:ECHO/", 400, CodeBadRequest, `scheme "ftp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allowed := onlyLoopback
			if tt.public {
				allowed = nil
			}
			tp := startProxy(t, Policy{Allow: allow, Ports: ports}, allowed)
			c, br := tp.dial(t)
			target := r.Replace(tt.target)
			resp, body := roundTrip(t, c, br, tt.method, target)
			msg := r.Replace(tt.msg)
			if resp.StatusCode != tt.status || resp.Header.Get(ErrorHeader) != tt.code || !strings.HasPrefix(body, messagePrefix) || !strings.Contains(body, msg) {
				t.Errorf("%s %s = %s, %s %q, body %q; want %d, %s, body containing %q",
					tt.method, target, resp.Status, ErrorHeader, resp.Header.Get(ErrorHeader), body, tt.status, tt.code, msg)
			}
			// Python's http.client shows only the status line of a refused tunnel.
			if tt.method == "CONNECT" && resp.Status != fmt.Sprintf("%d %s", tt.status, strings.TrimSuffix(body, "\n")) {
				t.Errorf("CONNECT %s: status line %q, want the message %q as reason", target, resp.Status, body)
			}
			if st := tp.Stats(); st.Denied[tt.code] != 1 || st.Conns != 0 {
				t.Errorf("Stats() = %+v, want Denied[%s] = 1 and no connection", st, tt.code)
			}
			if got := tp.dials.dialed(); tt.code != CodeDialFailed && len(got) != 0 {
				t.Errorf("dialed %q for a refused request", got)
			}
		})
	}
}

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{
		"Connection":          {"keep-alive, X-Named", "x-also"},
		"X-Named":             {"1"},
		"X-Also":              {"1"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Connection":    {"keep-alive"},
		"Proxy-Authorization": {"Basic dXNlcjpzZWNyZXQ="},
		"Proxy-Authenticate":  {"Basic"},
		"Te":                  {"trailers"},
		"Trailer":             {"X-T"},
		"Transfer-Encoding":   {"chunked"},
		"Upgrade":             {"websocket"},
		"X-Keep":              {"1"},
		"Authorization":       {"Bearer upstream-token"},
	}
	removeHopHeaders(h)
	want := http.Header{"X-Keep": {"1"}, "Authorization": {"Bearer upstream-token"}}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Errorf("removeHopHeaders left %v, want %v", h, want)
	}
}

// TestDialsCheckedAddress checks the DNS-rebinding defence: the name is resolved once,
// refused addresses are dropped, and what is dialled is an address, never the name.
func TestDialsCheckedAddress(t *testing.T) {
	echo := startEcho(t)
	tp := startProxy(t, Policy{Allow: []string{"mixed.test"}, Ports: []int{echo.port}}, onlyLoopback)
	c, br := tp.connect(t, fmt.Sprintf("mixed.test:%d", echo.port))
	echoOnce(t, c, br, "rebinding")
	if got, want := tp.resolver.looked(), []string{"mixed.test."}; !slices.Equal(got, want) {
		t.Errorf("lookups %q, want %q", got, want)
	}
	if got, want := tp.dials.dialed(), []string{fmt.Sprintf("127.0.0.1:%d", echo.port)}; !slices.Equal(got, want) {
		t.Errorf("dialed %q, want %q", got, want)
	}
}

func TestConnLimits(t *testing.T) {
	echo := startEcho(t)
	target := fmt.Sprintf("allowed.test:%d", echo.port)

	t.Run("concurrent", func(t *testing.T) {
		tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{echo.port}, MaxConns: 1}, onlyLoopback)
		c, br := tp.connect(t, target)
		echoOnce(t, c, br, "first")
		c2, br2 := tp.dial(t)
		resp, body := roundTrip(t, c2, br2, http.MethodConnect, target)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(ErrorHeader) != CodeConnLimit ||
			!strings.Contains(body, "may have only 1 connections open at once") {
			t.Errorf("second CONNECT = %s, %q; want 429 conn_limit", resp.Status, body)
		}
		echoOnce(t, c, br, "first still works")
		if st := tp.Stats(); st.LimitHits != 1 || st.Denied[CodeConnLimit] != 1 || st.Conns != 1 {
			t.Errorf("Stats() = %+v, want one conn_limit refusal and one connection", st)
		}
	})

	t.Run("total", func(t *testing.T) {
		tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{echo.port}, MaxTotalConns: 2}, onlyLoopback)
		for i := range 2 {
			c, br := tp.connect(t, target)
			echoOnce(t, c, br, fmt.Sprint("connection ", i))
			c.Close()
		}
		c, br := tp.dial(t)
		resp, body := roundTrip(t, c, br, http.MethodConnect, target)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(ErrorHeader) != CodeConnLimit ||
			!strings.Contains(body, "has used all 2 connections") {
			t.Errorf("third CONNECT = %s, %q; want 429 conn_limit", resp.Status, body)
		}
		if st := tp.Stats(); st.LimitHits != 1 || st.Conns != 2 {
			t.Errorf("Stats() = %+v, want one limit hit and two connections", st)
		}
	})

	t.Run("client connections", func(t *testing.T) {
		tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{echo.port}, MaxConns: 1}, onlyLoopback)
		for range clientConnsPerUpstream {
			c, br := tp.dial(t)
			roundTrip(t, c, br, "GET", "/") // served, and kept open
		}
		c, _ := tp.dial(t)
		if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("read from a connection over the cap = %d, %v; want it closed", n, err)
		}
	})
}

func TestByteLimit(t *testing.T) {
	echo := startEcho(t)
	target := fmt.Sprintf("allowed.test:%d", echo.port)
	tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{echo.port}, MaxBytes: 1000}, onlyLoopback)
	c, br := tp.connect(t, target)
	// 600 bytes up leave 400 down: the echo is cut there and the tunnel closed.
	if _, err := c.Write(bytes.Repeat([]byte("x"), 600)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(br)
	if isTimeout(err) || len(got) > 400 {
		t.Errorf("tunnel over the byte cap read %d bytes, %v; want at most 400 and a closed connection", len(got), err)
	}
	st := tp.Stats()
	if st.LimitHits != 1 || st.BytesUp+st.BytesDown != 1000 || int64(len(got)) > st.BytesDown {
		t.Errorf("Stats() = %+v, want one limit hit and exactly 1000 bytes; the client read %d", st, len(got))
	}

	c2, br2 := tp.dial(t)
	resp, body := roundTrip(t, c2, br2, http.MethodConnect, target)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(ErrorHeader) != CodeByteLimit ||
		!strings.Contains(body, "used up its network transfer limit of 1000 bytes") {
		t.Errorf("CONNECT after the byte cap = %s, %q; want 429 byte_limit", resp.Status, body)
	}
}

func TestByteLimitForward(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(upstream))
	defer ts.Close()
	p := port(t, ts.URL)
	tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{p}, MaxBytes: 4000}, onlyLoopback)
	u := fmt.Sprintf("http://allowed.test:%d/big", p)
	big := strings.Repeat("y", 3000) // the echo makes 6000 bytes and more
	resp, err := tp.client(nil).Post(u, "text/plain", strings.NewReader(big))
	if err == nil {
		var got []byte
		got, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			t.Errorf("POST %s over the byte cap = %s with %d bytes, want a refusal or a cut response", u, resp.Status, len(got))
		}
	}
	if st := tp.Stats(); st.LimitHits == 0 || st.BytesUp+st.BytesDown > 4000 {
		t.Errorf("Stats() = %+v, want a limit hit and 4000 bytes at most", st)
	}
}

func TestIdleTimeout(t *testing.T) {
	echo := startEcho(t)
	tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{echo.port}, IdleTimeout: 50 * time.Millisecond}, onlyLoopback)
	c, br := tp.connect(t, fmt.Sprintf("allowed.test:%d", echo.port))
	echoOnce(t, c, br, "then silence")
	if n, err := br.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("read from an idle tunnel = %d, %v; want the proxy to close it", n, err)
	}
	<-echo.ended
}

func TestClose(t *testing.T) {
	echo := startEcho(t)
	ts := httptest.NewServer(http.HandlerFunc(upstream))
	defer ts.Close()
	tp := startProxy(t, Policy{Allow: []string{"allowed.test"}, Ports: []int{echo.port, port(t, ts.URL)}}, onlyLoopback)

	tunnel, tbr := tp.connect(t, fmt.Sprintf("allowed.test:%d", echo.port))
	echoOnce(t, tunnel, tbr, "open tunnel")
	keepAlive, kbr := tp.dial(t)
	if resp, _ := roundTrip(t, keepAlive, kbr, "GET", fmt.Sprintf("http://allowed.test:%d/", port(t, ts.URL))); resp.StatusCode != 200 {
		t.Fatalf("GET = %s, want 200", resp.Status)
	}
	idle, _ := tp.dial(t) // connected, no request yet

	tp.close(t)

	for name, c := range map[string]net.Conn{"tunnel": tunnel, "keep-alive": keepAlive, "idle": idle} {
		if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("read from %s connection after Close = %d, %v; want it closed", name, n, err)
		}
	}
	<-echo.ended // the upstream side of the tunnel was closed too
	if _, err := net.Dial("tcp", tp.addr); err == nil {
		t.Error("proxy still accepts connections after Close")
	}
	if err := tp.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	if err := tp.Serve(nil); err == nil {
		t.Error("Serve after Serve = nil, want an error")
	}
}

// TestCloseBeforeServe checks that a proxy closed before Serve closes the listener
// Serve is given, and returns.
func TestCloseBeforeServe(t *testing.T) {
	p, err := New(Policy{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(ln); err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("listener still open after Serve returned")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
