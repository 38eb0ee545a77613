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

	"github.com/codeexec/codeexec/internal/agent/agenttest"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/safety"
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

// fakeSandbox is a sandbox with scripted results, for tests about the loop rather
// than the code.
func fakeSandbox(t *testing.T, results ...*job.Result) *agenttest.Sandbox {
	return &agenttest.Sandbox{T: t, Results: results}
}

// fakeModel answers with scripted messages and records what it was sent. It does
// not stream: the streaming tests use llmtest's upstream.
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

func function(name string) Tool {
	return Tool{Type: ToolTypeFunction, Name: name, Parameters: json.RawMessage(`{"type":"object"}`)}
}

// userRequest asks text with the code tool and the client's tools.
func userRequest(text string, tools ...Tool) *Request {
	return &Request{Model: "test-model", Input: []Item{&Message{Role: "user", Content: Text(text), Source: "messages[0]"}},
		Tools: tools, Code: &CodeTool{}}
}

func executions(res *Result) []*Execution {
	var out []*Execution
	for _, it := range res.Output {
		if e, ok := it.(*Execution); ok {
			out = append(out, e)
		}
	}
	return out
}

func clientCalls(res *Result) []*ToolCall {
	var out []*ToolCall
	for _, it := range res.Output {
		if c, ok := it.(*ToolCall); ok {
			out = append(out, c)
		}
	}
	return out
}

// final is the model's final message.
func final(t *testing.T, res *Result) *Message {
	t.Helper()
	for i := len(res.Output) - 1; i >= 0; i-- {
		if m, ok := res.Output[i].(*Message); ok {
			return m
		}
	}
	t.Fatalf("no message in the output %s", asJSON(res.Output))
	return nil
}

