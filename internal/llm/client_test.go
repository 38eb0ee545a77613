package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const okCompletion = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"4"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`

// answer is one scripted HTTP answer of a scriptServer.
type answer struct {
	status int
	header map[string]string
	body   string
	hangup bool // close the connection without answering
}

// scriptServer answers requests with answers in order and records the bodies.
type scriptServer struct {
	*httptest.Server
	mu      sync.Mutex
	answers []answer
	bodies  []string
	headers []http.Header
}

func newScriptServer(t *testing.T, answers ...answer) *scriptServer {
	s := &scriptServer{answers: answers}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.bodies)
		s.bodies = append(s.bodies, string(b))
		s.headers = append(s.headers, r.Header.Clone())
		s.mu.Unlock()
		if n >= len(s.answers) {
			t.Errorf("request %d has no scripted answer", n+1)
			http.Error(w, "no answer", http.StatusTeapot)
			return
		}
		a := s.answers[n]
		if a.hangup {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scriptServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

// testClient returns a client of srv whose waits are recorded instead of slept.
func testClient(srv *httptest.Server, p Provider) (*Client, *[]time.Duration) {
	p.Name = "p"
	p.BaseURL = srv.URL + "/v1"
	c := New(p)
	var waits []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	c.backoff = func(n int) time.Duration { return time.Duration(n+1) * time.Millisecond }
	return c, &waits
}

func simpleRequest() *ChatRequest {
	return &ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: TextContent("2+2?")}}}
}

func TestChatRetries(t *testing.T) {
	rateLimited := `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded","param":null}}`
	tests := []struct {
		name       string
		maxRetries int
		answers    []answer
		wantWaits  []time.Duration
		wantErr    *APIError // nil means success
	}{
		{
			name:      "429 then 200, Retry-After seconds honoured",
			answers:   []answer{{status: 429, header: map[string]string{"Retry-After": "1"}, body: rateLimited}, {status: 200, body: okCompletion}},
			wantWaits: []time.Duration{time.Second},
		},
		{
			name:      "429 then 200, retry-after-ms preferred",
			answers:   []answer{{status: 429, header: map[string]string{"Retry-After": "3", "Retry-After-Ms": "250"}, body: rateLimited}, {status: 200, body: okCompletion}},
			wantWaits: []time.Duration{250 * time.Millisecond},
		},
		{
			name:      "connection dropped, then 200",
			answers:   []answer{{hangup: true}, {status: 200, body: okCompletion}},
			wantWaits: []time.Duration{time.Millisecond},
		},
		{
			name:       "500 until the attempts are used up",
			maxRetries: 3,
			answers: []answer{{status: 500, body: `{"error":{"message":"boom","type":"server_error"}}`},
				{status: 502, body: "bad gateway"}, {status: 503, body: "unavailable"},
				{status: 500, body: `{"error":{"message":"boom again","type":"server_error"}}`}},
			wantWaits: []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond},
			wantErr:   &APIError{Provider: "p", Status: 500, Type: "server_error", Message: "boom again"},
		},
		{
			name: "400 is not retried",
			answers: []answer{{status: 400, body: `{"error":{"message":"Unrecognized request argument supplied: foo","type":"invalid_request_error","param":"foo","code":null}}`},
				{status: 200, body: okCompletion}},
			wantErr: &APIError{Provider: "p", Status: 400, Type: "invalid_request_error", Param: "foo", Message: "Unrecognized request argument supplied: foo"},
		},
		{
			name:    "429 insufficient_quota is not retried",
			answers: []answer{{status: 429, body: `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}`}},
			wantErr: &APIError{Provider: "p", Status: 429, Type: "insufficient_quota", Code: "insufficient_quota", Message: "You exceeded your current quota"},
		},
		{
			name:    "Retry-After beyond a minute gives up at once",
			answers: []answer{{status: 429, header: map[string]string{"Retry-After": "3600"}, body: rateLimited}},
			wantErr: &APIError{Provider: "p", Status: 429, Type: "requests", Code: "rate_limit_exceeded", Message: "Rate limit reached"},
		},
		{
			name:       "retries off",
			maxRetries: -1,
			answers:    []answer{{status: 503, body: "upstream connect error"}},
			wantErr:    &APIError{Provider: "p", Status: 503, Message: "upstream connect error"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newScriptServer(t, tt.answers...)
			c, waits := testClient(srv.Server, Provider{MaxRetries: tt.maxRetries})
			resp, err := c.Chat(context.Background(), simpleRequest())
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Chat: %v", err)
				}
				if got := resp.Choices[0].Message.Text(); got != "4" {
					t.Errorf("answer %q, want %q", got, "4")
				}
			} else {
				var apiErr *APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("Chat error = %v, want an *APIError", err)
				}
				if *apiErr != *tt.wantErr {
					t.Errorf("APIError\ngot:  %+v\nwant: %+v", *apiErr, *tt.wantErr)
				}
			}
			if !reflect.DeepEqual(*waits, tt.wantWaits) {
				t.Errorf("waits got %v, want %v", *waits, tt.wantWaits)
			}
			if got, want := srv.requests(), len(tt.wantWaits)+1; got != want {
				t.Errorf("requests got %d, want %d", got, want)
			}
		})
	}
}

func TestChatTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	c, waits := testClient(srv, Provider{Timeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := c.Chat(context.Background(), simpleRequest())
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Chat error = %v, want ErrTimeout", err)
	}
	if want := `upstream "p": timed out: no answer within 50ms`; err.Error() != want {
		t.Errorf("error text %q, want %q", err, want)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Chat took %v with a 50ms timeout", d)
	}
	if len(*waits) != 0 {
		t.Errorf("a timeout was retried (waits %v)", *waits)
	}
}

func TestChatContextCancelStopsWaiting(t *testing.T) {
	srv := newScriptServer(t, answer{status: 429, header: map[string]string{"Retry-After": "30"}, body: `{"error":{"message":"slow down"}}`})
	c := New(Provider{Name: "p", BaseURL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Chat(ctx, simpleRequest())
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Chat returned after %v; cancelling should end the 30s wait at once", d)
	}
	var apiErr *APIError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &apiErr) {
		t.Errorf("Chat error = %v, want context.Canceled that also carries the 429", err)
	}
}

func TestChatCancelledDuringRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection only after the body
		<-r.Context().Done()
	}))
	defer srv.Close()
	c, _ := testClient(srv, Provider{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := c.Chat(ctx, simpleRequest())
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Errorf("Chat error = %v, want the caller's context.DeadlineExceeded", err)
	}
}

func TestChatBadBodies(t *testing.T) {
	tests := []struct {
		name, body, want string
		is               error
	}{
		{"cut-off JSON", `{"id":"chatcmpl-1","choices":[`, `upstream "p": invalid response: chat completion is not valid JSON: unexpected end of JSON input (body begins "{\"id\":\"chatcmpl-1\",\"choices\":[")`, ErrInvalidResponse},
		{"HTML", `<html><body>Bad gateway</body></html>`, `want a JSON object, got "<html>`, ErrInvalidResponse},
		{"empty", ``, `invalid response: chat completion is not valid JSON: empty body`, ErrInvalidResponse},
		{"no choices", `{"id":"x","choices":[]}`, `invalid response: chat completion has no choices`, ErrInvalidResponse},
		{"too large", `{"id":"` + strings.Repeat("x", 2000) + `"}`, `upstream "p": POST /chat/completions: response too large: body exceeds 1024 bytes`, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newScriptServer(t, answer{status: 200, body: tt.body})
			c, _ := testClient(srv.Server, Provider{})
			c.maxBody = 1024
			_, err := c.Chat(context.Background(), simpleRequest())
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Chat error = %v\nwant errors.Is %v and containing %q", err, tt.is, tt.want)
			}
			if srv.requests() != 1 {
				t.Errorf("requests got %d, want 1 (bad bodies are not retried)", srv.requests())
			}
		})
	}
}

