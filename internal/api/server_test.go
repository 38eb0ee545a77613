package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"

	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
	"github.com/codeexec/codeexec/internal/session"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	sandboxtest.CgroupParent = apiTestCgroup // the leak checks find this package's sandboxes by it
	code := m.Run()
	sandboxtest.Close()
	os.Exit(code)
}

func testRunner(t testing.TB) *sandbox.Runner { return sandboxtest.Shared(t) }

// testServer starts the API on loopback with the real sandbox; adjust changes its
// config first.
func testServer(t testing.TB, adjust func(*Config), sc session.Config) (*httptest.Server, *session.Manager) {
	t.Helper()
	r := testRunner(t)
	cfg := DefaultConfig()
	if adjust != nil {
		adjust(&cfg)
	}
	if sc.Max == 0 {
		sc = session.Config{Max: 20, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}
	}
	m := session.NewManager(sc, r)
	t.Cleanup(m.Close)
	hs := httptest.NewServer(New(cfg, r, m, func() error { return nil }, nil).Handler())
	t.Cleanup(hs.Close)
	return hs, m
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t testing.TB, method, url, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, data}
}

func result(t testing.TB, r response) job.Result {
	t.Helper()
	var res job.Result
	if r.status != http.StatusOK {
		t.Fatalf("status %d body %s, want 200", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatalf("not a Result: %v: %s", err, r.body)
	}
	return res
}

// apiErr checks an error reply: status, OpenAI shape and code.
func apiErr(t testing.TB, r response, status int, code string) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, r.body)
	}
	if r.status != status || e.Error.Code != code || e.Error.Message == "" || e.Error.Type != errorType(status) {
		t.Fatalf("got %d %+v, want %d code %q with a message and type %q", r.status, e.Error, status, code, errorType(status))
	}
}

func TestExecute(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	url := hs.URL + "/v1/execute"

	res := result(t, do(t, "POST", url, `{"code": "print('hi')\n6 * 7"}`))
	if res.Status != job.StatusOK || res.Stdout != "hi\n" || res.Result == nil || *res.Result != "42" {
		t.Errorf("ok run: %+v", res)
	}
	res = result(t, do(t, "POST", url, `{"code": "raise ValueError('bad')"}`))
	if res.Status != job.StatusError || res.Error == nil || res.Error.Name != "ValueError" {
		t.Errorf("raising run: %+v", res)
	}
	res = result(t, do(t, "POST", url, `{"code": "while True: pass", "timeout_ms": 300}`))
	if res.Status != job.StatusTimeout {
		t.Errorf("timeout run: %s", res.Status)
	}
	res = result(t, do(t, "POST", url, `{"code": "import matplotlib.pyplot as plt\nplt.plot([1, 2])"}`))
	if len(res.Images) != 1 {
		t.Fatalf("plot: %d images", len(res.Images))
	}
	if _, err := png.Decode(bytes.NewReader(res.Images[0].Data)); err != nil {
		t.Errorf("plot is not a PNG: %v", err)
	}
	data := base64.StdEncoding.EncodeToString([]byte("a,b\n1,2\n"))
	res = result(t, do(t, "POST", url, `{"code": "open('in/d.csv').read()", "language": "python", "network": "none", "files": [{"path": "in/d.csv", "content_base64": "`+data+`"}]}`))
	if res.Result == nil || *res.Result != `'a,b\n1,2\n'` {
		t.Errorf("input file read as %v", res.Result)
	}
}

