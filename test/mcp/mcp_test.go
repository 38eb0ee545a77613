// Package mcp_test drives codeexec's MCP server with the clients hosts use: the
// official TypeScript SDK and the MCP Inspector's CLI (from test/mcp/node), over
// stdio against a `codeexec mcp` built here and over streamable HTTP against a real
// API server on loopback, and Go's SDK for what only Go can see (tenants, sessions).
package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/safety"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
	"github.com/codeexec/codeexec/test/testenv"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testenv.Close()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// The API keys of the HTTP server: two tenants.
const (
	keyA = "sk-mcp-test-tenant-a"
	keyB = "sk-mcp-test-tenant-b"
)

var tools = []string{"close_session", "create_session", "download_file", "execute_javascript", "execute_python", "list_files", "list_sessions", "run_command", "upload_file"}

// server is a real API server on loopback, /mcp among its routes, that runs one
// execution at a time: a cancelled execution that went on running would hold up the
// next call, which the clients check.
type server struct {
	url      string
	srv      *api.Server
	sessions *session.Manager
}

func newServer(t *testing.T) *server { return newServerWith(t, nil, nil) }

// newServerWith is newServer with its config adjusted by adjust (nil: none) and
// judge j judging direct executions (nil: none).
func newServerWith(t *testing.T, adjust func(*api.Config), j agent.Judge) *server {
	t.Helper()
	r := testenv.Runner(t)
	// One execution at a time: the cancellation test counts them.
	sessions := session.NewManager(session.Config{Max: 20, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour,
		MaxConcurrent: 1, MaxQueued: 8}, r)
	cfg := api.DefaultConfig()
	cfg.Keys = []tenant.Key{{Secret: keyA, Tenant: &tenant.Tenant{Name: "a"}}, {Secret: keyB, Tenant: &tenant.Tenant{Name: "b"}}}
	if adjust != nil {
		adjust(&cfg)
	}
	srv := api.New(cfg, r, sessions, func() error { return nil }, slog.New(slog.DiscardHandler))
	if j != nil {
		srv.SetJudge(j)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.MCP().Shutdown()
		hs.Close()
		srv.MCP().Stop()
		sessions.Close()
	})
	return &server{url: hs.URL, srv: srv, sessions: sessions}
}

// built is the codeexec binary the stdio tests start, built once.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func codeexecBinary(t *testing.T) string {
	t.Helper()
	testenv.Runner(t) // root and the image, or skip
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "codeexec-mcp-test-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "codeexec")
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out, err := exec.Command(goTool, "build", "-o", built.path, "github.com/codeexec/codeexec/cmd/codeexec").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build ./cmd/codeexec: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// stdioArgs start a `codeexec mcp` that runs one execution at a time.
func stdioArgs(t *testing.T) []string {
	return []string{codeexecBinary(t), "mcp", "--prefork", "1", "--max-concurrent", "1"}
}

// pinned are the packages node/package.json pins, which nodeDir installs.
var pinned = []string{"@modelcontextprotocol/sdk", "@modelcontextprotocol/inspector"}

// nodeDir returns node/ with the packages it pins installed.
func nodeDir(t *testing.T) string {
	t.Helper()
	return testenv.NodeDir(t, "node", pinned...)
}

