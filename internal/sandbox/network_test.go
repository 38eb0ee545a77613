package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
)

// fakeResolver answers for the test's made-up host names only.
type fakeResolver map[string]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[strings.TrimSuffix(host, ".")]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// networkRunner is a runner of path whose egress proxy resolves the test
// names to loopback and lets 127.0.0.1 (only) through, standing in for the internet.
func networkRunner(t *testing.T, path string) *Runner {
	t.Helper()
	rootfs := testRootfs(t)
	dir, err := os.MkdirTemp("", "codeexec-net-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o711)
	cfg := testConfig(rootfs, filepath.Join(dir, "state"), path)
	lo := netip.MustParseAddr("127.0.0.1")
	cfg.Egress = egress.Options{
		Resolver: fakeResolver{
			"allowed.test":  lo,
			"other.test":    lo,
			"loopback.test": netip.MustParseAddr("127.0.0.2"), // allowed by name, not by address
		},
		AddrAllowed: func(a netip.Addr) bool { return a == lo },
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if cfg.Warm {
		if err := r.Warm(); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestLimitedNetwork(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "hello from the web: %s %s %s", r.Method, r.URL.Path, body)
	}))
	defer web.Close()
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello over TLS")
	}))
	defer tls.Close()
	port := func(s *httptest.Server) int {
		u, _ := url.Parse(s.URL)
		p, _ := strconv.Atoi(u.Port())
		return p
	}
	policy := &egress.Policy{Allow: []string{"allowed.test", "loopback.test"}, Ports: []int{port(web), port(tls)}}
	code := fmt.Sprintf(`
import os, socket, requests, urllib3
urllib3.disable_warnings()
def attempt(f):
    try:
        return f()
    except Exception as e:
        return "%%s: %%s" %% (type(e).__name__, e)
print("get:", attempt(lambda: requests.get("http://allowed.test:%[1]d/x").text))
print("post:", attempt(lambda: requests.post("http://allowed.test:%[1]d/y", data=b"body").text))
print("tls:", attempt(lambda: requests.get("https://allowed.test:%[2]d/", verify=False).text))
def refused(url):
    r = requests.get(url)
    return "%%d %%s %%s" %% (r.status_code, r.headers.get("X-Codeexec-Egress-Error"), r.text)
print("other:", attempt(lambda: refused("http://other.test:%[1]d/")))
print("other tls:", attempt(lambda: requests.get("https://other.test:%[2]d/")))
print("private:", attempt(lambda: refused("http://loopback.test:%[1]d/")))
print("port:", attempt(lambda: refused("http://allowed.test:1/")))
print("direct:", attempt(lambda: socket.create_connection(("127.0.0.1", %[1]d), timeout=2)))
print("dns:", attempt(lambda: socket.getaddrinfo("allowed.test", 80)))
`, port(web), port(tls))
	bothPaths(t, func(t *testing.T, r *Runner) {
		r = networkRunner(t, pathName(r))
		res, err := r.Run(context.Background(), &job.Request{Code: code, Limits: job.DefaultLimits(), Network: policy})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != job.StatusOK {
			t.Fatalf("status %s stderr %q", res.Status, res.Stderr)
		}
		out := res.Stdout
		for _, want := range []string{
			"get: hello from the web: GET /x",
			"post: hello from the web: POST /y body",
			"tls: hello over TLS",
			`other: 403 host_not_allowed codeexec egress: host "other.test" is not in this execution's network allowlist`,
			`other tls: ProxyError`, `Tunnel connection failed: 403`,
			"private: 403 address_not_allowed", "private or local addresses",
			"port: 403 port_not_allowed",
			"direct: ConnectionRefusedError", // the sandbox's loopback is its own
			"dns: gaierror",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("want %q in:\n%s", want, out)
			}
		}
		// get, post and tls reached the web; other (twice), private and port did not.
		if u := res.Usage.Network; u == nil || u.Connections != 3 || u.Denied != 4 || u.BytesSent == 0 || u.BytesReceived == 0 {
			t.Errorf("network usage %+v, want 3 connections, 4 refusals and bytes both ways", u)
		}
		// Without a policy the same runner gives no network and no proxy: nothing
		// listens in the sandbox (state 0A in /proc/net/tcp).
		res, err = r.Run(context.Background(), &job.Request{Code: `
import os
print(sorted(k for k in os.environ if "proxy" in k.lower()))
print([l.split()[1] for l in open("/proc/net/tcp").readlines()[1:] if l.split()[3] == "0A"])`, Limits: job.DefaultLimits()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stdout != "[]\n[]\n" || res.Usage.Network != nil {
			t.Errorf("an execution without network: %q %q %+v", res.Stdout, res.Stderr, res.Usage.Network)
		}
	})
}

// A session's network is per execution: the proxy of one run is gone in the next.
func TestSessionNetworkPerExecution(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer web.Close()
	u, _ := url.Parse(web.URL)
	p, _ := strconv.Atoi(u.Port())
	t.Run("warm", func(t *testing.T) {
		r := networkRunner(t, "warm")
		s, err := r.NewSession(context.Background(), job.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		code := fmt.Sprintf(`
import requests
try:
    print(requests.get("http://allowed.test:%d/", timeout=5).text)
except Exception as e:
    print(type(e).__name__)`, p)
		policy := &egress.Policy{Allow: []string{"allowed.test"}, Ports: []int{p}}
		for i, tc := range []struct {
			network *egress.Policy
			want    string
		}{{policy, "ok\n"}, {nil, "ConnectionError\n"}, {policy, "ok\n"}} {
			res, err := s.Run(context.Background(), &job.Request{Code: code, Limits: job.DefaultLimits(), Network: tc.network})
			if err != nil {
				t.Fatal(err)
			}
			if res.Stdout != tc.want {
				t.Errorf("run %d: %q (stderr %q), want %q", i, res.Stdout, res.Stderr, tc.want)
			}
		}
	})
}

// TestCommandNetwork: a command with a Network policy reaches the allowed hosts
// through the proxy, with the proxy variables, for as long as it runs; one without
// has neither.
func TestCommandNetwork(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer web.Close()
	u, _ := url.Parse(web.URL)
	p, _ := strconv.Atoi(u.Port())
	r := networkRunner(t, "warm")
	s, err := r.NewSession(context.Background(), job.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code := fmt.Sprintf(`
import os, urllib.request
print("proxy" if os.environ.get("http_proxy") else "no proxy")
try:
    print(urllib.request.urlopen("http://allowed.test:%d/", timeout=5).read().decode())
except Exception as e:
    print(type(e).__name__)`, p)
	policy := &egress.Policy{Allow: []string{"allowed.test"}, Ports: []int{p}}
	for _, tc := range []struct {
		name    string
		network *egress.Policy
		want    string
	}{
		{"with a policy", policy, "proxy\nok\n"},
		{"without", nil, "no proxy\nURLError\n"},
	} {
		out := newChunkWriter()
		proc, err := s.Start(context.Background(), &Command{Args: []string{"python3", "-c", code}, Stdout: out, Stderr: out, Network: tc.network})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := proc.Wait(); err != nil || st.Code != 0 || out.String() != tc.want {
			t.Errorf("%s: %v %v %q, want %q", tc.name, st, err, out.String(), tc.want)
		}
	}
}
