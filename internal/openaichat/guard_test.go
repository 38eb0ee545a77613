package openaichat

// Guards that fail when a type on either side of the face gains a field the face
// does not carry, as tailcfg's Hostinfo.Equal guard does: the field lists below
// say where each field goes, and the full request must set every field of both
// sides and reach the upstream whole.

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/agent/agenttest"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
)

// TestFieldsInSync: every field of the types the face translates, with where it
// goes. A new field fails this test until it is handled and listed here.
func TestFieldsInSync(t *testing.T) {
	for _, tc := range []struct {
		v      any
		fields map[string]string // field → where the face puts (or reads) it
	}{
		{agent.Request{}, map[string]string{
			"Model": "model", "Input": "messages", "Tools": "tools but the code tool", "Code": "the code tool",
			"ToolChoice": "tool_choice", "ParallelToolCalls": "parallel_tool_calls", "Stream": "stream",
			"Temperature": "temperature", "TopP": "top_p", "MaxOutputTokens": "max_tokens", "Stop": "stop",
			"Seed": "seed", "ResponseFormat": "response_format", "User": "user",
			"Extra": "unknown fields, n, max_completion_tokens, stream_options when not streaming"}},
		{agent.CodeTool{}, map[string]string{"Container": `the code tool's "container" or "session_id"`, "Language": `the code tool's "language"`,
			"Network": "not in chat completions: the operator's network"}},
		{agent.Tool{}, map[string]string{"Type": "type", "Name": "function.name", "Description": "function.description",
			"Parameters": "function.parameters", "Strict": "function.strict", "Extra": "function's other fields", "EntryExtra": "the entry's other fields"}},
		{agent.Message{}, map[string]string{"Role": "role", "Content": "content", "Name": "name", "Extra": "other fields", "Source": "messages[i]"}},
		{agent.Content{}, map[string]string{"Parts": "content parts, or the string", "Form": "string, array, null or absent"}},
		{agent.Part{}, map[string]string{"Type": "type (image_url is image)", "Text": "text", "URL": "image_url.url", "Detail": "image_url.detail",
			"Filename": "file.filename", "FileData": "file.file_data", "FileID": "file.file_id", "Extra": "other fields"}},
		{agent.ToolCall{}, map[string]string{"ID": "id", "Type": "type", "Name": "function.name", "Arguments": "function.arguments", "Extra": "other fields"}},
		{agent.ToolOutput{}, map[string]string{"CallID": "tool_call_id", "Content": "content", "Name": "name", "Extra": "other fields"}},
		{agent.Execution{}, map[string]string{"ID": "id", "Code": "code_execution.code", "ContainerID": "code_execution.container_id",
			"Result": "code_execution's status, stdout, stderr, result, error, images, files and truncation flags", "Output": "code_execution.output"}},
		{agent.Result{}, map[string]string{"Output": "the message and its tool_calls", "Usage": "usage", "Finish": "finish_reason",
			"Upstream": "id, object, created, model, system_fingerprint, other fields"}},
		{agent.UpstreamReply{}, map[string]string{"ID": "id", "Object": "object", "Created": "created", "Model": "model",
			"SystemFingerprint": "system_fingerprint", "Extra": "other fields"}},
		{agent.Usage{}, map[string]string{"InputTokens": "prompt_tokens", "OutputTokens": "completion_tokens", "TotalTokens": "total_tokens"}},
		{llm.ChatRequest{}, map[string]string{"Model": "Model", "Messages": "Input", "Tools": "Tools and Code", "ToolChoice": "ToolChoice",
			"ParallelToolCalls": "ParallelToolCalls", "Stream": "Stream", "StreamOptions": "Stream.Finish, or Extra when not streaming",
			"Temperature": "Temperature", "TopP": "TopP", "MaxTokens": "MaxOutputTokens", "MaxCompletionTokens": "Extra", "N": "Extra",
			"Stop": "Stop", "Seed": "Seed", "ResponseFormat": "ResponseFormat", "User": "User", "Extra": "Extra"}},
		{llm.Message{}, map[string]string{"Role": "Role", "Content": "Content", "Name": "Name", "ToolCalls": "the items after the message",
			"ToolCallID": "ToolOutput.CallID", "Extra": "Extra"}},
		{llm.Tool{}, map[string]string{"Type": "Type", "Function": "Name, Description, Parameters, Strict, Extra", "Extra": "EntryExtra"}},
		{llm.FunctionDef{}, map[string]string{"Name": "Name", "Description": "Description", "Parameters": "Parameters", "Strict": "Strict", "Extra": "Extra"}},
		{llm.ToolCall{}, map[string]string{"Index": "none: deltas only", "ID": "ID", "Type": "Type", "Function": "Name, Arguments",
			"CodeExecution": "an Execution", "Extra": "Extra"}},
		{llm.ContentPart{}, map[string]string{"Type": "Type", "Text": "Text", "ImageURL": "URL, Detail", "File": "Filename, FileData, FileID", "Extra": "Extra"}},
		{llm.CodeExecution{}, map[string]string{"Code": "Code", "Output": "Output", "Status": "Result.Status", "Stdout": "Result.Stdout",
			"Stderr": "Result.Stderr", "StdoutTruncated": "Result.StdoutTruncated", "StderrTruncated": "Result.StderrTruncated",
			"Result": "Result.Result", "ResultTruncated": "Result.ResultTruncated", "Error": "Result.Error", "Images": "Result.Images",
			"ImagesTruncated": "Result.ImagesTruncated", "Files": "Result.Files", "FilesTruncated": "Result.FilesTruncated", "ContainerID": "ContainerID"}},
	} {
		rt := reflect.TypeOf(tc.v)
		var have []string
		for i := range rt.NumField() {
			if rt.Field(i).IsExported() {
				have = append(have, rt.Field(i).Name)
			}
		}
		if want := slices.Sorted(maps.Keys(tc.fields)); !slices.Equal(slices.Sorted(slices.Values(have)), want) {
			t.Errorf("%s has the fields %v, the face handles %v: FromChatRequest or ToChatCompletion might be out of sync", rt, have, want)
		}
	}
}

