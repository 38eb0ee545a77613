package api

// Tests of the connection limits through a real server on loopback, served as
// `codeexec serve` serves it: HTTPServer on LimitListener.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/session"
)

// limitedServer serves the API over exec on a loopback port with conn as its
// connection limits, and returns its address and the server.
func limitedServer(t testing.TB, exec Executor, sessions *session.Manager, conn ConnLimits) (string, *Server) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Conn = conn
	if exec == nil {
		exec = noSandbox{t}
	}
	if sessions == nil {
		sessions = session.NewManager(session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}, noSandbox{t})
		t.Cleanup(sessions.Close)
	}
	srv := New(cfg, exec, sessions, func() error { return nil }, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer(context.Background())
	go hs.Serve(srv.LimitListener(ln))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), srv
}

// shortLimits are limits of a second or two, so that the tests wait little.
func shortLimits() ConnLimits {
	return ConnLimits{HeaderTimeout: time.Second, BodyTimeout: time.Second, BodyMinRate: 64 << 10,
		SendTimeout: time.Second, IdleTimeout: time.Second, MaxHeaderBytes: 8 << 10}
}

// dialFrom connects to addr from the loopback address from (127.0.0.2, say): each
// is another client to the per-client cap.
func dialFrom(t testing.TB, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// clientFrom is an HTTP client whose connections come from the loopback address from.
func clientFrom(from string) *http.Client {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// readUntilClosed reads c until the server closes it or until deadline; it returns
// what was read and whether the server closed the connection.
func readUntilClosed(c net.Conn, deadline time.Time) (string, bool) {
	c.SetReadDeadline(deadline)
	data, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(data), false
	}
	return string(data), true // EOF or reset: closed by the server
}

// value is the value of srv's series name with the label value label ("" for none).
func value(srv *Server, name, label string) float64 {
	families, err := srv.registry.Gather()
	if err != nil {
		return -1
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// waitOpen waits until srv counts want open connections.
func waitOpen(t testing.TB, srv *Server, want int) {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = value(srv, "codeexec_connections_open", ""); got == float64(want) {
			return
		}
	}
	t.Fatalf("codeexec_connections_open is %v, want %d", got, want)
}

// TestSlowClients: 500 connections that send a request's header and part of its body
// and then nothing, connections that stop in the middle of their header and one that
// trickles its body are all answered and closed after their deadline, while a
// legitimate request is served at once.
func TestSlowClients(t *testing.T) {
	if lim, err := fileLimit(); err == nil && lim < 2000 {
		t.Skipf("the open file limit is %d; the test needs about 1200", lim)
	}
	addr, srv := limitedServer(t, nil, nil, shortLimits())
	const slowBodies, slowHeaders = 500, 50
	var bodies, headers []net.Conn
	for range slowBodies {
		c := dialFrom(t, "127.0.0.1", addr)
		fmt.Fprintf(c, "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"code\": \"")
		bodies = append(bodies, c)
	}
	for range slowHeaders {
		c := dialFrom(t, "127.0.0.1", addr)
		fmt.Fprintf(c, "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Le")
		headers = append(headers, c)
	}
	// One that sends a byte of its body every 100ms: it is never silent for long,
	// but far slower than body_min_rate.
	trickler := dialFrom(t, "127.0.0.1", addr)
	fmt.Fprintf(trickler, "POST /v1/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	stopTrickle := make(chan struct{})
	trickled := make(chan int, 1)
	go func() {
		n := 0
		defer func() { trickled <- n }()
		for range 300 { // 30s at most
			select {
			case <-stopTrickle:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := trickler.Write([]byte("x")); err != nil {
				return
			}
			n++
		}
	}()

	// Meanwhile a legitimate client is served.
	legit := clientFrom("127.0.0.2")
	resp, err := legit.Post("http://"+addr+"/v1/execute", "application/json", strings.NewReader(`{"code": `))
	if err != nil {
		t.Fatalf("legitimate request during the attack: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("legitimate request during the attack: %s, want 400 (its JSON is cut short)", resp.Status)
	}

	deadline := time.Now().Add(30 * time.Second)
	for i, c := range bodies {
		got, closed := readUntilClosed(c, deadline)
		if !closed || !strings.HasPrefix(got, "HTTP/1.1 408 ") || !strings.Contains(got, `"code":"body_timeout"`) {
			t.Fatalf("slow body %d: closed %v after %q; want a 408 body_timeout, then the connection closed", i, closed, got)
		}
	}
	for i, c := range headers {
		if got, closed := readUntilClosed(c, deadline); !closed {
			t.Fatalf("slow header %d: still open after %q", i, got)
		}
	}
	// The 408 may be lost: closing a connection whose client is still sending
	// resets it.
	got, closed := readUntilClosed(trickler, deadline)
	close(stopTrickle)
	if n := <-trickled; !closed || n >= 300 {
		t.Errorf("trickling body: closed %v after %q, %d bytes sent; want it closed before its 300th byte", closed, got, n)
	}
	waitOpen(t, srv, 0)
}

// fileLimit is the process's soft limit on open files.
func fileLimit() (uint64, error) {
	data, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && strings.HasPrefix(line, "Max open files") {
			var n uint64
			_, err := fmt.Sscan(f[3], &n)
			return n, err
		}
	}
	return 0, errors.New("no open files line")
}

// TestConnectionCaps: a client at its cap gets 429 too_many_connections at once and
// is closed, another client is still served; with every place taken a new client
// gets 503 server_busy; a place given back is taken again.
func TestConnectionCaps(t *testing.T) {
	l := shortLimits()
	l.HeaderTimeout, l.IdleTimeout = time.Minute, time.Minute // the held connections stay
	l.MaxConns, l.MaxConnsPerClient = 8, 4
	addr, srv := limitedServer(t, nil, nil, l)
	var held []net.Conn
	for range 4 {
		held = append(held, dialFrom(t, "127.0.0.1", addr))
	}
	waitOpen(t, srv, 4)
	over := dialFrom(t, "127.0.0.1", addr)
	got, closed := readUntilClosed(over, time.Now().Add(20*time.Second))
	if !closed || !strings.HasPrefix(got, "HTTP/1.1 429 ") || !strings.Contains(got, `"code":"too_many_connections"`) || !strings.Contains(got, "Retry-After: 1") {
		t.Errorf("fifth connection of 127.0.0.1 (cap 4): closed %v after %q; want 429 too_many_connections, closed", closed, got)
	}
	// Another client is served.
	resp, err := clientFrom("127.0.0.2").Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz from 127.0.0.2 beside a client at its cap: %v %v", resp, err)
	}
	resp.Body.Close()

	waitOpen(t, srv, 4) // the request of 127.0.0.2 is over
	// Fill the server: 4 of 127.0.0.1 and 4 of 127.0.0.3.
	for range 4 {
		held = append(held, dialFrom(t, "127.0.0.3", addr))
	}
	waitOpen(t, srv, 8)
	full := dialFrom(t, "127.0.0.4", addr)
	got, closed = readUntilClosed(full, time.Now().Add(20*time.Second))
	if !closed || !strings.HasPrefix(got, "HTTP/1.1 503 ") || !strings.Contains(got, `"code":"server_busy"`) {
		t.Errorf("a connection with all 8 places taken: closed %v after %q; want 503 server_busy, closed", closed, got)
	}
	// A place given back is free again.
	held[0].Close()
	waitOpen(t, srv, 7)
	resp, err = clientFrom("127.0.0.1").Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz from 127.0.0.1 after it closed one: %v %v", resp, err)
	}
	resp.Body.Close()
	for cap, want := range map[string]float64{"per_client": 1, "total": 1} {
		if got := value(srv, "codeexec_connections_refused_total", cap); got != want {
			t.Errorf("refused for %s: %v, want %v", cap, got, want)
		}
	}
}

// TestIdleConnection: a keep-alive connection idle past idle_timeout is closed; a
// request after a pause shorter than that still gets its "100 Continue", although
// the deadline of the previous reply has passed.
func TestIdleConnection(t *testing.T) {
	l := shortLimits()
	l.IdleTimeout = 3 * time.Second
	addr, srv := limitedServer(t, nil, nil, l)
	c := dialFrom(t, "127.0.0.1", addr)
	br := bufio.NewReader(c)
	roundTrip := func(req string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the reply to %q: %v", req, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := roundTrip("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); r.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: %s", r.Status)
	}
	time.Sleep(1500 * time.Millisecond) // past send_timeout (1s), within idle_timeout (3s)
	body := `{"code": `
	if _, err := fmt.Fprintf(c, "POST /v1/execute HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("after a pause, a request with Expect: 100-continue got %q, %v; want 100 Continue", line, err)
	}
	br.ReadString('\n') // the blank line after it
	if r := roundTrip(body); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("the body after 100 Continue: %s, want 400", r.Status)
	}
	// Now idle: the server closes the connection.
	got, closed := readUntilClosed(c, time.Now().Add(30*time.Second))
	if !closed || got != "" {
		t.Errorf("idle keep-alive connection: closed %v, read %q; want it closed without a word", closed, got)
	}
	waitOpen(t, srv, 0)
}

