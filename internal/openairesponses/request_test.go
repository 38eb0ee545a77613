package openairesponses

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func ptr[T any](v T) *T { return &v }

func asJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// TestFromResponsesRequest: a client's body, as it comes, and the loop's request.
func TestFromResponsesRequest(t *testing.T) {
	user := func(text, src string) *agent.Message {
		return &agent.Message{Role: "user", Content: agent.Text(text), Source: src}
	}
	for _, tc := range []struct {
		name, body    string
		want          *agent.Request
		wantContainer *Container
	}{
		{"input as a string, no tools",
			`{"model":"m","input":"hi"}`,
			&agent.Request{Model: "m", Input: []agent.Item{user("hi", "input")}}, nil},
		{"the code tool, an auto container, instructions first",
			`{"model":"m","instructions":"be brief","input":"hi","tools":[{"type":"code_interpreter","container":{"type":"auto","memory_limit":"1g"}}]}`,
			&agent.Request{Model: "m", Code: &agent.CodeTool{}, Input: []agent.Item{
				&agent.Message{Role: "system", Content: agent.Text("be brief"), Source: "instructions"}, user("hi", "input")}},
			&Container{MemoryLimit: "1g"}},
		{"an auto container with files",
			`{"model":"m","input":"hi","tools":[{"type":"code_interpreter","container":{"type":"auto","file_ids":["file-1","file-2"]}}]}`,
			&agent.Request{Model: "m", Code: &agent.CodeTool{}, Input: []agent.Item{user("hi", "input")}},
			&Container{FileIDs: []string{"file-1", "file-2"}}},
		{"an auto container with a network policy",
			`{"model":"m","input":"hi","tools":[{"type":"code_interpreter","container":{"type":"auto","network_policy":{"type":"allowlist","allowed_domains":["a.com","*.b.org"]}}}]}`,
			&agent.Request{Model: "m", Code: &agent.CodeTool{}, Input: []agent.Item{user("hi", "input")}},
			&Container{Network: "allow=a.com,*.b.org"}},
		{"code_execution as an alias, a container id",
			`{"model":"m","input":"hi","tools":[{"type":"code_execution","container":"sess_1"}]}`,
			&agent.Request{Model: "m", Code: &agent.CodeTool{Container: "sess_1"}, Input: []agent.Item{user("hi", "input")}},
			&Container{ID: "sess_1"}},
		{"function tools beside it, settings",
			`{"model":"m","input":"hi","tools":[{"type":"function","name":"search","description":"look up","parameters":{"type":"object"},"strict":true,"x":1},{"type":"code_interpreter"}],
			  "tool_choice":{"type":"function","name":"search"},"max_output_tokens":50,"temperature":0.5,"top_p":0.9,"parallel_tool_calls":false,
			  "metadata":{"k":"v"},"store":false,"user":"u1","seed":7,"truncation":"auto","reasoning":{"effort":"low"},
			  "text":{"format":{"type":"json_schema","name":"out","schema":{"type":"object"},"strict":true}}}`,
			&agent.Request{Model: "m", Code: &agent.CodeTool{}, Input: []agent.Item{user("hi", "input")},
				Tools: []agent.Tool{{Type: "function", Name: "search", Description: "look up", Parameters: raw(`{"type":"object"}`), Strict: ptr(true),
					Extra: map[string]json.RawMessage{"x": raw(`1`)}}},
				ToolChoice: raw(`{"function":{"name":"search"},"type":"function"}`), MaxOutputTokens: ptr(50), Temperature: ptr(0.5), TopP: ptr(0.9),
				ParallelToolCalls: ptr(false), User: "u1",
				ResponseFormat: raw(`{"json_schema":{"name":"out","schema":{"type":"object"},"strict":true},"type":"json_schema"}`),
				Extra:          map[string]json.RawMessage{"seed": raw(`7`), "reasoning_effort": raw(`"low"`)}},
			&Container{}},
		{"tool_choice naming the code tool",
			`{"model":"m","input":"hi","tools":[{"type":"code_interpreter"}],"tool_choice":{"type":"code_interpreter"}}`,
			&agent.Request{Model: "m", Code: &agent.CodeTool{}, Input: []agent.Item{user("hi", "input")},
				ToolChoice: raw(`{"function":{"name":"code_execution"},"type":"function"}`)},
			&Container{}},
		{"items: parts, earlier calls and runs, outputs",
			`{"model":"m","stream":true,"input":[
			  {"role":"user","content":[{"type":"input_text","text":"plot"},{"type":"input_image","image_url":"data:image/png;base64,AAAA","detail":"low"},{"type":"input_file","filename":"a.csv","file_data":"eD0x"}]},
			  {"type":"code_interpreter_call","id":"ci_1","code":"print(1)","container_id":"sess_1","status":"completed","outputs":[{"type":"logs","logs":"1"},{"type":"image","url":"x"}]},
			  {"type":"message","role":"assistant","content":[{"type":"output_text","text":"one","annotations":[]}]},
			  {"type":"reasoning","id":"rs_1","summary":[]},
			  {"type":"function_call","id":"fc_1","call_id":"call_1","name":"search","arguments":"{}"},
			  {"type":"function_call_output","call_id":"call_1","output":"found"}]}`,
			&agent.Request{Model: "m", Stream: true, Input: []agent.Item{
				&agent.Message{Role: "user", Source: "input[0]", Content: agent.Content{Form: agent.FormParts, Parts: []agent.Part{
					{Type: agent.PartText, Text: "plot"}, {Type: agent.PartImage, URL: "data:image/png;base64,AAAA", Detail: "low"},
					{Type: agent.PartFile, Filename: "a.csv", FileData: "eD0x"}}}},
				&agent.Execution{ID: "ci_1", Code: "print(1)", ContainerID: "sess_1", Output: "1"},
				&agent.Message{Role: "assistant", Source: "input[2]", Content: agent.Content{Form: agent.FormParts, Parts: []agent.Part{{Type: agent.PartText, Text: "one"}}}},
				&agent.ToolCall{ID: "call_1", Type: "function", Name: "search", Arguments: "{}"},
				&agent.ToolOutput{CallID: "call_1", Content: agent.Text("found")},
			}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeRequest([]byte(tc.body))
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			got, c, err := FromResponsesRequest(r, nil, nil)
			if err != nil {
				t.Fatalf("FromResponsesRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("FromResponsesRequest(%s)\ngot  %s\nwant %s", tc.body, asJSON(got), asJSON(tc.want))
			}
			if !reflect.DeepEqual(c, tc.wantContainer) {
				t.Errorf("container: got %+v, want %+v", c, tc.wantContainer)
			}
		})
	}
}

// TestHistoryGoesFirst: a previous response's conversation comes after the
// request's instructions and before its input.
func TestHistoryGoesFirst(t *testing.T) {
	r, _ := DecodeRequest([]byte(`{"model":"m","instructions":"sys","input":"again"}`))
	prev := &agent.Message{Role: "assistant", Content: agent.Text("before")}
	got, _, err := FromResponsesRequest(r, []agent.Item{prev}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Input) != 3 || got.Input[1] != prev || got.Input[0].(*agent.Message).Role != "system" {
		t.Errorf("input: %s", asJSON(got.Input))
	}
}

// TestItemReference: an item_reference is the earlier item refs finds, in its place.
func TestItemReference(t *testing.T) {
	run := &agent.Execution{ID: "call_1", Code: "print(1)"}
	refs := func(id string) agent.Item {
		if id == "call_1" {
			return run
		}
		return nil
	}
	r, _ := DecodeRequest([]byte(`{"model":"m","input":[{"role":"user","content":"q"},{"type":"item_reference","id":"call_1"},{"role":"user","content":"again"}]}`))
	got, _, err := FromResponsesRequest(r, nil, refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Input) != 3 || got.Input[1] != run {
		t.Errorf("input: %s", asJSON(got.Input))
	}
}

// TestRequestRefusals: what the client must fix has a stable code.
func TestRequestRefusals(t *testing.T) {
	for _, tc := range []struct{ name, body, code string }{
		{"no input", `{"model":"m"}`, "missing_input"},
		{"input a number", `{"model":"m","input":3}`, "invalid_input"},
		{"unknown item", `{"model":"m","input":[{"type":"web_search_call","id":"ws"}]}`, "unsupported_input_item"},
		{"unknown item_reference", `{"model":"m","input":[{"type":"item_reference","id":"msg_gone"}]}`, "item_not_found"},
		{"unknown part", `{"model":"m","input":[{"role":"user","content":[{"type":"input_audio"}]}]}`, "invalid_input"},
		{"image without url or file", `{"model":"m","input":[{"role":"user","content":[{"type":"input_image","detail":"low"}]}]}`, "invalid_image"},
		{"file by url", `{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_url":"https://x"}]}]}`, "invalid_file"},
		{"hosted tool", `{"model":"m","input":"hi","tools":[{"type":"web_search"}]}`, "unsupported_tool"},
		{"function without name", `{"model":"m","input":"hi","tools":[{"type":"function"}]}`, "invalid_tools"},
		{"bad container", `{"model":"m","input":"hi","tools":[{"type":"code_interpreter","container":{"type":"manual"}}]}`, "invalid_container"},
		{"two containers", `{"model":"m","input":"hi","tools":[{"type":"code_interpreter","container":"a"},{"type":"code_execution","container":"b"}]}`, "invalid_container"},
		{"bad tool_choice", `{"model":"m","input":"hi","tool_choice":"sometimes"}`, "invalid_tool_choice"},
		{"hosted tool_choice", `{"model":"m","input":"hi","tool_choice":{"type":"web_search"}}`, "invalid_tool_choice"},
		{"bad text format", `{"model":"m","input":"hi","text":{"format":{"type":"yaml"}}}`, "invalid_text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeRequest([]byte(tc.body))
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			_, _, err = FromResponsesRequest(r, nil, nil)
			var re *agent.RequestError
			if !errors.As(err, &re) || re.Code != tc.code {
				t.Errorf("FromResponsesRequest(%s) got %v, want code %q", tc.body, err, tc.code)
			}
		})
	}
}

// TestDecodeTypes: a field of the wrong JSON type is refused, naming the field.
func TestDecodeTypes(t *testing.T) {
	for _, body := range []string{`[]`, `{"model":1}`, `{"temperature":"hot"}`, `{"metadata":{"k":1}}`, `{"include":"x"}`, `{"store":"yes"}`} {
		if _, err := DecodeRequest([]byte(body)); err == nil {
			t.Errorf("DecodeRequest(%s): no error", body)
		}
	}
}
