package openairesponses

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/job"
)

// frames runs events through a Stream and returns each event as
// "seq type key=value…" for the fields that place it.
func frames(t *testing.T, outputs bool, events func(s *Stream)) ([]string, []Event) {
	t.Helper()
	var got []string
	var all []Event
	r, _ := DecodeRequest([]byte(`{"model":"m","input":"x","stream":true}`))
	s := &Stream{Options: Options{ID: "resp_r1", CreatedAt: 100, Request: r, Outputs: outputs}, Container: func() string { return "sess_1" },
		Send: func(e Event) {
			b, _ := json.Marshal(e)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			all = append(all, m)
			line := fmt.Sprintf("%v %s", m["sequence_number"], m["type"])
			for _, k := range []string{"output_index", "item_id", "delta", "code", "text", "arguments"} {
				if v, ok := m[k]; ok {
					line += fmt.Sprintf(" %s=%v", k, v)
				}
			}
			if it, ok := m["item"].(map[string]any); ok {
				line += fmt.Sprintf(" item=%v/%v/%v", it["type"], it["id"], it["status"])
			}
			got = append(got, line)
		}}
	events(s)
	return got, all
}

// TestStreamFrames: the exact events, in order and numbered, of a completion that
// writes text, runs code written in pieces, and answers; and of one that ends
// with a client call.
func TestStreamFrames(t *testing.T) {
	run := &agent.Execution{ID: "call_a", Code: "print(2)", ContainerID: "sess_1", Output: "2",
		Result: &job.Result{Status: job.StatusOK, Stdout: "2\n", Files: []job.FileInfo{{Path: "o.txt", Size: 1}}}}
	for _, tc := range []struct {
		name   string
		events func(s *Stream)
		res    *agent.Result
		want   string
	}{
		{"text, a run, the answer",
			func(s *Stream) {
				s.Text("Let me")
				s.Text(" see.")
				s.CodeDelta(0, "call_a", "print(")
				s.CodeDelta(0, "call_a", "2)")
				s.ExecutionStarted(0, &agent.Execution{ID: "call_a", Code: "print(2)", ContainerID: "sess_1"})
				s.ExecutionFinished(0, run)
				s.Text("It is 2, see o.txt.")
			},
			&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("Let me see.")}, run,
				&agent.Message{Role: "assistant", Content: agent.Text("It is 2, see o.txt.")}}, Finish: agent.FinishStop},
			`0 response.created
1 response.in_progress
2 response.output_item.added output_index=0 item=message/msg_r1_1/in_progress
3 response.content_part.added output_index=0 item_id=msg_r1_1
4 response.output_text.delta output_index=0 item_id=msg_r1_1 delta=Let me
5 response.output_text.delta output_index=0 item_id=msg_r1_1 delta= see.
6 response.output_text.done output_index=0 item_id=msg_r1_1 text=Let me see.
7 response.content_part.done output_index=0 item_id=msg_r1_1
8 response.output_item.done output_index=0 item=message/msg_r1_1/completed
9 response.output_item.added output_index=1 item=code_interpreter_call/call_a/in_progress
10 response.code_interpreter_call.in_progress output_index=1 item_id=call_a
11 response.code_interpreter_call_code.delta output_index=1 item_id=call_a delta=print(
12 response.code_interpreter_call_code.delta output_index=1 item_id=call_a delta=2)
13 response.code_interpreter_call_code.done output_index=1 item_id=call_a code=print(2)
14 response.code_interpreter_call.interpreting output_index=1 item_id=call_a
15 response.code_interpreter_call.completed output_index=1 item_id=call_a
16 response.output_item.done output_index=1 item=code_interpreter_call/call_a/completed
17 response.output_item.added output_index=2 item=message/msg_r1_2/in_progress
18 response.content_part.added output_index=2 item_id=msg_r1_2
19 response.output_text.delta output_index=2 item_id=msg_r1_2 delta=It is 2, see o.txt.
20 response.output_text.done output_index=2 item_id=msg_r1_2 text=It is 2, see o.txt.
21 response.content_part.done output_index=2 item_id=msg_r1_2
22 response.output_item.done output_index=2 item=message/msg_r1_2/completed
23 response.completed`},
		{"a run from a turn that came whole, then a client call",
			func(s *Stream) {
				s.ExecutionStarted(0, &agent.Execution{ID: "call_a", Code: "print(2)", ContainerID: "sess_1"})
				s.ExecutionFinished(0, run)
				s.ToolCallDelta(0, "call_9", "search", "")
				s.ToolCallDelta(0, "call_9", "search", `{"q":1}`)
			},
			&agent.Result{Output: []agent.Item{run, &agent.Message{Role: "assistant", Content: agent.Content{Form: agent.FormNull}},
				&agent.ToolCall{ID: "call_9", Type: "function", Name: "search", Arguments: `{"q":1}`}}, Finish: agent.FinishToolCalls},
			`0 response.created
1 response.in_progress
2 response.output_item.added output_index=0 item=code_interpreter_call/call_a/in_progress
3 response.code_interpreter_call.in_progress output_index=0 item_id=call_a
4 response.code_interpreter_call_code.delta output_index=0 item_id=call_a delta=print(2)
5 response.code_interpreter_call_code.done output_index=0 item_id=call_a code=print(2)
6 response.code_interpreter_call.interpreting output_index=0 item_id=call_a
7 response.code_interpreter_call.completed output_index=0 item_id=call_a
8 response.output_item.done output_index=0 item=code_interpreter_call/call_a/completed
9 response.output_item.added output_index=1 item=function_call/fc_9/in_progress
10 response.function_call_arguments.delta output_index=1 item_id=fc_9 delta={"q":1}
11 response.function_call_arguments.done output_index=1 item_id=fc_9 arguments={"q":1}
12 response.output_item.done output_index=1 item=function_call/fc_9/completed
13 response.completed`},
		{"the step limit: response.incomplete",
			func(s *Stream) { s.Text("Stopped.") },
			&agent.Result{Output: []agent.Item{&agent.Message{Role: "assistant", Content: agent.Text("Stopped.")}}, Finish: agent.FinishStepLimit},
			`0 response.created
1 response.in_progress
2 response.output_item.added output_index=0 item=message/msg_r1_1/in_progress
3 response.content_part.added output_index=0 item_id=msg_r1_1
4 response.output_text.delta output_index=0 item_id=msg_r1_1 delta=Stopped.
5 response.output_text.done output_index=0 item_id=msg_r1_1 text=Stopped.
6 response.content_part.done output_index=0 item_id=msg_r1_1
7 response.output_item.done output_index=0 item=message/msg_r1_1/completed
8 response.incomplete`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var final *Response
			got, all := frames(t, false, func(s *Stream) {
				tc.events(s)
				final = s.Finish(tc.res)
			})
			if g := strings.Join(got, "\n"); g != tc.want {
				t.Errorf("events:\n%s\nwant:\n%s", g, tc.want)
			}
			// The items streamed are those of the final response, ids and all.
			var done []any
			for _, e := range all {
				if e["type"] == "response.output_item.done" {
					done = append(done, e["item"])
				}
			}
			last := all[len(all)-1]["response"]
			b, _ := json.Marshal(map[string]any{"output": done})
			var want map[string]any
			wb, _ := json.Marshal(final)
			_ = json.Unmarshal(wb, &want)
			if w, _ := json.Marshal(map[string]any{"output": want["output"]}); string(b) != string(w) {
				t.Errorf("streamed items %s\nfinal items %s", b, w)
			}
			if lb, _ := json.Marshal(last); string(lb) != mustRemarshal(wb) {
				t.Errorf("last event's response %s\nwant %s", lb, wb)
			}
		})
	}
}