// node runs a script of test/mcp/node and returns its standard output.
func node(t *testing.T, args ...string) []byte {
	t.Helper()
	dir := nodeDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// report is what client.mjs saw; a step that threw has only failed.
type report struct {
	Tools []string `json:"tools"`
	Run   struct {
		Failed   string   `json:"failed"`
		IsError  bool     `json:"isError"`
		Text     string   `json:"text"`
		Status   string   `json:"status"`
		Result   *string  `json:"result"`
		Stdout   string   `json:"stdout"`
		Progress []string `json:"progress"`
	} `json:"run"`
	Figure struct {
		Failed string   `json:"failed"`
		Types  []string `json:"types"`
		Images []struct {
			MimeType string `json:"mimeType"`
			Magic    string `json:"magic"`
		} `json:"images"`
	} `json:"figure"`
	Error struct {
		Failed    string `json:"failed"`
		IsError   bool   `json:"isError"`
		Text      string `json:"text"`
		Status    string `json:"status"`
		ErrorName string `json:"errorName"`
		Traceback string `json:"traceback"`
	} `json:"error"`
	Session struct {
		Failed string   `json:"failed"`
		ID     string   `json:"id"`
		Result *string  `json:"result"`
		Ended  *bool    `json:"ended"`
		Listed []string `json:"listed"`
	} `json:"session"`
	Files struct {
		Failed   string `json:"failed"`
		Uploaded struct {
			Path string `json:"path"`
			Size int64  `json:"size"`
			URI  string `json:"uri"`
		} `json:"uploaded"`
		RunResult *string `json:"runResult"`
		Links     []struct {
			URI  string `json:"uri"`
			Name string `json:"name"`
		} `json:"links"`
		Listed          []string `json:"listed"`
		BinaryType      string   `json:"binaryType"`
		BinaryRoundTrip bool     `json:"binaryRoundTrip"`
		CSVText         string   `json:"csvText"`
		ReadText        *string  `json:"readText"`
	} `json:"files"`
	Resources struct {
		Failed    string   `json:"failed"`
		Templates []string `json:"templates"`
		URIs      []string `json:"uris"`
	} `json:"resources"`
	Prompt struct {
		Failed string   `json:"failed"`
		Names  []string `json:"names"`
		Text   string   `json:"text"`
	} `json:"prompt"`
	CancelOnce    cancelReport `json:"cancelOnce"`
	CancelSession cancelReport `json:"cancelSession"`
	Close         struct {
		Failed       string `json:"failed"`
		Closed       bool   `json:"closed"`
		AgainIsError bool   `json:"againIsError"`
		AgainText    string `json:"againText"`
	} `json:"close"`
}

type cancelReport struct {
	Failed      string  `json:"failed"`
	AbortErr    *string `json:"abortErr"`
	After       *string `json:"after"`
	AfterStatus string  `json:"afterStatus"`
	AfterText   string  `json:"afterText"`
}

func str(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

// checkReport checks what a client saw of the whole scenario of client.mjs.
func checkReport(t *testing.T, out []byte) {
	t.Helper()
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("client.mjs printed no report: %v: %s", err, out)
	}
	for name, failed := range map[string]string{"run": r.Run.Failed, "figure": r.Figure.Failed, "error": r.Error.Failed,
		"session": r.Session.Failed, "files": r.Files.Failed, "resources": r.Resources.Failed, "prompt": r.Prompt.Failed,
		"cancelOnce": r.CancelOnce.Failed, "cancelSession": r.CancelSession.Failed, "close": r.Close.Failed} {
		if failed != "" {
			t.Errorf("step %s threw: %s", name, failed)
		}
	}
	if !slices.Equal(r.Tools, tools) {
		t.Errorf("tools/list named %v, want %v", r.Tools, tools)
	}

	if r.Run.IsError || r.Run.Status != "ok" || str(r.Run.Result) != "5050" || r.Run.Stdout != "line 0\nline 1\nline 2\n" {
		t.Errorf("run: isError %v, status %q, result %s, stdout %q; want false, ok, 5050 and three lines", r.Run.IsError, r.Run.Status, str(r.Run.Result), r.Run.Stdout)
	}
	if want := "stdout:\nline 0\nline 1\nline 2\nresult:\n5050\n"; !strings.Contains(r.Run.Text, want) {
		t.Errorf("run: the text content %q does not hold %q", r.Run.Text, want)
	}
	if len(r.Run.Progress) == 0 || r.Run.Progress[0] != "line 0" {
		t.Errorf("run: the progress messages %q do not begin with the first line printed", r.Run.Progress)
	}

	if !slices.Equal(r.Figure.Types, []string{"text", "image"}) || len(r.Figure.Images) != 1 ||
		r.Figure.Images[0].MimeType != "image/png" || r.Figure.Images[0].Magic != "89504e470d0a1a0a" {
		t.Errorf("figure: content types %v, images %+v; want text then one image/png that starts with the PNG signature", r.Figure.Types, r.Figure.Images)
	}

	if !r.Error.IsError || r.Error.Status != "error" || r.Error.ErrorName != "ZeroDivisionError" ||
		!strings.Contains(r.Error.Traceback, `line 2, in f`) {
		t.Errorf("error: isError %v, status %q, error %q, traceback %q; want true, error, ZeroDivisionError and the frame of f",
			r.Error.IsError, r.Error.Status, r.Error.ErrorName, r.Error.Traceback)
	}
	for _, want := range []string{"Traceback (most recent call last)", "return 1 / 0", "ZeroDivisionError: division by zero"} {
		if !strings.Contains(r.Error.Text, want) {
			t.Errorf("error: the text content %q lacks %q", r.Error.Text, want)
		}
	}

	if !strings.HasPrefix(r.Session.ID, "sess_") || str(r.Session.Result) != "45" || r.Session.Ended == nil || *r.Session.Ended ||
		!slices.Contains(r.Session.Listed, r.Session.ID) {
		t.Errorf("session: id %q, second result %s, ended %v, listed %v; want a session whose x.sum() is 45, alive and listed",
			r.Session.ID, str(r.Session.Result), r.Session.Ended, r.Session.Listed)
	}

	f := r.Files
	id := r.Session.ID
	if f.Uploaded.Path != "in/bytes.bin" || f.Uploaded.Size != 256 || f.Uploaded.URI != "codeexec://sessions/"+id+"/files/in/bytes.bin" {
		t.Errorf("upload_file answered %+v", f.Uploaded)
	}
	if str(f.RunResult) != "256" {
		t.Errorf("the code read %s bytes of the upload, want 256", str(f.RunResult))
	}
	if len(f.Links) != 1 || f.Links[0].URI != "codeexec://sessions/"+id+"/files/out.csv" || f.Links[0].Name != "out.csv" {
		t.Errorf("the run that wrote out.csv linked %+v, want one resource link to it", f.Links)
	}
	if want := []string{"in/bytes.bin:256", "out.csv:17"}; !slices.Equal(f.Listed, want) {
		t.Errorf("list_files: %v, want %v", f.Listed, want)
	}
	if f.BinaryType != "resource" || !f.BinaryRoundTrip {
		t.Errorf("download_file of the binary upload: content %q, bytes equal %v; want an embedded resource with the same bytes", f.BinaryType, f.BinaryRoundTrip)
	}
	csv := "n,sq\n0,0\n1,1\n2,4\n"
	if f.CSVText != csv || str(f.ReadText) != csv {
		t.Errorf("out.csv: download_file text %q, resources/read of its link %s; want %q", f.CSVText, str(f.ReadText), csv)
	}

	if want := []string{"codeexec://sessions/{id}/files", "codeexec://sessions/{id}/files/{+path}"}; !slices.Equal(r.Resources.Templates, want) {
		t.Errorf("resource templates %v, want %v", r.Resources.Templates, want)
	}
	for _, p := range []string{"in/bytes.bin", "out.csv"} {
		if uri := "codeexec://sessions/" + id + "/files/" + p; !slices.Contains(r.Resources.URIs, uri) {
			t.Errorf("resources/list %v lacks %s", r.Resources.URIs, uri)
		}
	}
	if !slices.Equal(r.Prompt.Names, []string{"analyse_csv"}) || !strings.Contains(r.Prompt.Text, `"sales.csv"`) {
		t.Errorf("prompts %v; analyse_csv said %q", r.Prompt.Names, r.Prompt.Text)
	}

	// One execution runs at a time: the call after a cancelled one runs only if the
	// cancelled one stopped (it would have run for 300 s).
	if c := r.CancelOnce; c.AbortErr == nil || c.AfterStatus != "ok" || str(c.After) != "'next'" {
		t.Errorf("cancelling a one-shot run: abort error %s, the next call's status %q and result %s; want an abort, then ok and 'next'",
			str(c.AbortErr), c.AfterStatus, str(c.After))
	}
	// In a session, the cancel interrupts: the session and its variables live on.
	if c := r.CancelSession; c.AbortErr == nil || c.AfterStatus != "ok" || str(c.After) != "42" {
		t.Errorf("cancelling a run in a session: abort error %s, the next call's status %q and result %s (%q); want an abort, then ok and 42 from the session's variable",
			str(c.AbortErr), c.AfterStatus, str(c.After), c.AfterText)
	}

	if !r.Close.Closed || !r.Close.AgainIsError || !strings.Contains(r.Close.AgainText, "(session_not_found)") {
		t.Errorf("close_session: closed %v; a call in the closed session: isError %v, %q; want true, true and session_not_found",
			r.Close.Closed, r.Close.AgainIsError, r.Close.AgainText)
	}
}

func TestNodeStdio(t *testing.T) {
	args := stdioArgs(t)
	checkReport(t, node(t, append([]string{"client.mjs", "stdio"}, args...)...))
}

func TestNodeHTTP(t *testing.T) {
	s := newServer(t)
	checkReport(t, node(t, "client.mjs", "http", s.url+"/mcp", keyA))
	// The one-shot run the client cancelled was killed, not left to its timeout.
	if m := metrics(t, s.url); !strings.Contains(m, `codeexec_executions_total{language="python",status="killed"} 1`) {
		t.Errorf("/metrics counts no killed execution:\n%s", grepLines(m, "codeexec_executions_total"))
	}
	// The client closed its session.
	waitSessions(t, s.sessions, 0)
}

func TestNodeHTTPRefusesBadToken(t *testing.T) {
	s := newServer(t)
	for _, c := range []struct{ name, token string }{{"missing", ""}, {"wrong", "sk-not-a-key"}} {
		t.Run(c.name, func(t *testing.T) {
			var got struct {
				Connected bool   `json:"connected"`
				Error     string `json:"error"`
				Code      *int   `json:"code"`
			}
			out := node(t, "client.mjs", "connect", s.url+"/mcp", c.token)
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("client.mjs connect printed %q: %v", out, err)
			}
			if got.Connected || got.Code == nil || *got.Code != 401 {
				t.Errorf("a client with a %s token: connected %v, error %q (code %v); want refused with 401", c.name, got.Connected, got.Error, got.Code)
			}
		})
	}
	var got struct {
		Connected bool     `json:"connected"`
		Tools     []string `json:"tools"`
		Error     string   `json:"error"`
	}
	if out := node(t, "client.mjs", "connect", s.url+"/mcp", keyB); json.Unmarshal(out, &got) != nil || !got.Connected || !slices.Equal(got.Tools, tools) {
		t.Errorf("a client with a valid key: %s", out)
	}
}

