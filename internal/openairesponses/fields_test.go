package openairesponses

// Guard tests against drift from OpenAI's Responses API, as openai-go (the SDK
// OpenAI generates from its API spec) defines it: every field of a request is
// handled, ignored, forwarded or refused on purpose (RequestFields), and every
// field of the objects a client reads is written, or left out for a stated
// reason. A new SDK version with a new field fails here, naming it.

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/openai/openai-go/v3/responses"
)

// jsonFields are the JSON names of a struct type's fields, as its tags write them.
func jsonFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		names = append(names, name)
	}
	return names
}

// sdkRequestFields are the fields of a Responses request: ResponseNewParams, and
// "stream", which the SDK sets by the method called (New or NewStreaming).
func sdkRequestFields() []string {
	return append(jsonFields(reflect.TypeFor[responses.ResponseNewParams]()), "stream")
}

// TestRequestFieldsCoverSDK: every request field openai-go defines is decided on.
func TestRequestFieldsCoverSDK(t *testing.T) {
	for _, name := range sdkRequestFields() {
		if RequestFields[name] == 0 {
			t.Errorf("openai-go's ResponseNewParams has the field %q, which RequestFields does not list: decide whether codeexec handles it, "+
				"ignores it, forwards it to the upstream or refuses it, and list it there (and in README's and docs/API.md's lists of fields)", name)
		}
	}
}

// handledSamples are valid values of the Handled fields, for TestRequestFieldsAsListed.
var handledSamples = map[string]string{
	"model": `"m"`, "input": `"hi"`, "instructions": `"be brief"`, "tools": `[{"type":"code_interpreter"}]`, "tool_choice": `"auto"`,
	"max_output_tokens": `10`, "temperature": `0.5`, "top_p": `0.5`, "parallel_tool_calls": `true`, "metadata": `{"k":"v"}`,
	"store": `true`, "stream": `true`, "previous_response_id": `"resp_1"`, "include": `["code_interpreter_call.outputs"]`,
	"user": `"u"`, "text": `{"format":{"type":"text"}}`, "reasoning": `{"effort":"low"}`,
}

