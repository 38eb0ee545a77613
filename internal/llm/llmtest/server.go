// Package llmtest is a scripted fake of an OpenAI-compatible upstream, for tests of
// code that calls one: it answers each chat completion with the next Turn of its
// script, streaming or not, and records every request it received.
package llmtest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/codeexec/codeexec/internal/llm"
)

// Created is the timestamp of every answer, so that answers are reproducible.
const Created = 1700000000

// pieceRunes is how many runes of content or arguments go into one stream chunk.
const pieceRunes = 4

// Request is one request the server received.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	// Chat is Body decoded, for /chat/completions; nil otherwise.
	Chat *llm.ChatRequest
}

// Server is the fake upstream; its URL is the httptest server's, and the API is
// under URL+"/v1". It is closed when the test ends.
type Server struct {
	*httptest.Server
	t    testing.TB
	done chan struct{}

	mu       sync.Mutex
	turns    []Turn
	next     int
	requests []Request
	models   []string
	// responses is the text POST /v1/responses answers with; nil: the route is
	// not served (404), as by an upstream without the Responses API.
	responses *string
}

// NewServer starts a fake upstream answering with turns, in order. A request beyond
// the script gets a 500 and fails the test.
func NewServer(t testing.TB, turns ...Turn) *Server {
	s := &Server{t: t, done: make(chan struct{}), turns: turns, models: []string{"fake-model"}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.chat)
	mux.HandleFunc("GET /v1/models", s.listModels)
	mux.HandleFunc("POST /v1/responses", s.respond)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.record(r, nil, nil)
		writeError(w, http.StatusNotFound, fmt.Sprintf("llmtest: no route for %s %s", r.Method, r.URL.Path))
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(s.done) // end delays still running, so that Close does not wait for them
		s.Close()
	})
	return s
}

// Provider returns a provider for this server, named "fake", with key "sk-test" and
// retries off, so that each scripted turn answers exactly one request.
func (s *Server) Provider() llm.Provider {
	return llm.Provider{
		Name:       "fake",
		BaseURL:    s.URL + "/v1",
		APIKey:     "sk-test",
		MaxRetries: -1,
		HTTPClient: s.Client(),
	}
}

// Add appends turns to the script.
func (s *Server) Add(turns ...Turn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.turns = append(s.turns, turns...)
}

// SetModels sets the IDs GET /v1/models lists; the default is "fake-model".
func (s *Server) SetModels(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models = slices.Clone(ids)
}

// SetResponses makes the server an upstream with its own Responses API: POST
// /v1/responses answers every request with a Response whose message is text (see
// ResponseBody), or with its events when the request asks for a stream. Without
// it the route is a 404. The requests are recorded, not scripted turns.
func (s *Server) SetResponses(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.responses = &text
}

// ResponseBody is the Response object SetResponses' server answers for model.
func ResponseBody(model, text string) string {
	b, _ := json.Marshal(map[string]any{"id": "resp_upstream", "object": "response", "created_at": Created, "status": "completed",
		"model": model, "output": []any{map[string]any{"id": "msg_upstream", "type": "message", "status": "completed", "role": "assistant",
			"content": []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}}}}}})
	return string(b)
}

// ResponseEvents are the events SetResponses' server streams for model: created,
// a text delta per piece, completed.
func ResponseEvents(model, text string) string {
	var b strings.Builder
	seq := 0
	event := func(typ string, fields map[string]any) {
		fields["type"], fields["sequence_number"] = typ, seq
		seq++
		data, _ := json.Marshal(fields)
		fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", typ, data)
	}
	resp := json.RawMessage(ResponseBody(model, text))
	event("response.created", map[string]any{"response": resp})
	for _, piece := range pieces(text) {
		event("response.output_text.delta", map[string]any{"item_id": "msg_upstream", "output_index": 0, "content_index": 0, "delta": piece})
	}
	event("response.completed", map[string]any{"response": resp})
	return b.String()
}

