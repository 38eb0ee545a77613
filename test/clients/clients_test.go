// Package clients_test drives the gateway with the clients people use: Go's
// openai-go, Node's openai package and curl, against the real server and sandbox
// and a scripted fake upstream.
package clients_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/test/testenv"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

// The xAI seed example: the first 20 Fibonacci numbers.
const (
	question  = "Calculate the first 20 Fibonacci numbers"
	fibCode   = "def fibonacci(n):\n    fibs = [0, 1]\n    for i in range(2, n):\n        fibs.append(fibs[-1] + fibs[-2])\n    return fibs[:n]\n\nprint(fibonacci(20))"
	fibOutput = "[0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]\n"
	fibAnswer = "Here are the first 20 Fibonacci numbers: [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]"
)

// fibTurns scripts the model for n client requests: each runs the code, then answers.
func fibTurns(n int) []llmtest.Turn {
	args, _ := json.Marshal(map[string]string{"code": fibCode})
	var turns []llmtest.Turn
	for range n {
		turns = append(turns, llmtest.Calls(llmtest.Call{Name: agent.ToolName, Arguments: string(args)}), llmtest.Text(fibAnswer))
	}
	return turns
}

// fake starts a fake upstream scripted for n client requests and a gateway in front
// of it, and checks at the end of the test that the clients used the whole script
// (each request made exactly its two model calls, none was retried).
func fake(t *testing.T, n int) string {
	t.Helper()
	up, gw := testenv.Fake(t, fibTurns(n)...)
	t.Cleanup(func() {
		if left := up.Remaining(); left != 0 && !t.Failed() {
			t.Errorf("%d of the %d scripted model turns were not used: got %d upstream requests, want %d", left, 2*n, len(up.ChatRequests()), 2*n)
		}
	})
	return gw.URL
}

// entry is a tool_calls entry's code_execution object.
type entry struct {
	Code   string `json:"code"`
	Output string `json:"output"`
	Status string `json:"status"`
}

func checkEntries(t *testing.T, who string, content string, entries []entry) {
	t.Helper()
	if content != fibAnswer {
		t.Errorf("%s read content %q, want %q", who, content, fibAnswer)
	}
	if len(entries) != 1 {
		t.Fatalf("%s read %d code_execution entries %+v, want 1", who, len(entries), entries)
	}
	e := entries[0]
	if e.Code != fibCode {
		t.Errorf("%s read code %q, want %q", who, e.Code, fibCode)
	}
	if e.Output != fibOutput {
		t.Errorf("%s read output %q, want %q", who, e.Output, fibOutput)
	}
	if e.Status != "ok" {
		t.Errorf("%s read status %q, want \"ok\"", who, e.Status)
	}
}

func goClient(url string) openai.Client {
	return openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("sk-test"),
		option.WithMaxRetries(0), option.WithRequestTimeout(30*time.Second))
}

func goParams() openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    "fake-model",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(question)},
	}
}

// codeTool is the server-side tool as a Tools element. openai-go's tool union only
// has function and custom variants; param.Override makes an element marshal as the
// given JSON, so the tool still mixes with typed function tools.
var codeTool = param.Override[openai.ChatCompletionToolUnionParam](json.RawMessage(`{"type":"code_execution"}`))

