package containment_test

// Attacks on the HTTP server by its clients rather than by code in a sandbox: slow
// and idle connections, a flood from one address, and a tenant reaching for another
// tenant's session. Each runs against a server of each path, served as `codeexec
// serve` serves it (api.HTTPServer on api.Server.LimitListener), with every deadline
// at a second or so.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
)

// hostileServer serves the API for path on loopback with short connection limits and
// two tenants' keys, "key-acme" and "key-bravo"; it returns the address.
func hostileServer(t *testing.T, path string) string {
	t.Helper()
	r := runnerFor(t, path)
	sessions := session.NewManager(session.Config{Max: 4, IdleTTL: time.Minute, MaxIdleTTL: time.Minute, MaxLifetime: time.Hour}, r)
	t.Cleanup(sessions.Close)
	cfg := api.DefaultConfig()
	cfg.Keys = []tenant.Key{
		{Secret: "key-acme", Tenant: &tenant.Tenant{Name: "acme"}},
		{Secret: "key-bravo", Tenant: &tenant.Tenant{Name: "bravo"}},
	}
	cfg.Conn = api.ConnLimits{HeaderTimeout: time.Second, BodyTimeout: time.Second, BodyMinRate: 64 << 10,
		SendTimeout: time.Second, IdleTimeout: time.Second, MaxHeaderBytes: 8 << 10, MaxConns: 400, MaxConnsPerClient: 150}
	srv := api.New(cfg, r, sessions, func() error { return nil }, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer(context.Background())
	go hs.Serve(srv.LimitListener(ln))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// clientAttack is one attack on the server of a path.
type clientAttack struct {
	name string
	// warmOnly attacks need sessions, which only the warm path has.
	warmOnly bool
	run      func(t *testing.T, addr string)
}

// TestHostileClients runs each client attack against the server of each path, and
// checks after each that the server still runs code for a client that behaves.
func TestHostileClients(t *testing.T) {
	attacks := []clientAttack{
		{name: "slow_bodies", run: slowBodies},
		{name: "connection_flood", run: connectionFlood},
		{name: "idle_keepalive", run: idleKeepAlive},
		{name: "long_execution_beyond_deadlines", run: longExecution},
		{name: "cross_tenant_session", warmOnly: true, run: crossTenant},
	}
	batteryMu.Lock()
	for _, a := range attacks {
		battery[t.Name()+"/"+a.name] = true
	}
	batteryMu.Unlock()
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			for _, a := range attacks {
				if a.warmOnly && p != "warm" {
					continue
				}
				t.Run(a.name, func(t *testing.T) {
					attackCount.Add(1)
					addr := hostileServer(t, p)
					a.run(t, addr)
					if res := execute(t, clientFrom("127.0.0.5"), addr, "key-acme", "print(6 * 7)"); !strings.Contains(res, `"stdout":"42\n"`) {
						t.Errorf("after the attack, print(6 * 7) answered %s", res)
					}
				})
			}
		})
	}
}

// clientFrom is an HTTP client whose connections come from the loopback address from.
func clientFrom(from string) *http.Client {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: d.DialContext}}
}

// dialFrom connects to addr from the loopback address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// execute runs code with key through client and returns the reply's status and body.
func execute(t *testing.T, client *http.Client, addr, key, code string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"code": code})
	return call(t, client, "POST", "http://"+addr+"/v1/execute", key, string(body))
}

// call makes a request and returns "STATUS BODY".
func call(t *testing.T, client *http.Client, method, url, key, body string) string {
	t.Helper()
	return sendWith(t, client, key, method, url, []byte(body)).String()
}

// closedBy reports whether the server closed c by deadline, and what it sent first.
func closedBy(c net.Conn, deadline time.Time) (string, bool) {
	c.SetReadDeadline(deadline)
	data, err := io.ReadAll(c)
	var ne net.Error
	return string(data), !(errors.As(err, &ne) && ne.Timeout())
}