// TestStreamFail: an error after the stream began ends it with an error event and
// response.failed, and the open run ends incomplete.
func TestStreamFail(t *testing.T) {
	got, all := frames(t, false, func(s *Stream) {
		s.CodeDelta(0, "call_a", "pri")
		s.Fail("upstream_error", "the upstream model failed")
	})
	want := `0 response.created
1 response.in_progress
2 response.output_item.added output_index=0 item=code_interpreter_call/call_a/in_progress
3 response.code_interpreter_call.in_progress output_index=0 item_id=call_a
4 response.code_interpreter_call_code.delta output_index=0 item_id=call_a delta=pri
5 response.output_item.done output_index=0 item=code_interpreter_call/call_a/incomplete
6 error code=upstream_error
7 response.failed`
	if g := strings.Join(got, "\n"); g != want {
		t.Errorf("events:\n%s\nwant:\n%s", g, want)
	}
	resp := all[len(all)-1]["response"].(map[string]any)
	if resp["status"] != "failed" || resp["error"].(map[string]any)["code"] != "upstream_error" {
		t.Errorf("response.failed: %v", resp)
	}
}

// mustRemarshal is JSON b with its keys sorted, as a decoded event's.
func mustRemarshal(b []byte) string {
	var v any
	_ = json.Unmarshal(b, &v)
	out, _ := json.Marshal(v)
	return string(out)
}
