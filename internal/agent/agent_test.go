package agent

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	sandboxtest.Close()
	os.Exit(code)
}

// testAgent returns an agent and a sandbox on a real warm sandbox runner.
func testAgent(t *testing.T) (*Agent, *RunnerSandbox) {
	t.Helper()
	sb := &RunnerSandbox{Runner: sandboxtest.Shared(t), Limits: job.DefaultLimits()}
	t.Cleanup(sb.Close)
	return &Agent{MaxSteps: 5}, sb
}

// fakeModel answers with scripted messages and records what it was sent. It is the
// one fake of these tests: there is no model here.
type fakeModel struct {
	turns []llm.Message
	got   []*llm.ChatRequest
}

func (f *fakeModel) Chat(ctx context.Context, req *llm.ChatRequest) (*llm.ChatResponse, error) {
	cp := *req
	cp.Messages = append([]llm.Message{}, req.Messages...)
	f.got = append(f.got, &cp)
	if len(f.got) > len(f.turns) {
		return nil, errors.New("fake model: script exhausted")
	}
	m := f.turns[len(f.got)-1]
	m.Role = "assistant"
	finish := "stop"
	if len(m.ToolCalls) > 0 {
		finish = "tool_calls"
	}
	return &llm.ChatResponse{ID: "chatcmpl-test", Object: "chat.completion", Model: req.Model,
		Choices: []llm.Choice{{Message: m, FinishReason: finish}},
		Usage:   &llm.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}}, nil
}

func (f *fakeModel) ChatStream(ctx context.Context, req *llm.ChatRequest) (ChunkStream, error) {
	return nil, errors.New("fake model: no streaming")
}

func answer(text string) llm.Message { return llm.Message{Content: llm.TextContent(text)} }

func codeCall(id, code string) llm.Message {
	args, _ := json.Marshal(map[string]string{"code": code})
	return llm.Message{ToolCalls: []llm.ToolCall{{ID: id, Type: "function", Function: &llm.FunctionCall{Name: ToolName, Arguments: string(args)}}}}
}

func userRequest(text string, tools ...llm.Tool) *llm.ChatRequest {
	if len(tools) == 0 {
		tools = []llm.Tool{{Type: llm.ToolTypeCodeExecution}}
	}
	return &llm.ChatRequest{Model: "test-model", Messages: []llm.Message{{Role: "user", Content: llm.TextContent(text)}}, Tools: tools}
}

func codeEntries(t *testing.T, resp *llm.ChatResponse) []*llm.CodeExecution {
	t.Helper()
	var out []*llm.CodeExecution
	for _, tc := range resp.Choices[0].Message.ToolCalls {
		if tc.Type == llm.ToolTypeCodeExecution {
			out = append(out, tc.CodeExecution)
		}
	}
	return out
}

