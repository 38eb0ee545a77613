package api

// Tests of the HTTP contract that need no sandbox — every refusal, auth on every /v1
// route, the queue — and of what server_test.go leaves out: the processes of an
// expired session, and file operations on an ended session.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
)

// noSandbox stands in for the runner where a request must be refused before any
// execution: reaching Run fails the test. Its sessions are unavailable, as on a
// server without the warm path.
type noSandbox struct{ t testing.TB }

func (n noSandbox) Run(_ context.Context, req *job.Request) (*job.Result, error) {
	n.t.Errorf("the executor was reached with code %q; the request should have been refused", req.Code)
	return nil, errors.New("no sandbox in this test")
}

func (n noSandbox) NewSession(context.Context, job.Limits) (*sandbox.Session, error) {
	return nil, fmt.Errorf("%w: no sandbox in this test", sandbox.ErrNoWarm)
}

// contractServer serves the API over exec with sessions that cannot start; adjust
// changes its config first. It needs neither root nor the image.
func contractServer(t testing.TB, exec Executor, ready func() error, adjust func(*Config)) *httptest.Server {
	t.Helper()
	return contractServerWith(t, exec, ready, adjust, session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: 2 * time.Hour})
}

// contractServerWith is contractServer with the session manager's config sc.
func contractServerWith(t testing.TB, exec Executor, ready func() error, adjust func(*Config), sc session.Config) *httptest.Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 4096
	cfg.MaxCodeBytes = 1000
	if adjust != nil {
		adjust(&cfg)
	}
	if exec == nil {
		exec = noSandbox{t}
	}
	if ready == nil {
		ready = func() error { return nil }
	}
	m := session.NewManager(sc, noSandbox{t})
	t.Cleanup(m.Close)
	hs := httptest.NewServer(New(cfg, exec, m, ready, nil).Handler())
	t.Cleanup(hs.Close)
	return hs
}

// wantTypes are OpenAI's error types by status.
var wantTypes = map[int]string{
	400: "invalid_request_error", 413: "invalid_request_error", 401: "authentication_error",
	403: "permission_error", 404: "not_found_error", 405: "invalid_request_error", 408: "invalid_request_error",
	410: "invalid_request_error", 429: "rate_limit_error", 503: "server_error",
}

// goNames are what an error message must not show: Go's names for types and
// encoding/json's prefix.
var goNames = regexp.MustCompile(`json: |Go (struct|value)|int64|\bint\b|\[\]|\bapi\.|ExecuteRequest|CreateSessionRequest|InputFile`)

// wantError checks that r is exactly an OpenAI-style error:
// {"error":{"message","type","code"}} with the given status and code, nothing more.
func wantError(t testing.TB, req string, r response, status int, code string) {
	t.Helper()
	var body map[string]map[string]any
	err := json.Unmarshal(r.body, &body)
	e := body["error"]
	msg, _ := e["message"].(string)
	typ, _ := e["type"].(string)
	gotCode, _ := e["code"].(string)
	if err != nil || len(body) != 1 || len(e) != 3 || msg == "" {
		t.Errorf("%s: body %s (%v), want {\"error\":{\"message\",\"type\",\"code\"}} with a message", req, r.body, err)
		return
	}
	if r.status != status || gotCode != code || typ != wantTypes[status] {
		t.Errorf("%s: got %d code %q type %q, want %d code %q type %q (message %q)", req, r.status, gotCode, typ, status, code, wantTypes[status], msg)
	}
	if m := goNames.FindString(msg); m != "" {
		t.Errorf("%s: message %q shows %q, a name of the server's code", req, msg, m)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", req, ct)
	}
}