func TestInspectorCLI(t *testing.T) {
	s := newServer(t)
	stdio := stdioArgs(t)
	inspector := func(t *testing.T, args ...string) []byte {
		t.Helper()
		return node(t, append([]string{"node_modules/.bin/mcp-inspector", "--cli"}, args...)...)
	}
	targets := []struct {
		name string
		args []string
	}{
		{"stdio", stdio},
		{"http", []string{s.url + "/mcp", "--transport", "http", "--header", "Authorization: Bearer " + keyA}},
	}
	for _, target := range targets {
		t.Run(target.name+"/tools-list", func(t *testing.T) {
			// --strict fails (exit 6) on a schema a model provider's dialect cannot take.
			out := inspector(t, append(slices.Clone(target.args), "--method", "tools/list", "--strict")...)
			var list struct {
				Tools []struct {
					Name         string          `json:"name"`
					Description  string          `json:"description"`
					InputSchema  json.RawMessage `json:"inputSchema"`
					OutputSchema json.RawMessage `json:"outputSchema"`
				} `json:"tools"`
			}
			if err := json.Unmarshal(out, &list); err != nil {
				t.Fatalf("tools/list printed %q: %v", out, err)
			}
			var names []string
			for _, tool := range list.Tools {
				names = append(names, tool.Name)
				if tool.Description == "" || len(tool.InputSchema) == 0 || len(tool.OutputSchema) == 0 {
					t.Errorf("tool %s has description %q, input schema %s, output schema %s; want all three", tool.Name, tool.Description, tool.InputSchema, tool.OutputSchema)
				}
			}
			slices.Sort(names)
			if !slices.Equal(names, tools) {
				t.Errorf("the inspector listed %v, want %v", names, tools)
			}
		})
		t.Run(target.name+"/tools-call", func(t *testing.T) {
			out := inspector(t, append(slices.Clone(target.args), "--method", "tools/call", "--tool-name", "execute_python",
				"--tool-arg", "code=print(6 * 7)")...)
			var res struct {
				Content []struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"content"`
				StructuredContent struct {
					Status string `json:"status"`
					Stdout string `json:"stdout"`
				} `json:"structuredContent"`
				IsError bool `json:"isError"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("tools/call printed %q: %v", out, err)
			}
			if res.IsError || res.StructuredContent.Status != "ok" || res.StructuredContent.Stdout != "42\n" ||
				len(res.Content) == 0 || !strings.Contains(res.Content[0].Text, "stdout:\n42\n") {
				t.Errorf("execute_python through the inspector: %s", out)
			}
		})
	}
}