func (s *Server) respond(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	s.record(r, body, nil)
	if err != nil {
		return // the client went away
	}
	s.mu.Lock()
	text := s.responses
	s.mu.Unlock()
	if text == nil {
		writeError(w, http.StatusNotFound, "llmtest: no route for POST /v1/responses")
		return
	}
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "llmtest: "+err.Error())
		return
	}
	if req.Stream {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ResponseEvents(req.Model, *text))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, ResponseBody(req.Model, *text))
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ChatRequests returns the decoded chat completion requests received so far.
func (s *Server) ChatRequests() []*llm.ChatRequest {
	var out []*llm.ChatRequest
	for _, r := range s.Requests() {
		if r.Chat != nil {
			out = append(out, r.Chat)
		}
	}
	return out
}

// Remaining returns how many turns of the script are not used yet.
func (s *Server) Remaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.turns) - s.next
}

func (s *Server) record(r *http.Request, body []byte, chat *llm.ChatRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{
		Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Chat: chat,
	})
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	s.record(r, nil, nil)
	s.mu.Lock()
	list := llm.ModelList{Object: "list", Data: []llm.Model{}}
	for _, id := range s.models {
		list.Data = append(list.Data, llm.Model{ID: id, Object: "model", Created: Created, OwnedBy: "llmtest"})
	}
	s.mu.Unlock()
	writeJSON(w, list)
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.record(r, body, nil)
		return // the client went away
	}
	req, err := llm.DecodeChatRequest(bytes.NewReader(body))
	s.record(r, body, req)
	if err != nil {
		s.t.Errorf("llmtest: the upstream got an invalid chat request: %v\nbody: %s", err, body)
		writeError(w, http.StatusBadRequest, "llmtest: "+err.Error())
		return
	}

	s.mu.Lock()
	n := s.next
	var turn Turn
	ok := n < len(s.turns)
	if ok {
		turn = s.turns[n]
		s.next++
	}
	s.mu.Unlock()
	if !ok {
		msg := fmt.Sprintf("llmtest: chat request %d has no scripted turn (the script has %d)", n+1, n)
		s.t.Errorf("%s; request body: %s", msg, body)
		writeError(w, http.StatusInternalServerError, msg)
		return
	}

	if !s.wait(r, turn.Delay) {
		return
	}
	for k, vs := range turn.Header {
		w.Header()[k] = vs
	}
	switch {
	case turn.Body != "" || turn.Status != 0:
		ct := "application/json"
		if req.Stream && cmp.Or(turn.Status, 200) == http.StatusOK {
			ct = "text/event-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(cmp.Or(turn.Status, http.StatusOK))
		io.WriteString(w, turn.Body)
	case req.Stream:
		s.stream(w, r, req, turn, n+1)
	default:
		writeJSON(w, completion(req, turn, n+1))
	}
}

// wait sleeps d; false means the request or the server ended first.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.done:
	}
	return false
}

// completion is the non-streaming answer to request number n.
func completion(req *llm.ChatRequest, t Turn, n int) *llm.ChatResponse {
	msg := llm.Message{Role: "assistant", Content: llm.TextContent(t.Content)}
	if t.Content == "" && len(t.Calls) > 0 {
		msg.Content = llm.NullContent()
	}
	for j, c := range t.Calls {
		msg.ToolCalls = append(msg.ToolCalls, llm.ToolCall{
			ID: callID(n, j), Type: llm.ToolTypeFunction,
			Function: &llm.FunctionCall{Name: c.Name, Arguments: c.Arguments},
		})
	}
	return &llm.ChatResponse{
		ID: completionID(n), Object: "chat.completion", Created: Created, Model: req.Model,
		Choices: []llm.Choice{{Index: 0, Message: msg, FinishReason: finishReason(t)}},
		Usage:   usage(req, t),
	}
}

