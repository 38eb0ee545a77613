package llm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// sameJSON reports whether a and b are the same JSON value (key order aside).
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(va, vb)
}

func TestChatRequestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" means the same as in
	}{
		{
			name: "unknown top-level fields pass through",
			in: `{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}],
				"reasoning_effort":"high","metadata":{"a":"b"},"logit_bias":{"50256":-100},
				"chat_template_kwargs":{"enable_thinking":false},"top_k":40,"store":true}`,
		},
		{
			name: "string content and array content keep their form",
			in: `{"model":"m","messages":[
				{"role":"system","content":"be brief"},
				{"role":"user","content":[{"type":"text","text":"what is this?"}]},
				{"role":"user","content":[
					{"type":"text","text":"and these?"},
					{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
					{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0=","filename":"a.pdf"}},
					{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}]},
				{"role":"user","content":""}]}`,
		},
		{
			name: "function tools, code_execution and unknown tool types",
			in: `{"model":"m","messages":[],"tools":[
				{"type":"function","function":{"name":"get_weather","description":"Weather.","strict":true,
					"parameters":{"type":"object","properties":{"city":{"type":"string","x-extension":1}},"required":["city"],"additionalProperties":false}}},
				{"type":"code_execution"},
				{"type":"web_search","web_search":{"max_uses":3},"cache_control":{"type":"ephemeral"}}],
				"tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false}`,
		},
		{
			name: "assistant tool calls of every type and tool results",
			in: `{"model":"m","messages":[
				{"role":"assistant","content":null,"reasoning_content":"thinking…","tool_calls":[
					{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},
					{"id":"call_2","type":"code_execution","code_execution":{"code":"print(2+2)","output":"4\n"}},
					{"id":"call_3","type":"custom","custom":{"name":"g","input":"x"}}]},
				{"role":"tool","tool_call_id":"call_1","content":"sunny"},
				{"role":"assistant","content":"done","refusal":null,"name":"bot"}]}`,
		},
		{
			name: "sampling fields keep their values",
			in: `{"model":"m","messages":[],"temperature":0,"top_p":0.5,"max_tokens":10,"max_completion_tokens":20,
				"n":1,"stop":["\n\n","END"],"seed":-7,"response_format":{"type":"json_schema","json_schema":{"name":"v","schema":{}}},
				"user":"u1","stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}`,
		},
		{
			name: "a key spelled like a field in another case stays an extra",
			in:   `{"model":"m","Model":"other","messages":[]}`,
		},
		{
			name: "stream false and null optionals are written by omission",
			in:   `{"model":"m","messages":[],"stream":false,"temperature":null}`,
			want: `{"model":"m","messages":[]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeChatRequest(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("DecodeChatRequest: %v", err)
			}
			got, err := json.Marshal(req)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			want := tt.want
			if want == "" {
				want = tt.in
			}
			if !sameJSON(t, got, []byte(want)) {
				t.Errorf("round trip\ngot:  %s\nwant: %s", got, want)
			}
		})
	}
}

func TestChatRequestDecodedFields(t *testing.T) {
	in := `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"b"}]}],
		"tools":[{"type":"code_execution"}],"temperature":0.2,"reasoning_effort":"low"}`
	req, err := DecodeChatRequest(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if req.Temperature == nil || *req.Temperature != 0.2 {
		t.Errorf("Temperature = %v, want 0.2", req.Temperature)
	}
	if got := string(req.Extra["reasoning_effort"]); got != `"low"` {
		t.Errorf(`Extra["reasoning_effort"] = %s, want "low"`, got)
	}
	if len(req.Tools) != 1 || req.Tools[0].Type != ToolTypeCodeExecution || req.Tools[0].Function != nil {
		t.Errorf("Tools = %+v, want one code_execution tool", req.Tools)
	}
	m := req.Messages[0]
	if got, want := m.Text(), "a\nb"; got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
	if got := len(m.Parts()); got != 3 {
		t.Errorf("len(Parts()) = %d, want 3", got)
	}
}

func TestDecodeChatRequestErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{``, "empty body"},
		{`[1]`, "want a JSON object"},
		{`{"model":"m"} {}`, "data after the JSON object"},
		{`{"model":"m","messages":[{"role":"user","content":42}]}`, `content must be a string, an array of parts or null, got "42"`},
		{`{"model":"m","temperature":"hot"}`, `field "temperature"`},
		{`{"model":"m","messages":{"role":"user"}}`, `field "messages"`},
		{`{"model":"m",`, "unexpected EOF"},
	}
	for _, tt := range tests {
		_, err := DecodeChatRequest(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DecodeChatRequest(%q) error = %v, want one containing %q", tt.in, err, tt.want)
		}
	}
}

func TestContentForms(t *testing.T) {
	tests := []struct {
		name      string
		c         Content
		json      string // "" when omitted
		text      string
		partCount int
	}{
		{"absent", Content{}, "", "", 0},
		{"null", NullContent(), `null`, "", 0},
		{"empty string", TextContent(""), `""`, "", 1},
		{"string", TextContent("<b>&</b>"), `"<b>&</b>"`, "<b>&</b>", 1},
		{"empty parts", PartsContent(), `[]`, "", 0},
		{"parts", PartsContent(ContentPart{Type: PartText, Text: ""}, ContentPart{Type: PartImageURL, ImageURL: &ImageURL{URL: "u"}}),
			`[{"type":"text","text":""},{"type":"image_url","image_url":{"url":"u"}}]`, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := marshalNoEscape(Message{Role: "user", Content: tt.c})
			if err != nil {
				t.Fatal(err)
			}
			want := `{"role":"user"}`
			if tt.json != "" {
				want = `{"role":"user","content":` + tt.json + `}`
			}
			if string(b) != want {
				t.Errorf("Marshal got %s, want %s", b, want)
			}
			var back Message
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Content, tt.c) {
				t.Errorf("decoded content %#v, want %#v", back.Content, tt.c)
			}
			if got := tt.c.Text(); got != tt.text {
				t.Errorf("Text() = %q, want %q", got, tt.text)
			}
			if got := len(tt.c.Parts()); got != tt.partCount {
				t.Errorf("len(Parts()) = %d, want %d", got, tt.partCount)
			}
		})
	}
}

func TestEncodeWithExtra(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"extras after fields, sorted", ChatRequest{Model: "m", Messages: []Message{},
			Extra: map[string]json.RawMessage{"z": json.RawMessage(`1`), "a": json.RawMessage(` { "x" : [ 1 ] } `)}},
			`{"model":"m","messages":[],"a":{"x":[1]},"z":1}`},
		{"typed field wins over an extra of its name", ChatRequest{Model: "m",
			Extra: map[string]json.RawMessage{"model": json.RawMessage(`"other"`)}},
			`{"model":"m","messages":null}`},
		{"extras into an otherwise empty object", Message{Extra: map[string]json.RawMessage{"reasoning_content": json.RawMessage(`"hm"`)}},
			`{"reasoning_content":"hm"}`},
		{"empty raw extra is null", Tool{Type: "x", Extra: map[string]json.RawMessage{"x": nil}},
			`{"type":"x","x":null}`},
		{"no HTML escaping", ToolCall{Type: ToolTypeCodeExecution, CodeExecution: &CodeExecution{Code: "print('<a>&')", Output: "<a>&\n"}},
			`{"type":"code_execution","code_execution":{"code":"print('<a>&')","output":"<a>&\n"}}`},
		{"choices are never null", ChatChunk{ID: "c"}, `{"id":"c","object":"","created":0,"model":"","choices":[]}`},
		{"chunk finish_reason null until the end", ChunkChoice{Delta: Message{Content: TextContent("a")}},
			`{"index":0,"delta":{"content":"a"},"finish_reason":null}`},
		{"function arguments always written", ToolCall{Index: new(0), Function: &FunctionCall{}},
			`{"index":0,"function":{"arguments":""}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := marshalNoEscape(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
	if _, err := json.Marshal(Tool{Type: "x", Extra: map[string]json.RawMessage{"bad": json.RawMessage(`{`)}}); err == nil ||
		!strings.Contains(err.Error(), `extra field "bad"`) {
		t.Errorf("Marshal with an invalid extra: error = %v, want one naming the field", err)
	}
}

const openAIResponse = `{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": null,
        "tool_calls": [
          {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
        ],
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "tool_calls"
    }
  ],
  "usage": {
    "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0}
  },
  "service_tier": "default",
  "system_fingerprint": "fp_123"
}`

func TestDecodeChatResponse(t *testing.T) {
	r, err := DecodeChatResponse([]byte(openAIResponse))
	if err != nil {
		t.Fatal(err)
	}
	c := r.Choices[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"ID", r.ID, "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"},
		{"Created", r.Created, int64(1741569952)},
		{"FinishReason", c.FinishReason, "tool_calls"},
		{"content is null", c.Message.Content.IsNull(), true},
		{"tool call name", c.Message.ToolCalls[0].Function.Name, "get_weather"},
		{"tool call arguments", c.Message.ToolCalls[0].Function.Arguments, `{"city":"Paris"}`},
		{"usage", [3]int{r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.TotalTokens}, [3]int{19, 10, 29}},
		{"usage extra", string(r.Usage.Extra["completion_tokens_details"]), `{"reasoning_tokens": 0}`},
		{"choice extra", string(c.Extra["logprobs"]), "null"},
		{"message extra", string(c.Message.Extra["annotations"]), "[]"},
		{"response extra", string(r.Extra["service_tier"]), `"default"`},
		{"fingerprint", r.SystemFingerprint, "fp_123"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s: got %#v, want %#v", ch.what, ch.got, ch.want)
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, b, []byte(openAIResponse)) {
		t.Errorf("round trip\ngot:  %s\nwant: %s", b, openAIResponse)
	}
}

func TestDecodeChatResponseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty body"},
		{"<html>502 Bad Gateway</html>", `want a JSON object, got "<html>502 Bad Gateway</html>"`},
		{"null", "want a JSON object"},
		{`{"choices":[{"message":{"content":{}}}]}`, "content must be"},
		{`{"created":"yesterday"}`, `field "created"`},
	}
	for _, tt := range tests {
		_, err := DecodeChatResponse([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DecodeChatResponse(%q) error = %v, want one containing %q", tt.in, err, tt.want)
		}
	}
}

func TestDecodeChatChunk(t *testing.T) {
	tests := []struct {
		in     string
		finish *string
		check  func(*ChatChunk) string // returns a complaint or ""
	}{
		{
			in: `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}`,
			check: func(c *ChatChunk) string {
				d := c.Choices[0].Delta
				if d.Role != "assistant" || !d.Content.IsString() || d.Content.Text() != "" {
					return "want role assistant and empty string content"
				}
				return ""
			},
		},
		{
			in: `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"ci"}}]},"finish_reason":null}]}`,
			check: func(c *ChatChunk) string {
				tc := c.Choices[0].Delta.ToolCalls[0]
				if tc.Index == nil || *tc.Index != 1 || tc.ID != "" || tc.Function.Arguments != `{"ci` {
					return "want index 1 and an argument fragment"
				}
				return ""
			},
		},
		{
			in:     `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
			finish: new("stop"),
		},
		{
			in: `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
			check: func(c *ChatChunk) string {
				if c.Usage == nil || c.Usage.TotalTokens != 3 || len(c.Choices) != 0 {
					return "want usage and no choices"
				}
				return ""
			},
		},
	}
	for _, tt := range tests {
		c, err := DecodeChatChunk([]byte(tt.in))
		if err != nil {
			t.Errorf("DecodeChatChunk(%s): %v", tt.in, err)
			continue
		}
		if len(c.Choices) > 0 && !reflect.DeepEqual(c.Choices[0].FinishReason, tt.finish) {
			t.Errorf("DecodeChatChunk(%s): finish_reason %v, want %v", tt.in, c.Choices[0].FinishReason, tt.finish)
		}
		if tt.check != nil {
			if msg := tt.check(c); msg != "" {
				t.Errorf("DecodeChatChunk(%s): %s; got %+v", tt.in, msg, c)
			}
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if !sameJSON(t, b, []byte(tt.in)) {
			t.Errorf("round trip\ngot:  %s\nwant: %s", b, tt.in)
		}
	}
}

// TestExtraFieldsCovered fails when a wire type gains a field without a json tag
// (which encoding/json would write under its Go name, outside the Extra scheme).
func TestExtraFieldsCovered(t *testing.T) {
	types := []any{ChatRequest{}, StreamOptions{}, Message{}, Tool{}, FunctionDef{}, ToolCall{},
		ContentPart{}, ChatResponse{}, Choice{}, Usage{}, ChatChunk{}, ChunkChoice{}, Model{}}
	for _, v := range types {
		rt := reflect.TypeOf(v)
		if _, ok := rt.FieldByName("Extra"); !ok {
			t.Errorf("%s has no Extra field", rt.Name())
		}
		for i := range rt.NumField() {
			if rt.Field(i).Tag.Get("json") == "" {
				t.Errorf("%s.%s has no json tag", rt.Name(), rt.Field(i).Name)
			}
		}
	}
}

// TestCodeExecutionJSON: a finished entry has every field, empty ones included, the
// fragment announcing a run only its code, status and container. (Moved from the
// agent's TestEntryJSON: the encoding is this type's.)
func TestCodeExecutionJSON(t *testing.T) {
	for _, tc := range []struct {
		e    CodeExecution
		want string
	}{
		{CodeExecution{Code: "1", Status: StatusRunning, ContainerID: "sess_1"}, `{"code":"1","status":"running","container_id":"sess_1"}`},
		// One a client wrote in its history, without a status: passed on as it came.
		{CodeExecution{Code: "1", Output: "1\n"}, `{"code":"1","output":"1\n"}`},
		{CodeExecution{Code: "x=1", Output: "", Status: "ok"},
			`{"code":"x=1","output":"","status":"ok","stdout":"","stderr":"","stdout_truncated":false,"stderr_truncated":false,"result":null,"error":null,"images":[],"files":[]}`},
	} {
		got, err := json.Marshal(tc.e)
		if err != nil || string(got) != tc.want {
			t.Errorf("json.Marshal(%+v) = %s, %v; want %s", tc.e, got, err, tc.want)
		}
	}
}