func TestCodeThenAnswer(t *testing.T) {
	a, sb := testAgent(t)
	m := &fakeModel{turns: []llm.Message{codeCall("call_1", "print(2 + 2)"), answer("The answer is 4.")}}
	resp, err := a.Complete(context.Background(), m, userRequest("What is 2+2?"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Message.Text(); got != "The answer is 4." {
		t.Errorf("content %q", got)
	}
	entries := codeEntries(t, resp)
	if len(entries) != 1 || entries[0].Code != "print(2 + 2)" || entries[0].Output != "4\n" || entries[0].Status != "ok" {
		t.Fatalf("code_execution entries %+v", entries)
	}
	if resp.Choices[0].FinishReason != "stop" || resp.Usage.TotalTokens != 30 {
		t.Errorf("finish %q usage %+v, want stop and the two calls summed", resp.Choices[0].FinishReason, resp.Usage)
	}
	// What the upstream saw: a function tool, the hint, then the tool result.
	first := m.got[0]
	if len(first.Tools) != 1 || first.Tools[0].Type != "function" || first.Tools[0].Function.Name != ToolName {
		t.Errorf("upstream tools %+v", first.Tools)
	}
	if first.Messages[0].Role != "system" || !strings.Contains(first.Messages[0].Text(), "code_execution") {
		t.Errorf("no system hint first: %+v", first.Messages[0])
	}
	second := m.got[1].Messages
	last := second[len(second)-1]
	if last.Role != "tool" || last.ToolCallID != "call_1" || !strings.Contains(last.Text(), "stdout:\n4\n") {
		t.Errorf("tool message %+v", last)
	}
}

func TestErrorThenFix(t *testing.T) {
	a, sb := testAgent(t)
	m := &fakeModel{turns: []llm.Message{
		codeCall("c1", "x = 10\nprint(y)"),
		codeCall("c2", "y = x * 2\nprint(y)"), // state from the first call persists
		answer("y is 20"),
	}}
	resp, err := a.Complete(context.Background(), m, userRequest("double x"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	entries := codeEntries(t, resp)
	if len(entries) != 2 || entries[0].Status != "error" || entries[1].Output != "20\n" {
		t.Fatalf("entries %+v", entries)
	}
	toolMsg := m.got[1].Messages[len(m.got[1].Messages)-1].Text()
	if !strings.Contains(toolMsg, "NameError: name 'y' is not defined") || !strings.Contains(toolMsg, "status: error") {
		t.Errorf("the model was not shown the traceback: %q", toolMsg)
	}
}

type fakeJudge struct {
	verdict Verdict
	err     error
	seen    []string
}

func (j *fakeJudge) Check(ctx context.Context, code string, network *egress.Policy) (Verdict, error) {
	j.seen = append(j.seen, code)
	return j.verdict, j.err
}

func TestJudgeRefusesAndFailsClosed(t *testing.T) {
	for _, tt := range []struct {
		name  string
		judge *fakeJudge
	}{
		{"unsafe verdict", &fakeJudge{verdict: Verdict{Safe: false, Reason: "lists the file system"}}},
		{"judge error", &fakeJudge{err: errors.New("judge unreachable")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, sb := testAgent(t)
			a.Judge = tt.judge
			m := &fakeModel{turns: []llm.Message{
				codeCall("c1", "open('/work/ran.txt', 'w').write('ran')"),
				answer("I cannot run that; here is the code to run locally."),
			}}
			resp, err := a.Complete(context.Background(), m, userRequest("list my directory"), sb, nil)
			if err != nil {
				t.Fatal(err)
			}
			entries := codeEntries(t, resp)
			if len(entries) != 1 || entries[0].Status != "rejected" || !strings.HasPrefix(entries[0].Output, "Rejected: ") {
				t.Fatalf("entries %+v", entries)
			}
			toolMsg := m.got[1].Messages[len(m.got[1].Messages)-1].Text()
			if !strings.Contains(toolMsg, "NOT run") {
				t.Errorf("model not told of the refusal: %q", toolMsg)
			}
			if len(tt.judge.seen) != 1 {
				t.Errorf("judge saw %d programs", len(tt.judge.seen))
			}
		})
	}
}

func TestClientToolMixed(t *testing.T) {
	a, sb := testAgent(t)
	search := llm.Tool{Type: "function", Function: &llm.FunctionDef{Name: "search", Parameters: json.RawMessage(`{"type":"object"}`)}}
	m := &fakeModel{turns: []llm.Message{
		codeCall("c1", "result = 6 * 7"),
		{ToolCalls: []llm.ToolCall{{ID: "s1", Type: "function", Function: &llm.FunctionCall{Name: "search", Arguments: `{"q":"bitcoin"}`}}}},
	}}
	req := userRequest("search and compute", llm.Tool{Type: "code_interpreter"}, search)
	resp, err := a.Complete(context.Background(), m, req, sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.Choices[0].Message
	if resp.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 2 {
		t.Fatalf("finish %q tool calls %+v", resp.Choices[0].FinishReason, msg.ToolCalls)
	}
	if msg.ToolCalls[0].Type != "code_execution" || msg.ToolCalls[0].CodeExecution.Output != "42" ||
		msg.ToolCalls[1].Function == nil || msg.ToolCalls[1].Function.Name != "search" {
		t.Errorf("tool calls %+v", msg.ToolCalls)
	}
	if len(m.got[0].Tools) != 2 {
		t.Errorf("upstream got %d tools, want search and the code tool", len(m.got[0].Tools))
	}

	// The client's next request carries our reply and its tool result; the upstream
	// must see the code call as a function call answered by its output.
	next := req.Clone()
	next.Messages = append(next.Messages, msg, llm.Message{Role: "tool", ToolCallID: "s1", Content: llm.TextContent("price: 1")})
	m2 := &fakeModel{turns: []llm.Message{answer("done")}}
	if _, err := a.Complete(context.Background(), m2, next, sb, nil); err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, mm := range m2.got[0].Messages {
		roles = append(roles, mm.Role)
	}
	if strings.Join(roles, ",") != "system,user,assistant,tool,tool" {
		t.Fatalf("history sent upstream has roles %v", roles)
	}
	asst := m2.got[0].Messages[2]
	if asst.ToolCalls[0].Type != "function" || asst.ToolCalls[0].Function.Name != ToolName || m2.got[0].Messages[3].ToolCallID != "c1" {
		t.Errorf("code execution not expanded for the upstream: %+v", asst.ToolCalls)
	}
}

func TestStepLimit(t *testing.T) {
	a, sb := testAgent(t)
	a.MaxSteps = 2
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "1"), codeCall("c2", "2"), codeCall("c3", "3")}}
	resp, err := a.Complete(context.Background(), m, userRequest("loop"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].FinishReason != "length" || !strings.Contains(resp.Choices[0].Message.Text(), "steps") || len(m.got) != 2 {
		t.Fatalf("finish %q content %q after %d calls", resp.Choices[0].FinishReason, resp.Choices[0].Message.Text(), len(m.got))
	}
}

func TestAttachedFiles(t *testing.T) {
	a, sb := testAgent(t)
	csv := base64.StdEncoding.EncodeToString([]byte("city,temp\nOslo,4\nRome,18\n"))
	req := userRequest("average temperature?")
	req.Messages[0].Content = llm.PartsContent(
		llm.ContentPart{Type: "text", Text: "average temperature?"},
		llm.ContentPart{Type: "file", File: &llm.File{Filename: "temps.csv", FileData: "data:text/csv;base64," + csv}},
	)
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "import pandas as pd\nprint(pd.read_csv('temps.csv').temp.mean())"), answer("11.0")}}
	resp, err := a.Complete(context.Background(), m, req, sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e := codeEntries(t, resp); len(e) != 1 || e[0].Output != "11.0\n" {
		t.Fatalf("entries %+v", e)
	}
	user := m.got[0].Messages[1]
	if !strings.Contains(user.Text(), "temps.csv") || strings.Contains(user.Text(), csv) {
		t.Errorf("the model should be told the file's name, not sent its bytes: %q", user.Text())
	}
}

// TestBadRequests: what the client must fix is refused with a stable code, before
// the model or the sandbox is asked anything.
func TestBadRequests(t *testing.T) {
	file := func(f llm.File) *llm.ChatRequest {
		req := userRequest("x")
		req.Messages[0].Content = llm.PartsContent(llm.ContentPart{Type: "file", File: &f})
		return req
	}
	for _, tc := range []struct {
		name string
		req  *llm.ChatRequest
		code string
	}{
		{"client function named " + ToolName, userRequest("x", llm.Tool{Type: "code_execution"}, llm.Tool{Type: "function", Function: &llm.FunctionDef{Name: ToolName}}), "invalid_tools"},
		{"bad base64", file(llm.File{Filename: "a.csv", FileData: "data:text/csv;base64,%%%"}), "invalid_file"},
		{"data URL not base64", file(llm.File{Filename: "a.csv", FileData: "data:text/csv,a,b"}), "invalid_file"},
		{"file_id", file(llm.File{FileID: "file-abc123"}), "file_id_unsupported"},
		{"file part without data", file(llm.File{Filename: "a.csv"}), "invalid_file"},
		{"file name with a NUL", file(llm.File{Filename: "a\x00b.csv", FileData: "eA=="}), "invalid_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := &fakeSandbox{t: t, forbidden: true}
			_, err := (&Agent{}).Complete(context.Background(), &fakeModel{}, tc.req, sb, nil)
			var re *RequestError
			if !errors.As(err, &re) || re.Code != tc.code || !errors.Is(err, ErrBadRequest) {
				t.Errorf("Complete = %v, want a RequestError with code %q", err, tc.code)
			}
		})
	}
}