// bearer adds an API key to every request.
type bearer struct{ key string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return http.DefaultTransport.RoundTrip(r)
}

// connect opens an MCP session over HTTP with key, in the protocol of sessions
// (2025-06-18). The caller must Close it.
func connect(t *testing.T, url, key string) *sdk.ClientSession {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "codeexec-go-test", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: url + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{key}}, DisableStandaloneSSE: true},
		&sdk.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatalf("connect with a key: %v", err)
	}
	return cs
}

func callTool(t *testing.T, cs *sdk.ClientSession, name string, args map[string]any) *sdk.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func structured(t *testing.T, res *sdk.CallToolResult, v any) {
	t.Helper()
	data, err := json.Marshal(res.StructuredContent)
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		t.Fatalf("structured content %s: %v", data, err)
	}
}

func resultText(res *sdk.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// A session, and an MCP session, belong to the tenant whose key made them.
func TestTenants(t *testing.T) {
	s := newServer(t)
	a := connect(t, s.url, keyA)
	defer a.Close()
	var made struct {
		SessionID string `json:"session_id"`
	}
	structured(t, callTool(t, a, "create_session", nil), &made)

	b := connect(t, s.url, keyB)
	defer b.Close()
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"execute_python", map[string]any{"code": "1", "session_id": made.SessionID}},
		{"list_files", map[string]any{"session_id": made.SessionID}},
		{"download_file", map[string]any{"session_id": made.SessionID, "path": "x"}},
		{"close_session", map[string]any{"session_id": made.SessionID}},
	} {
		res := callTool(t, b, c.tool, c.args)
		if !res.IsError || !strings.Contains(resultText(res), "(session_not_found)") {
			t.Errorf("tenant b's %s in tenant a's session: isError %v, %q; want session_not_found", c.tool, res.IsError, resultText(res))
		}
	}
	var listed struct {
		Sessions []session.Info `json:"sessions"`
	}
	structured(t, callTool(t, b, "list_sessions", nil), &listed)
	if len(listed.Sessions) != 0 {
		t.Errorf("tenant b lists %+v, want none of a's", listed.Sessions)
	}
	if _, err := b.ReadResource(t.Context(), &sdk.ReadResourceParams{URI: "codeexec://sessions/" + made.SessionID + "/files"}); err == nil {
		t.Errorf("tenant b read the file list of tenant a's session")
	}

	// Tenant b's key on tenant a's MCP session: refused before any call.
	req, _ := http.NewRequest("POST", s.url+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer "+keyB)
	req.Header.Set("Mcp-Session-Id", a.ID())
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("tenant b's key on tenant a's MCP session: %d %s, want 403", resp.StatusCode, body)
	}
}