func TestGoOpenAI(t *testing.T) {
	// Both ways of sending the tool put the same "tools" in the body.
	sends := []struct {
		name string
		set  func(*openai.ChatCompletionNewParams) []option.RequestOption
	}{
		{"param.Override", func(p *openai.ChatCompletionNewParams) []option.RequestOption {
			p.Tools = []openai.ChatCompletionToolUnionParam{codeTool}
			return nil
		}},
		{"WithJSONSet", func(p *openai.ChatCompletionNewParams) []option.RequestOption {
			return []option.RequestOption{option.WithJSONSet("tools", []any{map[string]string{"type": "code_execution"}})}
		}},
	}
	for _, s := range sends {
		t.Run("non-streaming/"+s.name, func(t *testing.T) {
			client := goClient(fake(t, 1))
			params := goParams()
			opts := s.set(&params)
			resp, err := client.Chat.Completions.New(t.Context(), params, opts...)
			if err != nil {
				t.Fatalf("openai-go Chat.Completions.New: %v", err)
			}
			if len(resp.Choices) != 1 {
				t.Fatalf("got %d choices, want 1: %s", len(resp.Choices), resp.RawJSON())
			}
			msg := resp.Choices[0].Message
			if fr := resp.Choices[0].FinishReason; fr != "stop" {
				t.Errorf("finish_reason %q, want \"stop\"", fr)
			}
			// The SDK keeps a tool call of an unknown type: its Type and ID are set,
			// AsAny() is nil and the code_execution object is only in its raw JSON.
			var entries []entry
			for i, c := range msg.ToolCalls {
				if c.Type != "code_execution" || c.ID == "" {
					t.Errorf("tool_calls[%d] has type %q and id %q, want type \"code_execution\" and an id", i, c.Type, c.ID)
					continue
				}
				var raw struct {
					CodeExecution entry `json:"code_execution"`
				}
				if err := json.Unmarshal([]byte(c.RawJSON()), &raw); err != nil {
					t.Fatalf("tool_calls[%d] raw JSON: %v: %s", i, err, c.RawJSON())
				}
				entries = append(entries, raw.CodeExecution)
			}
			checkEntries(t, "openai-go", msg.Content, entries)
		})
	}

	t.Run("streaming", func(t *testing.T) {
		client := goClient(fake(t, 1))
		params := goParams()
		params.Tools = []openai.ChatCompletionToolUnionParam{codeTool}
		params.StreamOptions.IncludeUsage = openai.Bool(true)
		stream := client.Chat.Completions.NewStreaming(t.Context(), params)
		defer stream.Close()
		// The accumulator gathers the content; it keeps a code_execution call's id
		// and type but drops the code_execution object, which is read from each
		// delta's raw JSON (openai-go also lists it in the delta's JSON.ExtraFields).
		var acc openai.ChatCompletionAccumulator
		var content strings.Builder
		var entries []entry
		chunks := 0
		for stream.Next() {
			chunk := stream.Current()
			chunks++
			if !acc.AddChunk(chunk) {
				t.Errorf("the accumulator refused chunk %d: %s", chunks, chunk.RawJSON())
			}
			for _, ch := range chunk.Choices {
				content.WriteString(ch.Delta.Content)
				for _, tc := range ch.Delta.ToolCalls {
					if tc.Type != "code_execution" || tc.Index != 0 {
						t.Fatalf("tool call delta has type %q index %d, want type \"code_execution\" index 0: %s", tc.Type, tc.Index, chunk.RawJSON())
					}
					var raw struct {
						CodeExecution entry `json:"code_execution"`
					}
					if err := json.Unmarshal([]byte(tc.RawJSON()), &raw); err != nil {
						t.Fatalf("tool call delta raw JSON: %v: %s", err, tc.RawJSON())
					}
					for len(entries) <= int(tc.Index) {
						entries = append(entries, entry{})
					}
					e := &entries[tc.Index]
					if e.Code == "" {
						e.Code = raw.CodeExecution.Code
					}
					e.Output += raw.CodeExecution.Output
					if raw.CodeExecution.Status != "" {
						e.Status = raw.CodeExecution.Status
					}
				}
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("openai-go stream after %d chunks: %v", chunks, err)
		}
		checkEntries(t, "openai-go streaming", content.String(), entries)
		if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != fibAnswer || acc.Choices[0].FinishReason != "stop" {
			t.Errorf("accumulated completion %s, want content %q and finish_reason \"stop\"", acc.RawJSON(), fibAnswer)
		}
		if acc.Usage.TotalTokens == 0 {
			t.Errorf("no usage chunk although stream_options.include_usage was set")
		}
	})
}

// nodeDir returns node/ with the packages it pins installed.
func nodeDir(t *testing.T) string {
	t.Helper()
	return testenv.NodeDir(t, "node", "openai")
}

func TestNodeOpenAI(t *testing.T) {
	dir := nodeDir(t)
	url := fake(t, 2) // one non-streaming request, one streaming
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "chat.mjs", question)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CODEEXEC_URL="+url)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node chat.mjs: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	type result struct {
		Content string  `json:"content"`
		Entries []entry `json:"entries"`
		Finish  string  `json:"finish"`
	}
	var got struct {
		Plain  result `json:"plain"`
		Stream result `json:"stream"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node chat.mjs printed no JSON: %v: %s", err, out)
	}
	checkEntries(t, "node openai", got.Plain.Content, got.Plain.Entries)
	checkEntries(t, "node openai streaming", got.Stream.Content, got.Stream.Entries)
	if got.Plain.Finish != "stop" || got.Stream.Finish != "stop" {
		t.Errorf("node openai read finish_reason %q, streaming %q, want \"stop\"", got.Plain.Finish, got.Stream.Finish)
	}
}

func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Skip(t, "curl is not on PATH")
	}
	url := fake(t, 1)
	body := `{"model": "fake-model", "messages": [{"role": "user", "content": "` + question + `"}], "tools": [{"type": "code_execution"}]}`
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "30", url+"/v1/chat/completions", "-d", body).Output()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	var r struct {
		Choices []struct {
			Message struct {
				Content   string `json:"content"`
				ToolCalls []struct {
					Type          string `json:"type"`
					CodeExecution entry  `json:"code_execution"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Choices) != 1 {
		t.Fatalf("curl got %v, want one choice: %s", err, out)
	}
	var entries []entry
	for i, c := range r.Choices[0].Message.ToolCalls {
		if c.Type != "code_execution" {
			t.Errorf("tool_calls[%d].type is %q, want \"code_execution\"", i, c.Type)
		}
		entries = append(entries, c.CodeExecution)
	}
	checkEntries(t, "curl", r.Choices[0].Message.Content, entries)
}

