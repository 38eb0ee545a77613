// Package cluster_test runs codeexec as one deployment of three `codeexec serve`
// processes on loopback (peers from a file, as the chart's headless Service gives
// them) and checks routing across them: sessions made through random replicas and
// used through others (executions, files, streams, an E2B sandbox, an MCP session),
// then a replica killed mid-run, whose resources alone are lost and answered with
// session_lost, and a replica drained by SIGTERM.
package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
	"github.com/codeexec/codeexec/test/testenv"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

const key = "cluster-test-key"

// client bounds every request: an answer that never comes fails the test instead
// of hanging it.
var client = &http.Client{Timeout: 2 * time.Minute}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func call(t *testing.T, method, u, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, u, err)
	}
	return reply{resp.StatusCode, resp.Header, data}
}

// errorCode is the code of an OpenAI-style error body, "" if it is not one.
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// execOut runs code in session id through the replica at api and returns its stdout.
func execOut(t *testing.T, api, id, code string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"code": code})
	r := call(t, "POST", api+"/v1/sessions/"+id+"/execute", string(body))
	var res struct {
		Status string `json:"status"`
		Stdout string `json:"stdout"`
		Stderr string `json:"stderr"`
	}
	if err := json.Unmarshal(r.body, &res); err != nil || r.status != 200 || res.Status != "ok" {
		t.Fatalf("execute in %s through %s: %d %s", id, api, r.status, r.body)
	}
	return res.Stdout
}

func (s *sess) String() string { return s.id }

type sess struct {
	id, owner string
	n         int // the value of x in it
}