// fullRequest sets every field of every type a chat request is made of.
const fullRequest = `{
  "model": "fake-model",
  "messages": [
    {"role": "system", "content": "be brief", "name": "ops"},
    {"role": "user", "content": [
      {"type": "text", "text": "sum it", "cache_control": {"type": "ephemeral"}},
      {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
      {"type": "file", "file": {"filename": "a.csv", "file_data": "eA==", "file_id": "file-1"}}
    ]},
    {"role": "assistant", "content": "I'll look.", "reasoning_content": "hm", "tool_calls": [
      {"id": "c1", "type": "code_execution", "code_execution": {"code": "1/0", "output": "ZeroDivisionError: division by zero\n",
        "status": "error", "stdout": "a", "stderr": "b", "stdout_truncated": true, "stderr_truncated": true, "result": "r",
        "result_truncated": true, "error": {"name": "ZeroDivisionError", "message": "division by zero", "traceback": "tb"},
        "images": [{"name": "fig.png", "mime_type": "image/png", "data": "iVBO"}], "images_truncated": true,
        "files": [{"path": "o.txt", "size": 1, "url": "/v1/sessions/sess_1/files/o.txt"}], "files_truncated": true, "container_id": "sess_1"}},
      {"index": 1, "id": "s1", "type": "function", "function": {"name": "search", "arguments": "{}"}, "x_call": 1}
    ]},
    {"role": "tool", "tool_call_id": "s1", "name": "search", "content": "found", "x_tool": true}
  ],
  "tools": [
    {"type": "function", "function": {"name": "search", "description": "look up", "parameters": {"type": "object"}, "strict": true, "x_fn": 1},
     "cache_control": {"type": "ephemeral"}},
    {"type": "code_execution", "container": "sess_1", "language": "javascript"}
  ],
  "tool_choice": "auto", "parallel_tool_calls": false, "stream": true, "stream_options": {"include_usage": true, "x_opt": 1},
  "temperature": 0.2, "top_p": 0.9, "max_tokens": 100, "max_completion_tokens": 200, "n": 1, "stop": "END", "seed": 7,
  "response_format": {"type": "json_object"}, "user": "u1", "reasoning_effort": "low"
}`