// TestErrorContract: every refusal of every endpoint, with its exact status, code
// and shape. Nothing here reaches a sandbox.
func TestErrorContract(t *testing.T) {
	hs := contractServer(t, nil, nil, nil)
	big := strings.Repeat("x", 5000)
	tests := []struct {
		method, path, body string
		status             int
		code               string
	}{
		// The body of an execution.
		{"POST", "/v1/execute", `{"code": `, 400, "invalid_json"},
		{"POST", "/v1/execute", `hello`, 400, "invalid_json"},
		{"POST", "/v1/execute", `[1]`, 400, "invalid_json"},
		{"POST", "/v1/execute", `"print(1)"`, 400, "invalid_json"},
		{"POST", "/v1/execute", ``, 400, "invalid_json"},
		{"POST", "/v1/execute", " \n ", 400, "invalid_json"},
		{"POST", "/v1/execute", `{"code": "1", "cod": 2}`, 400, "invalid_json"},
		{"POST", "/v1/execute", `{"code": "1", "Timeout": 2}`, 400, "invalid_json"},
		{"POST", "/v1/execute", `{"code": 1}`, 400, "invalid_json"},
		{"POST", "/v1/execute", `{"code": "1"} {}`, 400, "invalid_json"},
		{"POST", "/v1/execute", `{"code": "1"}x`, 400, "invalid_json"},
		{"POST", "/v1/execute", `{"code": "1", "timeout_ms": 1.5}`, 400, "invalid_json"},
		{"POST", "/v1/execute", `{"code": "1", "timeout_ms": 99999999999999999999}`, 400, "invalid_json"},
		{"POST", "/v1/execute", `null`, 400, "missing_code"},
		{"POST", "/v1/execute", `{}`, 400, "missing_code"},
		{"POST", "/v1/execute", `{"language": "python"}`, 400, "missing_code"},
		{"POST", "/v1/execute", `{"code": "` + strings.Repeat("x", 1001) + `"}`, 400, "code_too_large"},
		{"POST", "/v1/execute", `{"code": "` + big + `"}`, 413, "body_too_large"},
		{"POST", "/v1/execute", `{"code": "1", "language": "ruby"}`, 400, "unsupported_language"},
		{"POST", "/v1/execute", `{"code": "1", "language": "Python"}`, 400, "unsupported_language"},
		// The test server permits no network (see the network test for a permitted one).
		{"POST", "/v1/execute", `{"code": "1", "network": "allow=example.com"}`, 403, "network_not_permitted"},
		{"POST", "/v1/execute", `{"code": "1", "network": "host"}`, 400, "invalid_network"},
		{"POST", "/v1/execute", `{"code": "1", "network": "allow="}`, 400, "invalid_network"},
		{"POST", "/v1/execute", `{"code": "1", "network": "allow=a b"}`, 400, "invalid_network"},
		{"POST", "/v1/execute", `{"code": "1", "timeout_ms": 300001}`, 400, "invalid_timeout"},
		{"POST", "/v1/execute", `{"code": "1", "timeout_ms": 0}`, 400, "invalid_timeout"},
		{"POST", "/v1/execute", `{"code": "1", "timeout_ms": -1}`, 400, "invalid_timeout"},
		// Their Durations overflow: one wrapped to about 1s and was accepted, one to
		// a negative value that failed later with a vaguer code.
		{"POST", "/v1/execute", `{"code": "1", "timeout_ms": 18446744074709}`, 400, "invalid_timeout"},
		{"POST", "/v1/execute", `{"code": "1", "timeout_ms": 9223372036855}`, 400, "invalid_timeout"},
		{"POST", "/v1/execute", `{"code": "1", "memory_mb": 4097}`, 400, "invalid_memory"},
		{"POST", "/v1/execute", `{"code": "1", "memory_mb": 15}`, 400, "invalid_memory"},
		{"POST", "/v1/execute", `{"code": "1", "memory_mb": 9223372036854775807}`, 400, "invalid_memory"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": "a", "content_base64": "%%%"}]}`, 400, "invalid_file"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": "a", "content_base64": "YQ"}]}`, 400, "invalid_file"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": "../x", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": "/etc/passwd", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": "a/../../x", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": "", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": ".", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": "a\\b", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": "a\u0000b", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"POST", "/v1/execute", `{"code": "1", "files": [{"path": "ok", "content_base64": ""}, {"path": "../bad", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"POST", "/v1/execute", `{"code": "1", "session_id": "sess_nope"}`, 404, "session_not_found"},
		// This server names no images: a request may not name one either.
		{"POST", "/v1/execute", `{"code": "1", "image": "python"}`, 400, "unknown_image"},
		{"POST", "/v1/execute", `{"code": "1", "image": 3}`, 400, "invalid_json"},

		// Sessions.
		{"POST", "/v1/sessions/sess_nope/execute", `{"code": "1"}`, 404, "session_not_found"},
		{"POST", "/v1/sessions/sess_a/execute", `{"code": "1", "session_id": "sess_b"}`, 400, "session_mismatch"},
		{"POST", "/v1/sessions/sess_a/execute", `{"code": `, 400, "invalid_json"},
		{"POST", "/v1/sessions/sess_a/execute", `{"code": "1", "timeout_ms": 300001}`, 400, "invalid_timeout"},
		{"POST", "/v1/sessions", `{"ttl_s": `, 400, "invalid_json"},
		{"POST", "/v1/sessions", `{"ttl": 5}`, 400, "invalid_json"},
		{"POST", "/v1/sessions", `{"ttl_s": 1.5}`, 400, "invalid_json"},
		{"POST", "/v1/sessions", `{} {}`, 400, "invalid_json"},
		{"POST", "/v1/sessions", `{"ttl_s": 0}`, 400, "invalid_ttl"},
		{"POST", "/v1/sessions", `{"ttl_s": -5}`, 400, "invalid_ttl"},
		{"POST", "/v1/sessions", `{"ttl_s": 3601}`, 400, "invalid_ttl"}, // above the manager's 1h
		// 18446744084 s as a Duration wrapped to about 10s and created a session.
		{"POST", "/v1/sessions", `{"ttl_s": 18446744084}`, 400, "invalid_ttl"},
		{"POST", "/v1/sessions", `{"ttl_s": 9223372037}`, 400, "invalid_ttl"},
		{"POST", "/v1/sessions", `{"language": "ruby"}`, 400, "unsupported_language"},
		{"POST", "/v1/sessions", `{"image": "python"}`, 400, "unknown_image"},
		{"POST", "/v1/sessions", `{"memory_mb": 1}`, 400, "invalid_memory"},
		{"POST", "/v1/sessions", `{"timeout_ms": 0}`, 400, "invalid_timeout"},
		{"POST", "/v1/sessions", `{"ttl_s": "` + big + `"}`, 413, "body_too_large"},
		{"POST", "/v1/sessions", `{"ttl_s": 60}`, 503, "sessions_unavailable"}, // no warm path here
		{"POST", "/v1/sessions", ``, 503, "sessions_unavailable"},
		{"GET", "/v1/sessions/sess_nope", ``, 404, "session_not_found"},
		{"DELETE", "/v1/sessions/sess_nope", ``, 404, "session_not_found"},
		{"GET", "/v1/sessions/sess_nope/files", ``, 404, "session_not_found"},
		{"GET", "/v1/sessions/sess_nope/files/a.txt", ``, 404, "session_not_found"},
		{"PUT", "/v1/sessions/sess_nope/files/a.txt", `x`, 404, "session_not_found"},
		{"DELETE", "/v1/sessions/sess_nope/files/a.txt", ``, 404, "session_not_found"},

		// Routes.
		{"GET", "/v1/nothing", ``, 404, "not_found"},
		{"GET", "/", ``, 404, "not_found"},
		{"GET", "/v1/sessions/sess_a/nothing", ``, 404, "not_found"},
		{"GET", "/v1/execute", ``, 405, "method_not_allowed"},
		{"PATCH", "/v1/sessions/sess_a", ``, 405, "method_not_allowed"},
		{"POST", "/healthz", ``, 405, "method_not_allowed"},
		{"GET", "/v1/models", ``, 503, "gateway_disabled"},
		{"POST", "/v1/chat/completions", `{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`, 503, "gateway_disabled"},
	}
	for _, tt := range tests {
		body := tt.body
		if len(body) > 60 {
			body = body[:60] + "…"
		}
		wantError(t, fmt.Sprintf("%s %s %q", tt.method, tt.path, body), do(t, tt.method, hs.URL+tt.path, tt.body), tt.status, tt.code)
	}
}

