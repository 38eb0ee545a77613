package api

// Tests of routing among replicas and of the drain, without sandboxes: two API
// servers of one deployment (r0, r1) and a replica that is gone (r2).

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
)

// replica is an API server of a test deployment, with the requests that reached it.
type replica struct {
	srv  *Server
	hs   *httptest.Server
	seen chan *http.Request
}

// newDeployment starts replicas r0 and r1 with keys (none: no keys); r2 is listed
// but nothing listens at its address.
func newDeployment(t *testing.T, exec Executor, keys []tenant.Key) (r0, r1 *replica) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	reps := []*replica{{seen: make(chan *http.Request, 20)}, {seen: make(chan *http.Request, 20)}}
	for _, r := range reps {
		r.hs = httptest.NewUnstartedServer(nil)
	}
	peers, err := cluster.ParsePeers([]string{"r0=http://" + reps[0].hs.Listener.Addr().String(),
		"r1=http://" + reps[1].hs.Listener.Addr().String(), "r2=" + gone}, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range reps {
		name := []string{"r0", "r1"}[i]
		cfg := DefaultConfig()
		cfg.Keys = keys
		if exec == nil {
			exec = noSandbox{t}
		}
		m := session.NewManager(session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: 2 * time.Hour, Replica: name}, noSandbox{t})
		t.Cleanup(m.Close)
		r.srv = New(cfg, exec, m, func() error { return nil }, nil)
		c, err := cluster.New(cluster.Config{Self: name, Peers: peers})
		if err != nil {
			t.Fatal(err)
		}
		r.srv.SetCluster(name, c)
		h := r.srv.Handler()
		r.hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Header.Get(cluster.HopHeader) != "" {
				r.seen <- req
			}
			h.ServeHTTP(w, req)
		})
		r.hs.Start()
		t.Cleanup(r.hs.Close)
	}
	return reps[0], reps[1]
}

// forwarded returns the request r got from another replica, nil if none.
func (r *replica) forwarded() *http.Request {
	select {
	case req := <-r.seen:
		return req
	default:
		return nil
	}
}

func TestRouteByID(t *testing.T) {
	r0, r1 := newDeployment(t, nil, nil)
	tests := []struct {
		method, path, body string
		header             []string
		status             int
		code               string
		forwarded          bool // to r1
	}{
		// Another replica's session: r1 answers (it has no such session).
		{"GET", "/v1/sessions/sess_r1_00ff", "", nil, 404, "session_not_found", true},
		{"POST", "/v1/sessions/sess_r1_00ff/execute", `{"code":"1"}`, nil, 404, "session_not_found", true},
		{"POST", "/v1/execute", `{"code":"1","session_id":"sess_r1_00ff"}`, nil, 404, "session_not_found", true},
		{"POST", "/v1/execute", `{"code":"1","session_id":"sess_r2_00ff"}`, nil, 410, "session_lost", false},
		{"PUT", "/v1/sessions/sess_r1_00ff/files/a.txt", "x", nil, 404, "session_not_found", true},
		{"GET", "/v1/containers/sess_r1_00ff/files", "", nil, 404, "session_not_found", true},
		{"GET", "/v1/files/file_r1_00ff/content", "", nil, 404, "file_not_found", true},
		{"DELETE", "/v1/files/file_r2_00ff", "", nil, 410, "session_lost", false},
		{"GET", "/v1/files/file-00ff", "", nil, 404, "file_not_found", false},
		// Its own, or an id that names no replica: served here.
		{"GET", "/v1/sessions/sess_r0_00ff", "", nil, 404, "session_not_found", false},
		{"GET", "/v1/sessions/sess_00ff", "", nil, 404, "session_not_found", false},
		// A replica that is gone, or was never part of the deployment.
		{"GET", "/v1/sessions/sess_r2_00ff", "", nil, 410, "session_lost", false},
		{"DELETE", "/v1/containers/sess_r9_00ff", "", nil, 410, "session_lost", false},
		// A request another replica forwarded already is never forwarded again.
		{"GET", "/v1/sessions/sess_r1_00ff", "", []string{cluster.HopHeader, "r1"}, 410, "session_lost", false},
		// Chat and Responses go where their state is: the stored response, else the
		// container; r1 has no upstream model.
		{"POST", "/v1/responses", `{"model":"m","input":"hi","previous_response_id":"resp_r1_abc"}`, nil, 503, "gateway_disabled", true},
		{"POST", "/v1/chat/completions", `{"model":"m","messages":[],"tools":[{"type":"code_execution","container":"sess_r1_00ff"}]}`, nil, 503, "gateway_disabled", true},
		{"POST", "/v1/responses", `{"model":"m","input":"hi","tools":[{"type":"code_interpreter","container":"sess_r2_00ff"}]}`, nil, 410, "session_lost", false},
		{"POST", "/v1/responses", `{"model":"m","input":"hi","tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}`, nil, 503, "gateway_disabled", false},
	}
	for _, tt := range tests {
		req := tt.method + " " + tt.path
		r := do(t, tt.method, r0.hs.URL+tt.path, tt.body, tt.header...)
		wantError(t, req, r, tt.status, tt.code)
		got := r1.forwarded()
		if (got != nil) != tt.forwarded {
			t.Errorf("%s: forwarded to r1: %v, want %v", req, got != nil, tt.forwarded)
		}
		if got != nil && (got.Method != tt.method || got.URL.Path != tt.path || got.Header.Get(cluster.HopHeader) != "r0") {
			t.Errorf("%s: r1 got %s %s from %q", req, got.Method, got.URL.Path, got.Header.Get(cluster.HopHeader))
		}
		if tt.code == "session_lost" && !strings.Contains(string(r.body), "00ff") {
			t.Errorf("%s: %s does not name the id", req, r.body)
		}
	}
}

