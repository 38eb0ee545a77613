// Package e2b_test drives codeexec's E2B-compatible API (internal/e2b) with the
// unmodified npm e2b and @e2b/code-interpreter packages, against the real sandbox.
package e2b_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/e2b"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
	"github.com/codeexec/codeexec/test/testenv"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

// The packages node/package.json pins; nodeDir installs them when they are missing.
var sdkPackages = []string{"e2b", "@e2b/code-interpreter", "dotenv"}

// nodeDir returns node/ with the packages it pins installed.
func nodeDir(t *testing.T) string {
	t.Helper()
	return testenv.NodeDir(t, "node", sdkPackages...)
}

const (
	apiKey   = "e2b_test_key_for_codeexec"
	otherKey = "e2b_test_key_of_another_tenant"
)

// server starts the E2B API over a session manager of the shared warm runner, with
// one API key, on loopback.
func server(t *testing.T) string {
	t.Helper()
	return serverWith(t, api.DefaultConfig().Policy)
}

// serverWith is server with the policy p (limits, the operator's network allowlist).
func serverWith(t *testing.T, p job.Policy) string {
	t.Helper()
	runner := testenv.Runner(t)
	m := session.NewManager(session.Config{Max: 8, IdleTTL: 10 * time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: 4 * time.Hour}, runner)
	t.Cleanup(m.Close)
	keys := []tenant.Key{{Secret: apiKey, Tenant: &tenant.Tenant{Name: "e2b-test"}}, {Secret: otherKey, Tenant: &tenant.Tenant{Name: "other"}}}
	h := e2b.New(e2b.Config{Sessions: m, Keys: keys, Policy: p, Log: slog.New(slog.DiscardHandler)}).Handler()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

type stepReport struct {
	Step   string `json:"step"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// runSDK runs node/sdk.mjs with the given groups against url and returns its
// reports by step.
func runSDK(t *testing.T, url string, groups ...string) map[string]stepReport {
	t.Helper()
	dir := nodeDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"sdk.mjs"}, groups...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "E2B_API_URL="+url, "E2B_SANDBOX_URL="+url, "E2B_API_KEY="+apiKey, "E2B_DOMAIN=localhost")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("node sdk.mjs: %v\nstderr:\n%s", err, stderr.Bytes())
	}
	t.Logf("node sdk.mjs ran %v", time.Since(start).Round(time.Millisecond))
	got := map[string]stepReport{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r stepReport
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("sdk.mjs printed %q: %v", sc.Text(), err)
			continue
		}
		got[r.Step] = r
	}
	return got
}

// TestSDK runs each SDK method against the server: every step must report ok.
func TestSDK(t *testing.T) {
	url := server(t)
	got := runSDK(t, url, "runCode", "commands", "files")
	for _, step := range []string{"create", "runCode.state", "runCode.error", "runCode.figure", "runCode.onStdout",
		"runCode.timeout", "runCode.contexts", "commands.run", "commands.exit", "commands.stdin", "commands.connect", "commands.pty", "commands.user", "commands.pid", "commands.kill", "files", "files.paths", "files.gzip", "files.signedUrls", "files.watchDir", "list", "getInfo", "setTimeout", "connect", "kill"} {
		r, ok := got[step]
		switch {
		case !ok:
			t.Errorf("%s: not run", step)
		case !r.OK:
			t.Errorf("%s: %s", step, r.Detail)
		default:
			t.Logf("%s: ok (%s)", step, r.Detail)
		}
	}
}

// TestKernel runs IPython's semantics through the SDK: DataFrames with html and
// data, display(), rich reprs, !cmd, %magics and %%cell magics, figures, the
// execution count, envs per sandbox and per run, and JavaScript contexts (Node:
// globals kept, cwd, envs, errors; TypeScript refused by name).
func TestKernel(t *testing.T) {
	got := runSDK(t, server(t), "kernel")
	for _, step := range []string{"kernel.dataframe", "kernel.display", "kernel.displayStreamed", "kernel.repr", "kernel.shell", "kernel.magics",
		"kernel.figure", "kernel.chart", "kernel.executionCount", "kernel.envs", "kernel.indented", "kernel.bash", "kernel.killed", "kernel.stream", "commands.killed", "kernel.javascript"} {
		r, ok := got[step]
		switch {
		case !ok:
			t.Errorf("%s: not run", step)
		case !r.OK:
			t.Errorf("%s: %s", step, r.Detail)
		default:
			t.Logf("%s: ok (%s)", step, r.Detail)
		}
	}
}

// TestQuickstart runs the quick start of E2B's documentation as written there
// (node/quickstart.mjs): it prints the run's logs and the sandbox's root.
func TestQuickstart(t *testing.T) {
	url := server(t)
	dir := nodeDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "quickstart.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "E2B_API_URL="+url, "E2B_SANDBOX_URL="+url, "E2B_API_KEY="+apiKey)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node quickstart.mjs: %v\n%s", err, out)
	}
	for _, want := range []string{"stdout: [ 'hello world\\n' ]", "stderr: []", "name: 'usr'", "path: '/home'", "type: 'dir'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the quick start printed no %q:\n%s", want, out)
		}
	}
}

// TestControlPlaneKey: the control plane refuses a missing or wrong X-API-Key with
// E2B's 401 body, which the SDK turns into an AuthenticationError.
func TestControlPlaneKey(t *testing.T) {
	url := server(t)
	dir := nodeDir(t)
	for _, key := range []string{"wrong-key"} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, "node", "-e", `import('e2b').then(async ({ Sandbox }) => {
  try { await Sandbox.create(); console.log('created') } catch (e) { console.log(e.name) }
})`)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "E2B_API_URL="+url, "E2B_SANDBOX_URL="+url, "E2B_API_KEY="+key)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
		}
		if got := strings.TrimSpace(string(out)); got != "AuthenticationError" {
			t.Errorf("Sandbox.create with key %q: got %q, want AuthenticationError", key, got)
		}
	}
}

// TestLatency reports the time from Sandbox.create() to the first runCode result
// (no threshold: the machine is shared).
func TestLatency(t *testing.T) {
	got := runSDK(t, server(t), "latency")
	if r := got["latency"]; !r.OK {
		t.Fatalf("latency: %+v", r)
	} else {
		t.Log(r.Detail)
	}
}

// TestTenancy: a sandbox exists for its creator's tenant only, and its data plane
// wants its own access token.
func TestTenancy(t *testing.T) {
	url := server(t)
	do := func(method, path, key string, hdr map[string]string, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	code, body := do("POST", "/v2/sandboxes", apiKey, nil, `{"templateID":"base"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var sb struct{ SandboxID, EnvdAccessToken string }
	if err := json.Unmarshal([]byte(body), &sb); err != nil {
		t.Fatal(err)
	}
	envd := func(tok string) map[string]string {
		h := map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49983", "Content-Type": "application/json"}
		if tok != "" {
			h["X-Access-Token"] = tok
		}
		return h
	}
	interp := map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49999", "X-Access-Token": "wrong"}
	interpWith := func(tok string) map[string]string {
		return map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49999", "X-Access-Token": tok}
	}
	for _, c := range []struct {
		what, method, path, key string
		hdr                     map[string]string
		body                    string
		want                    int
	}{
		{"get by another tenant", "GET", "/sandboxes/" + sb.SandboxID, otherKey, nil, "", 404},
		{"kill by another tenant", "DELETE", "/sandboxes/" + sb.SandboxID, otherKey, nil, "", 404},
		{"timeout by another tenant", "POST", "/sandboxes/" + sb.SandboxID + "/timeout", otherKey, nil, `{"timeout":60}`, 404},
		{"no key", "GET", "/v2/sandboxes", "", nil, "", 401},
		{"envd without a token", "POST", "/process.Process/List", "", envd(""), "{}", 401},
		{"envd with a wrong token", "POST", "/process.Process/List", "", envd("wrong"), "{}", 401},
		{"execute with a wrong token", "POST", "/execute", "", interp, `{"code":"1"}`, 401},
		{"envd with its token", "POST", "/process.Process/List", "", envd(sb.EnvdAccessToken), "{}", 200},
		{"a timeout above the maximum", "POST", "/sandboxes/" + sb.SandboxID + "/timeout", apiKey, nil, `{"timeout":86400}`, 400},
		{"pause", "POST", "/sandboxes/" + sb.SandboxID + "/pause", apiKey, nil, "", 501},
		{"a TypeScript run", "POST", "/execute", "", interpWith(sb.EnvdAccessToken), `{"code":"1","language":"ts"}`, 400},
		{"an R context", "POST", "/contexts", "", interpWith(sb.EnvdAccessToken), `{"language":"r"}`, 400},
		{"a JavaScript context", "POST", "/contexts", "", interpWith(sb.EnvdAccessToken), `{"language":"javascript"}`, 200},
		{"a template codeexec lacks", "POST", "/v2/sandboxes", apiKey, nil, `{"templateID":"nope"}`, 400},
		{"get by its tenant", "GET", "/sandboxes/" + sb.SandboxID, apiKey, nil, "", 200},
	} {
		if code, body := do(c.method, c.path, c.key, c.hdr, c.body); code != c.want {
			t.Errorf("%s: %s %s answered %d %s, want %d", c.what, c.method, c.path, code, body, c.want)
		}
	}
	if code, body := do("GET", "/v2/sandboxes", otherKey, nil, ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("list by another tenant: %d %s, want 200 []", code, body)
	}
}

// TestWatcherPolling drives envd's polled watchers (the Python SDK's watch_dir):
// CreateWatcher, a write through /files, GetWatcherEvents until it reports the
// file, RemoveWatcher, and then a watcher that is gone.
func TestWatcherPolling(t *testing.T) {
	url := server(t)
	call := func(method, path string, hdr map[string]string, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	code, body := call("POST", "/v2/sandboxes", map[string]string{"X-API-Key": apiKey}, `{"templateID":"base"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var sb struct{ SandboxID, EnvdAccessToken string }
	if err := json.Unmarshal([]byte(body), &sb); err != nil {
		t.Fatal(err)
	}
	envd := map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49983", "X-Access-Token": sb.EnvdAccessToken,
		"Content-Type": "application/json"}
	code, body = call("POST", "/filesystem.Filesystem/CreateWatcher", envd, `{"path":"/home/user","recursive":true}`)
	var cw struct{ WatcherID string }
	if err := json.Unmarshal([]byte(body), &cw); code != 200 || err != nil || cw.WatcherID == "" {
		t.Fatalf("CreateWatcher: %d %s", code, body)
	}
	up := map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49983", "X-Access-Token": sb.EnvdAccessToken,
		"Content-Type": "application/octet-stream"}
	if code, body := call("POST", "/files?path=/home/user/polled.txt", up, "data"); code != 200 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var got []string
	for range 100 {
		code, body := call("POST", "/filesystem.Filesystem/GetWatcherEvents", envd, `{"watcherId":"`+cw.WatcherID+`"}`)
		var ev struct{ Events []struct{ Name, Type string } }
		if err := json.Unmarshal([]byte(body), &ev); code != 200 || err != nil {
			t.Fatalf("GetWatcherEvents: %d %s", code, body)
		}
		for _, e := range ev.Events {
			got = append(got, e.Type+":"+e.Name)
		}
		if slices.Contains(got, "EVENT_TYPE_WRITE:polled.txt") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !slices.Contains(got, "EVENT_TYPE_CREATE:polled.txt") || !slices.Contains(got, "EVENT_TYPE_WRITE:polled.txt") {
		t.Fatalf("events %v, want a create and a write of polled.txt", got)
	}
	if code, body := call("POST", "/filesystem.Filesystem/RemoveWatcher", envd, `{"watcherId":"`+cw.WatcherID+`"}`); code != 200 {
		t.Fatalf("RemoveWatcher: %d %s", code, body)
	}
	if code, _ := call("POST", "/filesystem.Filesystem/GetWatcherEvents", envd, `{"watcherId":"`+cw.WatcherID+`"}`); code != 404 {
		t.Errorf("GetWatcherEvents of a removed watcher: %d, want 404", code)
	}
}

// TestNetworkAtCreate: a sandbox's network is what its create asks within the
// operator's allowlist (allowOut, or allow_internet_access for all of it), and its
// runs go through the egress proxy then; anything beyond is refused at create.
func TestNetworkAtCreate(t *testing.T) {
	closed := server(t)
	p := api.DefaultConfig().Policy
	p.NetworkAllow = []string{"*.example.com"}
	open := serverWith(t, p)
	post := func(url, path string, hdr map[string]string, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("POST", url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	key := map[string]string{"X-API-Key": apiKey}
	for _, c := range []struct {
		name, url, body string
		want            int
		proxied         string // for a sandbox made: whether its runs have the proxy
	}{
		{"internet on a server without --net-allow", closed, `{"allow_internet_access":true}`, 400, ""},
		{"a host beyond --net-allow", open, `{"network":{"allowOut":["example.org"]}}`, 400, ""},
		{"a denyOut of one host", open, `{"network":{"denyOut":["10.0.0.1"]}}`, 400, ""},
		{"no network asked", open, `{}`, 201, "False"},
		{"internet off", open, `{"allow_internet_access":false}`, 201, "False"},
		{"a host within --net-allow", open, `{"network":{"allowOut":["api.example.com"],"denyOut":["0.0.0.0/0"]}}`, 201, "True"},
		{"internet on: what --net-allow allows", open, `{"allow_internet_access":true}`, 201, "True"},
	} {
		code, body := post(c.url, "/v2/sandboxes", key, c.body)
		if code != c.want {
			t.Errorf("%s: create %s answered %d %s, want %d", c.name, c.body, code, body, c.want)
			continue
		}
		if code != http.StatusCreated {
			continue
		}
		var sb struct{ SandboxID, EnvdAccessToken string }
		if err := json.Unmarshal([]byte(body), &sb); err != nil {
			t.Fatal(err)
		}
		hdr := map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49999", "X-Access-Token": sb.EnvdAccessToken}
		_, out := post(c.url, "/execute", hdr, `{"code":"import os\n'HTTPS_PROXY' in os.environ"}`)
		if !strings.Contains(out, `"text":"`+c.proxied+`"`) {
			t.Errorf("%s: a run's proxy variables: %s, want text %s", c.name, out, c.proxied)
		}
	}
}

// TestCommandsNetwork: a sandbox created with internet (within --net-allow) gives
// its commands the egress proxy, as its runs; one created without gives none.
func TestCommandsNetwork(t *testing.T) {
	p := api.DefaultConfig().Policy
	p.NetworkAllow = []string{"*.example.com"}
	got := runSDK(t, serverWith(t, p), "network")
	if r, ok := got["network.commands"]; !ok || !r.OK {
		t.Errorf("network.commands: %+v", r)
	}
}