func TestChatRequestOnTheWire(t *testing.T) {
	srv := newScriptServer(t, answer{status: 200, body: okCompletion},
		answer{status: 200, header: map[string]string{"Content-Type": "text/event-stream"}, body: "data: [DONE]\n\n"})
	c, _ := testClient(srv.Server, Provider{APIKey: "sk-1", Headers: map[string]string{"HTTP-Referer": "https://codeexec.dev"}})
	req, err := DecodeChatRequest(strings.NewReader(`{"model":"p/m","messages":[{"role":"user","content":"<hi>"}],
		"stream":true,"stream_options":{"include_usage":true},"tools":[{"type":"code_execution"}],"reasoning_effort":"high"}`))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := json.Marshal(req)
	if _, err := c.Chat(context.Background(), req); err != nil {
		t.Fatalf("Chat: %v", err)
	}
	s, err := c.ChatStream(context.Background(), req)
	if err != nil {
		t.Fatalf("ChatStream: %v", err)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Errorf("Next = %v, want io.EOF", err)
	}
	s.Close()
	if after, _ := json.Marshal(req); !bytes.Equal(before, after) {
		t.Errorf("the caller's request changed\nbefore: %s\nafter:  %s", before, after)
	}

	wantBodies := []string{
		`{"model":"m","messages":[{"role":"user","content":"<hi>"}],"tools":[{"type":"code_execution"}],"reasoning_effort":"high"}`,
		`{"model":"m","messages":[{"role":"user","content":"<hi>"}],"tools":[{"type":"code_execution"}],"stream":true,"stream_options":{"include_usage":true},"reasoning_effort":"high"}`,
	}
	for i, want := range wantBodies {
		if got := srv.bodies[i]; got != want {
			t.Errorf("body %d\ngot:  %s\nwant: %s", i, got, want)
		}
	}
	wantHeaders := map[string][2]string{ // header → want for Chat, ChatStream
		"Authorization": {"Bearer sk-1", "Bearer sk-1"},
		"Content-Type":  {"application/json", "application/json"},
		"Accept":        {"application/json", "text/event-stream"},
		"Http-Referer":  {"https://codeexec.dev", "https://codeexec.dev"},
	}
	for h, want := range wantHeaders {
		for i := range 2 {
			if got := srv.headers[i].Get(h); got != want[i] {
				t.Errorf("request %d header %s = %q, want %q", i, h, got, want[i])
			}
		}
	}
}

func TestNoAuthorizationWithoutKey(t *testing.T) {
	t.Setenv("CODEEXEC_TEST_EMPTY_KEY", "")
	srv := newScriptServer(t, answer{status: 200, body: okCompletion})
	c, _ := testClient(srv.Server, Provider{APIKeyEnv: "CODEEXEC_TEST_EMPTY_KEY"})
	if _, err := c.Chat(context.Background(), simpleRequest()); err != nil {
		t.Fatal(err)
	}
	if got := srv.headers[0].Get("Authorization"); got != "" {
		t.Errorf("Authorization = %q, want none", got)
	}
}

func sseServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, flush func())) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection only after the body
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		handler(w, r, w.(http.Flusher).Flush)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestChatStreamRetriesConnect(t *testing.T) {
	srv := newScriptServer(t,
		answer{status: 503, body: `{"error":{"message":"warming up"}}`},
		answer{status: 200, header: map[string]string{"Content-Type": "text/event-stream; charset=utf-8"},
			body: "data: " + chunkData("a", "hi") + "\n\ndata: [DONE]\n\n"})
	c, waits := testClient(srv.Server, Provider{})
	s, err := c.ChatStream(context.Background(), simpleRequest())
	if err != nil {
		t.Fatalf("ChatStream: %v", err)
	}
	defer s.Close()
	var acc Accumulator
	for {
		chunk, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		acc.Add(chunk)
	}
	if got := acc.Response().Choices[0].Message.Text(); got != "hi" {
		t.Errorf("streamed text %q, want %q", got, "hi")
	}
	if len(*waits) != 1 {
		t.Errorf("waits %v, want one retry", *waits)
	}
}

