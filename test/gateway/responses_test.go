package gateway_test

// POST /v1/responses end to end: the real sandbox runs the code the scripted model
// writes, and the reply is a Response with code_interpreter_call items.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/openairesponses"
	"github.com/codeexec/codeexec/internal/safety"
)

func postResponses(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/v1/responses", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func decodeResponse(t *testing.T, data []byte) *openairesponses.Response {
	t.Helper()
	var r openairesponses.Response
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return &r
}

// TestResponsesCodeInterpreter: the model's code runs in a container; the
// response has the run (its logs when included), the answer citing the file the
// code wrote, and the container, which the next request names to go on.
func TestResponsesCodeInterpreter(t *testing.T) {
	up, hs := testenvFake(t,
		llmtest.Calls(code("x = 6 * 7\nopen('answer.txt', 'w').write(str(x))\nprint(x)")),
		llmtest.Text("The answer is 42, in answer.txt."),
		llmtest.Calls(code("print(x + 1)")),
		llmtest.Text("43"),
	)
	status, data := postResponses(t, hs.URL, `{"model":"fake-model","input":"compute","include":["code_interpreter_call.outputs"],
		"tools":[{"type":"code_interpreter","container":{"type":"auto"}}]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	r := decodeResponse(t, data)
	if r.Object != "response" || r.Status != "completed" || !strings.HasPrefix(r.ID, "resp_") || len(r.Output) != 2 {
		t.Fatalf("response: %s", data)
	}
	run, msg := r.Output[0], r.Output[1]
	if run.Type != "code_interpreter_call" || run.Status != "completed" || run.ContainerID == "" || run.Outputs == nil ||
		len(*run.Outputs) != 1 || strings.TrimSpace((*run.Outputs)[0].Logs) != "42" {
		t.Errorf("run: %s", data)
	}
	if r.OutputText != "The answer is 42, in answer.txt." || len(msg.Content) != 1 || len(msg.Content[0].Annotations) != 1 {
		t.Fatalf("message: %s", data)
	}
	a := msg.Content[0].Annotations[0]
	if a.Type != "container_file_citation" || a.ContainerID != run.ContainerID || a.Filename != "answer.txt" || a.StartIndex != 21 || a.EndIndex != 31 {
		t.Errorf("citation: %+v", a)
	}
	if r.Usage == nil || r.Usage.TotalTokens == 0 {
		t.Errorf("usage: %s", data)
	}
	// The model was shown the run's output.
	if reqs := up.ChatRequests(); len(reqs) != 2 || !strings.Contains(asText(reqs[1]), "42") {
		t.Errorf("upstream requests: %d", len(reqs))
	}
	// The next request names the container: x is still defined; outputs are left
	// out unless included.
	status, data = postResponses(t, hs.URL, `{"model":"fake-model","input":"and one more","tools":[{"type":"code_interpreter","container":"`+run.ContainerID+`"}]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	r = decodeResponse(t, data)
	if r.OutputText != "43" || r.Output[0].ContainerID != run.ContainerID || r.Output[0].Outputs != nil {
		t.Errorf("second response: %s", data)
	}
	reqs := up.ChatRequests()
	if !strings.Contains(asText(reqs[len(reqs)-1]), "43") {
		t.Errorf("the second run did not see x: %s", asText(reqs[len(reqs)-1]))
	}
}

// TestResponsesRefusals: refused before any model or sandbox is asked, with the
// chat gateway's codes.
func TestResponsesRefusals(t *testing.T) {
	_, hs := testenvFake(t)
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"input":"hi"}`, 400, "missing_model"},
		{`{"model":"fake-model","input":"hi","tools":[{"type":"web_search"}]}`, 400, "unsupported_tool"},
		{`{"model":"fake-model","input":"hi","tools":[{"type":"code_interpreter","container":"sess_0123456789abcdef0123456789abcdef"}]}`, 404, "session_not_found"},
		{`{"model":"fake-model","input":"hi","tools":[{"type":"code_interpreter","container":{"type":"auto","file_ids":["file_1"]}}]}`, 404, "file_not_found"},
		{`{"model":"fake-model","input":[{"role":"user","content":[{"type":"input_file","filename":"a.csv","file_data":"%%%"}]}],"tools":[{"type":"code_interpreter"}]}`, 400, "invalid_file"},
		{`not json`, 400, "invalid_json"},
		{`{"model":"fake-model","input":"hi","background":true,"tools":[{"type":"code_interpreter"}]}`, 400, "unsupported_parameter"},
		{`{"model":"fake-model","input":"hi","conversation":"conv_1","tools":[{"type":"code_interpreter"}]}`, 400, "unsupported_parameter"},
	} {
		status, data := postResponses(t, hs.URL, tc.body)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		if status != tc.status || e.Error.Code != tc.code {
			t.Errorf("POST %s: got %d %s, want %d %s", tc.body, status, data, tc.status, tc.code)
		}
	}
}

// TestResponsesJudge: a program the judge refuses does not run; its item is
// "failed" and the model is told why.
func TestResponsesJudge(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Calls(code("import os; os.system('rm -rf /')")), llmtest.Text("I may not."))
	hs := gateway(t, up, judge{verdict: safety.Verdict{Safe: false, Reason: "destroys files"}})
	status, data := postResponses(t, hs.URL, `{"model":"fake-model","input":"wipe","include":["code_interpreter_call.outputs"],"tools":[{"type":"code_execution"}]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	r := decodeResponse(t, data)
	if len(r.Output) != 2 || r.Output[0].Status != "failed" || !strings.Contains((*r.Output[0].Outputs)[0].Logs, "destroys files") {
		t.Errorf("response: %s", data)
	}
}

func testenvFake(t *testing.T, turns ...llmtest.Turn) (*llmtest.Server, *httptest.Server) {
	t.Helper()
	up := llmtest.NewServer(t, turns...)
	return up, gateway(t, up, nil)
}

// asText is what an upstream request holds, for a search.
func asText(r *llm.ChatRequest) string {
	b, _ := json.Marshal(r)
	return string(b)
}

// TestResponsesStream: a streamed response with a real run: named events with
// consecutive sequence numbers, the code in pieces as the model writes it, the
// run's item when it ends, and response.completed last, with no [DONE].
func TestResponsesStream(t *testing.T) {
	_, hs := testenvFake(t, llmtest.Calls(code("print(6 * 7)")), llmtest.Text("42"))
	status, data := postResponses(t, hs.URL, `{"model":"fake-model","stream":true,"input":"compute","include":["code_interpreter_call.outputs"],"tools":[{"type":"code_interpreter"}]}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	var types []string
	deltas := 0
	var last map[string]any
	for i, frame := range strings.Split(strings.TrimSpace(string(data)), "\n\n") {
		name, rest, ok := strings.Cut(frame, "\n")
		var ev map[string]any
		if !ok || json.Unmarshal([]byte(strings.TrimPrefix(rest, "data: ")), &ev) != nil {
			t.Fatalf("frame %d: %q", i, frame)
		}
		if name != "event: "+ev["type"].(string) || ev["sequence_number"] != float64(i) {
			t.Errorf("frame %d: %q", i, frame)
		}
		if ev["type"] == "response.code_interpreter_call_code.delta" {
			deltas++
		} else if len(types) == 0 || types[len(types)-1] != ev["type"] {
			types = append(types, ev["type"].(string))
		}
		last = ev
	}
	want := "response.created response.in_progress response.output_item.added response.code_interpreter_call.in_progress " +
		"response.code_interpreter_call_code.done response.code_interpreter_call.interpreting response.code_interpreter_call.completed " +
		"response.output_item.done response.output_item.added response.content_part.added response.output_text.delta response.output_text.done " +
		"response.content_part.done response.output_item.done response.completed"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("events:\n%s\nwant:\n%s", got, want)
	}
	if deltas < 2 {
		t.Errorf("the code came in %d pieces: not streamed as written", deltas)
	}
	resp := last["response"].(map[string]any)
	out := resp["output"].([]any)[0].(map[string]any)
	if resp["status"] != "completed" || out["code"] != "print(6 * 7)" || !strings.Contains(asText2(out["outputs"]), "42") {
		t.Errorf("final response: %v", resp)
	}
}

func asText2(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestResponsesPrevious: a follow-up names the previous response: the model sees
// the conversation (the run too), the code goes on in the same container, and
// another id is refused.
func TestResponsesPrevious(t *testing.T) {
	up, hs := testenvFake(t, llmtest.Calls(code("x = 41")), llmtest.Text("Set."), llmtest.Calls(code("print(x + 1)")), llmtest.Text("42"))
	tools := `"tools":[{"type":"code_interpreter","container":{"type":"auto"}}]`
	_, data := postResponses(t, hs.URL, `{"model":"fake-model","input":"set x","instructions":"be brief",`+tools+`}`)
	first := decodeResponse(t, data)
	status, data := postResponses(t, hs.URL, `{"model":"fake-model","input":"x+1?","previous_response_id":"`+first.ID+`",`+tools+`}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, data)
	}
	second := decodeResponse(t, data)
	if second.OutputText != "42" || second.Output[0].ContainerID != first.Output[0].ContainerID {
		t.Errorf("second: %s", data)
	}
	reqs := up.ChatRequests()
	third := asText(reqs[2])
	for _, want := range []string{"set x", "x = 41", "Set.", "x+1?"} {
		if !strings.Contains(third, want) {
			t.Errorf("the follow-up's upstream request lacks %q: %s", want, third)
		}
	}
	if strings.Contains(third, "be brief") {
		t.Errorf("the first request's instructions were carried over: %s", third)
	}
	status, data = postResponses(t, hs.URL, `{"model":"fake-model","input":"x","previous_response_id":"resp_nope"}`)
	if status != 404 || !strings.Contains(string(data), "response_not_found") {
		t.Errorf("unknown previous_response_id: %d %s", status, data)
	}
}
