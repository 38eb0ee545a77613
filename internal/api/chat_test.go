package api

// Tests of the gateway's HTTP side that need no sandbox: streaming reaches the
// client as it is written, and what a chat request must fix is refused before any
// model or sandbox is asked.

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/safety"
	"github.com/codeexec/codeexec/internal/session"
)

// gatewayServer serves the API with the gateway on upstream up, an executor and
// sessions that cannot start (noSandbox), and judge j for executions (nil: none).
func gatewayServer(t *testing.T, up *llmtest.Server, exec Executor, j agent.Judge, adjust func(*Config)) *httptest.Server {
	t.Helper()
	cfg := DefaultConfig()
	if adjust != nil {
		adjust(&cfg)
	}
	if exec == nil {
		exec = noSandbox{t}
	}
	m := session.NewManager(session.Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}, noSandbox{t})
	t.Cleanup(m.Close)
	srv := New(cfg, exec, m, func() error { return nil }, nil)
	if up != nil {
		router, err := llm.NewRouter("fake", up.Provider())
		if err != nil {
			t.Fatal(err)
		}
		srv.SetGateway(&Gateway{Upstreams: router, Agent: &agent.Agent{MaxSteps: 3}})
	}
	srv.SetJudge(j)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

// TestStreamFlushes: a streamed answer reaches the client chunk by chunk, while
// the upstream is still writing — not all at once when the handler ends (the
// request log's status recorder hid the http.Flusher, so nothing was flushed).
func TestStreamFlushes(t *testing.T) {
	hold := make(chan struct{})
	turn := llmtest.Calls(llmtest.Call{Name: "search", Arguments: `{"q":"x"}`})
	turn.Content, turn.Hold = "Let me look that up.", hold
	up := llmtest.NewServer(t, turn)
	hs := gatewayServer(t, up, nil, nil, nil)
	// If nothing arrives, the upstream is let go after a while, so that the test
	// fails (with the chunks in the wrong order) instead of hanging.
	valve := time.AfterFunc(time.Minute, func() { close(hold) })
	resp, err := http.Post(hs.URL+"/v1/chat/completions", "application/json", strings.NewReader(
		`{"model":"fake-model","stream":true,"messages":[{"role":"user","content":"look up x"}],"tools":[{"type":"function","function":{"name":"search"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var text strings.Builder
	for text.String() != "Let me look that up." && sc.Scan() {
		var c llm.ChatChunk
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && decodeJSON(strings.NewReader(data), &c) == nil && len(c.Choices) == 1 {
			text.WriteString(c.Choices[0].Delta.Text())
		}
	}
	if !valve.Stop() {
		t.Fatalf("the answer's text reached the client only after the upstream was let go: it was not streamed")
	}
	close(hold)
	var rest strings.Builder
	for sc.Scan() {
		rest.WriteString(sc.Text() + "\n")
	}
	if !strings.Contains(rest.String(), `"name":"search"`) || !strings.HasSuffix(strings.TrimSpace(rest.String()), "data: [DONE]") {
		t.Errorf("the rest of the stream:\n%s", rest.String())
	}
}

// TestChatRefusals: a chat request with the code tool that the client must fix
// gets a 4xx with a stable code, and neither the model nor a sandbox is reached.
func TestChatRefusals(t *testing.T) {
	up := llmtest.NewServer(t) // no turns: a request that reaches it fails the test
	hs := gatewayServer(t, up, nil, nil, nil)
	user := `"messages":[{"role":"user","content":"hi"}]`
	file := func(f string) string {
		return `"messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"file","file":` + f + `}]}]`
	}
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"unknown container", `"tools":[{"type":"code_execution","container":"sess_0123456789abcdef0123456789abcdef"}],` + user, 404, "session_not_found"},
		{"unknown session_id", `"tools":[{"type":"code_interpreter","session_id":"sess_gone"}],` + user, 404, "session_not_found"},
		{"container not a string", `"tools":[{"type":"code_execution","container":42}],` + user, 400, "invalid_container"},
		{"two containers", `"tools":[{"type":"code_execution","container":"sess_a","session_id":"sess_b"}],` + user, 400, "invalid_container"},
		{"unknown file_id", `"tools":[{"type":"code_execution"}],` + file(`{"file_id":"file-abc123"}`), 400, "file_not_found"},
		{"file without data", `"tools":[{"type":"code_execution"}],` + file(`{"filename":"a.csv"}`), 400, "invalid_file"},
		{"file not base64", `"tools":[{"type":"code_execution"}],` + file(`{"filename":"a.csv","file_data":"%%%"}`), 400, "invalid_file"},
		{"function named code_execution", `"tools":[{"type":"code_execution"},{"type":"function","function":{"name":"code_execution"}}],` + user, 400, "invalid_tools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", hs.URL+"/v1/chat/completions", `{"model":"fake-model",`+tc.body+`}`)
			wantError(t, tc.name, r, tc.status, tc.code)
			// Streaming too: refused before the stream starts, with the status.
			r = do(t, "POST", hs.URL+"/v1/chat/completions", `{"model":"fake-model","stream":true,`+tc.body+`}`)
			wantError(t, tc.name+" (streaming)", r, tc.status, tc.code)
		})
	}
	if n := len(up.Requests()); n != 0 {
		t.Errorf("the upstream got %d requests, want 0", n)
	}
}