func TestDeployment(t *testing.T) {
	sandboxtest.Rootfs(t) // skips without root or the image, with the reason
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := testenv.BuildCodeexec(ctx, "../..", dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := testenv.StartDeployment(ctx, bin, dir, 3, key, "--prefork", "1", "--max-concurrent", "4", "--drain-timeout", "60s")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	defer func() {
		if t.Failed() {
			for _, r := range d.Replicas {
				t.Logf("log of %s:\n%s", r.Name, r.Tail())
			}
		}
	}()
	rs := d.Replicas
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	// others are the replicas other than owner that are alive, in a random order.
	// alive is read by the MCP client's transport too.
	var aliveMu sync.Mutex
	alive := map[string]bool{"r0": true, "r1": true, "r2": true}
	isAlive := func(name string) bool {
		aliveMu.Lock()
		defer aliveMu.Unlock()
		return alive[name]
	}
	died := func(name string) {
		aliveMu.Lock()
		defer aliveMu.Unlock()
		alive[name] = false
	}
	others := func(owner string) []*testenv.Replica {
		var o []*testenv.Replica
		for _, r := range rs {
			if r.Name != owner && isAlive(r.Name) {
				o = append(o, r)
			}
		}
		rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
		return o
	}

	// Two sessions owned by each replica, each made through a random one... which
	// then owns it: the replica that makes a session holds it.
	var sessions []*sess
	order := []int{0, 0, 1, 1, 2, 2}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for i, via := range order {
		r := call(t, "POST", rs[via].API+"/v1/sessions", `{}`)
		var s struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(r.body, &s) != nil || r.status != 200 && r.status != 201 {
			t.Fatalf("POST /v1/sessions through %s: %d %s", rs[via].Name, r.status, r.body)
		}
		if got := cluster.Owner(s.ID); got != rs[via].Name {
			t.Fatalf("session %q made through %s names owner %q", s.ID, rs[via].Name, got)
		}
		sessions = append(sessions, &sess{id: s.ID, owner: rs[via].Name, n: 7 * (i + 1)})
	}

	// Each is used through the two replicas that do not own it: state, files.
	for _, s := range sessions {
		o := others(s.owner)
		if got := execOut(t, o[0].API, s.id, fmt.Sprintf("x = %d\nprint('set', x)", s.n)); got != fmt.Sprintf("set %d\n", s.n) {
			t.Errorf("%s through %s: stdout %q", s.id, o[0].Name, got)
		}
		content := "file of " + s.id
		if r := call(t, "PUT", o[1].API+"/v1/sessions/"+s.id+"/files/data.txt", content); r.status != 200 && r.status != 201 {
			t.Errorf("PUT a file in %s through %s: %d %s", s.id, o[1].Name, r.status, r.body)
		}
		if r := call(t, "GET", o[0].API+"/v1/sessions/"+s.id+"/files/data.txt", ""); r.status != 200 || string(r.body) != content {
			t.Errorf("GET the file of %s through %s: %d %q, want %q", s.id, o[0].Name, r.status, r.body, content)
		}
		if got := execOut(t, o[1].API, s.id, "print(x, open('data.txt').read())"); got != fmt.Sprintf("%d %s\n", s.n, content) {
			t.Errorf("%s through %s: stdout %q", s.id, o[1].Name, got)
		}
		// The stateless work runs where it lands.
		if r := call(t, "POST", o[0].API+"/v1/execute", `{"code":"print(6*7)"}`); r.status != 200 || !bytes.Contains(r.body, []byte(`"stdout":"42\n"`)) {
			t.Errorf("POST /v1/execute through %s: %d %s", o[0].Name, r.status, r.body)
		}
	}

	// A server-sent event stream through a replica that does not own its session.
	s0 := sessions[0]
	events := stream(t, others(s0.owner)[0].API, s0.id, "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.1)\nprint(x)", nil)
	if got := events["stdout"]; got != fmt.Sprintf("0\n1\n2\n%d\n", s0.n) || events["result"] == "" || events["error"] != "" {
		t.Errorf("stream through a non-owner: %v", events)
	}

	// An E2B sandbox made on r0, used through r1 (data plane) and r2 (control plane).
	sbx := e2bCreate(t, rs[0])
	if out := e2bRun(t, rs[1], sbx, "y = 6 * 7\nprint(y)"); out.status != 200 || ndjsonStdout(out.body) != "42\n" {
		t.Errorf("E2B execute through r1 in a sandbox of r0: %d %s", out.status, out.body)
	}
	if r := call(t, "GET", rs[2].E2B+"/sandboxes/"+sbx.id, "", "X-API-Key", key); r.status != 200 || !bytes.Contains(r.body, []byte(sbx.id)) {
		t.Errorf("E2B GET /sandboxes/{id} through r2: %d %s", r.status, r.body)
	}
	sbx2 := e2bCreate(t, rs[2]) // lost with r2

	// An MCP session: each request goes to the next replica, so that the session
	// opened on one is used through all.
	rr := &roundRobin{alive: isAlive}
	for _, r := range rs {
		rr.targets = append(rr.targets, r)
	}
	mcpClient := sdk.NewClient(&sdk.Implementation{Name: "cluster-test", Version: "1"}, nil)
	cs, err := mcpClient.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: rs[0].API + "/mcp", HTTPClient: &http.Client{Transport: rr},
		DisableStandaloneSSE: true}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatalf("MCP connect: %v", err)
	}
	defer cs.Close()
	mcpOwner := cluster.Owner(cs.ID())
	t.Logf("MCP session %s on %s; sessions %v", cs.ID(), mcpOwner, sessions)
	if mcpOwner == "" {
		t.Fatalf("MCP session id %q names no replica", cs.ID())
	}
	mcpSession := mcpTool(t, cs, "create_session", map[string]any{})["session_id"].(string)
	if out := mcpTool(t, cs, "execute_python", map[string]any{"code": "z = 5\nprint(z * 3)", "session_id": mcpSession}); !strings.Contains(fmt.Sprint(out["stdout"]), "15") {
		t.Errorf("MCP execute_python: %v", out)
	}
	if rr.sent.Load() < 4 {
		t.Errorf("the MCP client sent %d requests, want them spread over the replicas", rr.sent.Load())
	}

	// r2 dies in the middle of an execution forwarded to it.
	var lost *sess
	for _, s := range sessions {
		if s.owner == "r2" {
			lost = s
			break
		}
	}
	via := others("r2")[0]
	started := make(chan struct{})
	streamDone := make(chan map[string]string, 1)
	go func() {
		streamDone <- streamNoFatal(via.API, lost.id, "import time\nprint('started', flush=True)\ntime.sleep(300)", started)
	}()
	select {
	case <-started:
	case ev := <-streamDone:
		t.Fatalf("the execution on r2 ended before it was killed: %v", ev)
	}
	if err := rs[2].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = rs[2].Wait(ctx)
	died("r2")
	// The stream was under way: its end is cut, without its result event.
	if ev := <-streamDone; ev["result"] != "" || !strings.HasPrefix(ev["stdout"], "started") || ev["cut"] == "" {
		t.Errorf("the stream of the killed replica: %v, want it cut after its start", ev)
	}

	for _, s := range sessions {
		for _, o := range others(s.owner) {
			if s.owner == "r2" {
				r := call(t, "POST", o.API+"/v1/sessions/"+s.id+"/execute", `{"code":"print(x)"}`)
				if r.status != 410 || errorCode(r.body) != "session_lost" || !bytes.Contains(r.body, []byte(s.id)) {
					t.Errorf("a session of the killed r2 through %s: %d %s, want 410 session_lost", o.Name, r.status, r.body)
				}
				continue
			}
			// The others keep their state, through either live replica.
			if got := execOut(t, o.API, s.id, "print(x)"); got != fmt.Sprintf("%d\n", s.n) {
				t.Errorf("%s of %s through %s after r2 died: stdout %q", s.id, s.owner, o.Name, got)
			}
		}
		if s.owner != "r2" {
			if got := execOut(t, rs[mustIndex(s.owner)].API, s.id, "print(x)"); got != fmt.Sprintf("%d\n", s.n) {
				t.Errorf("%s through its owner after r2 died: stdout %q", s.id, got)
			}
		}
	}
	if out := e2bRun(t, rs[1], sbx2, "print(1)"); out.status != 404 || !bytes.Contains(out.body, []byte("session_lost")) {
		t.Errorf("E2B sandbox of the killed r2: %d %s, want 404 session_lost", out.status, out.body)
	}
	if out := e2bRun(t, rs[1], sbx, "print(y)"); out.status != 200 || ndjsonStdout(out.body) != "42\n" {
		t.Errorf("E2B sandbox of r0 after r2 died: %d %s", out.status, out.body)
	}
	if mcpOwner != "r2" {
		if out := mcpTool(t, cs, "execute_python", map[string]any{"code": "print(z)", "session_id": mcpSession}); !strings.Contains(fmt.Sprint(out["stdout"]), "5") {
			t.Errorf("MCP session on %s after r2 died: %v", mcpOwner, out)
		}
	}
	for _, r := range rs[:2] {
		if r := call(t, "POST", r.API+"/v1/sessions", `{}`); r.status != 200 && r.status != 201 {
			t.Errorf("a new session after r2 died: %d %s", r.status, r.body)
		}
	}

	// r1 drains on SIGTERM: new work is refused, what runs finishes, then it exits.
	var held *sess
	for _, s := range sessions {
		if s.owner == "r1" {
			held = s
			break
		}
	}
	started = make(chan struct{})
	streamDone = make(chan map[string]string, 1)
	go func() {
		streamDone <- streamNoFatal(rs[0].API, held.id, "import time\ntry:\n    print('started', flush=True)\n    time.sleep(300)\nexcept KeyboardInterrupt:\n    print('finished')", started)
	}()
	select {
	case <-started:
	case ev := <-streamDone:
		t.Fatalf("the execution on r1 ended before the drain: %v", ev)
	}
	if err := rs[1].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		r := call(t, "GET", rs[1].API+"/readyz", "")
		if r.status == 503 && errorCode(r.body) == "draining" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("r1's /readyz after SIGTERM: %d %s, want 503 draining", r.status, r.body)
		}
	}
	if r := call(t, "POST", rs[1].API+"/v1/sessions", `{}`); r.status != 503 || errorCode(r.body) != "draining" || r.header.Get("Retry-After") == "" {
		t.Errorf("a new session on the draining r1: %d %s (Retry-After %q), want 503 draining", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := call(t, "POST", rs[1].API+"/v1/execute", `{"code":"print(1)"}`); r.status != 503 || errorCode(r.body) != "draining" {
		t.Errorf("a stateless execution on the draining r1: %d %s, want 503 draining", r.status, r.body)
	}
	// The running execution ends (here: interrupted, and it prints) and answers.
	if r := call(t, "POST", rs[0].API+"/v1/sessions/"+held.id+"/interrupt", ""); r.status != 200 {
		t.Errorf("interrupt through r0: %d %s", r.status, r.body)
	}
	if ev := <-streamDone; ev["stdout"] != "started\nfinished\n" || ev["result"] == "" {
		t.Errorf("the execution running when r1 began to drain: %v, want it finished", ev)
	}
	if err := rs[1].Wait(ctx); err != nil {
		t.Errorf("r1 after its drain: %v, want exit 0", err)
	}
	died("r1")
	if r := call(t, "GET", rs[0].API+"/v1/sessions/"+held.id, ""); r.status != 410 || errorCode(r.body) != "session_lost" {
		t.Errorf("a session of the drained r1: %d %s, want 410 session_lost", r.status, r.body)
	}
}

func mustIndex(name string) int {
	var i int
	fmt.Sscanf(name, "r%d", &i)
	return i
}

// stream runs code in session id through api with "stream": true and returns the
// text of its events by name; started, if not nil, is closed at the first stdout.
func stream(t *testing.T, api, id, code string, started chan struct{}) map[string]string {
	t.Helper()
	ev := streamNoFatal(api, id, code, started)
	if ev["transport"] != "" {
		t.Fatalf("stream through %s: %s", api, ev["transport"])
	}
	return ev
}

func streamNoFatal(api, id, code string, started chan struct{}) map[string]string {
	got := map[string]string{}
	body, _ := json.Marshal(map[string]any{"code": code, "stream": true})
	req, _ := http.NewRequest("POST", api+"/v1/sessions/"+id+"/execute", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		got["transport"] = err.Error()
		return got
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		data, _ := io.ReadAll(resp.Body)
		got["transport"] = fmt.Sprintf("%d %s", resp.StatusCode, data)
		return got
	}
	sc := bufio.NewScanner(resp.Body)
	name := ""
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			name = v
			continue
		}
		v, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if name == "stdout" || name == "stderr" {
			var text struct {
				Text string `json:"text"`
			}
			_ = json.Unmarshal([]byte(v), &text)
			got[name] += text.Text
			if started != nil && name == "stdout" {
				close(started)
				started = nil
			}
			continue
		}
		got[name] += v
	}
	if err := sc.Err(); err != nil {
		got["cut"] = err.Error()
	}
	return got
}

