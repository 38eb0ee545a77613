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
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/safety"
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
	verdict safety.Verdict
	err     error
}

func (j judge) Check(ctx context.Context, code string, network *egress.Policy) (safety.Verdict, error) {
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
		{"refuses", judge{verdict: safety.Verdict{Safe: false, Reason: "reads the user's files"}}},
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

// chunk is the part of a streamed chunk the tests read.
type chunk struct {
	Choices []struct {
		Delta struct {
			Content   string `json:"content"`
			ToolCalls []struct {
				Index         int                `json:"index"`
				Type          string             `json:"type"`
				CodeExecution *llm.CodeExecution `json:"code_execution"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Container *struct {
		ID string `json:"id"`
	} `json:"container"`
}

// events reads a stream's chunks as they arrive; [DONE] closes the channel.
func events(t *testing.T, body io.Reader) <-chan chunk {
	ch := make(chan chunk)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok || data == "[DONE]" {
				continue
			}
			var c chunk
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Errorf("not a chunk: %v: %s", err, data)
				return
			}
			ch <- c
		}
	}()
	return ch
}

// TestStreamingOrder: the model's text reaches the client while the model is still
// writing, the code while it has not run yet (the judge holds it), and its output
// when it has run. Order, not timing: each step waits for the one before.
func TestStreamingOrder(t *testing.T) {
	modelWriting := make(chan struct{})
	first := llmtest.Calls(code("import time\ntime.sleep(0.2)\nprint('ran')"))
	first.Content, first.Hold = "Let me compute.", modelWriting
	up := llmtest.NewServer(t, first, llmtest.Text("It ran."))
	j := testenv.NewGatedJudge()
	hs := testenv.Gateway(t, up.Provider(), j)
	// Were nothing streamed, nothing would come until the end, which waits for this
	// test: the deadline turns that hang into a failure.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/chat/completions", strings.NewReader(userBody("run it", codeTool, `"stream":true`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ch := events(t, resp.Body)
	next := func(what string) chunk {
		t.Helper()
		c, ok := <-ch
		if !ok {
			t.Fatalf("the stream ended before %s", what)
		}
		return c
	}

	var text string
	for text != "Let me compute." {
		c := next("the text")
		for _, choice := range c.Choices {
			text += choice.Delta.Content
		}
	}
	close(modelWriting) // the text arrived while the model was still writing

	var started *llm.CodeExecution
	for started == nil {
		for _, choice := range next("the code").Choices {
			for _, tc := range choice.Delta.ToolCalls {
				started = tc.CodeExecution
			}
		}
	}
	select {
	case held := <-j.Held:
		if held != started.Code {
			t.Errorf("the judge holds %q, the stream announced %q", held, started.Code)
		}
	case <-time.After(time.Minute):
		t.Fatal("the judge was never asked")
	}
	if started.Status != "running" || !strings.HasPrefix(started.ContainerID, "sess_") {
		t.Errorf("the announced run %+v, want status running and its container", started)
	}
	close(j.Release) // the code arrived before it ran

	var finished *llm.CodeExecution
	for finished == nil {
		for _, choice := range next("the output").Choices {
			for _, tc := range choice.Delta.ToolCalls {
				finished = tc.CodeExecution
			}
		}
	}
	if finished.Status != "ok" || finished.Stdout != "ran\n" || finished.ContainerID != started.ContainerID {
		t.Errorf("the finished run %+v", finished)
	}
	var container string
	for c := range ch {
		if c.Container != nil {
			container = c.Container.ID
		}
	}
	if container != started.ContainerID {
		t.Errorf("the stream named container %q, the run was in %q", container, started.ContainerID)
	}
}

// chatReply is a reply with the fields of the code_execution entries and the
// container.
type chatReply struct {
	Choices []struct {
		Message struct {
			Content   string `json:"content"`
			ToolCalls []struct {
				Type          string             `json:"type"`
				CodeExecution *llm.CodeExecution `json:"code_execution"`
			} `json:"tool_calls"`
		} `json:"message"`
	} `json:"choices"`
	Container *struct {
		ID        string    `json:"id"`
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"container"`
}

func chat(t *testing.T, url, body string) chatReply {
	t.Helper()
	status, data := post(t, url, body)
	var r chatReply
	if err := json.Unmarshal(data, &r); status != 200 || err != nil || len(r.Choices) != 1 {
		t.Fatalf("status %d (%v): %s", status, err, data)
	}
	return r
}

// TestContainer: a conversation keeps its sandbox when the client names the
// container of the first reply in the next request: variables and files are
// still there, the model is told so, and the files the code wrote download from
// the session. The client sees every part of a run, as the model did.
func TestContainer(t *testing.T) {
	up := llmtest.NewServer(t,
		llmtest.Calls(code("import sys\nrows = [1, 2, 3]\nopen('out.csv', 'w').write('a,b\\n')\nprint('wrote')\nprint('careful', file=sys.stderr)\nsum(rows)")),
		llmtest.Text("The sum is 6."),
		llmtest.Calls(code("print(len(rows), open('out.csv').read())")),
		llmtest.Text("Still there."),
	)
	hs := gateway(t, up, nil)
	first := chat(t, hs.URL, userBody("sum 1,2,3", codeTool))
	if first.Container == nil || !strings.HasPrefix(first.Container.ID, "sess_") || !first.Container.ExpiresAt.After(time.Now()) {
		t.Fatalf("the reply names no container: %+v", first.Container)
	}
	id := first.Container.ID
	e := first.Choices[0].Message.ToolCalls[0].CodeExecution
	if e.Status != "ok" || e.Stdout != "wrote\n" || e.Stderr != "careful\n" || e.Result == nil || *e.Result != "6" ||
		e.Output != "wrote\ncareful\n6" || e.ContainerID != id || e.Error != nil {
		t.Errorf("entry %+v", e)
	}
	if len(e.Files) != 1 || e.Files[0].Path != "out.csv" || e.Files[0].URL != "/v1/sessions/"+id+"/files/out.csv" {
		t.Fatalf("files %+v", e.Files)
	}
	resp, err := http.Get(hs.URL + e.Files[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(data) != "a,b\n" {
		t.Errorf("GET %s: %d %q", e.Files[0].URL, resp.StatusCode, data)
	}

	second := chat(t, hs.URL, userBody("still there?", `"tools":[{"type":"code_execution","container":"`+id+`"}]`))
	e2 := second.Choices[0].Message.ToolCalls[0].CodeExecution
	if e2.Stdout != "3 a,b\n\n" || second.Container == nil || second.Container.ID != id {
		t.Errorf("second request: entry %+v, container %+v", e2, second.Container)
	}
	reqs := up.ChatRequests()
	if !strings.Contains(reqs[0].Messages[0].Text(), "The sandbox is new in this request") ||
		!strings.Contains(reqs[2].Messages[0].Text(), "what code earlier in this conversation defined is still there") {
		t.Errorf("the model was not told the truth about the state:\n%s\n%s", reqs[0].Messages[0].Text(), reqs[2].Messages[0].Text())
	}

	status, data := post(t, hs.URL, userBody("again", `"tools":[{"type":"code_execution","container":"sess_00000000000000000000000000000000"}]`))
	if r := decode(t, data); status != 404 || r.Error == nil || r.Error.Code != "session_not_found" {
		t.Errorf("unknown container: %d %s", status, data)
	}
}

// TestInterpreterStopped: when the code ends the interpreter, the model is told at
// once, and its next call runs in a new one, whose id the reply names.
func TestInterpreterStopped(t *testing.T) {
	up := llmtest.NewServer(t,
		llmtest.Calls(code("x = 1\nimport os\nos._exit(3)")),
		llmtest.Calls(code("print('x' in globals())")),
		llmtest.Text("A new interpreter."),
	)
	r := chat(t, gateway(t, up, nil).URL, userBody("exit", codeTool))
	calls := r.Choices[0].Message.ToolCalls
	if len(calls) != 2 || calls[1].CodeExecution.Stdout != "False\n" {
		t.Fatalf("entries %+v", calls)
	}
	a, b := calls[0].CodeExecution.ContainerID, calls[1].CodeExecution.ContainerID
	if a == b || r.Container == nil || r.Container.ID != b {
		t.Errorf("runs in %q then %q, reply names %+v: want the second run in a new container, named", a, b, r.Container)
	}
	told := up.ChatRequests()[1].Messages
	if msg := told[len(told)-1].Text(); !strings.Contains(msg, "The interpreter ended with this run") {
		t.Errorf("the model was told %q", msg)
	}
}

// TestMetricsCountGateway: the gateway's executions show in /metrics like any.
func TestMetricsCountGateway(t *testing.T) {
	up := llmtest.NewServer(t, llmtest.Calls(code("print(1)")), llmtest.Calls(code("1/0")), llmtest.Text("done"))
	hs := gateway(t, up, nil)
	chat(t, hs.URL, userBody("count", codeTool))
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`codeexec_executions_total{language="python",status="ok"} 1`, `codeexec_executions_total{language="python",status="error"} 1`, "codeexec_sessions_active 1"} {
		if !strings.Contains(string(data), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