// streamEvent is one thing a client read from a stream, in the order it read it.
type streamEvent struct {
	Content     string `json:"content"`
	Run         string `json:"run"` // "running", then the run's status
	ContainerID string `json:"container_id"`
	Stdout      string `json:"stdout"`
	Finish      string `json:"finish"`
	Container   string `json:"container"`
}

// orderedGateway is a gateway whose model writes "Let me compute." and then waits
// for modelWriting to close before calling the code tool, and whose judge holds
// the code until the test releases it.
func orderedGateway(t *testing.T) (url string, modelWriting chan struct{}, j testenv.GatedJudge) {
	modelWriting = make(chan struct{})
	args, _ := json.Marshal(map[string]string{"code": "print('ran')"})
	first := llmtest.Calls(llmtest.Call{Name: agent.ToolName, Arguments: string(args)})
	first.Content, first.Hold = "Let me compute.", modelWriting
	up := llmtest.NewServer(t, first, llmtest.Text("It ran."))
	j = testenv.NewGatedJudge()
	return testenv.Gateway(t, up.Provider(), j).URL, modelWriting, j
}

// checkStreamOrder drives a client's stream, read as events: the text must arrive
// while the model is still writing, the code while it has not run, and its output
// after. Each step waits for the one before, so no timing is involved.
func checkStreamOrder(t *testing.T, who string, events <-chan streamEvent, modelWriting chan struct{}, j testenv.GatedJudge) {
	t.Helper()
	next := func(what string) streamEvent {
		t.Helper()
		e, ok := <-events
		if !ok {
			t.Fatalf("%s: the stream ended before %s", who, what)
		}
		return e
	}
	text := ""
	for text != "Let me compute." {
		text += next("the text").Content
	}
	close(modelWriting)
	e := next("the code")
	for e.Run == "" {
		e = next("the code")
	}
	if e.Run != "running" || !strings.HasPrefix(e.ContainerID, "sess_") {
		t.Errorf("%s: the first code event %+v, want status running and a container", who, e)
	}
	select {
	case <-j.Held:
	case <-time.After(time.Minute):
		t.Fatalf("%s: the judge was never asked", who)
	}
	close(j.Release)
	done := next("the output")
	for done.Run == "" {
		done = next("the output")
	}
	if done.Run != "ok" || done.Stdout != "ran\n" || done.ContainerID != e.ContainerID {
		t.Errorf("%s: the finished run %+v", who, done)
	}
	for rest := range events {
		if rest.Finish != "" && (rest.Finish != "stop" || rest.Container != e.ContainerID) {
			t.Errorf("%s: finish %+v, want stop in container %s", who, rest, e.ContainerID)
		}
	}
}