// TestAuthEveryRoute: with keys configured, every /v1 route refuses a request
// without a valid key before looking at it, and health, readiness and metrics stay
// open.
func TestAuthEveryRoute(t *testing.T) {
	hs := contractServer(t, nil, nil, func(c *Config) { c.APIKeys = []string{"key-one", "key-two"} })
	routes := []struct{ method, path string }{
		{"POST", "/v1/execute"}, {"POST", "/v1/sessions"}, {"GET", "/v1/sessions"}, {"GET", "/v1/sessions/sess_a"},
		{"DELETE", "/v1/sessions/sess_a"}, {"POST", "/v1/sessions/sess_a/execute"},
		{"PUT", "/v1/sessions/sess_a/files/a"}, {"GET", "/v1/sessions/sess_a/files"},
		{"GET", "/v1/sessions/sess_a/files/a"}, {"DELETE", "/v1/sessions/sess_a/files/a"},
		{"POST", "/v1/chat/completions"}, {"GET", "/v1/models"},
		{"POST", "/v1/files"}, {"GET", "/v1/files"}, {"GET", "/v1/files/file-a"}, {"GET", "/v1/files/file-a/content"}, {"DELETE", "/v1/files/file-a"},
	}
	for _, rt := range routes {
		for _, h := range []struct {
			header []string
			code   string
		}{
			{nil, "missing_api_key"},
			{[]string{"Authorization", "Basic a2V5LW9uZQ=="}, "missing_api_key"},
			{[]string{"Authorization", "Bearer"}, "missing_api_key"},
			{[]string{"Authorization", "key-one"}, "missing_api_key"},
			{[]string{"Authorization", "Bearer key-on"}, "invalid_api_key"},
			{[]string{"Authorization", "Bearer key-one-more"}, "invalid_api_key"},
			{[]string{"Authorization", "Bearer KEY-ONE"}, "invalid_api_key"},
		} {
			req := fmt.Sprintf("%s %s with %q", rt.method, rt.path, h.header)
			r := do(t, rt.method, hs.URL+rt.path, `{"code": "1"}`, h.header...)
			wantError(t, req, r, http.StatusUnauthorized, h.code)
			// RFC 7235 section 3.1: a 401 names the scheme; RFC 6750 section 3.1: a
			// bad token says so.
			want := `Bearer realm="codeexec"`
			if h.code == "invalid_api_key" {
				want += `, error="invalid_token"`
			}
			if got := r.header.Get("WWW-Authenticate"); got != want {
				t.Errorf("%s: WWW-Authenticate %q, want %q", req, got, want)
			}
		}
	}
	// A valid key gets past auth to the handler's own answer.
	for _, key := range []string{"Bearer key-one", "Bearer key-two", "bearer key-one"} {
		wantError(t, "POST /v1/execute with "+key, do(t, "POST", hs.URL+"/v1/execute", `{"code": `, "Authorization", key), 400, "invalid_json")
		wantError(t, "GET /v1/sessions/sess_a with "+key, do(t, "GET", hs.URL+"/v1/sessions/sess_a", ``, "Authorization", key), 404, "session_not_found")
	}
	for _, open := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := do(t, "GET", hs.URL+open, ""); r.status != http.StatusOK {
			t.Errorf("GET %s without a key: %d %s, want 200", open, r.status, r.body)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var notReady error
	hs := contractServer(t, nil, func() error { return notReady }, nil)
	for _, c := range []struct {
		path, body string
	}{{"/healthz", `{"status":"ok"}`}, {"/readyz", `{"status":"ready"}`}} {
		r := do(t, "GET", hs.URL+c.path, "")
		if r.status != 200 || strings.TrimSpace(string(r.body)) != c.body {
			t.Errorf("GET %s: got %d %s, want 200 %s", c.path, r.status, r.body, c.body)
		}
	}
	notReady = errors.New("zygote: not started")
	wantError(t, "GET /readyz when not ready", do(t, "GET", hs.URL+"/readyz", ""), 503, "not_ready")
	if r := do(t, "GET", hs.URL+"/healthz", ""); r.status != 200 {
		t.Errorf("GET /healthz when not ready: %d, want 200 (liveness does not depend on readiness)", r.status)
	}
	m := string(do(t, "GET", hs.URL+"/metrics", "").body)
	for _, want := range []string{"codeexec_sessions_active 0", "codeexec_queue_depth 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("GET /metrics lacks %q", want)
		}
	}
}