// stream answers request number n as OpenAI streams: a first chunk with the role,
// content in pieces, each tool call as a chunk with its index, id, type and name
// and then argument pieces, a last chunk with the finish reason and an empty delta,
// a usage chunk if asked for, and data: [DONE].
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req *llm.ChatRequest, t Turn, n int) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	first := true
	send := func(chunk *llm.ChatChunk) bool {
		if !first && !s.wait(r, t.ChunkDelay) {
			return false
		}
		first = false
		b, err := json.Marshal(chunk)
		if err != nil {
			s.t.Errorf("llmtest: encoding chunk: %v", err)
			return false
		}
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	chunk := func(delta llm.Message, finish *string) *llm.ChatChunk {
		return &llm.ChatChunk{
			ID: completionID(n), Object: "chat.completion.chunk", Created: Created, Model: req.Model,
			Choices: []llm.ChunkChoice{{Index: 0, Delta: delta, FinishReason: finish}},
		}
	}

	head := llm.Message{Role: "assistant", Content: llm.TextContent("")}
	textOnly := t.Content != "" || len(t.Calls) == 0
	if !textOnly {
		head.Content = llm.NullContent()
		head.ToolCalls = []llm.ToolCall{callHead(n, 0, t.Calls[0])}
	}
	if !send(chunk(head, nil)) {
		return
	}
	for _, p := range pieces(t.Content) {
		if !send(chunk(llm.Message{Content: llm.TextContent(p)}, nil)) {
			return
		}
	}
	if t.Hold != nil {
		select {
		case <-t.Hold:
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
	for j, c := range t.Calls {
		if textOnly || j > 0 {
			if !send(chunk(llm.Message{ToolCalls: []llm.ToolCall{callHead(n, j, c)}}, nil)) {
				return
			}
		}
		for _, p := range pieces(c.Arguments) {
			frag := llm.ToolCall{Index: new(j), Function: &llm.FunctionCall{Arguments: p}}
			if !send(chunk(llm.Message{ToolCalls: []llm.ToolCall{frag}}, nil)) {
				return
			}
		}
	}
	if !send(chunk(llm.Message{}, new(finishReason(t)))) {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		last := chunk(llm.Message{}, nil)
		last.Choices, last.Usage = []llm.ChunkChoice{}, usage(req, t)
		if !send(last) {
			return
		}
	}
	if s.wait(r, t.ChunkDelay) {
		io.WriteString(w, "data: [DONE]\n\n")
	}
}

// callHead is the first fragment of tool call j: everything but the arguments.
func callHead(n, j int, c Call) llm.ToolCall {
	return llm.ToolCall{
		Index: new(j), ID: callID(n, j), Type: llm.ToolTypeFunction,
		Function: &llm.FunctionCall{Name: c.Name, Arguments: ""},
	}
}

// pieces splits s into pieces of pieceRunes runes.
func pieces(s string) []string {
	var out []string
	for s != "" {
		i, k := 0, 0
		for i < len(s) && k < pieceRunes {
			_, size := utf8.DecodeRuneInString(s[i:])
			i += size
			k++
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}

func completionID(n int) string { return fmt.Sprintf("chatcmpl-llmtest-%d", n) }

func callID(n, j int) string { return fmt.Sprintf("call_llmtest_%d_%d", n, j) }

func finishReason(t Turn) string {
	if t.FinishReason != "" {
		return t.FinishReason
	}
	if len(t.Calls) > 0 {
		return "tool_calls"
	}
	return "stop"
}

// usage is t.Usage, or about a token per four bytes of the messages' text and of
// the answer, so that a streaming and a non-streaming request count the same.
func usage(req *llm.ChatRequest, t Turn) *llm.Usage {
	if t.Usage != nil {
		u := *t.Usage
		return &u
	}
	in := 0
	for _, m := range req.Messages {
		in += len(m.Text())
	}
	out := len(t.Content)
	for _, c := range t.Calls {
		out += len(c.Name) + len(c.Arguments)
	}
	u := llm.Usage{PromptTokens: in/4 + len(req.Messages), CompletionTokens: out/4 + 1}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return &u
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "llmtest: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func writeError(w http.ResponseWriter, status int, message string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": message, "type": "llmtest_error", "code": nil}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