// TestRouteChecksKeyFirst: a request that could not be served costs no hop.
func TestRouteChecksKeyFirst(t *testing.T) {
	keys := []tenant.Key{{Secret: "k1", Tenant: &tenant.Tenant{Name: "t1"}}}
	r0, r1 := newDeployment(t, nil, keys)
	wantError(t, "without a key", do(t, "GET", r0.hs.URL+"/v1/sessions/sess_r1_00ff", ""), 401, "missing_api_key")
	if r1.forwarded() != nil {
		t.Errorf("a request without a key was forwarded")
	}
	wantError(t, "with a key", do(t, "GET", r0.hs.URL+"/v1/sessions/sess_r1_00ff", "", "Authorization", "Bearer k1"), 404, "session_not_found")
	if got := r1.forwarded(); got == nil || got.Header.Get("Authorization") != "Bearer k1" {
		t.Errorf("the owner did not get the client's key: %v", got)
	}
}

func TestRouteMCP(t *testing.T) {
	r0, r1 := newDeployment(t, nil, nil)
	init := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	hdr := []string{"Content-Type", "application/json", "Accept", "application/json, text/event-stream", "Mcp-Protocol-Version", "2025-06-18"}
	r := do(t, "POST", r0.hs.URL+"/mcp", init, append(hdr, "Mcp-Session-Id", "mcp_r2_ABC")...)
	var body struct {
		JSONRPC string `json:"jsonrpc"`
		Error   struct {
			Code    int               `json:"code"`
			Message string            `json:"message"`
			Data    map[string]string `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || r.status != 404 || body.JSONRPC != "2.0" || body.Error.Data["code"] != "session_lost" ||
		!strings.HasPrefix(body.Error.Message, "session_lost: ") {
		t.Errorf("MCP session of a gone replica: %d %s, want 404 with a JSON-RPC error session_lost", r.status, r.body)
	}
	// r1 does not know the session either, and says so with the SDK's 404.
	if r := do(t, "POST", r0.hs.URL+"/mcp", init, append(hdr, "Mcp-Session-Id", "mcp_r1_ABC")...); r.status != 404 || r1.forwarded() == nil {
		t.Errorf("MCP session of r1: %d %s, forwarded: want 404 from r1", r.status, r.body)
	}
	// A new MCP session is made here, and its id names this replica.
	r = do(t, "POST", r0.hs.URL+"/mcp", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, hdr...)
	if id := r.header.Get("Mcp-Session-Id"); r.status != 200 || cluster.Owner(id) != "r0" {
		t.Errorf("initialize: %d, Mcp-Session-Id %q; want 200 and an id of r0", r.status, id)
	}
}

func TestStateOf(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"previous_response_id":"resp_r1_a","tools":[{"type":"code_interpreter","container":"sess_r2_b"}]}`, "resp_r1_a"},
		{`{"tools":[{"type":"function"},{"type":"code_interpreter","container":"sess_r2_b"}]}`, "sess_r2_b"},
		{`{"tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}`, ""},
		{`{"messages":[]}`, ""},
		{`{"code":"1","session_id":"sess_r1_a"}`, "sess_r1_a"},
		{`not json`, ""},
		{`{"previous_response_id":7}`, ""},
	}
	for _, tt := range tests {
		if got := stateOf([]byte(tt.body)); got != tt.want {
			t.Errorf("stateOf(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

// TestDrain: a draining server refuses new work with 503 draining and Retry-After,
// reports not ready, lets what runs finish, and still serves reads.
func TestDrain(t *testing.T) {
	g := &gatedExecutor{started: make(chan string, 1), release: make(chan struct{})}
	r0, _ := newDeployment(t, g, nil)
	done := make(chan response, 1)
	go func() { done <- doNoFatal(r0.hs.URL+"/v1/execute", `{"code":"running"}`) }()
	<-g.started
	r0.srv.Drain()
	if n := r0.srv.Running(); n != 1 {
		t.Errorf("Running() = %d, want 1", n)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/execute", `{"code":"1"}`},
		{"POST", "/v1/sessions", `{}`},
		{"POST", "/v1/containers", `{"name":"c"}`},
		{"POST", "/v1/chat/completions", `{"model":"m","messages":[]}`},
	} {
		r := do(t, c.method, r0.hs.URL+c.path, c.body)
		wantError(t, c.method+" "+c.path+" while draining", r, 503, "draining")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s while draining: no Retry-After", c.method, c.path)
		}
	}
	wantError(t, "GET /readyz while draining", do(t, "GET", r0.hs.URL+"/readyz", ""), 503, "draining")
	r := do(t, "POST", r0.hs.URL+"/mcp", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		"Content-Type", "application/json", "Accept", "application/json, text/event-stream")
	if r.status != 503 || !strings.Contains(string(r.body), `"code":"draining"`) {
		t.Errorf("a new MCP session while draining: %d %s, want 503 draining", r.status, r.body)
	}
	if r := do(t, "GET", r0.hs.URL+"/v1/sessions", ""); r.status != 200 {
		t.Errorf("GET /v1/sessions while draining: %d %s, want 200", r.status, r.body)
	}
	close(g.release)
	if r := <-done; r.status != 200 || !strings.Contains(string(r.body), "'running'") {
		t.Errorf("the execution running when the drain began: %d %s, want it to finish", r.status, r.body)
	}
}

// doNoFatal posts body to url from another goroutine than the test's.
func doNoFatal(url, body string) response {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return response{status: -1, body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, data}
}
