package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/codeexec/codeexec/internal/agent/agenttest"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/safety"
)

// recorder writes down the events of a completion, joining consecutive pieces of
// one kind, so that a test reads them in order.
type recorder struct{ log []string }

func (r *recorder) add(kind, piece string) {
	if n := len(r.log); n > 0 && strings.HasPrefix(r.log[n-1], kind+" ") {
		r.log[n-1] += piece
		return
	}
	r.log = append(r.log, kind+" "+piece)
}

func (r *recorder) Text(delta string) { r.add("text", delta) }
func (r *recorder) CodeDelta(index int, id, delta string) {
	r.add(fmt.Sprintf("code %d %s", index, id), delta)
}
func (r *recorder) ExecutionStarted(index int, e *Execution) {
	r.log = append(r.log, fmt.Sprintf("started %d %s %q in %s", index, e.ID, e.Code, e.ContainerID))
}
func (r *recorder) ExecutionFinished(index int, e *Execution) {
	r.log = append(r.log, fmt.Sprintf("finished %d %s %s %q", index, e.ID, e.Result.Status, e.Output))
}
func (r *recorder) ToolCallDelta(index int, id, name, delta string) {
	r.add(fmt.Sprintf("call %d %s %s", index, id, name), delta)
}

// gateJudge reports the events so far when it is asked: what the client was told
// before the code is judged (and run).
type gateJudge struct {
	r    *recorder
	seen []string
}

func (g *gateJudge) Check(ctx context.Context, code string, _ *egress.Policy) (safety.Verdict, error) {
	g.seen = append([]string(nil), g.r.log...)
	return safety.Verdict{Safe: true}, nil
}

// TestEventsInOrder: streamed from the upstream, the events come in the order
// they happen: the text and the code as the model writes them (before the judge
// and the run), the run, then the client's call as it is written. Without
// streaming, each turn's come whole, in the same order.
func TestEventsInOrder(t *testing.T) {
	src := "print(\"héllo\")\nx = 6 * 7"
	args, _ := json.Marshal(map[string]string{"code": src})
	first := llmtest.Calls(llmtest.Call{Name: ToolName, Arguments: string(args)})
	first.Content = "Let me compute."
	second := llmtest.Calls(llmtest.Call{Name: "web_browse", Arguments: `{}`}, llmtest.Call{Name: "search", Arguments: `{"q":"42"}`})
	second.Content = "Now search."
	want := []string{
		"text Let me compute.",
		"code 0 call_llmtest_1_0 " + src,
		fmt.Sprintf("started 0 call_llmtest_1_0 %q in sess_fake_1", src),
		`finished 0 call_llmtest_1_0 ok "héllo\n"`,
		"text Now search.",
		`call 0 call_llmtest_2_1 search {"q":"42"}`,
	}
	for _, stream := range []bool{true, false} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			up := llmtest.NewServer(t, first, second)
			r := &recorder{}
			j := &gateJudge{r: r}
			req := userRequest("compute, then search", function("search"))
			req.Stream = stream
			sb := fakeSandbox(t, agenttest.OK("héllo\n"))
			res, err := (&Agent{Judge: j}).Complete(context.Background(), Upstream(llm.New(up.Provider())), req, sb, r)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(r.log, "\n") != strings.Join(want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(r.log, "\n"), strings.Join(want, "\n"))
			}
			if strings.Join(j.seen, "\n") != strings.Join(want[:3], "\n") {
				t.Errorf("when the judge was asked, the events were:\n%s\nwant:\n%s", strings.Join(j.seen, "\n"), strings.Join(want[:3], "\n"))
			}
			if res.Finish != FinishToolCalls || len(clientCalls(res)) != 1 || res.Usage.TotalTokens == 0 {
				t.Errorf("finish %q output %s usage %+v", res.Finish, asJSON(res.Output), res.Usage)
			}
			var kinds []string
			for _, it := range res.Output {
				kinds = append(kinds, fmt.Sprintf("%T", it))
			}
			if got := strings.Join(kinds, ","); got != "*agent.Message,*agent.Execution,*agent.Message,*agent.ToolCall" {
				t.Errorf("output items %s, want the text, the run, the final message, the call", got)
			}
		})
	}
}

