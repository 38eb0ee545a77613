package llmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/llm"
)

func request(stream bool) *llm.ChatRequest {
	r := &llm.ChatRequest{Model: "fake-model", Messages: []llm.Message{{Role: "user", Content: llm.TextContent("What is 2+2?")}}}
	if stream {
		r.StreamOptions = &llm.StreamOptions{IncludeUsage: true}
	}
	return r
}

// collect reads a stream to its end.
func collect(t *testing.T, s *llm.Stream) []*llm.ChatChunk {
	t.Helper()
	defer s.Close()
	var chunks []*llm.ChatChunk
	for {
		c, err := s.Next()
		if err == io.EOF {
			return chunks
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		chunks = append(chunks, c)
	}
}

func TestStreamReassemblesToCompletion(t *testing.T) {
	turns := []struct {
		name string
		turn Turn
	}{
		{"text", Text("Hello, wörld! 2+2 = 4. 🎉 That is all.")},
		{"empty text", Text("")},
		{"one tool call", Calls(Call{Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`})},
		{"two tool calls", Calls(Call{Name: "a", Arguments: `{"x":1}`}, Call{Name: "b", Arguments: `{}`})},
		{"text and a tool call", Turn{Content: "Let me check.", Calls: []Call{{Name: "run", Arguments: `{"code":"print(\"<hi>\")"}`}}}},
		{"finish reason and usage set", Turn{Content: "cut", FinishReason: "length", Usage: &llm.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}}},
	}
	for _, tt := range turns {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(t, tt.turn, tt.turn)
			c := llm.New(s.Provider())
			whole, err := c.Chat(context.Background(), request(false))
			if err != nil {
				t.Fatalf("Chat: %v", err)
			}
			st, err := c.ChatStream(context.Background(), request(true))
			if err != nil {
				t.Fatalf("ChatStream: %v", err)
			}
			chunks := collect(t, st)
			var acc llm.Accumulator
			for _, ch := range chunks {
				acc.Add(ch)
			}
			streamed := acc.Response()
			// The two answers differ only in their request number.
			streamed.ID = whole.ID
			for i := range streamed.Choices[0].Message.ToolCalls {
				streamed.Choices[0].Message.ToolCalls[i].ID = whole.Choices[0].Message.ToolCalls[i].ID
			}
			got, _ := json.Marshal(streamed)
			want, _ := json.Marshal(whole)
			if string(got) != string(want) {
				t.Errorf("stream reassembled\ngot:  %s\nwant: %s", got, want)
			}
			if len(tt.turn.Content) > 8 && countContentChunks(chunks) < 2 {
				t.Errorf("content came in %d chunks, want it split", countContentChunks(chunks))
			}
			if s.Remaining() != 0 {
				t.Errorf("Remaining() = %d, want 0", s.Remaining())
			}
		})
	}
}

func countContentChunks(chunks []*llm.ChatChunk) int {
	n := 0
	for _, c := range chunks {
		if len(c.Choices) > 0 && c.Choices[0].Delta.Content.Text() != "" {
			n++
		}
	}
	return n
}

// TestStreamFrames pins the exact bytes of a stream, in OpenAI's shape.
func TestStreamFrames(t *testing.T) {
	tests := []struct {
		name  string
		turn  Turn
		usage bool
		want  []string
	}{
		{
			name: "text", turn: Text("Hi there!"),
			want: []string{
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{"content":"Hi t"},"finish_reason":null}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{"content":"here"},"finish_reason":null}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
				`[DONE]`,
			},
		},
		{
			name: "tool calls with usage", usage: true,
			turn: Calls(Call{Name: "f", Arguments: `{"a":12}`}, Call{Name: "g", Arguments: `{}`}),
			want: []string{
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_llmtest_1_0","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]},"finish_reason":null}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":12}"}}]},"finish_reason":null}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_llmtest_1_1","type":"function","function":{"name":"g","arguments":""}}]},"finish_reason":null}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]},"finish_reason":null}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
				`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","choices":[],"usage":{"prompt_tokens":0,"completion_tokens":4,"total_tokens":4}}`,
				`[DONE]`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(t, tt.turn)
			body := `{"model":"fake-model","messages":[],"stream":true}`
			if tt.usage {
				body = `{"model":"fake-model","messages":[],"stream":true,"stream_options":{"include_usage":true}}`
			}
			resp, err := http.Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q, want text/event-stream", ct)
			}
			var want strings.Builder
			for _, w := range tt.want {
				fmt.Fprintf(&want, "data: %s\n\n", w)
			}
			if string(raw) != want.String() {
				t.Errorf("stream\ngot:\n%s\nwant:\n%s", raw, want.String())
			}
		})
	}
}

func TestRecordsRequests(t *testing.T) {
	s := NewServer(t, Text("ok"))
	c := llm.New(s.Provider())
	req, err := llm.DecodeChatRequest(strings.NewReader(`{"model":"fake/fake-model","messages":[{"role":"user","content":"hi"}],
		"tools":[{"type":"code_execution"}],"reasoning_effort":"low","vendor_flag":{"on":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Chat(context.Background(), req); err != nil {
		t.Fatalf("Chat: %v", err)
	}
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests recorded, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer sk-test" {
		t.Errorf("recorded %s %s with Authorization %q", r.Method, r.Path, r.Header.Get("Authorization"))
	}
	want := `{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"code_execution"}],"reasoning_effort":"low","vendor_flag":{"on":true}}`
	if string(r.Body) != want {
		t.Errorf("body\ngot:  %s\nwant: %s", r.Body, want)
	}
	chat := s.ChatRequests()[0]
	if chat.Model != "fake-model" || string(chat.Extra["vendor_flag"]) != `{"on":true}` || chat.Tools[0].Type != "code_execution" {
		t.Errorf("decoded request %+v", chat)
	}
}

func TestErrorTurns(t *testing.T) {
	s := NewServer(t,
		Error(http.StatusTooManyRequests, "Rate limit reached").WithHeader("Retry-After", "0"),
		Text("after the retry"),
		Error(http.StatusBadRequest, "bad"),
		InvalidJSON(),
		Text("slow").After(time.Second),
		Raw(http.StatusOK, "data: {\"id\":\"x\",\"choices\":[]}\n\n"), // a stream without [DONE]
	)
	p := s.Provider()
	p.MaxRetries = 1
	c := llm.New(p)
	ctx := context.Background()

	if resp, err := c.Chat(ctx, request(false)); err != nil || resp.Choices[0].Message.Text() != "after the retry" {
		t.Errorf("Chat after a 429 = %v, %v; want the retried answer", resp, err)
	}
	var apiErr *llm.APIError
	if _, err := c.Chat(ctx, request(false)); !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Message != "bad" || apiErr.Type != "invalid_request_error" {
		t.Errorf("Chat of an Error turn: %v, want a 400 APIError", err)
	}
	if _, err := c.Chat(ctx, request(false)); !errors.Is(err, llm.ErrInvalidResponse) {
		t.Errorf("Chat of InvalidJSON: %v, want ErrInvalidResponse", err)
	}
	p.Timeout = 50 * time.Millisecond
	start := time.Now()
	if _, err := llm.New(p).Chat(ctx, request(false)); !errors.Is(err, llm.ErrTimeout) {
		t.Errorf("Chat of a delayed turn: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("timed out after %v, want about 50ms", d)
	}
	st, err := c.ChatStream(ctx, request(true))
	if err != nil {
		t.Fatalf("ChatStream: %v", err)
	}
	defer st.Close()
	st.Next()
	if _, err := st.Next(); !errors.Is(err, llm.ErrStreamTruncated) {
		t.Errorf("stream without [DONE]: %v, want ErrStreamTruncated", err)
	}
}

func TestModels(t *testing.T) {
	s := NewServer(t)
	s.SetModels("a", "b")
	models, err := llm.New(s.Provider()).Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range models {
		ids = append(ids, m.ID)
	}
	if !reflect.DeepEqual(ids, []string{"a", "b"}) {
		t.Errorf("models %q, want [a b]", ids)
	}
}

// errorRecorder is a testing.TB that keeps Errorf messages instead of failing.
type errorRecorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestExhaustedScriptFailsLoudly(t *testing.T) {
	rec := &errorRecorder{TB: t}
	s := NewServer(rec, Text("only one"))
	c := llm.New(s.Provider())
	if _, err := c.Chat(context.Background(), request(false)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Chat(context.Background(), request(false))
	var apiErr *llm.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 500 || !strings.Contains(apiErr.Message, "chat request 2 has no scripted turn (the script has 1)") {
		t.Errorf("Chat beyond the script: %v, want a 500 saying so", err)
	}
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "no scripted turn") {
		t.Errorf("test errors %q, want one about the script", rec.errs)
	}
}

func TestDelayEndsWithServer(t *testing.T) {
	// A turn delayed far beyond the test must not hold up the server's Close.
	done := make(chan struct{})
	t.Run("inner", func(t *testing.T) {
		s := NewServer(t, Text("never").After(time.Hour))
		go func() {
			defer close(done)
			http.Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[]}`))
		}()
		for len(s.Requests()) == 0 {
			time.Sleep(time.Millisecond)
		}
	})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the delayed request was still running 5s after the server closed")
	}
}