func TestChatStreamJSONInsteadOfSSE(t *testing.T) {
	srv := newScriptServer(t, answer{status: 200, body: okCompletion})
	c, _ := testClient(srv.Server, Provider{})
	_, err := c.ChatStream(context.Background(), simpleRequest())
	if !errors.Is(err, ErrInvalidResponse) || !strings.Contains(err.Error(), "asked for a stream, got application/json") {
		t.Errorf("ChatStream error = %v, want ErrInvalidResponse about the content type", err)
	}
}

func TestChatStreamIdleTimeout(t *testing.T) {
	stalled := sseServer(t, func(w http.ResponseWriter, r *http.Request, flush func()) {
		fmt.Fprintf(w, "data: %s\n\n", chunkData("a", "x"))
		flush()
		<-r.Context().Done()
	})
	c, _ := testClient(stalled, Provider{Timeout: 100 * time.Millisecond})
	s, err := c.ChatStream(context.Background(), simpleRequest())
	if err != nil {
		t.Fatalf("ChatStream: %v", err)
	}
	defer s.Close()
	if _, err := s.Next(); err != nil {
		t.Fatalf("first Next: %v", err)
	}
	if _, err := s.Next(); !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no data for 100ms") {
		t.Errorf("second Next error = %v, want ErrTimeout", err)
	}
}

