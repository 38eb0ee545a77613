package openairesponses

import (
	"encoding/json"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/job"
)

func compact(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON %s: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestToResponse: a loop's result, and the Response the client gets.
func TestToResponse(t *testing.T) {
	run := &agent.Execution{ID: "call_a", Code: "open('out.csv','w').write('x')\nprint(2)", ContainerID: "sess_1", Output: "2",
		Result: &job.Result{Status: job.StatusOK, Stdout: "2\n", Images: []job.Image{{Name: "p.png", MimeType: "image/png", Data: []byte("PNG")}},
			Files: []job.FileInfo{{Path: "out.csv", Size: 1}}}}
	failed := &agent.Execution{ID: "call_b", Code: "import os", ContainerID: "sess_1", Output: "rejected: no",
		Result: &job.Result{Status: job.StatusRejected, Error: &job.Error{Name: agent.ErrorRejected, Message: "no"}}}
	usage := agent.Usage{InputTokens: 10, OutputTokens: 5, TotalTokens: 15}
	final := &agent.Message{Role: "assistant", Content: agent.Text("Wrote out.csv.")}
	base := `"id":"resp_r1","object":"response","created_at":100,"error":null,"instructions":null,"max_output_tokens":null,"model":"m",
		"parallel_tool_calls":true,"previous_response_id":null,"store":true,"temperature":null,"top_p":null,"tool_choice":"auto","tools":[],
		"text":{"format":{"type":"text"}},"truncation":"disabled","metadata":{},
		"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":0},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":15}`
	for _, tc := range []struct {
		name    string
		res     *agent.Result
		outputs bool
		want    string
	}{
		{"a text answer",
			&agent.Result{Output: []agent.Item{final}, Usage: usage, Finish: agent.FinishStop},
			false,
			`{` + base + `,"status":"completed","incomplete_details":null,"output_text":"Wrote out.csv.","output":[
			{"id":"msg_r1_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Wrote out.csv.","annotations":[],"logprobs":[]}]}]}`},
		{"runs without outputs, a citation",
			&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("Let me.")}, failed, run, final}, Usage: usage, Finish: agent.FinishStop},
			false,
			`{` + base + `,"status":"completed","incomplete_details":null,"output_text":"Wrote out.csv.","output":[
			{"id":"msg_r1_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Let me.","annotations":[],"logprobs":[]}]},
			{"id":"call_b","type":"code_interpreter_call","status":"failed","code":"import os","container_id":"sess_1","outputs":null},
			{"id":"call_a","type":"code_interpreter_call","status":"completed","code":"open('out.csv','w').write('x')\nprint(2)","container_id":"sess_1","outputs":null},
			{"id":"msg_r1_2","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Wrote out.csv.","logprobs":[],
			  "annotations":[{"type":"container_file_citation","container_id":"sess_1","file_id":"cfile_b3V0LmNzdg","filename":"out.csv","start_index":6,"end_index":13}]}]}]}`},
		{"outputs included: logs and an image",
			&agent.Result{Output: []agent.Item{run, final}, Usage: usage, Finish: agent.FinishStop},
			true,
			`{` + base + `,"status":"completed","incomplete_details":null,"output_text":"Wrote out.csv.","output":[
			{"id":"call_a","type":"code_interpreter_call","status":"completed","code":"open('out.csv','w').write('x')\nprint(2)","container_id":"sess_1",
			  "outputs":[{"type":"logs","logs":"2"},{"type":"image","url":"data:image/png;base64,UE5H"}]},
			{"id":"msg_r1_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Wrote out.csv.","logprobs":[],
			  "annotations":[{"type":"container_file_citation","container_id":"sess_1","file_id":"cfile_b3V0LmNzdg","filename":"out.csv","start_index":6,"end_index":13}]}]}]}`},
		{"client calls end it: no empty message",
			&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Content{Form: agent.FormNull}},
				&agent.ToolCall{ID: "call_9", Type: "function", Name: "search", Arguments: `{"q":1}`}}, Usage: usage, Finish: agent.FinishToolCalls},
			false,
			`{` + base + `,"status":"completed","incomplete_details":null,"output_text":"","output":[
			{"id":"fc_9","type":"function_call","status":"completed","call_id":"call_9","name":"search","arguments":"{\"q\":1}"}]}`},
		{"the step limit",
			&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("Stopped.")}}, Usage: usage, Finish: agent.FinishStepLimit},
			false,
			`{` + base + `,"status":"incomplete","incomplete_details":{"reason":"max_steps"},"output_text":"Stopped.","output":[
			{"id":"msg_r1_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Stopped.","annotations":[],"logprobs":[]}]}]}`},
		{"the token limit",
			&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("Stop")}}, Usage: usage, Finish: agent.FinishLength},
			false,
			`{` + base + `,"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output_text":"Stop","output":[
			{"id":"msg_r1_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Stop","annotations":[],"logprobs":[]}]}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := DecodeRequest([]byte(`{"model":"m","input":"x"}`))
			got, err := json.Marshal(ToResponse(tc.res, Options{ID: "resp_r1", CreatedAt: 100, Request: r, Outputs: tc.outputs}))
			if err != nil {
				t.Fatal(err)
			}
			if g, w := compact(t, string(got)), compact(t, tc.want); g != w {
				t.Errorf("ToResponse\ngot  %s\nwant %s", g, w)
			}
		})
	}
}

// TestFileIDs: a file id names its path, and only ids of ours are read.
func TestFileIDs(t *testing.T) {
	for _, p := range []string{"out.csv", "dir/a b.png", "ü.txt"} {
		if got, ok := FilePath(FileID(p)); !ok || got != p {
			t.Errorf("FilePath(FileID(%q)) = %q, %v", p, got, ok)
		}
	}
	for _, id := range []string{"file_1", "cfile_", "cfile_%%"} {
		if _, ok := FilePath(id); ok {
			t.Errorf("FilePath(%q) accepted", id)
		}
	}
}

// TestOutputItemFields: an item has every field of its type even when empty, as
// the SDKs' stream accumulators need from output_item.added on (the openai
// package's responses.stream() failed with "output.content is not iterable").
func TestOutputItemFields(t *testing.T) {
	empty := ""
	for _, c := range []struct {
		item OutputItem
		want string
	}{
		{OutputItem{ID: "msg_1", Type: TypeMessage, Status: StatusInProgress, Role: "assistant"},
			`{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}`},
		{OutputItem{ID: "call_1", Type: TypeCodeInterpreterCall, Status: StatusInProgress, Code: &empty, ContainerID: "sess_1"},
			`{"id":"call_1","type":"code_interpreter_call","status":"in_progress","code":"","container_id":"sess_1","outputs":null}`},
		{OutputItem{ID: "fc_1", Type: TypeFunctionCall, Status: StatusInProgress, CallID: "call_1", Name: "f"},
			`{"id":"fc_1","type":"function_call","status":"in_progress","call_id":"call_1","name":"f","arguments":""}`},
	} {
		got, err := json.Marshal(c.item)
		if err != nil || string(got) != c.want {
			t.Errorf("json.Marshal(%+v)\n got  %s (%v)\n want %s", c.item, got, err, c.want)
		}
	}
}

// TestItemsByID: the ids an item_reference names are those ToResponse gave.
func TestItemsByID(t *testing.T) {
	out := []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("")}, &agent.Message{Role: "assistant", Content: agent.Text("Let me.")},
		&agent.Execution{ID: "call_a", Code: "1"}, &agent.ToolCall{ID: "call_9", Name: "f"}, &agent.Message{Role: "assistant", Content: agent.Text("Done.")}}
	r := ToResponse(&agent.Result{Output: out}, Options{ID: "resp_r1"})
	byID := ItemsByID("resp_r1", out)
	if len(byID) != len(r.Output) {
		t.Errorf("ItemsByID named %d items, the response has %d", len(byID), len(r.Output))
	}
	for i, it := range r.Output {
		if byID[it.ID] == nil {
			t.Errorf("output[%d] %s %q is not in ItemsByID %v", i, it.Type, it.ID, byID)
		}
	}
	if byID["msg_r1_2"] != out[4] || byID["call_a"] != out[2] || byID["fc_9"] != out[3] {
		t.Errorf("ItemsByID: %v", byID)
	}
}
