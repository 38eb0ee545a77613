package openaichat

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func ptr[T any](v T) *T { return &v }

func decode(t *testing.T, body string) *llm.ChatRequest {
	t.Helper()
	r, err := llm.DecodeChatRequest(strings.NewReader(body))
	if err != nil {
		t.Fatalf("DecodeChatRequest(%s): %v", body, err)
	}
	return r
}

func user(text string) *agent.Message {
	return &agent.Message{Role: "user", Content: agent.Text(text), Source: "messages[0]"}
}

func asJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// TestFromChatRequest: a client's body, as it comes, and the loop's request.
func TestFromChatRequest(t *testing.T) {
	hi := `"messages":[{"role":"user","content":"hi"}]`
	v := "6"
	for _, tc := range []struct {
		name, body string
		want       *agent.Request
	}{
		{"the code tool alone",
			`{"model":"m",` + hi + `,"tools":[{"type":"code_execution"}]}`,
			&agent.Request{Model: "m", Input: []agent.Item{user("hi")}, Code: &agent.CodeTool{}}},
		{"OpenAI's name, a container",
			`{"model":"m",` + hi + `,"tools":[{"type":"code_interpreter","container":"sess_1"}]}`,
			&agent.Request{Model: "m", Input: []agent.Item{user("hi")}, Code: &agent.CodeTool{Container: "sess_1"}}},
		{"a language, by its alias",
			`{"model":"m",` + hi + `,"tools":[{"type":"code_execution","language":"js"}]}`,
			&agent.Request{Model: "m", Input: []agent.Item{user("hi")}, Code: &agent.CodeTool{Language: job.LangJavaScript}}},
		{"bash, with a container",
			`{"model":"m",` + hi + `,"tools":[{"type":"code_execution","language":"bash","container":"sess_3"}]}`,
			&agent.Request{Model: "m", Input: []agent.Item{user("hi")}, Code: &agent.CodeTool{Container: "sess_3", Language: job.LangBash}}},
		{"session_id, and an auto container",
			`{"model":"m",` + hi + `,"tools":[{"type":"code_execution","container":{"type":"auto"},"session_id":"sess_2"}]}`,
			&agent.Request{Model: "m", Input: []agent.Item{user("hi")}, Code: &agent.CodeTool{Container: "sess_2"}}},
		{"client tools beside it, in order",
			`{"model":"m",` + hi + `,"tools":[{"type":"function","function":{"name":"search","description":"look up","parameters":{"type":"object"},"strict":true,"x":1},"cache_control":{"type":"ephemeral"}},{"type":"code_execution"},{"type":"custom","custom":{"name":"sql"}}]}`,
			&agent.Request{Model: "m", Input: []agent.Item{user("hi")}, Code: &agent.CodeTool{}, Tools: []agent.Tool{
				{Type: "function", Name: "search", Description: "look up", Parameters: raw(`{"type":"object"}`), Strict: ptr(true),
					Extra: map[string]json.RawMessage{"x": raw(`1`)}, EntryExtra: map[string]json.RawMessage{"cache_control": raw(`{"type":"ephemeral"}`)}},
				{Type: "custom", EntryExtra: map[string]json.RawMessage{"custom": raw(`{"name":"sql"}`)}},
			}}},
		{"sampling, stop as a string, and fields for the upstream",
			`{"model":"m",` + hi + `,"tools":[{"type":"code_execution"}],"temperature":0.2,"top_p":0.9,"max_tokens":100,"max_completion_tokens":200,"n":1,"stop":"END","seed":7,` +
				`"response_format":{"type":"json_object"},"user":"u1","tool_choice":"auto","parallel_tool_calls":false,"reasoning_effort":"low","stream_options":{"include_usage":true}}`,
			&agent.Request{Model: "m", Input: []agent.Item{user("hi")}, Code: &agent.CodeTool{},
				Temperature: ptr(0.2), TopP: ptr(0.9), MaxOutputTokens: ptr(100), Stop: []string{"END"}, Seed: ptr(int64(7)),
				ResponseFormat: raw(`{"type":"json_object"}`), User: "u1", ToolChoice: raw(`"auto"`), ParallelToolCalls: ptr(false),
				Extra: map[string]json.RawMessage{"reasoning_effort": raw(`"low"`), "max_completion_tokens": raw(`200`), "n": raw(`1`),
					"stream_options": raw(`{"include_usage":true}`)}}},
		{"streaming: stream_options answered by the face",
			`{"model":"m",` + hi + `,"tools":[{"type":"code_execution"}],"stream":true,"stream_options":{"include_usage":true},"stop":["a","b"]}`,
			&agent.Request{Model: "m", Input: []agent.Item{user("hi")}, Code: &agent.CodeTool{}, Stream: true, Stop: []string{"a", "b"}}},
		{"parts of every kind",
			`{"model":"m","tools":[{"type":"code_execution"}],"messages":[{"role":"user","name":"ann","content":[` +
				`{"type":"text","text":"look","cache_control":{"type":"ephemeral"}},` +
				`{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO","detail":"low"}},` +
				`{"type":"file","file":{"filename":"a.csv","file_data":"eA=="}},` +
				`{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}]}`,
			&agent.Request{Model: "m", Code: &agent.CodeTool{}, Input: []agent.Item{&agent.Message{Role: "user", Name: "ann", Source: "messages[0]",
				Content: agent.Content{Form: agent.FormParts, Parts: []agent.Part{
					{Type: agent.PartText, Text: "look", Extra: map[string]json.RawMessage{"cache_control": raw(`{"type":"ephemeral"}`)}},
					{Type: agent.PartImage, URL: "data:image/png;base64,iVBO", Detail: "low"},
					{Type: agent.PartFile, Filename: "a.csv", FileData: "eA=="},
					{Type: "input_audio", Extra: map[string]json.RawMessage{"input_audio": raw(`{"data":"AAAA","format":"wav"}`)}},
				}}}}}},
		{"a conversation: our reply sent back, the client's tool output",
			`{"model":"m","tools":[{"type":"code_execution"},{"type":"function","function":{"name":"search"}}],"messages":[` +
				`{"role":"system","content":"be brief"},` +
				`{"role":"user","content":"6?"},` +
				`{"role":"assistant","content":null,"reasoning_content":"hm","tool_calls":[` +
				`{"id":"c1","type":"code_execution","code_execution":{"code":"6","output":"6","status":"ok","stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"result":"6","error":null,"images":[],"files":[{"path":"o.txt","size":1}],"container_id":"sess_1"}},` +
				`{"type":"code_execution","code_execution":{"code":"print(1)","output":"1\n"}},` +
				`{"id":"s1","type":"function","function":{"name":"search","arguments":"{}"}}]},` +
				`{"role":"tool","tool_call_id":"s1","content":"found"}]}`,
			&agent.Request{Model: "m", Code: &agent.CodeTool{}, Tools: []agent.Tool{{Type: "function", Name: "search"}}, Input: []agent.Item{
				&agent.Message{Role: "system", Content: agent.Text("be brief"), Source: "messages[0]"},
				&agent.Message{Role: "user", Content: agent.Text("6?"), Source: "messages[1]"},
				&agent.Message{Role: "assistant", Content: agent.Content{Form: agent.FormNull}, Source: "messages[2]",
					Extra: map[string]json.RawMessage{"reasoning_content": raw(`"hm"`)}},
				&agent.Execution{ID: "c1", Code: "6", ContainerID: "sess_1", Output: "6",
					Result: &job.Result{Status: job.StatusOK, Result: &v, Files: []job.FileInfo{{Path: "o.txt", Size: 1}}}},
				// Written by hand, without status: known by its output; its id made up.
				&agent.Execution{ID: "call_code_1", Code: "print(1)", Output: "1\n"},
				&agent.ToolCall{ID: "s1", Type: "function", Name: "search", Arguments: "{}"},
				&agent.ToolOutput{CallID: "s1", Content: agent.Text("found")},
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromChatRequest(decode(t, tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("FromChatRequest(%s):\n got %s\nwant %s", tc.body, asJSON(got), asJSON(tc.want))
			}
		})
	}
}

// TestFromChatRequestErrors: what the client must fix, with its stable code.
func TestFromChatRequestErrors(t *testing.T) {
	hi := `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct{ name, body, code, msg string }{
		{"container not a string", `{"model":"m",` + hi + `,"tools":[{"type":"code_execution","container":42}]}`,
			"invalid_container", `the code_execution tool's "container": want a container id`},
		{"container object not auto", `{"model":"m",` + hi + `,"tools":[{"type":"code_interpreter","container":{"type":"auto","x":1}}]}`,
			"invalid_container", `the code_interpreter tool's "container"`},
		{"two containers", `{"model":"m",` + hi + `,"tools":[{"type":"code_execution","container":"sess_a","session_id":"sess_b"}]}`,
			"invalid_container", `the code tool names two containers, "sess_a" and "sess_b"`},
		{"unknown language", `{"model":"m",` + hi + `,"tools":[{"type":"code_execution","language":"cobol"}]}`,
			"unsupported_language", `the code_execution tool's language "cobol" is not supported; use one of ["python" "bash" "javascript"]`},
		{"language not a string", `{"model":"m",` + hi + `,"tools":[{"type":"code_execution","language":["python"]}]}`,
			"unsupported_language", `the code_execution tool's "language" must be a string`},
		{"two languages", `{"model":"m",` + hi + `,"tools":[{"type":"code_execution","language":"python"},{"type":"code_interpreter","language":"bash"}]}`,
			"unsupported_language", `the code tools name two languages, "python" and "bash"`},
		{"stop not strings", `{"model":"m",` + hi + `,"tools":[{"type":"code_execution"}],"stop":[1]}`,
			"invalid_stop", `"stop" must be a string or an array of strings, got [1]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromChatRequest(decode(t, tc.body))
			var re *agent.RequestError
			if !errors.As(err, &re) || re.Code != tc.code || !strings.HasPrefix(re.Message, tc.msg) {
				t.Errorf("FromChatRequest(%s) = %v, want a RequestError %q starting %q", tc.body, err, tc.code, tc.msg)
			}
		})
	}
}

func TestHasCodeTool(t *testing.T) {
	for _, tc := range []struct {
		tools string
		want  bool
	}{
		{`[]`, false},
		{`[{"type":"function","function":{"name":"code_execution"}}]`, false},
		{`[{"type":"code_execution"}]`, true},
		{`[{"type":"function","function":{"name":"f"}},{"type":"code_interpreter"}]`, true},
	} {
		if got := HasCodeTool(decode(t, `{"model":"m","messages":[],"tools":`+tc.tools+`}`)); got != tc.want {
			t.Errorf("HasCodeTool(tools %s) = %v, want %v", tc.tools, got, tc.want)
		}
	}
}