// TestBadFileNamesItsPart: the error names the part as the client numbered it, and
// no file of a request with a bad one is written.
func TestBadFileNamesItsPart(t *testing.T) {
	req := &llm.ChatRequest{Model: "m", Tools: []llm.Tool{{Type: "code_execution"}}, Messages: []llm.Message{
		{Role: "system", Content: llm.TextContent("be brief")},
		{Role: "user", Content: llm.PartsContent(
			llm.ContentPart{Type: "file", File: &llm.File{Filename: "good.csv", FileData: "eA=="}},
			llm.ContentPart{Type: "file", File: &llm.File{FileID: "file-1"}})},
	}}
	_, err := (&Agent{}).Complete(context.Background(), &fakeModel{}, req, &fakeSandbox{t: t, forbidden: true}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "messages[1].content[1]: ") {
		t.Errorf("Complete = %v, want an error naming messages[1].content[1]", err)
	}
	if req.Messages[1].Parts()[0].File == nil {
		t.Errorf("the client's request was changed: %+v", req.Messages[1])
	}
}

// fakeSandbox stands in for the sandbox where a test is about the loop, not the
// code: its runs answer with results in order, and the ones marked stop end its
// interpreter, as a limit does. It needs no root.
type fakeSandbox struct {
	t         *testing.T
	forbidden bool // reaching the sandbox fails the test
	started   bool
	starts    int
	results   []*job.Result
	stops     []bool
	ran       []string
	files     map[string]string
}

