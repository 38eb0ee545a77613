package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/egress"
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

// testAgent returns an agent on a real warm sandbox runner.
func testAgent(t *testing.T) *Agent {
	t.Helper()
	r := sandboxtest.Shared(t)
	return &Agent{NewSandbox: Sessions(r, sandbox.DefaultLimits(), nil), MaxSteps: 5}
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
	a := testAgent(t)
	m := &fakeModel{turns: []llm.Message{codeCall("call_1", "print(2 + 2)"), answer("The answer is 4.")}}
	resp, err := a.Complete(context.Background(), m, userRequest("What is 2+2?"), nil)
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
	a := testAgent(t)
	m := &fakeModel{turns: []llm.Message{
		codeCall("c1", "x = 10\nprint(y)"),
		codeCall("c2", "y = x * 2\nprint(y)"), // state from the first call persists
		answer("y is 20"),
	}}
	resp, err := a.Complete(context.Background(), m, userRequest("double x"), nil)
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

func (j *fakeJudge) Check(ctx context.Context, code string) (Verdict, error) {
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
			a := testAgent(t)
			a.Judge = tt.judge
			m := &fakeModel{turns: []llm.Message{
				codeCall("c1", "open('/work/ran.txt', 'w').write('ran')"),
				answer("I cannot run that; here is the code to run locally."),
			}}
			resp, err := a.Complete(context.Background(), m, userRequest("list my directory"), nil)
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
	a := testAgent(t)
	search := llm.Tool{Type: "function", Function: &llm.FunctionDef{Name: "search", Parameters: json.RawMessage(`{"type":"object"}`)}}
	m := &fakeModel{turns: []llm.Message{
		codeCall("c1", "result = 6 * 7"),
		{ToolCalls: []llm.ToolCall{{ID: "s1", Type: "function", Function: &llm.FunctionCall{Name: "search", Arguments: `{"q":"bitcoin"}`}}}},
	}}
	req := userRequest("search and compute", llm.Tool{Type: "code_interpreter"}, search)
	resp, err := a.Complete(context.Background(), m, req, nil)
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
	if _, err := a.Complete(context.Background(), m2, next, nil); err != nil {
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
	a := testAgent(t)
	a.MaxSteps = 2
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "1"), codeCall("c2", "2"), codeCall("c3", "3")}}
	resp, err := a.Complete(context.Background(), m, userRequest("loop"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].FinishReason != "length" || !strings.Contains(resp.Choices[0].Message.Text(), "steps") || len(m.got) != 2 {
		t.Fatalf("finish %q content %q after %d calls", resp.Choices[0].FinishReason, resp.Choices[0].Message.Text(), len(m.got))
	}
}

func TestAttachedFiles(t *testing.T) {
	a := testAgent(t)
	csv := base64.StdEncoding.EncodeToString([]byte("city,temp\nOslo,4\nRome,18\n"))
	req := userRequest("average temperature?")
	req.Messages[0].Content = llm.PartsContent(
		llm.ContentPart{Type: "text", Text: "average temperature?"},
		llm.ContentPart{Type: "file", File: &llm.File{Filename: "temps.csv", FileData: "data:text/csv;base64," + csv}},
	)
	m := &fakeModel{turns: []llm.Message{codeCall("c1", "import pandas as pd\nprint(pd.read_csv('temps.csv').temp.mean())"), answer("11.0")}}
	resp, err := a.Complete(context.Background(), m, req, nil)
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

func TestBadRequests(t *testing.T) {
	a := &Agent{NewSandbox: func(context.Context) (Sandbox, error) { return nil, errors.New("no sandbox needed") }}
	clash := userRequest("x", llm.Tool{Type: "code_execution"}, llm.Tool{Type: "function", Function: &llm.FunctionDef{Name: ToolName}})
	if _, err := a.Complete(context.Background(), &fakeModel{}, clash, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("client function named %q: %v, want ErrBadRequest", ToolName, err)
	}
	bad := userRequest("x")
	bad.Messages[0].Content = llm.PartsContent(llm.ContentPart{Type: "file", File: &llm.File{Filename: "a.csv", FileData: "data:text/csv;base64,%%%"}})
	if _, err := a.Complete(context.Background(), &fakeModel{}, bad, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("bad base64 file: %v, want ErrBadRequest", err)
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
		a := &Agent{NewSandbox: Sessions(r, sandbox.DefaultLimits(), policy), MaxSteps: 3, Network: policy}
		m := &fakeModel{turns: []llm.Message{codeCall("call_1", `import os; print("HTTPS_PROXY" in os.environ)`), answer("done")}}
		resp, err := a.Complete(context.Background(), m, userRequest("Is there a proxy?"), nil)
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