// fullUpstream is what the upstream gets for fullRequest: the same, but for what
// the loop does — the hint after the system message, the file as a note, the code
// run as a function call and its result, the code tool as a function, the usage
// asked for, stop as an array — and the "index" of a delta dropped from history.
const fullUpstream = `{
  "model": "fake-model",
  "messages": [
    {"role": "system", "content": "be brief", "name": "ops"},
    {"role": "system", "content": "HINT"},
    {"role": "user", "content": [
      {"type": "text", "text": "sum it", "cache_control": {"type": "ephemeral"}},
      {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
      {"type": "text", "text": "[The file a.csv (1 bytes) is in the working directory /work for the code_execution tool.]"}
    ]},
    {"role": "assistant", "content": "I'll look.", "reasoning_content": "hm", "tool_calls": [
      {"id": "c1", "type": "function", "function": {"name": "code_execution", "arguments": "{\"code\":\"1/0\"}"}},
      {"id": "s1", "type": "function", "function": {"name": "search", "arguments": "{}"}, "x_call": 1}
    ]},
    {"role": "tool", "tool_call_id": "c1", "content": "TOLD"},
    {"role": "tool", "tool_call_id": "s1", "name": "search", "content": "found", "x_tool": true}
  ],
  "tools": [
    {"type": "function", "function": {"name": "search", "description": "look up", "parameters": {"type": "object"}, "strict": true, "x_fn": 1},
     "cache_control": {"type": "ephemeral"}},
    {"type": "function", "function": {"name": "code_execution", "description": "CODE", "parameters": PARAMS}}
  ],
  "tool_choice": "auto", "parallel_tool_calls": false, "stream": true, "stream_options": {"include_usage": true},
  "temperature": 0.2, "top_p": 0.9, "max_tokens": 100, "max_completion_tokens": 200, "n": 1, "stop": ["END"], "seed": 7,
  "response_format": {"type": "json_object"}, "user": "u1", "reasoning_effort": "low"
}`

// TestEveryFieldReachesUpstream: a request that sets every field reaches the
// upstream with all of them, changed only as the loop must.
func TestEveryFieldReachesUpstream(t *testing.T) {
	req := decode(t, fullRequest)
	if missing := unset(req, "ToolCall.Index"); len(missing) > 0 {
		t.Fatalf("fullRequest does not set %v: set them, and say in fullUpstream where they go", missing)
	}
	areq, err := FromChatRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if missing := unset(areq, "CodeTool.Network"); len(missing) > 0 {
		t.Errorf("FromChatRequest(fullRequest) leaves %v unset", missing)
	}
	up := llmtest.NewServer(t, llmtest.Text("done"))
	sb := &agenttest.Sandbox{T: t}
	if _, err := (&agent.Agent{}).Complete(context.Background(), agent.Upstream(llm.New(up.Provider())), areq, sb, nil); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(up.Requests()[0].Body, &got); err != nil {
		t.Fatal(err)
	}
	// What the loop writes itself is checked by the agent's tests.
	msgs := got["messages"].([]any)
	msgs[1].(map[string]any)["content"] = "HINT"
	msgs[4].(map[string]any)["content"] = "TOLD"
	code := got["tools"].([]any)[1].(map[string]any)["function"].(map[string]any)
	code["description"], code["parameters"] = "CODE", "PARAMS"
	var want map[string]any
	if err := json.Unmarshal([]byte(strings.Replace(fullUpstream, "PARAMS", `"PARAMS"`, 1)), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the upstream got\n%s\nwant\n%s", asJSON(got), asJSON(want))
	}
	if files := sb.Files(); files["a.csv"] != "x" {
		t.Errorf("files placed: %q", files)
	}
}

// unset lists the exported fields ("Type.Field") of the agent and llm struct types
// in v's tree that are zero everywhere they appear, but for those in except. It
// reads llm.Content through its parts and agent.Items through what they hold; it
// does not look into other packages' types (a job.Result is set or not).
func unset(v any, except ...string) []string {
	set := map[string]bool{}
	seen := map[string]bool{}
	var walk func(reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k))
			}
		case reflect.Struct:
			if c, ok := v.Interface().(llm.Content); ok {
				walk(reflect.ValueOf(c.Parts()))
				return
			}
			rt := v.Type()
			if !strings.HasSuffix(rt.PkgPath(), "/agent") && !strings.HasSuffix(rt.PkgPath(), "/llm") {
				return
			}
			for i := range rt.NumField() {
				f := rt.Field(i)
				if !f.IsExported() {
					continue
				}
				name := rt.Name() + "." + f.Name
				seen[name] = true
				if !v.Field(i).IsZero() {
					set[name] = true
				}
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(v))
	var missing []string
	for name := range seen {
		if !set[name] && !slices.Contains(except, name) {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return missing
}