// ndjsonStdout joins the texts of the stdout lines of an E2B execute reply, which
// sends each write of the program as it comes.
func ndjsonStdout(body []byte) string {
	var out strings.Builder
	for line := range bytes.Lines(body) {
		var ev struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if json.Unmarshal(line, &ev) == nil && ev.Type == "stdout" {
			out.WriteString(ev.Text)
		}
	}
	return out.String()
}

type e2bSandbox struct{ id, token string }

func e2bCreate(t *testing.T, r *testenv.Replica) e2bSandbox {
	t.Helper()
	rep := call(t, "POST", r.E2B+"/sandboxes", `{"templateID":"code-interpreter-v1","timeout":600}`, "X-API-Key", key)
	var s struct {
		SandboxID string `json:"sandboxID"`
		Token     string `json:"envdAccessToken"`
	}
	if json.Unmarshal(rep.body, &s) != nil || rep.status != 201 || cluster.Owner(s.SandboxID) != r.Name {
		t.Fatalf("E2B create through %s: %d %s", r.Name, rep.status, rep.body)
	}
	return e2bSandbox{s.SandboxID, s.Token}
}

// e2bRun runs code on sandbox's code interpreter (its data plane) through r.
func e2bRun(t *testing.T, r *testenv.Replica, sbx e2bSandbox, code string) reply {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"code": code})
	return call(t, "POST", r.E2B+"/execute", string(body), "E2b-Sandbox-Id", sbx.id, "E2b-Sandbox-Port", "49999", "X-Access-Token", sbx.token)
}