func TestExecuteErrors(t *testing.T) {
	hs, _ := testServer(t, func(c *Config) { c.MaxBodyBytes = 4096; c.MaxCodeBytes = 1000 }, session.Config{})
	url := hs.URL + "/v1/execute"
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"bad JSON", `{"code": `, 400, "invalid_json"},
		{"not an object", `[1]`, 400, "invalid_json"},
		{"unknown field", `{"code": "1", "cod": 2}`, 400, "invalid_json"},
		{"empty body", ``, 400, "invalid_json"},
		{"trailing data", `{"code": "1"} {}`, 400, "invalid_json"},
		{"missing code", `{"language": "python"}`, 400, "missing_code"},
		{"code too large", `{"code": "` + strings.Repeat("x", 1001) + `"}`, 400, "code_too_large"},
		{"oversize body", `{"code": "` + strings.Repeat("x", 5000) + `"}`, 413, "body_too_large"},
		{"language", `{"code": "1", "language": "ruby"}`, 400, "unsupported_language"},
		{"network", `{"code": "1", "network": "allow=example.com"}`, 403, "network_not_permitted"},
		{"network syntax", `{"code": "1", "network": "everything"}`, 400, "invalid_network"},
		{"timeout above max", `{"code": "1", "timeout_ms": 99999999}`, 400, "invalid_timeout"},
		{"negative timeout", `{"code": "1", "timeout_ms": -1}`, 400, "invalid_timeout"},
		{"memory above max", `{"code": "1", "memory_mb": 999999}`, 400, "invalid_memory"},
		{"bad base64", `{"code": "1", "files": [{"path": "a", "content_base64": "%%%"}]}`, 400, "invalid_file"},
		{"path escapes", `{"code": "1", "files": [{"path": "../x", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"absolute path", `{"code": "1", "files": [{"path": "/etc/passwd", "content_base64": ""}]}`, 400, "invalid_file_path"},
		{"unknown session", `{"code": "1", "session_id": "sess_nope"}`, 404, "session_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apiErr(t, do(t, "POST", url, tt.body), tt.status, tt.code)
		})
	}
	apiErr(t, do(t, "GET", hs.URL+"/v1/nothing", ""), 404, "not_found")
	apiErr(t, do(t, "GET", url, ""), 405, "method_not_allowed") // wrong method
}

func TestAuth(t *testing.T) {
	hs, _ := testServer(t, func(c *Config) { c.APIKeys = []string{"key-one", "key-two"} }, session.Config{})
	url := hs.URL + "/v1/execute"
	body := `{"code": "1"}`
	apiErr(t, do(t, "POST", url, body), 401, "missing_api_key")
	apiErr(t, do(t, "POST", url, body, "Authorization", "Basic a2V5"), 401, "missing_api_key")
	apiErr(t, do(t, "POST", url, body, "Authorization", "Bearer key-on"), 401, "invalid_api_key")
	apiErr(t, do(t, "POST", url, body, "Authorization", "Bearer key-one-more"), 401, "invalid_api_key")
	result(t, do(t, "POST", url, body, "Authorization", "Bearer key-two"))
	for _, open := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := do(t, "GET", hs.URL+open, ""); r.status != 200 {
			t.Errorf("%s needs no key but answered %d", open, r.status)
		}
	}
}

func TestSessions(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	r := do(t, "POST", hs.URL+"/v1/sessions", `{"ttl_s": 60}`)
	var created CreateSessionReply
	if r.status != 201 || json.Unmarshal(r.body, &created) != nil || !strings.HasPrefix(created.ID, "sess_") || created.ExpiresAt.Before(time.Now()) {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	base := hs.URL + "/v1/sessions/" + created.ID
	result(t, do(t, "POST", base+"/execute", `{"code": "import numpy as np\nx = np.arange(4)"}`))
	if res := result(t, do(t, "POST", base+"/execute", `{"code": "int(x.sum())"}`)); res.Result == nil || *res.Result != "6" {
		t.Errorf("state lost between calls: %+v", res)
	}
	// The same through /v1/execute with session_id.
	if res := result(t, do(t, "POST", hs.URL+"/v1/execute", `{"code": "len(x)", "session_id": "`+created.ID+`"}`)); *res.Result != "4" {
		t.Errorf("session_id in the body: %v", res.Result)
	}
	apiErr(t, do(t, "POST", base+"/execute", `{"code": "1", "session_id": "sess_other"}`), 400, "session_mismatch")

	// Binary file round trip, both ways.
	blob := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}
	r = do(t, "PUT", base+"/files/data/blob.bin", string(blob))
	if r.status != 200 || !strings.Contains(string(r.body), `"size":7`) {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	res := result(t, do(t, "POST", base+"/execute", `{"code": "b = open('data/blob.bin', 'rb').read()\nopen('out.bin', 'wb').write(b[::-1])\nlist(b)"}`))
	if *res.Result != "[0, 1, 2, 255, 254, 10, 0]" || len(res.Files) != 1 || res.Files[0].Path != "out.bin" {
		t.Fatalf("program saw %v, files %v", res.Result, res.Files)
	}
	if got := do(t, "GET", base+"/files/out.bin", ""); got.status != 200 || !bytes.Equal(got.body, []byte{0, '\n', 0xfe, 0xff, 2, 1, 0}) {
		t.Errorf("download: %d %v", got.status, got.body)
	}
	if got := do(t, "GET", base+"/files/data/blob.bin", ""); !bytes.Equal(got.body, blob) {
		t.Errorf("download of the upload: %v", got.body)
	}
	var list struct {
		Files []job.FileInfo `json:"files"`
	}
	if got := do(t, "GET", base+"/files", ""); json.Unmarshal(got.body, &list) != nil || len(list.Files) != 2 {
		t.Errorf("list: %s", got.body)
	}
	apiErr(t, do(t, "GET", base+"/files/missing.txt", ""), 404, "file_not_found")
	apiErr(t, do(t, "PUT", base+"/files/..%2Fescape", "x"), 400, "invalid_file_path")

	var info session.Info
	if got := do(t, "GET", base, ""); json.Unmarshal(got.body, &info) != nil || info.Executions != 4 || !info.Alive || info.MemoryBytes <= 0 {
		t.Errorf("info: %s", got.body)
	}
	if got := do(t, "DELETE", base, ""); got.status != 200 {
		t.Fatalf("delete: %d %s", got.status, got.body)
	}
	apiErr(t, do(t, "GET", base, ""), 404, "session_not_found")
	apiErr(t, do(t, "POST", base+"/execute", `{"code": "1"}`), 404, "session_not_found")
}

func TestSessionEndsAfterLimit(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	var created CreateSessionReply
	json.Unmarshal(do(t, "POST", hs.URL+"/v1/sessions", `{}`).body, &created)
	base := hs.URL + "/v1/sessions/" + created.ID
	if res := result(t, do(t, "POST", base+"/execute", `{"code": "while True: pass", "timeout_ms": 300}`)); res.Status != job.StatusTimeout {
		t.Fatalf("status %s, want timeout", res.Status)
	}
	apiErr(t, do(t, "POST", base+"/execute", `{"code": "1"}`), 410, "session_ended")
}

func TestSessionLimitsAndExpiry(t *testing.T) {
	hs, m := testServer(t, nil, session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour})
	var a CreateSessionReply
	json.Unmarshal(do(t, "POST", hs.URL+"/v1/sessions", `{"ttl_s": 1}`).body, &a)
	do(t, "POST", hs.URL+"/v1/sessions", `{}`)
	r := do(t, "POST", hs.URL+"/v1/sessions", `{}`)
	apiErr(t, r, 429, "too_many_sessions")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	time.Sleep(1100 * time.Millisecond)
	// Not asserting ExpireNow's count: the manager's own once-a-second loop may
	// have ended the session first.
	m.ExpireNow()
	apiErr(t, do(t, "GET", hs.URL+"/v1/sessions/"+a.ID, ""), 404, "session_not_found")
	apiErr(t, do(t, "POST", hs.URL+"/v1/sessions", `{"ttl_s": 99999}`), 400, "invalid_ttl")
}

func TestQueueFull(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{Max: 20, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour, MaxConcurrent: 1, MaxQueued: 0})
	done := make(chan response, 1)
	go func() { done <- do(t, "POST", hs.URL+"/v1/execute", `{"code": "import time\ntime.sleep(2)"}`) }()
	// Probe only once the slow execution holds the one slot.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(string(do(t, "GET", hs.URL+"/metrics", "").body), "codeexec_queue_depth 1") {
		if time.Now().After(deadline) {
			t.Fatal("the slow execution never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := do(t, "POST", hs.URL+"/v1/execute", `{"code": "1"}`)
	apiErr(t, r, 429, "queue_full")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if res := result(t, <-done); res.Status != job.StatusOK {
		t.Errorf("the slow execution ended %s", res.Status)
	}
	result(t, do(t, "POST", hs.URL+"/v1/execute", `{"code": "1"}`)) // the slot is free again
}

func TestHealthAndMetrics(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	result(t, do(t, "POST", hs.URL+"/v1/execute", `{"code": "1/0"}`))
	m := string(do(t, "GET", hs.URL+"/metrics", "").body)
	for _, want := range []string{`codeexec_executions_total{language="python",status="error"} 1`, "codeexec_sessions_active 0",
		"codeexec_queue_depth 0", "codeexec_execution_duration_seconds_bucket", "codeexec_pool_ready"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if r := do(t, "GET", hs.URL+"/healthz", ""); r.status != 200 {
		t.Errorf("healthz %d", r.status)
	}
}

func ExampleDecodeExecute() {
	cfg := DefaultConfig()
	_, req, err := DecodeExecute([]byte(`{"code": "print(1)", "timeout_ms": 2000}`), &cfg)
	fmt.Println(req.Code, req.Limits.Timeout, err)
	// Output: print(1) 2s <nil>
}

// A request that names permitted hosts gets the egress proxy; one that does not has
// no network at all. No DNS lookup or outside connection is made: the proxy refuses
// an address literal that is not on the list before dialing anything.
func TestExecuteWithNetwork(t *testing.T) {
	hs, _ := testServer(t, func(c *Config) { c.Policy.NetworkAllow = []string{"*.example.com"} }, session.Config{})
	code := `
import os, requests
print(os.environ.get("HTTPS_PROXY"))
r = requests.get("http://127.0.0.2:8080/")  # NO_PROXY sends 127.0.0.1 direct
print(r.status_code, r.headers.get("X-Codeexec-Egress-Error"))`
	body, _ := json.Marshal(map[string]string{"code": code, "network": "allow=api.example.com"})
	res := result(t, do(t, "POST", hs.URL+"/v1/execute", string(body)))
	if res.Status != job.StatusOK || !strings.HasPrefix(res.Stdout, "http://127.0.0.1:") || !strings.HasSuffix(res.Stdout, "\n403 host_not_allowed\n") {
		t.Errorf("with network: %s %q %q", res.Status, res.Stdout, res.Stderr)
	}
	body, _ = json.Marshal(map[string]string{"code": code})
	res = result(t, do(t, "POST", hs.URL+"/v1/execute", string(body)))
	if res.Status != job.StatusError || !strings.HasPrefix(res.Stdout, "None\n") || res.Error == nil || res.Error.Name != "ConnectionError" {
		t.Errorf("without network: %s %q %+v", res.Status, res.Stdout, res.Error)
	}
	apiErr(t, do(t, "POST", hs.URL+"/v1/execute", `{"code": "1", "network": "allow=example.com"}`), 403, "network_not_permitted")
}

// While a fork bomb and a memory bomb run through the API, the server still answers
// health checks and a third execution: each bomb is held by its own cgroup.
func TestServerResponsiveBesideBombs(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	bombs := []string{
		`{"code": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", "timeout_ms": 4000, "memory_mb": 128}`,
		`{"code": "l = []\nwhile True:\n    l.append(bytearray(1 << 20))", "timeout_ms": 4000, "memory_mb": 128}`,
	}
	statuses := make(chan job.Status, len(bombs))
	for _, b := range bombs {
		go func() { // not t.Fatal here: this is not the test's goroutine
			var res job.Result
			resp, err := http.Post(hs.URL+"/v1/execute", "application/json", strings.NewReader(b))
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&res)
				resp.Body.Close()
			}
			if err != nil {
				res.Status = job.Status("request failed: " + err.Error())
			}
			statuses <- res.Status
		}()
	}
	time.Sleep(500 * time.Millisecond) // let the bombs get going
	var worst time.Duration
	for i := 0; i < 5; i++ {
		start := time.Now()
		if r := do(t, "GET", hs.URL+"/healthz", ""); r.status != http.StatusOK {
			t.Fatalf("healthz: %d", r.status)
		}
		res := result(t, do(t, "POST", hs.URL+"/v1/execute", `{"code": "print(1)"}`))
		if res.Status != job.StatusOK || res.Stdout != "1\n" {
			t.Fatalf("neighbour %d: %s %q", i, res.Status, res.Stdout)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("healthz + print(1) over HTTP beside a fork bomb and a memory bomb: slowest of 5 took %v", worst)
	for range bombs {
		if s := <-statuses; s != job.StatusTimeout && s != job.StatusMemoryLimit {
			t.Errorf("a bomb ended %s, want timeout or memory_limit", s)
		}
	}
}