// lines runs cmd and sends each line of its stdout as it is written, then how
// cmd ended (nil, or its error and stderr) on exit.
func lines(t *testing.T, cmd *exec.Cmd, exit chan<- error) <-chan string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
		if err := cmd.Wait(); err != nil {
			exit <- fmt.Errorf("%s: %w\n%s", cmd.Args[0], err, stderr.String())
			return
		}
		exit <- nil
	}()
	return ch
}

// TestNodeOpenAIStreamOrder: Node's openai package yields the text, the code and
// the output as the gateway writes them, not all at the end.
func TestNodeOpenAIStreamOrder(t *testing.T) {
	dir := nodeDir(t)
	url, modelWriting, j := orderedGateway(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "order.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CODEEXEC_URL="+url)
	events := make(chan streamEvent)
	exit, bad := make(chan error, 1), make(chan string, 100)
	go func() {
		defer close(events)
		for line := range lines(t, cmd, exit) {
			var e streamEvent
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				bad <- line
				continue
			}
			events <- e
		}
	}()
	checkStreamOrder(t, "node openai", events, modelWriting, j)
	if err := <-exit; err != nil {
		t.Error(err)
	}
	if len(bad) > 0 {
		t.Errorf("node order.mjs printed %q, not an event", <-bad)
	}
}

// TestCurlStreamOrder: so does `curl -N`, reading the raw server-sent events.
func TestCurlStreamOrder(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Skip(t, "curl is not on PATH")
	}
	url, modelWriting, j := orderedGateway(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	body := `{"model": "fake-model", "stream": true, "messages": [{"role": "user", "content": "Run it"}], "tools": [{"type": "code_execution"}]}`
	cmd := exec.CommandContext(ctx, "curl", "-sSN", "--max-time", "100", url+"/v1/chat/completions", "-d", body)
	events := make(chan streamEvent)
	exit, bad := make(chan error, 1), make(chan string, 100)
	go func() {
		defer close(events)
		for line := range lines(t, cmd, exit) {
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok || data == "[DONE]" {
				continue
			}
			var c struct {
				Choices []struct {
					Delta struct {
						Content   string `json:"content"`
						ToolCalls []struct {
							CodeExecution struct {
								Status      string `json:"status"`
								ContainerID string `json:"container_id"`
								Stdout      string `json:"stdout"`
							} `json:"code_execution"`
						} `json:"tool_calls"`
					} `json:"delta"`
					FinishReason *string `json:"finish_reason"`
				} `json:"choices"`
				Container struct {
					ID string `json:"id"`
				} `json:"container"`
			}
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				bad <- line
				continue
			}
			for _, ch := range c.Choices {
				if ch.Delta.Content != "" {
					events <- streamEvent{Content: ch.Delta.Content}
				}
				for _, tc := range ch.Delta.ToolCalls {
					e := tc.CodeExecution
					events <- streamEvent{Run: e.Status, ContainerID: e.ContainerID, Stdout: e.Stdout}
				}
				if ch.FinishReason != nil {
					events <- streamEvent{Finish: *ch.FinishReason, Container: c.Container.ID}
				}
			}
		}
	}()
	checkStreamOrder(t, "curl -N", events, modelWriting, j)
	if err := <-exit; err != nil {
		t.Error(err)
	}
	if len(bad) > 0 {
		t.Errorf("curl read %q, not a chunk", <-bad)
	}
}