// TestRequestFieldsAsListed: the decoder and the translation do with each field
// what RequestFields says.
func TestRequestFieldsAsListed(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(RequestFields)) {
		h := RequestFields[name]
		value := `{"x":1}`
		if h == Handled {
			var ok bool
			if value, ok = handledSamples[name]; !ok {
				t.Errorf("the Handled field %q has no sample value in handledSamples", name)
				continue
			}
		}
		body := `{"model":"m","input":"hi","` + name + `":` + value + `}`
		r, err := DecodeRequest([]byte(body))
		if err != nil {
			t.Errorf("DecodeRequest(%s): %v", body, err)
			continue
		}
		_, forwarded := r.Extra[name]
		req, _, err := FromResponsesRequest(r, nil, nil)
		var reqErr *agent.RequestError
		refused := errors.As(err, &reqErr) && reqErr.Code == "unsupported_parameter" && strings.Contains(reqErr.Message, `"`+name+`"`)
		if err != nil && !refused {
			t.Errorf("FromResponsesRequest(%s): %v", body, err)
			continue
		}
		if forwarded {
			_, forwarded = req.Extra[name]
		}
		if forwarded != (h == Forwarded) || refused != (h == Refused) {
			t.Errorf("field %q is listed as %v, but a request with it was forwarded %v, refused %v", name, h, forwarded, refused)
		}
	}
	// Set to its zero, a refused field is no request for the service.
	r, err := DecodeRequest([]byte(`{"model":"m","input":"hi","background":false,"conversation":null,"context_management":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := FromResponsesRequest(r, nil, nil); err != nil {
		t.Errorf("refused fields at their zero values: %v", err)
	}
}

// responseLeftOut are the Response fields codeexec does not write, and why: what
// the loop does not do (reasoning, tool-call caps, the services of
// RequestFields' Refused), or OpenAI's bookkeeping.
var responseLeftOut = map[string]string{
	"background": "no background responses", "conversation": "no stored conversations", "prompt": "no prompt templates",
	"moderation": "no moderation", "access_programs": "no access programs", "max_tool_calls": "ignored",
	"reasoning": "the upstream's reasoning settings are not echoed", "service_tier": "forwarded, not echoed",
	"top_logprobs": "forwarded, not echoed", "prompt_cache_key": "ignored", "prompt_cache_retention": "forwarded, not echoed",
	"prompt_cache_options": "forwarded, not echoed", "prompt_cache_diagnostics": "OpenAI's cache", "safety_identifier": "ignored",
	"completed_at": "optional", "tool_usage": "hosted tools' billing", "user": "written when the request names one",
}

// functionCallLeftOut and messageLeftOut are the item fields codeexec does not
// write: tool namespaces, programmatic and async calls, and a reasoning model's
// message phases are OpenAI's.
var (
	functionCallLeftOut = map[string]string{"namespace": "no tool namespaces", "caller": "no programmatic tool calls", "async": "no async calls"}
	messageLeftOut      = map[string]string{"phase": "no reasoning phases"}
)

// TestResponseCoversSDK: a Response as ToResponse writes it has every field of
// openai-go's Response but those left out on purpose, and its items and
// annotations every field of theirs.
func TestResponseCoversSDK(t *testing.T) {
	run := &agent.Execution{ID: "call_a", Code: "print(1)", ContainerID: "sess_1", Output: "1",
		Result: &job.Result{Status: job.StatusOK, Images: []job.Image{{Name: "figure-1.png", MimeType: "image/png", Data: []byte("PNG")}},
			Files: []job.FileInfo{{Path: "out.csv", Size: 1}}}}
	res := &agent.Result{Output: []agent.Item{run, &agent.ToolCall{ID: "call_b", Type: "function", Name: "f", Arguments: "{}"},
		&agent.Message{Role: "assistant", Content: agent.Text("see out.csv")}}}
	resp := ToResponse(res, Options{ID: "resp_1", Request: &Request{Model: "m"}, Outputs: true})
	data, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Response map[string]json.RawMessage
		Output   []map[string]json.RawMessage `json:"output"`
	}
	_ = json.Unmarshal(data, &got.Response)
	_ = json.Unmarshal(data, &got)
	check := func(what string, sdk reflect.Type, written map[string]json.RawMessage, leftOut map[string]string) {
		t.Helper()
		for _, name := range jsonFields(sdk) {
			_, has := written[name]
			_, skipped := leftOut[name]
			switch {
			case !has && !skipped:
				t.Errorf("openai-go's %s has the field %q, which codeexec's %s does not write: write it, or list it in responseLeftOut with the reason", sdk.Name(), name, what)
			case has && skipped:
				t.Errorf("%s writes %q, which responseLeftOut says it leaves out", what, name)
			}
		}
	}
	check("Response", reflect.TypeFor[responses.Response](), got.Response, responseLeftOut)
	if len(got.Output) != 3 {
		t.Fatalf("output: %s", data)
	}
	check("code_interpreter_call", reflect.TypeFor[responses.ResponseCodeInterpreterToolCall](), got.Output[0], nil)
	check("function_call", reflect.TypeFor[responses.ResponseFunctionToolCall](), got.Output[1], functionCallLeftOut)
	check("message", reflect.TypeFor[responses.ResponseOutputMessage](), got.Output[2], messageLeftOut)
	var outputs []map[string]json.RawMessage
	_ = json.Unmarshal(got.Output[0]["outputs"], &outputs)
	if len(outputs) != 2 {
		t.Fatalf("outputs: %s", got.Output[0]["outputs"])
	}
	check("logs output", reflect.TypeFor[responses.ResponseCodeInterpreterToolCallOutputLogs](), outputs[0], nil)
	check("image output", reflect.TypeFor[responses.ResponseCodeInterpreterToolCallOutputImage](), outputs[1], nil)
	var content []struct {
		Annotations []map[string]json.RawMessage `json:"annotations"`
	}
	_ = json.Unmarshal(got.Output[2]["content"], &content)
	if len(content) != 1 || len(content[0].Annotations) == 0 {
		t.Fatalf("content: %s", got.Output[2]["content"])
	}
	check("container_file_citation", reflect.TypeFor[responses.ResponseOutputTextAnnotationContainerFileCitation](), content[0].Annotations[0], nil)
}

// TestContainerFieldsCoverSDK: containerFrom reads every field of an auto
// container.
func TestContainerFieldsCoverSDK(t *testing.T) {
	read := []string{"type", "file_ids", "memory_limit", "network_policy"}
	for _, name := range jsonFields(reflect.TypeFor[responses.ToolCodeInterpreterContainerCodeInterpreterContainerAutoParam]()) {
		if !slices.Contains(read, name) {
			t.Errorf("openai-go's auto container has the field %q, which containerFrom does not read: read it (or refuse it) and list it here", name)
		}
	}
}

func (h Handling) String() string {
	return [...]string{"unlisted", "Handled", "Ignored", "Forwarded", "Refused"}[h]
}

// sdkEvents are the stream events openai-go knows, by type: each variant of its
// ResponseStreamEventUnion (its As… methods), named by its Type constant.
func sdkEvents(t *testing.T) map[string]reflect.Type {
	t.Helper()
	events := map[string]reflect.Type{}
	u := reflect.ValueOf(responses.ResponseStreamEventUnion{})
	for m := range u.Type().Methods() {
		if !strings.HasPrefix(m.Name, "As") || m.Name == "AsAny" || m.Type.NumIn() != 1 || m.Type.NumOut() != 1 {
			continue
		}
		v := u.Method(m.Index).Call(nil)[0]
		typ := v.FieldByName("Type")
		if !typ.IsValid() {
			continue
		}
		def := typ.MethodByName("Default")
		if !def.IsValid() {
			continue
		}
		events[def.Call(nil)[0].String()] = v.Type()
	}
	if len(events) < 40 {
		t.Fatalf("found %d event types in openai-go's ResponseStreamEventUnion; its shape changed", len(events))
	}
	return events
}

// eventLeftOut are the event fields codeexec does not write: log probabilities
// it has none of, and OpenAI's obfuscation padding.
var eventLeftOut = map[string]string{"logprobs": "no log probabilities", "obfuscation": "no obfuscation padding", "param": "no parameter to name"}

// TestStreamEventsCoverSDK: every event a Stream sends is one openai-go knows,
// with every field openai-go defines for it.
func TestStreamEventsCoverSDK(t *testing.T) {
	sdk := sdkEvents(t)
	run := &agent.Execution{ID: "call_a", Code: "print(2)", ContainerID: "sess_1", Output: "2",
		Result: &job.Result{Status: job.StatusOK, Stdout: "2\n", Files: []job.FileInfo{{Path: "o.txt", Size: 1}}}}
	_, done := frames(t, true, func(s *Stream) {
		s.Text("Let me see.")
		s.CodeDelta(0, "call_a", "print(2)")
		s.ExecutionStarted(0, &agent.Execution{ID: "call_a", Code: "print(2)", ContainerID: "sess_1"})
		s.ExecutionFinished(0, run)
		s.ToolCallDelta(0, "call_9", "search", `{"q":1}`)
		s.Finish(&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("Let me see.")}, run,
			&agent.ToolCall{ID: "call_9", Type: "function", Name: "search", Arguments: `{"q":1}`}}, Finish: agent.FinishToolCalls})
	})
	_, incomplete := frames(t, false, func(s *Stream) {
		s.Text("Stop")
		s.Finish(&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("Stop")}}, Finish: agent.FinishStepLimit})
	})
	_, failed := frames(t, false, func(s *Stream) {
		s.Text("Hm")
		s.Fail("upstream_error", "the upstream model failed")
	})
	seen := map[string]bool{}
	for _, ev := range slices.Concat(done, incomplete, failed) {
		typ := ev.Type()
		seen[typ] = true
		st, ok := sdk[typ]
		if !ok {
			t.Errorf("a Stream sends %q, an event openai-go does not know", typ)
			continue
		}
		for _, name := range jsonFields(st) {
			if _, has := ev[name]; !has && eventLeftOut[name] == "" {
				t.Errorf("openai-go's %s (%q) has the field %q, which codeexec's event does not write: write it, or list it in eventLeftOut with the reason", st.Name(), typ, name)
			}
		}
	}
	for _, typ := range []string{"response.completed", "response.incomplete", "response.failed", "error", "response.function_call_arguments.done",
		"response.code_interpreter_call.completed", "response.output_text.done"} {
		if !seen[typ] {
			t.Errorf("the streams sent no %q event: the test no longer covers it", typ)
		}
	}
}