// gatedExecutor reports each execution's code when it starts and finishes it when
// the test sends on release.
type gatedExecutor struct {
	started chan string
	release chan struct{}
}

func (g *gatedExecutor) Run(ctx context.Context, req *job.Request) (*job.Result, error) {
	g.started <- req.Code
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	repr := "'" + req.Code + "'"
	return &job.Result{Status: job.StatusOK, Result: &repr, Images: []job.Image{}, Files: []job.FileInfo{}}, nil
}

// metricValue returns the value of the series line that starts with name.
func metricValue(t testing.TB, hs *httptest.Server, name string) string {
	t.Helper()
	for _, line := range strings.Split(string(do(t, "GET", hs.URL+"/metrics", "").body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// waitMetric polls /metrics until the series name has value want.
func waitMetric(t testing.TB, hs *httptest.Server, name, want string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got = metricValue(t, hs, name); got == want {
			return
		}
	}
	t.Fatalf("%s is %q, want %q", name, got, want)
}

// TestQueue: with one execution running and one waiting, the next is refused with
// 429 queue_full and Retry-After; a waiting caller that leaves frees its place. No
// timing is involved: the executor runs when the test says so.
func TestQueue(t *testing.T) {
	g := &gatedExecutor{started: make(chan string, 4), release: make(chan struct{})}
	hs := contractServerWith(t, g, nil, nil, session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: 2 * time.Hour, MaxConcurrent: 1, MaxQueued: 1})
	url := hs.URL + "/v1/execute"
	results := make(chan response, 4)
	post := func(code string) { results <- do(t, "POST", url, `{"code": "`+code+`"}`) }

	go post("a")
	if got := <-g.started; got != "a" {
		t.Fatalf("first execution started with %q", got)
	}
	go post("b")
	waitMetric(t, hs, "codeexec_queue_depth", "2") // a runs, b waits
	r := do(t, "POST", url, `{"code": "c"}`)
	wantError(t, "POST /v1/execute with one running and one waiting", r, 429, "queue_full")
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("429 with Retry-After %q, want a positive number of seconds", r.header.Get("Retry-After"))
	}
	// Refusals of the request itself come before the queue.
	wantError(t, "POST /v1/execute bad JSON while full", do(t, "POST", url, `{`), 400, "invalid_json")

	// A waiting caller that gives up leaves the queue.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(`{"code": "d"}`))
	g.release <- struct{}{} // a finishes; b starts
	if res := <-results; res.status != 200 || !strings.Contains(string(res.body), `"result":"'a'"`) {
		t.Errorf("first execution: %d %s", res.status, res.body)
	}
	if got := <-g.started; got != "b" {
		t.Fatalf("second execution started with %q, want b", got)
	}
	waitMetric(t, hs, "codeexec_queue_depth", "1")
	gone := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gone <- err
	}()
	waitMetric(t, hs, "codeexec_queue_depth", "2") // b runs, d waits
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v", err)
	}
	waitMetric(t, hs, "codeexec_queue_depth", "1")
	g.release <- struct{}{}
	if res := <-results; res.status != 200 {
		t.Errorf("second execution: %d %s", res.status, res.body)
	}
	waitMetric(t, hs, "codeexec_queue_depth", "0")
	if v := metricValue(t, hs, `codeexec_executions_total{language="python",status="ok"}`); v != "2" {
		t.Errorf("codeexec_executions_total ok = %q, want 2", v)
	}
}