func TestChatStreamKeepAliveComments(t *testing.T) {
	// Comments every 20ms for 300ms keep a 100ms idle timeout from firing.
	srv := sseServer(t, func(w http.ResponseWriter, r *http.Request, flush func()) {
		for range 15 {
			io.WriteString(w, ": keep-alive\n\n")
			flush()
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", chunkData("a", "late"))
	})
	c, _ := testClient(srv, Provider{Timeout: 100 * time.Millisecond})
	s, err := c.ChatStream(context.Background(), simpleRequest())
	if err != nil {
		t.Fatalf("ChatStream: %v", err)
	}
	defer s.Close()
	chunk, err := s.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if got := chunk.Choices[0].Delta.Text(); got != "late" {
		t.Errorf("content %q, want %q", got, "late")
	}
}

func TestChatStreamCloseEndsRequest(t *testing.T) {
	handlerDone := make(chan struct{})
	srv := sseServer(t, func(w http.ResponseWriter, r *http.Request, flush func()) {
		defer close(handlerDone)
		for i := 0; ; i++ { // an endless stream
			fmt.Fprintf(w, "data: %s\n\n", chunkData(fmt.Sprint(i), "x"))
			flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	c, _ := testClient(srv, Provider{})
	s, err := c.ChatStream(context.Background(), simpleRequest())
	if err != nil {
		t.Fatalf("ChatStream: %v", err)
	}
	if _, err := s.Next(); err != nil {
		t.Fatalf("Next: %v", err)
	}
	s.Close()
	select {
	case <-handlerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was still open 5s after Close")
	}
}

func TestChatStreamContextCancel(t *testing.T) {
	srv := sseServer(t, func(w http.ResponseWriter, r *http.Request, flush func()) {
		fmt.Fprintf(w, "data: %s\n\n", chunkData("a", "x"))
		flush()
		<-r.Context().Done()
	})
	c, _ := testClient(srv, Provider{})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.ChatStream(ctx, simpleRequest())
	if err != nil {
		t.Fatalf("ChatStream: %v", err)
	}
	defer s.Close()
	if _, err := s.Next(); err != nil {
		t.Fatalf("Next: %v", err)
	}
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := s.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after cancel: error = %v, want context.Canceled", err)
	}
}

func TestModels(t *testing.T) {
	srv := newScriptServer(t, answer{status: 200, body: `{"object":"list","data":[{"id":"a","object":"model","created":1,"owned_by":"me","max_model_len":8192},{"id":"b","object":"model"}]}`},
		answer{status: 200, body: `[]`})
	c, _ := testClient(srv.Server, Provider{})
	models, err := c.Models(context.Background())
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	if len(models) != 2 || models[0].ID != "a" || models[0].OwnedBy != "me" || string(models[0].Extra["max_model_len"]) != "8192" || models[1].ID != "b" {
		t.Errorf("Models got %+v", models)
	}
	if _, err := c.Models(context.Background()); !errors.Is(err, ErrInvalidResponse) {
		t.Errorf("Models of a non-object: error = %v, want ErrInvalidResponse", err)
	}
}

func TestParseAPIError(t *testing.T) {
	long := strings.Repeat("é", 1000)
	tests := []struct {
		name string
		body string
		want APIError
	}{
		{"OpenAI", `{"error":{"message":"Invalid model","type":"invalid_request_error","param":"model","code":"model_not_found"}}`,
			APIError{Status: 404, Type: "invalid_request_error", Param: "model", Code: "model_not_found", Message: "Invalid model"}},
		{"numeric code", `{"error":{"message":"m","code":400}}`, APIError{Status: 404, Code: "400", Message: "m"}},
		{"error as a string", `{"error":"model 'x' not found"}`, APIError{Status: 404, Message: "model 'x' not found"}},
		{"vLLM top level", `{"object":"error","message":"The model does not exist.","type":"NotFoundError","param":null,"code":404}`,
			APIError{Status: 404, Type: "NotFoundError", Code: "404", Message: "The model does not exist."}},
		{"not JSON", "<html>nope</html>\n", APIError{Status: 404, Message: "<html>nope</html>"}},
		{"JSON without a message", `{"detail":"Not Found"}`, APIError{Status: 404, Message: `{"detail":"Not Found"}`}},
		{"empty", "", APIError{Status: 404, Message: "(empty body)"}},
		{"long text truncated at a rune", long, APIError{Status: 404, Message: strings.Repeat("é", 512) + "…"}},
	}
	for _, tt := range tests {
		got := parseAPIError("", 404, []byte(tt.body))
		if *got != tt.want {
			t.Errorf("%s: parseAPIError(%.40q)\ngot:  %+v\nwant: %+v", tt.name, tt.body, *got, tt.want)
		}
	}
	e := &APIError{Provider: "xai", Status: 429, Type: "requests", Code: "rate_limit_exceeded", Message: "Rate limit reached"}
	if got, want := e.Error(), `upstream "xai" answered 429 Too Many Requests: Rate limit reached (type "requests", code "rate_limit_exceeded")`; got != want {
		t.Errorf("Error()\ngot:  %s\nwant: %s", got, want)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		header map[string]string
		want   time.Duration
		ok     bool
	}{
		{nil, 0, false},
		{map[string]string{"Retry-After": "2"}, 2 * time.Second, true},
		{map[string]string{"Retry-After": "0"}, 0, true},
		{map[string]string{"Retry-After": "1.5"}, 1500 * time.Millisecond, true},
		{map[string]string{"Retry-After": "Sun, 01 Nov 2026 12:00:07 GMT"}, 7 * time.Second, true},
		{map[string]string{"Retry-After": "Sun, 01 Nov 2026 11:00:00 GMT"}, 0, true},
		{map[string]string{"Retry-After": "soon"}, 0, false},
		{map[string]string{"Retry-After": "-1"}, 0, false},
		{map[string]string{"Retry-After-Ms": "20", "Retry-After": "9"}, 20 * time.Millisecond, true},
		{map[string]string{"Retry-After-Ms": "x", "Retry-After": "9"}, 9 * time.Second, true},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.header {
			h.Set(k, v)
		}
		got, ok := retryAfter(h, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%v) = %v, %v; want %v, %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	for n := range 12 {
		ceil := min(backoffBase<<n, backoffMax)
		for range 50 {
			if d := backoff(n); d < ceil/2 || d > ceil {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, ceil/2, ceil)
			}
		}
	}
}