// slowBodies: 100 connections send a header and a piece of the body, then nothing.
// Each is answered 408 body_timeout and closed; meanwhile the server runs code.
func slowBodies(t *testing.T, addr string) {
	var conns []net.Conn
	for range 100 {
		c := dialFrom(t, "127.0.0.1", addr)
		fmt.Fprintf(c, "POST /v1/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key-acme\r\nContent-Length: 1000\r\n\r\n{\"code\": \"")
		conns = append(conns, c)
	}
	if res := execute(t, clientFrom("127.0.0.2"), addr, "key-bravo", "print('served')"); !strings.Contains(res, `"stdout":"served\n"`) {
		t.Errorf("an execution during the attack: %s", res)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, c := range conns {
		if got, closed := closedBy(c, deadline); !closed || !strings.HasPrefix(got, "HTTP/1.1 408 ") {
			t.Fatalf("slow body %d: closed %v after %q; want 408, then closed", i, closed, got)
		}
	}
}

// connectionFlood: one address opens connections up to its cap and beyond; the ones
// beyond are refused at once with 429, and another address is still served.
func connectionFlood(t *testing.T, addr string) {
	for range 150 {
		dialFrom(t, "127.0.0.1", addr)
	}
	refused := 0
	for i := range 20 {
		c := dialFrom(t, "127.0.0.1", addr)
		got, closed := closedBy(c, time.Now().Add(20*time.Second))
		if closed && strings.HasPrefix(got, "HTTP/1.1 429 ") && strings.Contains(got, "too_many_connections") {
			refused++
		} else if i > 0 {
			// The first may have come before the server accepted all 150.
			t.Errorf("connection %d over the cap: closed %v after %q; want 429 too_many_connections", 151+i, closed, got)
		}
	}
	if refused < 19 {
		t.Errorf("%d of 20 connections over the cap refused", refused)
	}
	if res := execute(t, clientFrom("127.0.0.2"), addr, "key-bravo", "print('served')"); !strings.Contains(res, `"stdout":"served\n"`) {
		t.Errorf("an execution from another address during the flood: %s", res)
	}
}

// idleKeepAlive: a connection that made a request and then stays idle is closed.
func idleKeepAlive(t *testing.T, addr string) {
	c := dialFrom(t, "127.0.0.1", addr)
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if got, closed := closedBy(c, time.Now().Add(30*time.Second)); !closed || got != "" {
		t.Errorf("idle keep-alive connection: closed %v after %q; want it closed", closed, got)
	}
}

// longExecution: an execution of 3 seconds, past every deadline of the connection,
// is answered in full.
func longExecution(t *testing.T, addr string) {
	res := execute(t, clientFrom("127.0.0.2"), addr, "key-acme", "import time\ntime.sleep(3)\nprint('done')")
	if !strings.HasPrefix(res, "200 ") || !strings.Contains(res, `"stdout":"done\n"`) {
		t.Errorf("an execution of 3s with 1s connection deadlines: %s", res)
	}
}

// crossTenant: bravo's key cannot see, run in, read, write, list or end acme's
// session; every try is the 404 of an unknown id, and acme's state survives them.
func crossTenant(t *testing.T, addr string) {
	client := clientFrom("127.0.0.2")
	base := "http://" + addr + "/v1/sessions"
	res := call(t, client, "POST", base, "key-acme", `{}`)
	var created struct{ ID string }
	if !strings.HasPrefix(res, "201 ") || json.Unmarshal([]byte(strings.TrimPrefix(res, "201 ")), &created) != nil {
		t.Fatalf("acme creates a session: %s", res)
	}
	id := created.ID
	if res := call(t, client, "POST", base+"/"+id+"/execute", "key-acme", `{"code": "secret = 'acme'\nopen('data.txt', 'w').write('acme')"}`); !strings.HasPrefix(res, "200 ") {
		t.Fatalf("acme's first run: %s", res)
	}
	const unknown = "sess_ffffffffffffffffffffffffffffffff"
	for _, rt := range []struct{ method, path, body string }{
		{"GET", "", ""}, {"DELETE", "", ""}, {"POST", "/execute", `{"code": "print(secret)"}`},
		{"GET", "/files", ""}, {"GET", "/files/data.txt", ""}, {"PUT", "/files/data.txt", "bravo"},
		{"DELETE", "/files/data.txt", ""},
	} {
		got := call(t, client, rt.method, base+"/"+id+rt.path, "key-bravo", rt.body)
		want := call(t, client, rt.method, base+"/"+unknown+rt.path, "key-bravo", rt.body)
		if !strings.HasPrefix(got, "404 ") || got != strings.ReplaceAll(want, unknown, id) {
			t.Errorf("bravo %s %s of acme's session: %s; want the unknown id's %s", rt.method, rt.path, got, want)
		}
	}
	if got := execute(t, client, addr, "key-bravo", ""); !strings.HasPrefix(got, "200 ") {
		t.Errorf("bravo's own execution: %s", got)
	}
	body, _ := json.Marshal(map[string]string{"code": "print(secret)", "session_id": id})
	if got := call(t, client, "POST", "http://"+addr+"/v1/execute", "key-bravo", string(body)); !strings.HasPrefix(got, "404 ") {
		t.Errorf("bravo runs in acme's session by session_id: %s", got)
	}
	if got := call(t, client, "GET", base, "key-bravo", ""); got != "200 {\"sessions\":[]}\n" {
		t.Errorf("bravo lists %s; want no session", got)
	}
	res = call(t, client, "POST", base+"/"+id+"/execute", "key-acme", `{"code": "print(secret, open('data.txt').read())"}`)
	if !strings.Contains(res, `"stdout":"acme acme\n"`) {
		t.Errorf("acme's session after bravo's tries: %s", res)
	}
}