// sandboxUserProcs maps the cgroups under parent to the processes in them that run
// as the sandbox user's host uid: sandbox processes of this package's runner, even
// while other test runs on the machine use the same uids.
func sandboxUserProcs(parent string) map[string][]int {
	uidLine := regexp.MustCompile(`(?m)^Uid:\s+` + strconv.Itoa(sandbox.DefaultHostUID+image.SandboxUID) + `\s`)
	found := map[string][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil || !uidLine.Match(status) {
			continue
		}
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		for _, line := range strings.Split(string(cg), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && strings.HasPrefix(parts[2], "/"+parent+"/") {
				found[parts[2]] = append(found[parts[2]], pid)
				break
			}
		}
	}
	return found
}

// apiTestCgroup is the parent cgroup of testRunner's sandboxes.
const apiTestCgroup = "codeexec-api-test"

// TestSessionExpiryEndsProcesses: a session that outlives its ttl is gone from the
// API and its interpreter is gone from the machine.
func TestSessionExpiryEndsProcesses(t *testing.T) {
	hs, m := testServer(t, nil, session.Config{})
	r := do(t, "POST", hs.URL+"/v1/sessions", `{"ttl_s": 1}`)
	var created CreateSessionReply
	if r.status != 201 || json.Unmarshal(r.body, &created) != nil || created.ID == "" {
		t.Fatalf("POST /v1/sessions {\"ttl_s\": 1}: %d %s, want 201 and an id", r.status, r.body)
	}
	if until := time.Until(created.ExpiresAt); until <= 0 || until > 2*time.Second {
		t.Errorf("expires_at %v is not about 1s ahead", created.ExpiresAt)
	}
	base := hs.URL + "/v1/sessions/" + created.ID
	before := sandboxUserProcs(apiTestCgroup)
	result(t, do(t, "POST", base+"/execute", `{"code": "x = 1"}`)) // the run starts the session's interpreter
	procs := map[string][]int{}
	for cg, pids := range sandboxUserProcs(apiTestCgroup) {
		if !slices.Equal(before[cg], pids) {
			procs[cg] = pids
		}
	}
	if len(procs) == 0 {
		t.Fatal("no sandbox process found for the session after an execution")
	}
	time.Sleep(1100 * time.Millisecond)
	m.ExpireNow() // the manager's own loop may have been first
	wantError(t, "GET the expired session", do(t, "GET", base, ""), 404, "session_not_found")
	wantError(t, "execute in the expired session", do(t, "POST", base+"/execute", `{"code": "x"}`), 404, "session_not_found")
	wantError(t, "GET files of the expired session", do(t, "GET", base+"/files", ""), 404, "session_not_found")
	var left map[string][]int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		left = map[string][]int{}
		now := sandboxUserProcs(apiTestCgroup)
		for cg := range procs {
			if pids, ok := now[cg]; ok {
				left[cg] = pids
			}
		}
		if len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("processes of the expired session still run 10s later: %v", left)
	}
}