// Without a key, /mcp answers as every /v1 route does.
func TestUnauthenticated(t *testing.T) {
	s := newServer(t)
	for _, c := range []struct{ name, auth, code string }{{"missing", "", "missing_api_key"}, {"wrong", "Bearer sk-wrong", "invalid_api_key"}} {
		req, _ := http.NewRequest("POST", s.url+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") ||
			!strings.Contains(string(body), `"code":"`+c.code+`"`) {
			t.Errorf("%s key: %d, WWW-Authenticate %q, %s; want 401 %s", c.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, c.code)
		}
	}
}

// The sessions an MCP session made end with it; the ones the HTTP API made do not.
func TestMCPSessionEndClosesItsSessions(t *testing.T) {
	s := newServer(t)
	owner := &tenant.Tenant{Name: "a"}
	kept, err := s.sessions.Create(context.Background(), owner, job.DefaultLimits(), 0)
	if err != nil {
		t.Fatal(err)
	}
	cs := connect(t, s.url, keyA)
	var made struct {
		SessionID string `json:"session_id"`
	}
	structured(t, callTool(t, cs, "create_session", nil), &made)
	// Visible to the HTTP API: the one session model.
	if _, err := s.sessions.Get("a", made.SessionID); err != nil {
		t.Fatalf("the session create_session made is not the manager's: %v", err)
	}
	if err := cs.Close(); err != nil {
		t.Fatalf("closing the MCP session: %v", err)
	}
	waitSessions(t, s.sessions, 1)
	if _, err := s.sessions.Get("a", kept.ID); err != nil {
		t.Errorf("the session made through the HTTP API ended with an MCP session: %v", err)
	}
}

// waitSessions waits for the manager to hold n sessions; the closes it waits for run
// once the MCP session's end is seen, a moment after the client's DELETE returns.
func waitSessions(t *testing.T, m *session.Manager, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for m.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("the manager holds %d sessions, want %d", m.Len(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func metrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A call cancelled while it waits for its session, where another call's code runs,
// leaves without stopping that code: the interrupt of a cancellation is only ever
// the cancelled call's own.
func TestCancelWaitingCallSparesTheRunningOne(t *testing.T) {
	s := newServer(t)
	progress := make(chan string, 1000) // "token: message"
	c := sdk.NewClient(&sdk.Implementation{Name: "codeexec-go-test", Version: "1"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
			progress <- fmt.Sprintf("%v: %s", req.Params.ProgressToken, req.Params.Message)
		}})
	cs, err := c.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: s.url + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{keyA}}, DisableStandaloneSSE: true},
		&sdk.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var made struct {
		SessionID string `json:"session_id"`
	}
	structured(t, callTool(t, cs, "create_session", nil), &made)
	waitFor := func(want string) {
		t.Helper()
		timeout := time.After(time.Minute)
		for {
			select {
			case got := <-progress:
				if strings.HasPrefix(got, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no progress %q within a minute", want)
			}
		}
	}
	type outcome struct {
		res *sdk.CallToolResult
		err error
	}
	// A runs for 10 s: long enough for B to wait its turn and give up meanwhile.
	first := make(chan outcome, 1)
	go func() {
		res, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "execute_python", Meta: sdk.Meta{"progressToken": "a"},
			Arguments: map[string]any{"session_id": made.SessionID,
				"code": "import time\nprint('started', flush=True)\nfor _ in range(100):\n    time.sleep(0.1)\n'A done'"}})
		first <- outcome{res, err}
	}()
	waitFor("a: started")
	ctx, cancel := context.WithCancel(t.Context())
	second := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "execute_python", Meta: sdk.Meta{"progressToken": "b"},
			Arguments: map[string]any{"session_id": made.SessionID, "code": "'B'"}})
		second <- err
	}()
	waitFor("b: running for") // B's heartbeat: its call is in, waiting
	cancel()
	if err := <-second; err == nil {
		t.Errorf("the cancelled call answered without an error")
	}
	a := <-first
	if a.err != nil {
		t.Fatalf("the running call: %v", a.err)
	}
	var res job.Result
	structured(t, a.res, &res)
	if res.Status != job.StatusOK || str(res.Result) != "'A done'" {
		t.Errorf("the running call ended %s with %s (%s); a cancellation of the call waiting behind it stopped it", res.Status, str(res.Result), resultText(a.res))
	}
}