func (f *fakeSandbox) Start(ctx context.Context) error {
	if f.forbidden {
		f.t.Errorf("the sandbox was started; the request should have been refused")
	}
	if !f.started {
		f.started = true
		f.starts++
	}
	return nil
}

func (f *fakeSandbox) Started() bool { return f.started }

func (f *fakeSandbox) ID() string {
	if !f.started {
		return ""
	}
	return fmt.Sprintf("sess_fake_%d", f.starts)
}

func (f *fakeSandbox) Run(ctx context.Context, code string) (*job.Result, error) {
	f.Start(ctx)
	i := len(f.ran)
	f.ran = append(f.ran, code)
	if i >= len(f.results) {
		return nil, errors.New("fake sandbox: no result scripted")
	}
	if i < len(f.stops) && f.stops[i] {
		f.started = false
	}
	return f.results[i], nil
}

func (f *fakeSandbox) WriteFile(path string, data []byte) error {
	f.Start(context.Background())
	if f.files == nil {
		f.files = map[string]string{}
	}
	f.files[path] = string(data)
	return nil
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func ok(stdout string) *job.Result {
	return &job.Result{Status: job.StatusOK, Stdout: stdout}
}

// TestUnknownTool: a call to a tool the client never declared is not handed to the
// client: the model is told the tool does not exist, and the loop goes on.
func TestUnknownTool(t *testing.T) {
	search := llm.Tool{Type: "function", Function: &llm.FunctionDef{Name: "search"}}
	m := &fakeModel{turns: []llm.Message{
		{ToolCalls: []llm.ToolCall{{ID: "w1", Type: "function", Function: &llm.FunctionCall{Name: "web_browse", Arguments: `{"url":"x"}`}}}},
		answer("I cannot browse; here is what I know."),
	}}
	sb := &fakeSandbox{t: t, forbidden: true}
	resp, err := (&Agent{}).Complete(context.Background(), m, userRequest("browse x", llm.Tool{Type: "code_execution"}, search), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.Choices[0]
	if c.FinishReason != "stop" || len(c.Message.ToolCalls) != 0 || c.Message.Text() != "I cannot browse; here is what I know." {
		t.Fatalf("reply finish %q calls %+v content %q, want the model's answer and no call", c.FinishReason, c.Message.ToolCalls, c.Message.Text())
	}
	if len(m.got) != 2 {
		t.Fatalf("%d model calls, want 2", len(m.got))
	}
	last := m.got[1].Messages[len(m.got[1].Messages)-1]
	want := `error: there is no tool named "web_browse"; the tools you can call are: code_execution, search.`
	if last.Role != "tool" || last.ToolCallID != "w1" || last.Text() != want {
		t.Errorf("the model was told %+v, want a tool message %q", last, want)
	}
}

// TestStateHint: the model is told the truth about the sandbox's state — new in
// this request, or going on from earlier ones — in the hint and the tool.
func TestStateHint(t *testing.T) {
	for _, resumed := range []bool{false, true} {
		m := &fakeModel{turns: []llm.Message{answer("ok")}}
		sb := &fakeSandbox{t: t, started: resumed}
		if _, err := (&Agent{}).Complete(context.Background(), m, userRequest("x = 1 earlier; now print x"), sb, nil); err != nil {
			t.Fatal(err)
		}
		hint := m.got[0].Messages[0].Text()
		if resumed != strings.Contains(hint, "what code earlier in this conversation defined is still there") ||
			resumed == strings.Contains(hint, "The sandbox is new in this request") {
			t.Errorf("resumed=%v: hint %q", resumed, hint)
		}
		for _, tool := range m.got[0].Tools {
			if strings.Contains(tool.Function.Description+string(tool.Function.Parameters), "conversation") {
				t.Errorf("the tool claims state across the conversation: %+v", tool.Function)
			}
		}
	}
}

// TestLimitStopsInterpreter: when a limit stops the interpreter, the model is told
// in that same result that its variables are gone, and its next call starts a
// fresh interpreter.
func TestLimitStopsInterpreter(t *testing.T) {
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "import time; time.sleep(99)"), codeCall("c2", "x = 1"), answer("done")}}
	sb := &fakeSandbox{t: t,
		results: []*job.Result{{Status: job.StatusTimeout, Error: &job.Error{Name: "Timeout", Message: "the execution took longer than 1s"}}, ok("")},
		stops:   []bool{true}}
	resp, err := (&Agent{}).Complete(context.Background(), m, userRequest("sleep"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	told := m.got[1].Messages[len(m.got[1].Messages)-1].Text()
	if !strings.Contains(told, "status: timeout") || !strings.Contains(told, "The interpreter ended with this run") {
		t.Errorf("after the timeout the model was told %q", told)
	}
	if sb.starts != 2 {
		t.Errorf("%d interpreters started, want 2", sb.starts)
	}
	e := codeEntries(t, resp)
	if len(e) != 2 || e[0].ContainerID != "sess_fake_1" || e[1].ContainerID != "sess_fake_2" {
		t.Errorf("entries %+v, want runs in sess_fake_1 then sess_fake_2", e)
	}
}

// TestEntries: the client gets what the model saw, field by field, with a status
// on every entry, including code that did not run.
func TestEntries(t *testing.T) {
	v := "42"
	m := &fakeModel{turns: []llm.Message{
		codeCall("c1", "print('computing')\nimport sys; print('careful', file=sys.stderr)\n6 * 7"),
		{ToolCalls: []llm.ToolCall{{ID: "c2", Type: "function", Function: &llm.FunctionCall{Name: ToolName, Arguments: `{"code": 1}`}}}},
		answer("42"),
	}}
	sb := &fakeSandbox{t: t, results: []*job.Result{{Status: job.StatusOK, Stdout: "computing\n", Stderr: "careful\n", Result: &v,
		Files: []job.FileInfo{{Path: "out.csv", Size: 3}}}}}
	resp, err := (&Agent{}).Complete(context.Background(), m, userRequest("6*7"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := codeEntries(t, resp)
	if len(e) != 2 {
		t.Fatalf("entries %+v", e)
	}
	want := &llm.CodeExecution{Code: "print('computing')\nimport sys; print('careful', file=sys.stderr)\n6 * 7",
		Output: "computing\ncareful\n42", Status: "ok", Stdout: "computing\n", Stderr: "careful\n", Result: &v,
		Files: []llm.CodeFile{{Path: "out.csv", Size: 3}}, ContainerID: "sess_fake_1"}
	if !reflect.DeepEqual(e[0], want) {
		t.Errorf("entry of the run:\n got %s\nwant %s", asJSON(e[0]), asJSON(want))
	}
	if e[1].Status != "error" || e[1].Error == nil || e[1].Error.Name != "InvalidArguments" {
		t.Errorf("entry of the bad call %+v, want status error and error InvalidArguments", e[1])
	}
	told := m.got[1].Messages[len(m.got[1].Messages)-1].Text()
	for _, s := range []string{"stdout:\ncomputing\n", "stderr:\ncareful\n", "result:\n42\n", "files written: out.csv (3 bytes)"} {
		if !strings.Contains(told, s) {
			t.Errorf("the model was told %q, without %q", told, s)
		}
	}
	// A client that sends the reply back as history: the model sees the same again.
	next := userRequest("again")
	next.Messages = append(next.Messages, resp.Choices[0].Message, llm.Message{Role: "user", Content: llm.TextContent("and?")})
	m2 := &fakeModel{turns: []llm.Message{answer("ok")}}
	if _, err := (&Agent{}).Complete(context.Background(), m2, next, &fakeSandbox{t: t}, nil); err != nil {
		t.Fatal(err)
	}
	if again := m2.got[0].Messages[3].Text(); again != told {
		t.Errorf("from the history the model was told %q, want %q as the first time", again, told)
	}
}

// TestEntryJSON: a finished entry has every field, empty ones included, the
// fragment announcing a run only its code, status and container.
func TestEntryJSON(t *testing.T) {
	for _, tc := range []struct {
		e    llm.CodeExecution
		want string
	}{
		{llm.CodeExecution{Code: "1", Status: llm.StatusRunning, ContainerID: "sess_1"}, `{"code":"1","status":"running","container_id":"sess_1"}`},
		// One a client wrote in its history, without a status: passed on as it came.
		{llm.CodeExecution{Code: "1", Output: "1\n"}, `{"code":"1","output":"1\n"}`},
		{llm.CodeExecution{Code: "x=1", Output: "", Status: "ok"},
			`{"code":"x=1","output":"","status":"ok","stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"result":null,"error":null,"images":[],"files":[]}`},
	} {
		got, err := json.Marshal(tc.e)
		if err != nil || string(got) != tc.want {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tc.e, got, err, tc.want)
		}
	}
}

// TestToolMessageFair: however long stdout is, the model sees stderr, the result
// and the error, each part cut to a fair share that keeps its start and end.
func TestToolMessageFair(t *testing.T) {
	v := "'the value'"
	res := &job.Result{Status: job.StatusError, Stdout: "first line\n" + strings.Repeat("x", 50000) + "\nlast line\n",
		Stderr: "Traceback (most recent call last):\nValueError: bad\n", Result: &v,
		Error: &job.Error{Name: "ValueError", Message: "bad"}}
	got := toolMessage(res, 2000)
	for _, s := range []string{"status: error\n", "first line", "last line", "bytes cut: print less", "ValueError: bad\n", "result:\n'the value'\n", "error: ValueError: bad\n"} {
		if !strings.Contains(got, s) {
			t.Errorf("toolMessage lacks %q:\n%s", s, got)
		}
	}
	if len(got) > 2200 {
		t.Errorf("toolMessage is %d bytes for a limit of 2000", len(got))
	}
	if small := toolMessage(ok("hi\n"), 2000); small != "status: ok\nstdout:\nhi\n" {
		t.Errorf("toolMessage of a small run = %q", small)
	}
}

// TestAttachmentNames: a file without a name gets one from its kind, content and
// type; two different files never share a name; a resumed sandbox is not sent the
// files of messages it already has.
func TestAttachmentNames(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	png := "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
	parts := []llm.ContentPart{
		{Type: "file", File: &llm.File{FileData: b64("a,b\n1,2\n")}},                            // raw base64, no type: sniffed
		{Type: "file", File: &llm.File{FileData: "data:text/csv;base64," + b64("x\n")}},         // typed
		{Type: "image_url", ImageURL: &llm.ImageURL{URL: "data:image/png;base64," + b64(png)}},  // an image
		{Type: "file", File: &llm.File{Filename: "data.csv", FileData: b64("one")}},             // named
		{Type: "file", File: &llm.File{Filename: `C:\Users\me\data.csv`, FileData: b64("two")}}, // same name, other file
		{Type: "file", File: &llm.File{Filename: "data.csv", FileData: b64("one")}},             // the first again
		{Type: "image_url", ImageURL: &llm.ImageURL{URL: "https://example.com/cat.png"}},        // not a file
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return fmt.Sprintf("%x", h[:4]) }
	want := map[string]string{
		"file-" + sum("a,b\n1,2\n") + ".txt": "a,b\n1,2\n",
		"file-" + sum("x\n") + ".csv":        "x\n",
		"image-" + sum(png) + ".png":         png,
		"data.csv":                           "one",
		"data-2.csv":                         "two",
	}
	req := userRequest("look")
	req.Messages[0].Content = llm.PartsContent(parts...)
	m := &fakeModel{turns: []llm.Message{answer("seen")}}
	sb := &fakeSandbox{t: t}
	if _, err := (&Agent{}).Complete(context.Background(), m, req, sb, nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sb.files, want) {
		t.Errorf("files placed:\n got %q\nwant %q", sb.files, want)
	}
	told := m.got[0].Messages[1].Text()
	for name := range want {
		if !strings.Contains(told, "[The file "+name+" ") {
			t.Errorf("the model was not told of %s: %q", name, told)
		}
	}

	// The next request names the same sandbox, with the history: only the new
	// message's file is placed; the model is still told of the earlier ones.
	next := &llm.ChatRequest{Model: "test-model", Tools: req.Tools, Messages: []llm.Message{
		req.Messages[0],
		{Role: "assistant", Content: llm.TextContent("seen")},
		{Role: "user", Content: llm.PartsContent(llm.ContentPart{Type: "file", File: &llm.File{Filename: "new.txt", FileData: b64("3")}})},
	}}
	sb.files = nil
	m = &fakeModel{turns: []llm.Message{answer("seen")}}
	if _, err := (&Agent{}).Complete(context.Background(), m, next, sb, nil); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"new.txt": "3"}; !reflect.DeepEqual(sb.files, want) {
		t.Errorf("files placed in the resumed sandbox: %q, want %q", sb.files, want)
	}
	if !strings.Contains(m.got[0].Messages[1].Text(), "[The file data-2.csv ") {
		t.Errorf("the model was not told of the earlier files: %q", m.got[0].Messages[1].Text())
	}
}

// With a network allowlist, the model is told which hosts it may reach and its code
// runs with the egress proxy; without one, it is told there is no network.
func TestNetworkHintAndProxy(t *testing.T) {
	r := sandboxtest.Shared(t)
	for _, tc := range []struct {
		hosts []string
		hint  string
		out   string // whether the code saw the proxy
	}{
		{nil, "with no network access", "False\n"},
		{[]string{"api.example.com"}, "to these hosts, through a proxy that refuses all others: api.example.com", "True\n"},
	} {
		var policy *egress.Policy
		if tc.hosts != nil {
			policy = &egress.Policy{Allow: tc.hosts}
		}
		a := &Agent{MaxSteps: 3, Network: policy}
		sb := &RunnerSandbox{Runner: r, Limits: job.DefaultLimits(), Network: policy}
		defer sb.Close()
		m := &fakeModel{turns: []llm.Message{codeCall("call_1", `import os; print("HTTPS_PROXY" in os.environ)`), answer("done")}}
		resp, err := a.Complete(context.Background(), m, userRequest("Is there a proxy?"), sb, nil)
		if err != nil {
			t.Fatal(err)
		}
		if hint := m.got[0].Messages[0].Text(); !strings.Contains(hint, tc.hint) {
			t.Errorf("hosts %q: hint %q, want %q in it", tc.hosts, hint, tc.hint)
		}
		if e := codeEntries(t, resp); len(e) != 1 || e[0].Output != tc.out {
			t.Errorf("hosts %q: code_execution entries %+v", tc.hosts, e)
		}
	}
}