// roundRobin sends each request to the next live replica, with the key.
type roundRobin struct {
	targets []*testenv.Replica
	alive   func(string) bool
	mu      sync.Mutex
	next    int
	sent    atomic.Int64
}

func (rr *roundRobin) RoundTrip(req *http.Request) (*http.Response, error) {
	rr.mu.Lock()
	var target *testenv.Replica
	for range rr.targets {
		r := rr.targets[rr.next%len(rr.targets)]
		rr.next++
		if rr.alive(r.Name) {
			target = r
			break
		}
	}
	rr.mu.Unlock()
	u, _ := url.Parse(target.API)
	req = req.Clone(req.Context())
	req.URL.Host, req.Host = u.Host, u.Host
	req.Header.Set("Authorization", "Bearer "+key)
	rr.sent.Add(1)
	return http.DefaultTransport.RoundTrip(req)
}

// mcpTool calls tool with args and returns its structured content.
func mcpTool(t *testing.T, cs *sdk.ClientSession, tool string, args map[string]any) map[string]any {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("MCP %s: %v", tool, err)
	}
	if res.IsError {
		t.Fatalf("MCP %s: error %v", tool, res.Content)
	}
	out, _ := res.StructuredContent.(map[string]any)
	if out == nil {
		data, _ := json.Marshal(res.StructuredContent)
		_ = json.Unmarshal(data, &out)
	}
	return out
}