// Shutdown of the HTTP server ends the streams MCP clients hold open, at once: it
// does not wait for its deadline.
func TestShutdownEndsMCPStreams(t *testing.T) {
	r := testenv.Runner(t)
	sessions := session.NewManager(session.Config{Max: 5, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}, r)
	defer sessions.Close()
	srv := api.New(api.DefaultConfig(), r, sessions, func() error { return nil }, slog.New(slog.DiscardHandler))
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	hs := srv.HTTPServer(base)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/mcp"

	post := func(sid, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d, session %q", resp.StatusCode, sid)
	}
	resp = post(sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	resp.Body.Close()

	// The standalone stream a host keeps open for the server's messages.
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	first := make([]byte, 2)
	if _, err := io.ReadFull(stream.Body, first); err != nil || string(first) != ": " {
		t.Fatalf("the stream began %q (%v), want the SDK's opening comment", first, err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, stream.Body)
		ended <- err
	}()

	ctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
	defer stop()
	if err := hs.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown with an MCP stream open: %v; want it to end the stream and return", err)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Errorf("the MCP stream is still open after Shutdown")
	}
}

// MCP code runs under the server's policy: the judge of direct executions, and the
// network the operator gives MCP, which the model is told of.
func TestPolicy(t *testing.T) {
	const socketCode = "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)"
	const fetch = "import os, requests\nr = requests.get('http://other.example.net/', timeout=20)\n(os.environ.get('HTTPS_PROXY') is not None, r.status_code, r.text[:40])"
	cases := []struct {
		name     string
		adjust   func(*api.Config)
		judge    bool
		code     string
		status   job.Status
		text     string // in the text content
		describe string // in execute_python's description
	}{
		{"no judge: the code runs", nil, false, socketCode, job.StatusOK, "status: ok", "There is no network access"},
		{"the judge of direct executions judges MCP code", nil, true, socketCode, job.StatusRejected,
			"The code was NOT run: the safety policy refused it", "A safety policy checks the code"},
		{"no network by default", nil, false, fetch, job.StatusError, "ConnectionError", "There is no network access"},
		{"the operator's network for MCP", func(c *api.Config) { c.MCPNetwork = &egress.Policy{Allow: []string{"api.example.com"}} }, false,
			fetch, job.StatusOK, "(True, 403, 'codeexec egress: ", "HTTP and HTTPS to api.example.com only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var j agent.Judge
			if c.judge {
				j = safety.NewStatic(testenv.Runner(t))
			}
			s := newServerWith(t, c.adjust, j)
			cs := connect(t, s.url, keyA)
			defer cs.Close()
			list, err := cs.ListTools(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, tool := range list.Tools {
				if tool.Name == "execute_python" && !strings.Contains(tool.Description, c.describe) {
					t.Errorf("execute_python's description lacks %q: %s", c.describe, tool.Description)
				}
			}
			res := callTool(t, cs, "execute_python", map[string]any{"code": c.code})
			var got job.Result
			structured(t, res, &got)
			if got.Status != c.status || !strings.Contains(resultText(res), c.text) || res.IsError != (c.status != job.StatusOK) {
				t.Errorf("status %s, isError %v, text %q; want %s and a text with %q", got.Status, res.IsError, resultText(res), c.status, c.text)
			}
		})
	}
}