// TestCodeScanner: the code comes out of the arguments however they are cut, the
// pieces joined being what encoding/json reads, each piece whole characters.
func TestCodeScanner(t *testing.T) {
	for _, args := range []string{
		`{"code": "print(1)"}`,
		`{"code":"a\nb\t\"c\"\\ \/ \u00e9 \ud83d\ude00 é 😀 \u0000"}`,
		` { "lang" : "python", "opts": {"x": [1, "}", {"code": "no"}]}, "n": -1.5e3, "t": true, "code" : "x = 1" , "code": "second"}`,
		`{"code": "lone \ud83d then \ude00 and \ud83d\u0041"}`,
		`{"\u0063ode": "escaped key"}`,
		`{"code": 1}`,
		`{"other": "x"}`,
		`not json`,
		`{"code": "unterminated`,
	} {
		var want struct{ Code string }
		if err := json.Unmarshal([]byte(args), &want); err != nil && !strings.Contains(args, "unterminated") {
			want.Code = ""
		}
		if strings.Contains(args, `"second"`) {
			want.Code = "x = 1" // the first code member: encoding/json keeps the last
		}
		if strings.Contains(args, "unterminated") {
			want.Code = "unterminated"
		}
		for cut1 := 0; cut1 <= len(args); cut1++ {
			for cut2 := cut1; cut2 <= len(args); cut2 += 3 {
				var s codeScanner
				var pieces []string
				for _, p := range []string{args[:cut1], args[cut1:cut2], args[cut2:]} {
					if d := s.feed(p); d != "" {
						pieces = append(pieces, d)
					}
				}
				if got := strings.Join(pieces, ""); got != want.Code {
					t.Fatalf("args %s cut at %d and %d: code %q, want %q", args, cut1, cut2, got, want.Code)
				}
				for _, p := range pieces {
					if !utf8.ValidString(p) && utf8.ValidString(want.Code) {
						t.Fatalf("args %s cut at %d and %d: piece %q is not whole characters", args, cut1, cut2, p)
					}
				}
			}
		}
	}
}

// TestUpstreamMessages: the conversation as the upstream gets it, whatever form
// the face gave it: calls after an assistant message are its tool calls, calls
// without one get an assistant message of their own, each run is answered right
// after its message, and the hint follows the leading system messages.
func TestUpstreamMessages(t *testing.T) {
	run := &Execution{ID: "c1", Code: "1", Output: "1\n"}
	call := &ToolCall{ID: "s1", Type: "function", Name: "search", Arguments: "{}"}
	out := &ToolOutput{CallID: "s1", Content: Text("found")}
	for _, tc := range []struct {
		name  string
		items []Item
		want  string
	}{
		{"chat: the message, then its calls",
			[]Item{&Message{Role: "system", Content: Text("s")}, &Message{Role: "developer", Content: Text("d")}, &Message{Role: "user", Content: Text("u")},
				&Message{Role: "assistant", Content: Content{Form: FormNull}}, run, call, out},
			`system:s|developer:d|system:HINT|user:u|assistant::c1 code_execution,s1 search|tool:c1:1` + "\n" + `|tool:s1:found`},
		{"items without messages, as Responses has them",
			[]Item{&Message{Role: "user", Content: Text("u")}, run, &Message{Role: "assistant", Content: Text("then")}, call, out, &Message{Role: "assistant", Content: Text("done")}},
			`system:HINT|user:u|assistant::c1 code_execution|tool:c1:1` + "\n" + `|assistant:then:s1 search|tool:s1:found|assistant:done`},
		{"only system messages: the hint last",
			[]Item{&Message{Role: "system", Content: Text("s")}},
			`system:s|system:HINT`},
	} {
		var got []string
		for _, m := range upstreamMessages(tc.items, "HINT") {
			s := m.Role + ":" + m.Text()
			if m.Role == "tool" {
				s = m.Role + ":" + m.ToolCallID + ":" + m.Text()
			}
			if len(m.ToolCalls) > 0 {
				var calls []string
				for _, c := range m.ToolCalls {
					calls = append(calls, c.ID+" "+c.Function.Name)
				}
				s += ":" + strings.Join(calls, ",")
			}
			got = append(got, s)
		}
		if strings.Join(got, "|") != tc.want {
			t.Errorf("%s: upstream messages\n%s\nwant\n%s", tc.name, strings.Join(got, "|"), tc.want)
		}
	}
}

// TestUpstreamRequest: the request's fields reach the upstream: typed ones in
// their fields, the extras as they are (one named like a field of the upstream's
// request lands in it), and the loop's own fields win.
func TestUpstreamRequest(t *testing.T) {
	req := &Request{Model: "m", Temperature: new(0.5), TopP: new(0.9), MaxOutputTokens: new(10), Seed: new(int64(1)),
		Stop: []string{"a"}, User: "u", ToolChoice: json.RawMessage(`"required"`), ParallelToolCalls: new(true),
		ResponseFormat: json.RawMessage(`{"type":"json_object"}`), Tools: []Tool{function("f"), {Type: "custom", EntryExtra: map[string]json.RawMessage{"custom": json.RawMessage(`{"name":"g"}`)}}},
		Code: &CodeTool{},
		Extra: map[string]json.RawMessage{"n": json.RawMessage(`2`), "reasoning_effort": json.RawMessage(`"<low>"`), "model": json.RawMessage(`"other"`),
			"max_completion_tokens": json.RawMessage(`20`)}}
	up, err := upstreamRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // as the client sends it: the "<" of an extra stays one
	if err := enc.Encode(up); err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(buf.String())
	want := `{"model":"m","messages":null,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}},{"type":"custom","custom":{"name":"g"}},` +
		`{"type":"function","function":{"name":"code_execution","description":"` + codeToolDescription + `","parameters":` + codeToolParams + `}}],` +
		`"tool_choice":"required","parallel_tool_calls":true,"temperature":0.5,"top_p":0.9,"max_tokens":10,"max_completion_tokens":20,"n":2,"stop":["a"],"seed":1,` +
		`"response_format":{"type":"json_object"},"user":"u","reasoning_effort":"<low>"}`
	if got != want {
		t.Errorf("upstream request\n got %s\nwant %s", got, want)
	}
}
