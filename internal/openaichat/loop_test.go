package openaichat

// The face and the loop together, as the server uses them, with the scripted
// upstream and a fake sandbox: no root.

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/agent/agenttest"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
)

func code(src string) llmtest.Call {
	args, _ := json.Marshal(map[string]string{"code": src})
	return llmtest.Call{Name: agent.ToolName, Arguments: string(args)}
}

// complete answers a chat request body as the server does, without streaming.
func complete(t *testing.T, up *llmtest.Server, sb agent.Sandbox, body string) *llm.ChatResponse {
	t.Helper()
	req, err := FromChatRequest(decode(t, body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&agent.Agent{MaxSteps: 5}).Complete(context.Background(), agent.Upstream(llm.New(up.Provider())), req, sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ToChatCompletion(res, nil)
}

// TestClientToolMixed: a reply with a run and a client's call, sent back as
// history with the call's result, reaches the upstream as the model's call of
// the code tool answered by the run, beside the client's call and its result.
func TestClientToolMixed(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Calls(code("result = 6 * 7")),
		llmtest.Calls(llmtest.Call{Name: "search", Arguments: `{"q":"bitcoin"}`}), llmtest.Text("done"))
	v := "42"
	sb := &agenttest.Sandbox{T: t, Results: []*job.Result{{Status: job.StatusOK, Result: &v}}}
	tools := `"tools":[{"type":"code_interpreter"},{"type":"function","function":{"name":"search","parameters":{"type":"object"}}}]`
	first := `{"role":"user","content":"search and compute"}`
	resp := complete(t, up, sb, `{"model":"fake-model",`+tools+`,"messages":[`+first+`]}`)
	msg := resp.Choices[0].Message
	if resp.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 2 {
		t.Fatalf("finish %q tool calls %+v", resp.Choices[0].FinishReason, msg.ToolCalls)
	}
	if msg.ToolCalls[0].Type != "code_execution" || msg.ToolCalls[0].CodeExecution.Output != "42" ||
		msg.ToolCalls[1].Function == nil || msg.ToolCalls[1].Function.Name != "search" {
		t.Errorf("tool calls %+v", msg.ToolCalls)
	}
	if n := len(up.ChatRequests()[0].Tools); n != 2 {
		t.Errorf("upstream got %d tools, want search and the code tool", n)
	}

	reply, _ := json.Marshal(msg)
	result := `{"role":"tool","tool_call_id":"` + msg.ToolCalls[1].ID + `","content":"price: 1"}`
	complete(t, up, sb, `{"model":"fake-model",`+tools+`,"messages":[`+first+`,`+string(reply)+`,`+result+`]}`)
	sent := up.ChatRequests()[2].Messages
	var roles []string
	for _, m := range sent {
		roles = append(roles, m.Role)
	}
	if strings.Join(roles, ",") != "system,user,assistant,tool,tool" {
		t.Fatalf("history sent upstream has roles %v", roles)
	}
	asst := sent[2]
	if asst.ToolCalls[0].Type != "function" || asst.ToolCalls[0].Function.Name != agent.ToolName || sent[3].ToolCallID != msg.ToolCalls[0].ID {
		t.Errorf("code execution not expanded for the upstream: %+v", asst.ToolCalls)
	}
}

// TestEntries: the client gets what the model saw, field by field, with a status
// on every entry, including code that did not run; a client that sends the reply
// back as history has the model see the same again.
func TestEntries(t *testing.T) {
	up := llmtest.NewServer(t,
		llmtest.Calls(code("print('computing')\nimport sys; print('careful', file=sys.stderr)\n6 * 7")),
		llmtest.Calls(llmtest.Call{Name: agent.ToolName, Arguments: `{"code": 1}`}),
		llmtest.Text("42"), llmtest.Text("ok"))
	v := "42"
	sb := &agenttest.Sandbox{T: t, Results: []*job.Result{{Status: job.StatusOK, Stdout: "computing\n", Stderr: "careful\n", Result: &v,
		Files: []job.FileInfo{{Path: "out.csv", Size: 3}}}}}
	tools := `"tools":[{"type":"code_execution"}]`
	resp := complete(t, up, sb, `{"model":"fake-model",`+tools+`,"messages":[{"role":"user","content":"6*7"}]}`)
	calls := resp.Choices[0].Message.ToolCalls
	if len(calls) != 2 {
		t.Fatalf("entries %+v", calls)
	}
	want := &llm.CodeExecution{Code: "print('computing')\nimport sys; print('careful', file=sys.stderr)\n6 * 7",
		Output: "computing\ncareful\n42", Status: "ok", Stdout: "computing\n", Stderr: "careful\n", Result: &v,
		Files: []llm.CodeFile{{Path: "out.csv", Size: 3}}, ContainerID: "sess_fake_1"}
	if !reflect.DeepEqual(calls[0].CodeExecution, want) {
		t.Errorf("entry of the run:\n got %s\nwant %s", asJSON(calls[0].CodeExecution), asJSON(want))
	}
	if e := calls[1].CodeExecution; e.Status != "error" || e.Error == nil || e.Error.Name != "InvalidArguments" {
		t.Errorf("entry of the bad call %+v, want status error and error InvalidArguments", e)
	}
	told := up.ChatRequests()[1].Messages
	first := told[len(told)-1].Text()

	reply, _ := json.Marshal(resp.Choices[0].Message)
	complete(t, up, &agenttest.Sandbox{T: t}, `{"model":"fake-model",`+tools+`,"messages":[{"role":"user","content":"again"},`+string(reply)+`,{"role":"user","content":"and?"}]}`)
	if again := up.ChatRequests()[3].Messages[3].Text(); again != first {
		t.Errorf("from the history the model was told %q, want %q as the first time", again, first)
	}
}

// TestStreamed: a streamed completion through the face, in order: the role, the
// text as the model writes it, the run announced with its container, its entry,
// the answer, the finish reason and the usage.
func TestStreamed(t *testing.T) {
	first := llmtest.Calls(code("print(21 * 2)"))
	first.Content = "Let me compute."
	up := llmtest.NewServer(t, first, llmtest.Text("It is 42."))
	req, err := FromChatRequest(decode(t, `{"model":"fake-model","stream":true,"stream_options":{"include_usage":true},`+
		`"tools":[{"type":"code_execution"}],"messages":[{"role":"user","content":"21*2?"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var chunks []*llm.ChatChunk
	s := &Stream{ID: "chatcmpl-1", Model: "fake-model", Created: 1, Send: func(c *llm.ChatChunk) { chunks = append(chunks, c) }}
	sb := &agenttest.Sandbox{T: t, Results: []*job.Result{agenttest.OK("42\n")}}
	res, err := (&agent.Agent{}).Complete(context.Background(), agent.Upstream(llm.New(up.Provider())), req, sb, s)
	if err != nil {
		t.Fatal(err)
	}
	s.Finish(res, nil, true)
	var steps []string
	for _, c := range chunks {
		if c.Usage != nil {
			steps = append(steps, "usage")
			continue
		}
		d := c.Choices[0].Delta
		switch {
		case d.Role != "":
			steps = append(steps, "role")
		case len(d.ToolCalls) == 1:
			e := d.ToolCalls[0].CodeExecution
			steps = append(steps, e.Status+" "+e.Code+" in "+e.ContainerID+" "+strings.TrimSpace(e.Output))
		case c.Choices[0].FinishReason != nil:
			steps = append(steps, "finish "+*c.Choices[0].FinishReason)
		default:
			if n := len(steps); n > 0 && strings.HasPrefix(steps[n-1], "text ") {
				steps[n-1] += d.Text()
			} else {
				steps = append(steps, "text "+d.Text())
			}
		}
	}
	want := []string{"role", "text Let me compute.", "running print(21 * 2) in sess_fake_1 ", "ok print(21 * 2) in sess_fake_1 42",
		"text It is 42.", "finish stop", "usage"}
	if strings.Join(steps, "\n") != strings.Join(want, "\n") {
		t.Errorf("the stream:\n%s\nwant:\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"))
	}
	texts := 0
	for _, c := range chunks {
		if len(c.Choices) == 1 && c.Choices[0].Delta.Role == "" && c.Choices[0].Delta.Text() != "" {
			texts++
		}
	}
	if texts < 4 {
		t.Errorf("the text came in %d chunks: it was not streamed as the model wrote it", texts)
	}
}