// A call the caller got wrong is isError with the reason and the HTTP API's code.
func TestCallErrors(t *testing.T) {
	s := newServer(t)
	cs := connect(t, s.url, keyA)
	defer cs.Close()
	var made struct {
		SessionID string `json:"session_id"`
	}
	structured(t, callTool(t, cs, "create_session", nil), &made)
	id := made.SessionID
	cases := []struct {
		tool string
		args map[string]any
		want string
	}{
		{"execute_python", map[string]any{"code": "1", "session_id": "sess_unknown"}, `no session "sess_unknown" (it may have expired) (session_not_found)`},
		{"execute_python", map[string]any{"code": "1", "timeout_s": 301}, "timeout_s: maximum"}, // by the schema
		{"execute_python", map[string]any{"code": "1", "files": []map[string]any{{"path": "../x", "content_base64": ""}}}, "(invalid_file_path)"},
		{"execute_python", map[string]any{"code": "1", "files": []map[string]any{{"path": "x", "content_base64": "%%%"}}}, "(invalid_file)"},
		{"execute_python", map[string]any{"code": strings.Repeat("#", 1<<20+1)}, "(code_too_large)"},
		{"upload_file", map[string]any{"session_id": id, "path": "x.bin", "content_base64": "not base64!"}, "(invalid_file)"},
		{"upload_file", map[string]any{"session_id": id, "path": "/etc/x", "content_base64": ""}, "(invalid_file_path)"},
		{"download_file", map[string]any{"session_id": id, "path": "missing.csv"}, `no file "missing.csv" in the session (file_not_found)`},
		{"list_files", map[string]any{"session_id": "sess_unknown"}, "(session_not_found)"},
		{"close_session", map[string]any{"session_id": "sess_unknown"}, "(session_not_found)"},
	}
	for _, c := range cases {
		res := callTool(t, cs, c.tool, c.args)
		if text := resultText(res); !res.IsError || !strings.Contains(text, c.want) {
			t.Errorf("%s with %.80v: isError %v, %q; want an error with %q", c.tool, c.args, res.IsError, text, c.want)
		}
	}
	// Arguments the schema refuses are refused before the tool runs.
	res, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "execute_python", Arguments: map[string]any{"cod": "1"}})
	if err == nil && !res.IsError {
		t.Errorf("execute_python without code ran: %s", resultText(res))
	}
}

// Without API keys every caller is the one anonymous tenant, over MCP as on /v1.
func TestNoKeys(t *testing.T) {
	s := newServerWith(t, func(c *api.Config) { c.Keys = nil }, nil)
	c := sdk.NewClient(&sdk.Implementation{Name: "codeexec-go-test", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: s.url + "/mcp", DisableStandaloneSSE: true},
		&sdk.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var made struct {
		SessionID string `json:"session_id"`
	}
	structured(t, callTool(t, cs, "create_session", nil), &made)
	if _, err := s.sessions.Get(tenant.AnonymousName, made.SessionID); err != nil {
		t.Errorf("the session of a server without keys is not the anonymous tenant's: %v", err)
	}
}