// TestLongExecutionOutlivesDeadlines: with every deadline at a second or so, an
// execution of 4 seconds completes and is answered, and the connection then serves
// the next request; a slow download that keeps taking data is not cut either.
func TestLongExecutionOutlivesDeadlines(t *testing.T) {
	r := testRunner(t)
	m := session.NewManager(session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}, r)
	t.Cleanup(m.Close)
	l := shortLimits()
	l.IdleTimeout = 5 * time.Second
	addr, _ := limitedServer(t, r, m, l)
	client := &http.Client{Timeout: time.Minute} // keep-alive: the second request reuses the connection
	var conns sync.Map
	trace := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err == nil {
			conns.Store(c.LocalAddr().String(), true)
		}
		return c, err
	}}
	client.Transport = trace
	for i, code := range []string{`import time\ntime.sleep(4)\nprint('done')`, `print('again')`} {
		resp, err := client.Post("http://"+addr+"/v1/execute", "application/json", strings.NewReader(`{"code": "`+code+`"}`))
		if err != nil {
			t.Fatalf("execution %d: %v", i, err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), `"status":"ok"`) || !strings.Contains(string(data), `"stdout":"`) {
			t.Fatalf("execution %d: %s %s", i, resp.Status, data)
		}
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("the two executions used %d connections, want 1 (kept alive)", n)
	}

	// A download of 8 MiB read at 2 MiB/s: it takes 4 times the send deadline but
	// never stalls for it.
	id := createSession(t, "http://"+addr)
	base := "http://" + addr + "/v1/sessions/" + id
	resp, err := client.Post(base+"/execute", "application/json", strings.NewReader(`{"code": "open('big.bin', 'wb').write(bytes(8 << 20))"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("making big.bin: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = client.Get(base + "/files/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	total := 0
	buf := make([]byte, 256<<10)
	for {
		time.Sleep(125 * time.Millisecond) // 256 KiB per 1/8 s
		k, err := io.ReadFull(resp.Body, buf)
		total += k
		if err != nil {
			break
		}
	}
	if total != 8<<20 {
		t.Errorf("slow download: %d bytes, want %d", total, 8<<20)
	}
}

// TestStalledReader: a client that asks for a large download and reads none of it
// is dropped after the send deadline; the server does not wait for it forever.
func TestStalledReader(t *testing.T) {
	r := testRunner(t)
	m := session.NewManager(session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}, r)
	t.Cleanup(m.Close)
	addr, srv := limitedServer(t, r, m, shortLimits())
	id := createSession(t, "http://"+addr)
	res := do(t, "POST", "http://"+addr+"/v1/sessions/"+id+"/execute", `{"code": "open('big.bin', 'wb').write(bytes(48 << 20))"}`)
	result(t, res)
	c := dialFrom(t, "127.0.0.1", addr)
	fmt.Fprintf(c, "GET /v1/sessions/%s/files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n", id)
	// The kernel's buffers take a few MiB of the 48; then the server waits on a
	// client that reads nothing, and gives up.
	waitOpen(t, srv, 0)
}
