// Package gateway_test drives the OpenAI-compatible gateway end to end: a real
// codeexec API server with the real sandbox, and a scripted fake upstream model
// (the one part that cannot run here).
package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/test/testenv"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

type judge struct {
	verdict agent.Verdict
	err     error
}

func (j judge) Check(ctx context.Context, code string) (agent.Verdict, error) {
	return j.verdict, j.err
}

func gateway(t *testing.T, up *llmtest.Server, j agent.Judge) *httptest.Server {
	return testenv.Gateway(t, up.Provider(), j)
}

func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

const codeTool = `"tools":[{"type":"code_execution"}]`

func userBody(text string, extra ...string) string {
	parts := append([]string{`"model":"fake-model"`, `"messages":[{"role":"user","content":` + quote(text) + `}]`}, extra...)
	return "{" + strings.Join(parts, ",") + "}"
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func code(src string) llmtest.Call {
	args, _ := json.Marshal(map[string]string{"code": src})
	return llmtest.Call{Name: agent.ToolName, Arguments: string(args)}
}

// reply is the part of a chat completion the tests read.
type reply struct {
	Choices []struct {
		Message struct {
			Content   string `json:"content"`
			ToolCalls []struct {
				ID            string `json:"id"`
				Type          string `json:"type"`
				CodeExecution *struct {
					Code   string `json:"code"`
					Output string `json:"output"`
					Status string `json:"status"`
					Images []struct {
						Name string `json:"name"`
						Data []byte `json:"data"`
					} `json:"images"`
				} `json:"code_execution"`
				Function *struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		TotalTokens int `json:"total_tokens"`
	} `json:"usage"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decode(t *testing.T, data []byte) reply {
	t.Helper()
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("reply is not JSON: %v: %s", err, data)
	}
	return r
}

func TestPlainAnswer(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Text("Hello!"))
	status, data := post(t, gateway(t, up, nil).URL, userBody("hi", codeTool))
	r := decode(t, data)
	if status != 200 || r.Choices[0].Message.Content != "Hello!" || len(r.Choices[0].Message.ToolCalls) != 0 {
		t.Fatalf("status %d reply %s", status, data)
	}
}

func TestCodeThenAnswerWithPlot(t *testing.T) {
	up := llmtest.NewServer(t,
		llmtest.Calls(code("import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [3, 5])\nprint(10000 * 1.05 ** 10)")),
		llmtest.Text("The balance is $16,288.95."))
	status, data := post(t, gateway(t, up, nil).URL, userBody("compound interest on $10,000 at 5% for 10 years", codeTool))
	r := decode(t, data)
	if status != 200 || len(r.Choices) != 1 {
		t.Fatalf("status %d reply %s", status, data)
	}
	m := r.Choices[0].Message
	if m.Content != "The balance is $16,288.95." || len(m.ToolCalls) != 1 || m.ToolCalls[0].Type != "code_execution" {
		t.Fatalf("message %+v", m)
	}
	e := m.ToolCalls[0].CodeExecution
	if !strings.HasPrefix(e.Output, "16288.9") || e.Status != "ok" || len(e.Images) != 1 || !bytes.HasPrefix(e.Images[0].Data, []byte("\x89PNG")) {
		t.Fatalf("code_execution %+v", e)
	}
	reqs := up.ChatRequests()
	if len(reqs) != 2 || reqs[0].Tools[0].Type != "function" || reqs[0].Tools[0].Function.Name != agent.ToolName {
		t.Fatalf("upstream requests: %d, tools %+v", len(reqs), reqs[0].Tools)
	}
}

func TestErrorFedBackThenFixed(t *testing.T) {
	up := llmtest.NewServer(t,
		llmtest.Calls(code("import numpy as np\nnp.mean(values)")),
		llmtest.Calls(code("import numpy as np\nvalues = [1, 2, 3]\nfloat(np.mean(values))")),
		llmtest.Text("The mean is 2."))
	_, data := post(t, gateway(t, up, nil).URL, userBody("mean of 1,2,3", codeTool))
	r := decode(t, data)
	calls := r.Choices[0].Message.ToolCalls
	if len(calls) != 2 || calls[0].CodeExecution.Status != "error" || calls[1].CodeExecution.Output != "2.0" {
		t.Fatalf("tool calls %s", data)
	}
	second := up.ChatRequests()[1].Messages
	if tm := second[len(second)-1]; tm.Role != "tool" || !strings.Contains(tm.Text(), "NameError") {
		t.Errorf("traceback not fed back: %+v", tm)
	}
}

func TestJudge(t *testing.T) {
	for _, tt := range []struct {
		name string
		j    judge
	}{
		{"refuses", judge{verdict: agent.Verdict{Safe: false, Reason: "reads the user's files"}}},
		{"fails closed", judge{err: io.ErrUnexpectedEOF}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := llmtest.NewServer(t, llmtest.Calls(code("import os\nprint(os.listdir('/'))")),
				llmtest.Text("I can't list your directory, but you can run: import os; print(os.listdir('.'))"))
			_, data := post(t, gateway(t, up, tt.j).URL, userBody("Can you list my current directory", codeTool))
			r := decode(t, data)
			e := r.Choices[0].Message.ToolCalls[0].CodeExecution
			if e.Status != "rejected" || strings.Contains(e.Output, "bin") {
				t.Fatalf("code was not refused: %+v", e)
			}
			msgs := up.ChatRequests()[1].Messages
			if !strings.Contains(msgs[len(msgs)-1].Text(), "NOT run") {
				t.Errorf("model not told: %q", msgs[len(msgs)-1].Text())
			}
		})
	}
}

func TestFunctionToolMixed(t *testing.T) {
	up := llmtest.NewServer(t,
		llmtest.Calls(code("prices = [1, 2, 3]\nsum(prices)"), llmtest.Call{Name: "web_search", Arguments: `{"q":"bitcoin price"}`}))
	body := userBody("search and plot", `"tools":[{"type":"code_execution"},{"type":"function","function":{"name":"web_search","parameters":{"type":"object"}}}]`)
	status, data := post(t, gateway(t, up, nil).URL, body)
	r := decode(t, data)
	c := r.Choices[0]
	if status != 200 || c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 2 ||
		c.Message.ToolCalls[0].CodeExecution.Output != "6" || c.Message.ToolCalls[1].Function.Name != "web_search" {
		t.Fatalf("status %d reply %s", status, data)
	}
}

func TestPassthroughWithoutCodeTool(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Text("plain"))
	status, data := post(t, gateway(t, up, nil).URL, userBody("hi", `"temperature":0.2`, `"reasoning_effort":"low"`, `"provider_extension":{"a":1}`))
	if status != 200 || decode(t, data).Choices[0].Message.Content != "plain" {
		t.Fatalf("status %d reply %s", status, data)
	}
	sent := string(up.Requests()[0].Body)
	for _, want := range []string{`"reasoning_effort":"low"`, `"provider_extension":{"a":1}`, `"temperature":0.2`} {
		if !strings.Contains(sent, want) {
			t.Errorf("upstream body %s lacks %s", sent, want)
		}
	}
	if strings.Contains(sent, "code_execution") {
		t.Errorf("a request without the code tool was changed: %s", sent)
	}
}

func TestUpstreamFailures(t *testing.T) {
	tests := []struct {
		name   string
		turn   llmtest.Turn
		status int
		code   string
	}{
		{"500", llmtest.Error(500, "boom"), 502, "upstream_error"},
		{"invalid JSON", llmtest.InvalidJSON(), 502, "upstream_invalid_response"},
		{"timeout", llmtest.Text("late").After(5 * time.Second), 504, "upstream_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := llmtest.NewServer(t, tt.turn)
			p := up.Provider()
			p.Timeout = time.Second
			hs := testenv.Gateway(t, p, nil)
			start := time.Now()
			status, data := post(t, hs.URL, userBody("hi", codeTool))
			r2 := decode(t, data)
			if status != tt.status || r2.Error == nil || r2.Error.Code != tt.code {
				t.Fatalf("status %d body %s, want %d %s", status, data, tt.status, tt.code)
			}
			if time.Since(start) > 4*time.Second {
				t.Errorf("the failure took %v", time.Since(start))
			}
		})
	}
}

// sseEvents reads an SSE body into its data payloads.
func sseEvents(t *testing.T, body io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		out = append(out, data)
	}
	return out
}

func TestStreaming(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Calls(code("print(21 * 2)")), llmtest.Text("It is 42, computed."))
	hs := gateway(t, up, nil)
	resp, err := http.Post(hs.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(userBody("21*2?", codeTool, `"stream":true`, `"stream_options":{"include_usage":true}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := sseEvents(t, resp.Body)
	if len(events) < 5 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events %q", events)
	}
	var content strings.Builder
	var code, output, finish string
	var usage bool
	for i, e := range events[:len(events)-1] {
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Role      string `json:"role"`
					Content   string `json:"content"`
					ToolCalls []struct {
						Index         int    `json:"index"`
						Type          string `json:"type"`
						CodeExecution struct {
							Code   string `json:"code"`
							Output string `json:"output"`
						} `json:"code_execution"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *struct{ TotalTokens int } `json:"usage"`
		}
		if err := json.Unmarshal([]byte(e), &c); err != nil || c.Object != "chat.completion.chunk" {
			t.Fatalf("event %d is not a chunk: %v %s", i, err, e)
		}
		if i == 0 && (len(c.Choices) != 1 || c.Choices[0].Delta.Role != "assistant") {
			t.Errorf("first chunk does not carry the role: %s", e)
		}
		if c.Usage != nil {
			usage = true
		}
		for _, ch := range c.Choices {
			content.WriteString(ch.Delta.Content)
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Type != "code_execution" || tc.Index != 0 {
					t.Errorf("tool call delta %+v", tc)
				}
				if tc.CodeExecution.Code != "" && code == "" {
					code = tc.CodeExecution.Code
				}
				output += tc.CodeExecution.Output
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	if content.String() != "It is 42, computed." || code != "print(21 * 2)" || output != "42\n" || finish != "stop" || !usage {
		t.Fatalf("content %q code %q output %q finish %q usage %v\nevents %q", content.String(), code, output, finish, usage, events)
	}
}

func TestModels(t *testing.T) {
	up := llmtest.NewServer(t)
	up.SetModels("fake-model", "fake-large")
	resp, err := http.Get(gateway(t, up, nil).URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || list.Object != "list" || len(list.Data) != 2 {
		t.Fatalf("models %+v %v", list, err)
	}
}