func lastSent(m *fakeModel, call int) llm.Message {
	msgs := m.got[call].Messages
	return msgs[len(msgs)-1]
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestCodeThenAnswer(t *testing.T) {
	a, sb := testAgent(t)
	m := &fakeModel{turns: []llm.Message{codeCall("call_1", "print(2 + 2)"), answer("The answer is 4.")}}
	res, err := a.Complete(context.Background(), m, userRequest("What is 2+2?"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := final(t, res).Content.Text(); got != "The answer is 4." {
		t.Errorf("content %q", got)
	}
	e := executions(res)
	if len(e) != 1 || e[0].Code != "print(2 + 2)" || e[0].Output != "4\n" || e[0].Result.Status != "ok" {
		t.Fatalf("executions %s", asJSON(e))
	}
	if res.Finish != FinishStop || res.Usage.TotalTokens != 30 {
		t.Errorf("finish %q usage %+v, want stop and the two calls summed", res.Finish, res.Usage)
	}
	// What the upstream saw: a function tool, the hint, then the tool result.
	first := m.got[0]
	if len(first.Tools) != 1 || first.Tools[0].Type != "function" || first.Tools[0].Function.Name != ToolName {
		t.Errorf("upstream tools %+v", first.Tools)
	}
	if first.Messages[0].Role != "system" || !strings.Contains(first.Messages[0].Text(), "code_execution") {
		t.Errorf("no system hint first: %+v", first.Messages[0])
	}
	if last := lastSent(m, 1); last.Role != "tool" || last.ToolCallID != "call_1" || !strings.Contains(last.Text(), "stdout:\n4\n") {
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
	res, err := a.Complete(context.Background(), m, userRequest("double x"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := executions(res)
	if len(e) != 2 || e[0].Result.Status != "error" || e[1].Output != "20\n" {
		t.Fatalf("executions %s", asJSON(e))
	}
	toolMsg := lastSent(m, 1).Text()
	if !strings.Contains(toolMsg, "NameError: name 'y' is not defined") || !strings.Contains(toolMsg, "status: error") {
		t.Errorf("the model was not shown the traceback: %q", toolMsg)
	}
}

// TestRunsAndErrorsFedBack: without root, what each run gives is what the model
// is told next, the client gets each run in order, and the usage of every call
// is summed.
func TestRunsAndErrorsFedBack(t *testing.T) {
	m := &fakeModel{turns: []llm.Message{
		codeCall("c1", "print(y)"),
		codeCall("c2", "y = 2\nprint(y)"),
		answer("y is 2"),
	}}
	sb := fakeSandbox(t,
		&job.Result{Status: job.StatusError, Stderr: "Traceback (most recent call last):\nNameError: name 'y' is not defined\n",
			Error: &job.Error{Name: "NameError", Message: "name 'y' is not defined"}},
		agenttest.OK("2\n"))
	res, err := (&Agent{}).Complete(context.Background(), m, userRequest("y?"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sb.Ran(), "|"); got != "print(y)|y = 2\nprint(y)" {
		t.Errorf("ran %q", got)
	}
	told := lastSent(m, 1).Text()
	for _, s := range []string{"status: error\n", "stderr:\nTraceback", "error: NameError: name 'y' is not defined\n"} {
		if !strings.Contains(told, s) {
			t.Errorf("after the error the model was told %q, without %q", told, s)
		}
	}
	if told := lastSent(m, 2); told.ToolCallID != "c2" || told.Text() != "status: ok\nstdout:\n2\n" {
		t.Errorf("after the fix the model was told %+v", told)
	}
	e := executions(res)
	if len(e) != 2 || e[0].ID != "c1" || e[0].Result.Status != job.StatusError || e[1].ID != "c2" || e[1].Output != "2\n" {
		t.Errorf("executions %s", asJSON(e))
	}
	if res.Finish != FinishStop || res.Usage != (Usage{InputTokens: 30, OutputTokens: 15, TotalTokens: 45}) || final(t, res).Content.Text() != "y is 2" {
		t.Errorf("finish %q usage %+v final %s", res.Finish, res.Usage, asJSON(final(t, res)))
	}
}

type fakeJudge struct {
	verdict safety.Verdict
	err     error
	seen    []string
	network *egress.Policy
}

func (j *fakeJudge) Check(ctx context.Context, code string, network *egress.Policy) (safety.Verdict, error) {
	j.seen = append(j.seen, code)
	j.network = network
	return j.verdict, j.err
}

// TestJudgeRefusesAndFailsClosed: code the judge refuses, or fails to judge, does
// not run; the model is told, and the client sees it rejected.
func TestJudgeRefusesAndFailsClosed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		judge  *fakeJudge
		reason string
	}{
		{"unsafe verdict", &fakeJudge{verdict: safety.Verdict{Safe: false, Reason: "lists the file system"}}, "lists the file system"},
		{"judge error", &fakeJudge{err: errors.New("judge unreachable")}, "the safety check failed (judge unreachable), so the code was not run"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeModel{turns: []llm.Message{
				codeCall("c1", "open('/work/ran.txt', 'w').write('ran')"),
				answer("I cannot run that; here is the code to run locally."),
			}}
			sb := fakeSandbox(t)
			res, err := (&Agent{Judge: tt.judge}).Complete(context.Background(), m, userRequest("list my directory"), sb, nil)
			if err != nil {
				t.Fatal(err)
			}
			e := executions(res)
			if len(e) != 1 || e[0].Result.Status != "rejected" || e[0].Output != "Rejected: "+tt.reason ||
				e[0].Result.Error.Name != ErrorRejected || e[0].ContainerID != "sess_fake_1" {
				t.Fatalf("executions %s", asJSON(e))
			}
			if toolMsg := lastSent(m, 1).Text(); !strings.Contains(toolMsg, "NOT run") || !strings.Contains(toolMsg, tt.reason) {
				t.Errorf("model not told of the refusal: %q", toolMsg)
			}
			if len(tt.judge.seen) != 1 {
				t.Errorf("judge saw %d programs", len(tt.judge.seen))
			}
			if ran := sb.Ran(); len(ran) != 0 {
				t.Errorf("the refused code ran: %q", ran)
			}
		})
	}
}

func TestClientToolMixed(t *testing.T) {
	a, sb := testAgent(t)
	m := &fakeModel{turns: []llm.Message{
		codeCall("c1", "result = 6 * 7"),
		{ToolCalls: []llm.ToolCall{{ID: "s1", Type: "function", Function: &llm.FunctionCall{Name: "search", Arguments: `{"q":"bitcoin"}`}}}},
	}}
	req := userRequest("search and compute", function("search"))
	res, err := a.Complete(context.Background(), m, req, sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, calls := executions(res), clientCalls(res)
	if res.Finish != FinishToolCalls || len(e) != 1 || len(calls) != 1 {
		t.Fatalf("finish %q output %s", res.Finish, asJSON(res.Output))
	}
	if e[0].Output != "42" || calls[0].Name != "search" || calls[0].ID != "s1" || calls[0].Arguments != `{"q":"bitcoin"}` {
		t.Errorf("output %s", asJSON(res.Output))
	}
	if len(m.got[0].Tools) != 2 {
		t.Errorf("upstream got %d tools, want search and the code tool", len(m.got[0].Tools))
	}

	// The client's next request carries the output and its tool's result; the
	// upstream must see the code call as a function call answered by its output,
	// then the model's second turn, which called search.
	next := *req
	next.Input = append(append(append([]Item{}, req.Input...), res.Output...), &ToolOutput{CallID: "s1", Content: Text("price: 1")})
	m2 := &fakeModel{turns: []llm.Message{answer("done")}}
	if _, err := a.Complete(context.Background(), m2, &next, sb, nil); err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, mm := range m2.got[0].Messages {
		roles = append(roles, mm.Role)
	}
	if strings.Join(roles, ",") != "system,user,assistant,tool,assistant,tool" {
		t.Fatalf("history sent upstream has roles %v", roles)
	}
	sent := m2.got[0].Messages
	if c := sent[2].ToolCalls; len(c) != 1 || c[0].Type != "function" || c[0].Function.Name != ToolName || sent[3].ToolCallID != "c1" {
		t.Errorf("code execution not expanded for the upstream: %s", asJSON(sent[2:4]))
	}
	if c := sent[4].ToolCalls; len(c) != 1 || c[0].Function.Name != "search" || sent[4].Text() != "" || sent[5].ToolCallID != "s1" {
		t.Errorf("the client's call sent upstream as %s", asJSON(sent[4:]))
	}
}

func TestStepLimit(t *testing.T) {
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "1"), codeCall("c2", "2"), codeCall("c3", "3")}}
	sb := fakeSandbox(t, agenttest.OK(""), agenttest.OK(""), agenttest.OK(""))
	res, err := (&Agent{MaxSteps: 2}).Complete(context.Background(), m, userRequest("loop"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	text := final(t, res).Content.Text()
	if res.Finish != FinishStepLimit || !strings.Contains(text, "steps") || len(m.got) != 2 || len(executions(res)) != 2 {
		t.Fatalf("finish %q content %q after %d calls and %d runs", res.Finish, text, len(m.got), len(executions(res)))
	}
	if _, last := res.Output[len(res.Output)-1].(*Message); !last || res.Upstream.ID != "chatcmpl-test" {
		t.Errorf("output %s upstream %+v: want the stop message last, and the last reply's id", asJSON(res.Output), res.Upstream)
	}
}

func TestAttachedFiles(t *testing.T) {
	a, sb := testAgent(t)
	csv := base64.StdEncoding.EncodeToString([]byte("city,temp\nOslo,4\nRome,18\n"))
	req := userRequest("average temperature?")
	req.Input[0].(*Message).Content = Content{Parts: []Part{
		{Type: PartText, Text: "average temperature?"},
		{Type: PartFile, Filename: "temps.csv", FileData: "data:text/csv;base64," + csv},
	}}
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "import pandas as pd\nprint(pd.read_csv('temps.csv').temp.mean())"), answer("11.0")}}
	res, err := a.Complete(context.Background(), m, req, sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e := executions(res); len(e) != 1 || e[0].Output != "11.0\n" {
		t.Fatalf("executions %s", asJSON(e))
	}
	user := m.got[0].Messages[1]
	if !strings.Contains(user.Text(), "temps.csv") || strings.Contains(user.Text(), csv) {
		t.Errorf("the model should be told the file's name, not sent its bytes: %q", user.Text())
	}
}

// TestBadRequests: what the client must fix is refused with a stable code, before
// the model or the sandbox is asked anything.
func TestBadRequests(t *testing.T) {
	file := func(p Part) *Request {
		req := userRequest("x")
		p.Type = PartFile
		req.Input[0].(*Message).Content = Content{Parts: []Part{p}}
		return req
	}
	extra := userRequest("x")
	extra.Extra = map[string]json.RawMessage{"n": json.RawMessage(`"two"`)}
	for _, tc := range []struct {
		name string
		req  *Request
		code string
	}{
		{"client function named " + ToolName, userRequest("x", function(ToolName)), "invalid_tools"},
		{"bad base64", file(Part{Filename: "a.csv", FileData: "data:text/csv;base64,%%%"}), "invalid_file"},
		{"data URL not base64", file(Part{Filename: "a.csv", FileData: "data:text/csv,a,b"}), "invalid_file"},
		{"file_id", file(Part{FileID: "file-abc123"}), "file_id_unsupported"},
		{"file part without data", file(Part{Filename: "a.csv"}), "invalid_file"},
		{"file name with a NUL", file(Part{Filename: "a\x00b.csv", FileData: "eA=="}), "invalid_file"},
		{"an upstream field of the wrong type", extra, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := &agenttest.Sandbox{T: t, Forbidden: true}
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
	good := Part{Type: PartFile, Filename: "good.csv", FileData: "eA=="}
	req := &Request{Model: "m", Code: &CodeTool{}, Input: []Item{
		&Message{Role: "system", Content: Text("be brief"), Source: "messages[0]"},
		&Message{Role: "user", Source: "messages[1]", Content: Content{Parts: []Part{good, {Type: PartFile, FileID: "file-1"}}}},
	}}
	_, err := (&Agent{}).Complete(context.Background(), &fakeModel{}, req, &agenttest.Sandbox{T: t, Forbidden: true}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "messages[1].content[1]: ") {
		t.Errorf("Complete = %v, want an error naming messages[1].content[1]", err)
	}
	if got := req.Input[1].(*Message).Content.Parts[0]; !reflect.DeepEqual(got, good) {
		t.Errorf("the client's request was changed: %+v", got)
	}
}

// TestUnknownTool: a call to a tool the client never declared is not handed to the
// client: the model is told the tool does not exist, and the loop goes on.
func TestUnknownTool(t *testing.T) {
	m := &fakeModel{turns: []llm.Message{
		{ToolCalls: []llm.ToolCall{{ID: "w1", Type: "function", Function: &llm.FunctionCall{Name: "web_browse", Arguments: `{"url":"x"}`}}}},
		answer("I cannot browse; here is what I know."),
	}}
	sb := &agenttest.Sandbox{T: t, Forbidden: true}
	res, err := (&Agent{}).Complete(context.Background(), m, userRequest("browse x", function("search")), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Finish != FinishStop || len(clientCalls(res)) != 0 || final(t, res).Content.Text() != "I cannot browse; here is what I know." {
		t.Fatalf("finish %q output %s, want the model's answer and no call", res.Finish, asJSON(res.Output))
	}
	if len(m.got) != 2 {
		t.Fatalf("%d model calls, want 2", len(m.got))
	}
	last := lastSent(m, 1)
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
		sb := &agenttest.Sandbox{T: t, Running: resumed}
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
	sb := fakeSandbox(t, &job.Result{Status: job.StatusTimeout, Error: &job.Error{Name: "Timeout", Message: "the execution took longer than 1s"}}, agenttest.OK(""))
	sb.Stops = []bool{true}
	res, err := (&Agent{}).Complete(context.Background(), m, userRequest("sleep"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	told := lastSent(m, 1).Text()
	if !strings.Contains(told, "status: timeout") || !strings.Contains(told, "The interpreter ended with this run") {
		t.Errorf("after the timeout the model was told %q", told)
	}
	if sb.Starts() != 2 {
		t.Errorf("%d interpreters started, want 2", sb.Starts())
	}
	e := executions(res)
	if len(e) != 2 || e[0].ContainerID != "sess_fake_1" || e[1].ContainerID != "sess_fake_2" {
		t.Errorf("executions %s, want runs in sess_fake_1 then sess_fake_2", asJSON(e))
	}
}

// TestSessionEnded: when the interpreter stopped between the start and the run,
// the code did not run; the model is told to run it again, and the next call
// starts a fresh interpreter.
func TestSessionEnded(t *testing.T) {
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "x = 1"), codeCall("c2", "x = 1\nprint(x)"), answer("1")}}
	sb := fakeSandbox(t, nil, agenttest.OK("1\n"))
	sb.Errs = []error{fmt.Errorf("run: %w", sandbox.ErrSessionEnded)}
	res, err := (&Agent{}).Complete(context.Background(), m, userRequest("x"), sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := executions(res)
	if len(e) != 2 || e[0].Result.Status != job.StatusKilled || e[0].Result.Error.Name != ErrorSessionEnded || e[0].Output != e[0].Result.Error.Message {
		t.Fatalf("executions %s", asJSON(e))
	}
	if told := lastSent(m, 1).Text(); told != e[0].Output || !strings.Contains(told, "did not run") {
		t.Errorf("the model was told %q", told)
	}
	if sb.Starts() != 2 || e[1].ContainerID != "sess_fake_2" || e[1].Output != "1\n" {
		t.Errorf("%d starts, second run %s: want it in a fresh interpreter", sb.Starts(), asJSON(e[1]))
	}
}

// TestExecutions: the client gets what the model saw, field by field, including
// code that did not run; sent back as history, the model sees the same again.
func TestExecutions(t *testing.T) {
	v := "42"
	m := &fakeModel{turns: []llm.Message{
		codeCall("c1", "print('computing')\nimport sys; print('careful', file=sys.stderr)\n6 * 7"),
		{ToolCalls: []llm.ToolCall{{ID: "c2", Type: "function", Function: &llm.FunctionCall{Name: ToolName, Arguments: `{"code": 1}`}}}},
		answer("42"),
	}}
	run := &job.Result{Status: job.StatusOK, Stdout: "computing\n", Stderr: "careful\n", Result: &v,
		Files: []job.FileInfo{{Path: "out.csv", Size: 3}}}
	res, err := (&Agent{}).Complete(context.Background(), m, userRequest("6*7"), fakeSandbox(t, run), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := executions(res)
	if len(e) != 2 {
		t.Fatalf("executions %s", asJSON(e))
	}
	want := &Execution{ID: "c1", Code: "print('computing')\nimport sys; print('careful', file=sys.stderr)\n6 * 7",
		ContainerID: "sess_fake_1", Result: run, Output: "computing\ncareful\n42"}
	if !reflect.DeepEqual(e[0], want) {
		t.Errorf("execution of the run:\n got %s\nwant %s", asJSON(e[0]), asJSON(want))
	}
	if e[1].Result.Status != "error" || e[1].Result.Error.Name != ErrorInvalidArguments || e[1].Code != `{"code": 1}` || e[1].ContainerID != "" {
		t.Errorf("execution of the bad call %s, want status error and error InvalidArguments", asJSON(e[1]))
	}
	told := []string{lastSent(m, 1).Text(), lastSent(m, 2).Text()}
	for _, s := range []string{"stdout:\ncomputing\n", "stderr:\ncareful\n", "result:\n42\n", "files written: out.csv (3 bytes)"} {
		if !strings.Contains(told[0], s) {
			t.Errorf("the model was told %q, without %q", told[0], s)
		}
	}
	// A client that sends the output back as history: the model sees the same again.
	next := userRequest("again")
	next.Input = append(append(next.Input, res.Output...), &Message{Role: "user", Content: Text("and?")})
	m2 := &fakeModel{turns: []llm.Message{answer("ok")}}
	if _, err := (&Agent{}).Complete(context.Background(), m2, next, fakeSandbox(t), nil); err != nil {
		t.Fatal(err)
	}
	for i, want := range told {
		if again := m2.got[0].Messages[3+i].Text(); again != want {
			t.Errorf("from the history the model was told %q, want %q as the first time", again, want)
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
	if small := toolMessage(agenttest.OK("hi\n"), 2000); small != "status: ok\nstdout:\nhi\n" {
		t.Errorf("toolMessage of a small run = %q", small)
	}
}

// TestAttachmentNames: a file without a name gets one from its kind, content and
// type; two different files never share a name; a resumed sandbox is not sent the
// files of messages it already has.
func TestAttachmentNames(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	png := "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
	parts := []Part{
		{Type: PartFile, FileData: b64("a,b\n1,2\n")},                            // raw base64, no type: sniffed
		{Type: PartFile, FileData: "data:text/csv;base64," + b64("x\n")},         // typed
		{Type: PartImage, URL: "data:image/png;base64," + b64(png)},              // an image
		{Type: PartFile, Filename: "data.csv", FileData: b64("one")},             // named
		{Type: PartFile, Filename: `C:\Users\me\data.csv`, FileData: b64("two")}, // same name, other file
		{Type: PartFile, Filename: "data.csv", FileData: b64("one")},             // the first again
		{Type: PartImage, URL: "https://example.com/cat.png"},                    // not a file
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
	req.Input[0].(*Message).Content = Content{Parts: parts}
	m := &fakeModel{turns: []llm.Message{answer("seen")}}
	sb := fakeSandbox(t)
	if _, err := (&Agent{}).Complete(context.Background(), m, req, sb, nil); err != nil {
		t.Fatal(err)
	}
	if got := sb.Files(); !reflect.DeepEqual(got, want) {
		t.Errorf("files placed:\n got %q\nwant %q", got, want)
	}
	told := m.got[0].Messages[1]
	for name := range want {
		if !strings.Contains(told.Text(), "[The file "+name+" ") {
			t.Errorf("the model was not told of %s: %q", name, told.Text())
		}
	}
	if p := told.Parts(); len(p) != len(parts)+1 || p[2].Type != llm.PartImageURL || p[6].ImageURL.URL != "https://example.com/cat.png" {
		t.Errorf("the model was sent the parts %s: want the images kept and one note for the image", asJSON(p))
	}

	// The next request names the same sandbox, with the history: only the new
	// message's file is placed; the model is still told of the earlier ones.
	next := &Request{Model: "test-model", Code: req.Code, Input: []Item{
		req.Input[0],
		&Message{Role: "assistant", Content: Text("seen")},
		&Message{Role: "user", Content: Content{Parts: []Part{{Type: PartFile, Filename: "new.txt", FileData: b64("3")}}}},
	}}
	sb.ForgetFiles()
	m = &fakeModel{turns: []llm.Message{answer("seen")}}
	if _, err := (&Agent{}).Complete(context.Background(), m, next, sb, nil); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"new.txt": "3"}; !reflect.DeepEqual(sb.Files(), want) {
		t.Errorf("files placed in the resumed sandbox: %q, want %q", sb.Files(), want)
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
		res, err := a.Complete(context.Background(), m, userRequest("Is there a proxy?"), sb, nil)
		if err != nil {
			t.Fatal(err)
		}
		if hint := m.got[0].Messages[0].Text(); !strings.Contains(hint, tc.hint) {
			t.Errorf("hosts %q: hint %q, want %q in it", tc.hosts, hint, tc.hint)
		}
		if e := executions(res); len(e) != 1 || e[0].Output != tc.out {
			t.Errorf("hosts %q: executions %s", tc.hosts, asJSON(e))
		}
	}
}

// TestRequestNetwork: a request's own network (within the operator's) is what the
// model and the judge are told of, not the Agent's.
func TestRequestNetwork(t *testing.T) {
	j := &fakeJudge{verdict: safety.Verdict{Safe: true}}
	a := &Agent{Judge: j, Network: &egress.Policy{Allow: []string{"a.example.com", "b.example.com"}}}
	req := userRequest("fetch")
	req.Code.Network = &egress.Policy{Allow: []string{"b.example.com"}}
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "fetch()"), answer("done")}}
	if _, err := a.Complete(context.Background(), m, req, fakeSandbox(t, agenttest.OK("")), nil); err != nil {
		t.Fatal(err)
	}
	if hint := m.got[0].Messages[0].Text(); !strings.Contains(hint, "refuses all others: b.example.com") || strings.Contains(hint, "a.example.com") {
		t.Errorf("hint %q, want only b.example.com", hint)
	}
	if j.network != req.Code.Network {
		t.Errorf("the judge was told of %+v, want the request's network", j.network)
	}
}

// TestWithoutCodeTool: a request without the code tool goes through the loop
// without it: no code function, no hint, files left to the upstream, and a call
// of code_execution is one of an unknown tool.
func TestWithoutCodeTool(t *testing.T) {
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "print(1)"), answer("no code here")}}
	req := userRequest("1?", function("search"))
	req.Code = nil
	file := Part{Type: PartFile, Filename: "a.csv", FileData: "eA=="}
	req.Input = append(req.Input, &Message{Role: "user", Content: Content{Parts: []Part{file}}})
	res, err := (&Agent{}).Complete(context.Background(), m, req, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	up := m.got[0]
	if len(up.Tools) != 1 || up.Tools[0].Function.Name != "search" || up.Messages[0].Role != "user" {
		t.Errorf("upstream tools %s, first message %s: want only search and no hint", asJSON(up.Tools), asJSON(up.Messages[0]))
	}
	if p := up.Messages[1].Parts(); len(p) != 1 || p[0].File == nil || p[0].File.FileData != "eA==" {
		t.Errorf("the file part was changed: %s", asJSON(p))
	}
	want := `error: there is no tool named "code_execution"; the tools you can call are: search.`
	if told := lastSent(m, 1).Text(); told != want {
		t.Errorf("the model was told %q, want %q", told, want)
	}
	if len(executions(res)) != 0 || final(t, res).Content.Text() != "no code here" {
		t.Errorf("output %s", asJSON(res.Output))
	}
}
