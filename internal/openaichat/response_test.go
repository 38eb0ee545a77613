package openaichat

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
)

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

func link(e *llm.CodeExecution) {
	for i := range e.Files {
		e.Files[i].URL = "/files/" + e.ContainerID + "/" + e.Files[i].Path
	}
}

var (
	four     = "4"
	ranFour  = &agent.Execution{ID: "c1", Code: "2+2", ContainerID: "sess_1", Output: "4", Result: &job.Result{Status: job.StatusOK, Result: &four, Files: []job.FileInfo{{Path: "o.txt", Size: 2}}}}
	ranEntry = `{"code":"2+2","output":"4","status":"ok","stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"result":"4","error":null,"images":[],"files":[{"path":"o.txt","size":2,"url":"/files/sess_1/o.txt"}],"container_id":"sess_1"}`
	upstream = agent.UpstreamReply{ID: "chatcmpl-up", Object: "chat.completion", Created: 1700000000, Model: "m-2025", SystemFingerprint: "fp",
		Extra: map[string]json.RawMessage{"service_tier": raw(`"default"`)}}
	head = `"id":"chatcmpl-up","object":"chat.completion","created":1700000000,"model":"m-2025","system_fingerprint":"fp","service_tier":"default"`
)

// TestToChatCompletion: a result, and the chat completion the client gets.
func TestToChatCompletion(t *testing.T) {
	usage := agent.Usage{InputTokens: 10, OutputTokens: 5, TotalTokens: 15}
	usageJSON := `"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}`
	for _, tc := range []struct {
		name string
		res  *agent.Result
		want string
	}{
		{"an answer after a run",
			&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("Let me see.")}, ranFour,
				&agent.Message{Role: "assistant", Content: agent.Text("It is 4.")}}, Usage: usage, Finish: agent.FinishStop, Upstream: upstream},
			`{` + head + `,` + usageJSON + `,"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"It is 4.",` +
				`"tool_calls":[{"id":"c1","type":"code_execution","code_execution":` + ranEntry + `}]}}]}`},
		{"client calls after a run, with the model's extras",
			&agent.Result{Output: []agent.Item{ranFour,
				&agent.Message{Role: "assistant", Content: agent.Content{Form: agent.FormNull}, Extra: map[string]json.RawMessage{"reasoning_content": raw(`"hm"`)}},
				&agent.ToolCall{ID: "s1", Type: "function", Name: "search", Arguments: `{"q":"x"}`, Extra: map[string]json.RawMessage{"x": raw(`1`)}}},
				Usage: usage, Finish: agent.FinishToolCalls, Upstream: upstream},
			`{` + head + `,` + usageJSON + `,"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"reasoning_content":"hm",` +
				`"tool_calls":[{"id":"c1","type":"code_execution","code_execution":` + ranEntry + `},` +
				`{"id":"s1","type":"function","function":{"name":"search","arguments":"{\"q\":\"x\"}"},"x":1}]}}]}`},
		{"code that did not run",
			&agent.Result{Output: []agent.Item{
				&agent.Execution{ID: "c1", Code: "rm()", ContainerID: "sess_1", Output: "Rejected: deletes files",
					Result: &job.Result{Status: job.StatusRejected, Error: &job.Error{Name: agent.ErrorRejected, Message: "deletes files"}}},
				&agent.Execution{ID: "c2", Code: `{"code":1}`, Output: "error: bad",
					Result: &job.Result{Status: job.StatusError, Error: &job.Error{Name: agent.ErrorInvalidArguments, Message: "error: bad"}}},
				&agent.Message{Role: "assistant", Content: agent.Text("no")}}, Finish: agent.FinishStop, Upstream: upstream},
			`{` + head + `,"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0},"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"no","tool_calls":[` +
				`{"id":"c1","type":"code_execution","code_execution":{"code":"rm()","output":"Rejected: deletes files","status":"rejected","stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"result":null,"error":{"name":"Rejected","message":"deletes files"},"images":[],"files":[],"container_id":"sess_1"}},` +
				`{"id":"c2","type":"code_execution","code_execution":{"code":"{\"code\":1}","output":"error: bad","status":"error","stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"result":null,"error":{"name":"InvalidArguments","message":"error: bad"},"images":[],"files":[]}}]}}]}`},
		{"the step limit is length",
			&agent.Result{Output: []agent.Item{ranFour, &agent.Message{Role: "assistant", Content: agent.Text("Stopped.")}}, Finish: agent.FinishStepLimit, Upstream: upstream},
			`{` + head + `,"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0},"choices":[{"index":0,"finish_reason":"length","message":{"role":"assistant","content":"Stopped.",` +
				`"tool_calls":[{"id":"c1","type":"code_execution","code_execution":` + ranEntry + `}]}}]}`},
		{"an upstream's own reason passed on",
			&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("")}}, Finish: "content_filter", Upstream: upstream},
			`{` + head + `,"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0},"choices":[{"index":0,"finish_reason":"content_filter","message":{"role":"assistant","content":""}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(ToChatCompletion(tc.res, link))
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(t, got, []byte(tc.want)) {
				t.Errorf("ToChatCompletion:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestStream: a completion's events, and the chunks the client gets, frame by
// frame: the role first (with the first event), text, each run's entry when it
// starts and when it ends, then the client's calls, the finish reason with the
// container, and the usage.
func TestStream(t *testing.T) {
	var got []string
	s := &Stream{ID: "chatcmpl-1", Model: "m", Created: 1700000000, Link: link, Send: func(c *llm.ChatChunk) {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(b))
	}}
	if s.Started() {
		t.Fatal("started before any event")
	}
	s.Text("Let me ")
	s.CodeDelta(0, "c1", "2+")
	s.CodeDelta(0, "c1", "2")
	s.ExecutionStarted(0, &agent.Execution{ID: "c1", Code: "2+2", ContainerID: "sess_1"})
	s.ExecutionFinished(0, ranFour)
	s.ToolCallDelta(0, "s1", "search", `{"q":`)
	s.Text("search.")
	res := &agent.Result{Output: []agent.Item{ranFour, &agent.Message{Role: "assistant", Content: agent.Text("Let me search.")},
		&agent.ToolCall{ID: "s1", Type: "function", Name: "search", Arguments: `{"q":"x"}`}},
		Usage: agent.Usage{InputTokens: 1, OutputTokens: 2, TotalTokens: 3}, Finish: agent.FinishToolCalls, Upstream: upstream}
	s.Finish(res, map[string]json.RawMessage{"container": raw(`{"id":"sess_1"}`)}, true)
	if !s.Started() {
		t.Error("not started after the events")
	}
	c := `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":`
	want := []string{
		c + `{"role":"assistant","content":""},"finish_reason":null}]}`,
		c + `{"content":"Let me "},"finish_reason":null}]}`,
		c + `{"tool_calls":[{"index":0,"id":"c1","type":"code_execution","code_execution":{"code":"2+2","status":"running","container_id":"sess_1"}}]},"finish_reason":null}]}`,
		c + `{"tool_calls":[{"index":0,"id":"c1","type":"code_execution","code_execution":` + ranEntry + `}]},"finish_reason":null}]}`,
		c + `{"content":"search."},"finish_reason":null}]}`,
		c + `{"tool_calls":[{"index":1,"id":"s1","type":"function","function":{"name":"search","arguments":"{\"q\":\"x\"}"}}]},"finish_reason":null}]}`,
		c + `{},"finish_reason":"tool_calls"}],"container":{"id":"sess_1"}}`,
		`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("chunks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// listened records what a Listener hears.
type listened []string

func (l *listened) Content(delta string) { *l = append(*l, "text "+delta) }
func (l *listened) CodeStarted(index int, id string, e *llm.CodeExecution) {
	b, _ := json.Marshal(e)
	*l = append(*l, "started "+id+" "+string(b))
}
func (l *listened) CodeFinished(index int, id string, e *llm.CodeExecution) {
	b, _ := json.Marshal(e)
	*l = append(*l, "finished "+id+" "+string(b))
}

// TestListener: codeexec chat hears what a stream's entries say.
func TestListener(t *testing.T) {
	var l listened
	ev := Events(&l)
	ev.Text("hi")
	ev.CodeDelta(0, "c1", "2+2")
	ev.ExecutionStarted(0, &agent.Execution{ID: "c1", Code: "2+2", ContainerID: "sess_1"})
	ev.ExecutionFinished(0, ranFour)
	ev.ToolCallDelta(0, "s1", "search", "{}")
	want := []string{"text hi", `started c1 {"code":"2+2","status":"running","container_id":"sess_1"}`,
		"finished c1 " + strings.Replace(ranEntry, `,"url":"/files/sess_1/o.txt"`, "", 1)}
	if strings.Join(l, "\n") != strings.Join(want, "\n") {
		t.Errorf("heard:\n%s\nwant:\n%s", strings.Join(l, "\n"), strings.Join(want, "\n"))
	}
}