// TestChatWithoutSessions: on a server whose sessions cannot start (serve --cold,
// or no warm interpreter), code the model writes is answered 503
// sessions_unavailable, not passed off as an upstream failure.
func TestChatWithoutSessions(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Calls(llmtest.Call{Name: agent.ToolName, Arguments: `{"code":"print(1)"}`}))
	hs := gatewayServer(t, up, nil, nil, nil)
	r := do(t, "POST", hs.URL+"/v1/chat/completions", `{"model":"fake-model","tools":[{"type":"code_execution"}],"messages":[{"role":"user","content":"1?"}]}`)
	wantError(t, "chat on a server without sessions", r, 503, "sessions_unavailable")
}

// judgeFunc is a judge that calls f.
type judgeFunc func(code string, network *egress.Policy) (safety.Verdict, error)

func (f judgeFunc) Check(ctx context.Context, code string, network *egress.Policy) (safety.Verdict, error) {
	return f(code, network)
}

// recordingExecutor runs nothing: it records the code and answers ok.
type recordingExecutor struct {
	mu  sync.Mutex
	ran []string
}

func (r *recordingExecutor) Run(ctx context.Context, req *job.Request) (*job.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ran = append(r.ran, req.Code)
	return &job.Result{Status: job.StatusOK, Images: []job.Image{}, Files: []job.FileInfo{}}, nil
}

// TestExecuteJudged: with serve --safety-scope all, /v1/execute asks the judge
// first, for the network the request runs with; code it refuses (or that it fails
// to judge) is answered with status "rejected" and never reaches the sandbox.
func TestExecuteJudged(t *testing.T) {
	var seen []*egress.Policy
	j := judgeFunc(func(code string, network *egress.Policy) (safety.Verdict, error) {
		seen = append(seen, network)
		switch code {
		case "bad":
			return safety.Verdict{Reason: "spawns a shell"}, nil
		case "broken":
			return safety.Verdict{}, context.DeadlineExceeded
		}
		return safety.Verdict{Safe: true, Reason: "fine"}, nil
	})
	ex := &recordingExecutor{}
	hs := gatewayServer(t, nil, ex, j, func(c *Config) { c.Policy.NetworkAllow = []string{"api.example.com"} })
	for _, tc := range []struct{ code, reason string }{
		{"bad", "spawns a shell"},
		{"broken", "the safety check failed (context deadline exceeded), so the code was not run"},
	} {
		res := result(t, do(t, "POST", hs.URL+"/v1/execute", `{"code":"`+tc.code+`"}`))
		if res.Status != job.StatusRejected || res.Error == nil || res.Error.Name != "Rejected" || res.Error.Message != tc.reason {
			t.Errorf("code %q: %+v, want status rejected with error Rejected: %q", tc.code, res, tc.reason)
		}
	}
	res := result(t, do(t, "POST", hs.URL+"/v1/execute", `{"code":"good","network":"allow=api.example.com"}`))
	if strings.Join(ex.ran, ",") != "good" || res.Status != job.StatusOK {
		t.Errorf("ran %q (last %+v), want only the safe code", ex.ran, res)
	}
	if len(seen) != 3 || seen[0] != nil || seen[2] == nil || strings.Join(seen[2].Allow, ",") != "api.example.com" {
		t.Errorf("the judge was told the networks %v, want none, none, then api.example.com", seen)
	}
	if v := metricValue(t, hs, `codeexec_executions_total{language="python",status="rejected"}`); v != "2" {
		t.Errorf("codeexec_executions_total rejected = %q, want 2", v)
	}
}