// TestEndedSessionFiles: once a limit has killed a session's interpreter, its files
// are gone too: every file operation answers 410 until the session is deleted.
func TestEndedSessionFiles(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	var created CreateSessionReply
	if r := do(t, "POST", hs.URL+"/v1/sessions", ``); r.status != 201 || json.Unmarshal(r.body, &created) != nil {
		t.Fatalf("POST /v1/sessions with no body: %d %s, want 201", r.status, r.body)
	}
	base := hs.URL + "/v1/sessions/" + created.ID
	if r := do(t, "PUT", base+"/files/empty.txt", ""); r.status != 200 || strings.TrimSpace(string(r.body)) != `{"path":"empty.txt","size":0}` {
		t.Errorf("PUT an empty file: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", base+"/files/empty.txt", "now full"); r.status != 200 {
		t.Errorf("PUT over a file: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", base+"/files/empty.txt", ""); r.status != 200 || string(r.body) != "now full" {
		t.Errorf("GET the overwritten file: %d %q", r.status, r.body)
	}
	if res := result(t, do(t, "POST", base+"/execute", `{"code": "while True: pass", "timeout_ms": 200}`)); res.Status != job.StatusTimeout {
		t.Fatalf("status %s, want timeout", res.Status)
	}
	var info session.Info
	if r := do(t, "GET", base, ""); r.status != 200 || json.Unmarshal(r.body, &info) != nil || info.Alive || info.Executions != 1 {
		t.Errorf("GET the ended session: %d %s, want 200, alive false, 1 execution", r.status, r.body)
	}
	wantError(t, "execute in the ended session", do(t, "POST", base+"/execute", `{"code": "1"}`), 410, "session_ended")
	wantError(t, "GET files of the ended session", do(t, "GET", base+"/files", ""), 410, "session_ended")
	wantError(t, "GET a file of the ended session", do(t, "GET", base+"/files/empty.txt", ""), 410, "session_ended")
	wantError(t, "PUT a file into the ended session", do(t, "PUT", base+"/files/x", "x"), 410, "session_ended")
	if r := do(t, "DELETE", base, ""); r.status != 200 {
		t.Errorf("DELETE the ended session: %d %s", r.status, r.body)
	}
	wantError(t, "GET the deleted session", do(t, "GET", base, ""), 404, "session_not_found")
}

// TestSessionSurvivesManyExecutions: a session keeps its interpreter and state over
// many calls.
func TestSessionSurvivesManyExecutions(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	var created CreateSessionReply
	if r := do(t, "POST", hs.URL+"/v1/sessions", `{}`); r.status != 201 || json.Unmarshal(r.body, &created) != nil {
		t.Fatalf("POST /v1/sessions: %d %s, want 201", r.status, r.body)
	}
	url := hs.URL + "/v1/sessions/" + created.ID + "/execute"
	result(t, do(t, "POST", url, `{"code": "n = 0"}`))
	for i := 1; i <= 300; i++ {
		r := do(t, "POST", url, `{"code": "n += 1\nn"}`)
		var res job.Result
		if r.status != 200 || json.Unmarshal(r.body, &res) != nil || res.Status != job.StatusOK || res.Result == nil || *res.Result != strconv.Itoa(i) {
			t.Fatalf("call %d in one session: got %d %.300s, want status ok and result %d", i, r.status, r.body, i)
		}
	}
}

// fakeImages serves the images of runners; an image whose runner is nil fails to open.
type fakeImages struct {
	def     string
	runners map[string]ImageRunner
}

func (f fakeImages) Default() string { return f.def }

func (f fakeImages) Names() []string {
	var names []string
	for n := range f.runners {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (f fakeImages) Runner(name string) (ImageRunner, error) {
	if r := f.runners[name]; r != nil {
		return r, nil
	}
	return nil, errors.New("cannot open the image's runner")
}

// TestImageContract: with images, a request names one of the server's or gets 400
// unknown_image, listing them; an image that cannot run is 503 image_unavailable.
func TestImageContract(t *testing.T) {
	cfg := DefaultConfig()
	m := session.NewManager(session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: 2 * time.Hour}, noSandbox{t})
	t.Cleanup(m.Close)
	srv := New(cfg, noSandbox{t}, m, func() error { return nil }, nil)
	srv.SetImages(fakeImages{def: "python", runners: map[string]ImageRunner{"python": noSandbox{t}, "ml": noSandbox{t}, "broken": nil}})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	for _, tt := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/v1/execute", `{"code": "1", "image": "nothing"}`, 400, "unknown_image"},
		{"/v1/execute", `{"code": "1", "image": "PYTHON"}`, 400, "unknown_image"},
		{"/v1/execute", `{"code": "1", "image": "broken"}`, 503, "image_unavailable"},
		{"/v1/sessions", `{"image": "nothing"}`, 400, "unknown_image"},
		{"/v1/sessions", `{"image": "broken"}`, 503, "image_unavailable"},
		// A named image's starter is used: here it has no warm path.
		{"/v1/sessions", `{"image": "ml"}`, 503, "sessions_unavailable"},
	} {
		r := do(t, "POST", hs.URL+tt.path, tt.body)
		wantError(t, fmt.Sprintf("POST %s %s", tt.path, tt.body), r, tt.status, tt.code)
		if tt.code == "unknown_image" && !strings.Contains(string(r.body), `\"broken\", \"ml\", \"python\"`) {
			t.Errorf("POST %s %s: the error does not list the images served: %s", tt.path, tt.body, r.body)
		}
	}
}
