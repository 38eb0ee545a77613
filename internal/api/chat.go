package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// Upstreams chooses the upstream client for a model; *llm.Router is one.
type Upstreams interface {
	Route(model string) (*llm.Client, error)
	Models(ctx context.Context) ([]llm.Model, error)
}

// Gateway is the OpenAI-compatible side of the server: upstream models, and the
// agent that runs the code_execution tool for them.
type Gateway struct {
	Upstreams Upstreams
	Agent     *agent.Agent
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	if s.gateway == nil {
		writeError(w, http.StatusServiceUnavailable, "gateway_disabled", "no upstream model is configured")
		return
	}
	models, err := s.gateway.Upstreams.Models(r.Context())
	if err != nil {
		writeAgentError(w, err)
		return
	}
	if models == nil {
		models = []llm.Model{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": models})
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	if s.gateway == nil {
		writeError(w, http.StatusServiceUnavailable, "gateway_disabled", "no upstream model is configured")
		return
	}
	body, rerr := s.readBody(w, r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	req, err := llm.DecodeChatRequest(bytes.NewReader(body))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", err.Error())
		return
	}
	if req.Model == "" {
		writeError(w, http.StatusBadRequest, "missing_model", `"model" is required`)
		return
	}
	if len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "missing_messages", `"messages" must hold at least one message`)
		return
	}
	client, err := s.gateway.Upstreams.Route(req.Model)
	if err != nil {
		writeError(w, http.StatusBadRequest, "unknown_model", err.Error())
		return
	}
	m := agent.Upstream(client)
	if !agent.HasCodeTool(req) {
		s.proxyChat(w, r, m, req)
		return
	}
	if req.Stream {
		s.streamAgent(w, r, m, req)
		return
	}
	resp, err := s.gateway.Agent.Complete(r.Context(), m, req, nil)
	if err != nil {
		writeAgentError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// proxyChat forwards a request without the code tool as it is.
func (s *Server) proxyChat(w http.ResponseWriter, r *http.Request, m agent.Model, req *llm.ChatRequest) {
	if !req.Stream {
		resp, err := m.Chat(r.Context(), req)
		if err != nil {
			writeAgentError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	stream, err := m.ChatStream(r.Context(), req)
	if err != nil {
		writeAgentError(w, err)
		return
	}
	defer stream.Close()
	sse := newSSE(w)
	for {
		chunk, err := stream.Next()
		if errors.Is(err, io.EOF) {
			sse.done()
			return
		}
		if err != nil {
			sse.fail(err)
			return
		}
		sse.send(chunk)
	}
}

// streamAgent runs the tool loop and streams it as OpenAI chunks: the model's text
// as it comes, each execution's code when it starts and its output when it ends.
func (s *Server) streamAgent(w http.ResponseWriter, r *http.Request, m agent.Model, req *llm.ChatRequest) {
	ev := &sseEvents{sse: newSSE(w), id: "chatcmpl-" + newID(), model: req.Model, created: time.Now().Unix()}
	ev.role()
	resp, err := s.gateway.Agent.Complete(r.Context(), m, req, ev)
	if err != nil {
		ev.sse.fail(err)
		return
	}
	ev.finish(resp, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
}

// sse writes server-sent events. Writes after the client left are dropped.
type sse struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	flusher http.Flusher
	started bool
}

func newSSE(w http.ResponseWriter) *sse {
	f, _ := w.(http.Flusher)
	return &sse{w: w, flusher: f}
}

func (s *sse) write(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		h := s.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("Connection", "keep-alive")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	_, _ = fmt.Fprintf(s.w, "data: %s\n\n", data)
	if s.flusher != nil {
		s.flusher.Flush()
	}
}

func (s *sse) send(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		data, _ = json.Marshal(errorBody{Error: apiError{Message: "encode chunk: " + err.Error(), Type: "server_error", Code: "internal_error"}})
	}
	s.write(data)
}

func (s *sse) done() { s.write([]byte("[DONE]")) }

// fail reports an error: as an HTTP error if nothing was streamed yet, else as an
// error event (as OpenAI does) followed by [DONE].
func (s *sse) fail(err error) {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		writeAgentError(s.w, err)
		return
	}
	status, code, msg := classifyError(err)
	s.send(errorBody{Error: apiError{Message: msg, Type: errorType(status), Code: code}})
	s.done()
}

// sseEvents streams an agent's events as chat completion chunks.
type sseEvents struct {
	sse     *sse
	id      string
	model   string
	created int64
}

func (e *sseEvents) chunk(delta llm.Message, finish *string) *llm.ChatChunk {
	return &llm.ChatChunk{ID: e.id, Object: "chat.completion.chunk", Created: e.created, Model: e.model,
		Choices: []llm.ChunkChoice{{Index: 0, Delta: delta, FinishReason: finish}}}
}

func (e *sseEvents) role() {
	e.sse.send(e.chunk(llm.Message{Role: "assistant", Content: llm.TextContent("")}, nil))
}

func (e *sseEvents) Content(delta string) {
	e.sse.send(e.chunk(llm.Message{Content: llm.TextContent(delta)}, nil))
}

func (e *sseEvents) CodeStarted(index int, id, code string) {
	e.sse.send(e.chunk(llm.Message{ToolCalls: []llm.ToolCall{{Index: &index, ID: id, Type: llm.ToolTypeCodeExecution,
		CodeExecution: &llm.CodeExecution{Code: code}}}}, nil))
}

func (e *sseEvents) CodeFinished(index int, id string, exec *llm.CodeExecution) {
	e.sse.send(e.chunk(llm.Message{ToolCalls: []llm.ToolCall{{Index: &index, ID: id, Type: llm.ToolTypeCodeExecution,
		CodeExecution: exec}}}, nil))
}

// finish sends the client's tool calls (if the model made any), the finish reason,
// the usage when asked for, and [DONE].
func (e *sseEvents) finish(resp *llm.ChatResponse, usage bool) {
	choice := resp.Choices[0]
	var client []llm.ToolCall
	for i, tc := range choice.Message.ToolCalls {
		if tc.Type != llm.ToolTypeCodeExecution {
			idx := i
			tc.Index = &idx
			client = append(client, tc)
		}
	}
	if len(client) > 0 {
		e.sse.send(e.chunk(llm.Message{ToolCalls: client}, nil))
	}
	reason := choice.FinishReason
	e.sse.send(e.chunk(llm.Message{}, &reason))
	if usage && resp.Usage != nil {
		c := e.chunk(llm.Message{}, nil)
		c.Choices = []llm.ChunkChoice{}
		c.Usage = resp.Usage
		e.sse.send(c)
	}
	e.sse.done()
}

// classifyError maps an agent or upstream failure to a status, code and message.
func classifyError(err error) (int, string, string) {
	var apiErr *llm.APIError
	switch {
	case errors.Is(err, sandbox.ErrStorageLimit):
		return http.StatusInsufficientStorage, "storage_limit", err.Error()
	case errors.Is(err, agent.ErrBadRequest):
		return http.StatusBadRequest, "invalid_request", err.Error()
	case errors.Is(err, context.Canceled):
		return 499, "client_closed", "the request was cancelled"
	case errors.Is(err, llm.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "upstream_timeout", "the upstream model did not answer in time: " + err.Error()
	case errors.As(err, &apiErr):
		return http.StatusBadGateway, "upstream_error", "the upstream model failed: " + err.Error()
	case errors.Is(err, llm.ErrInvalidResponse):
		return http.StatusBadGateway, "upstream_invalid_response", "the upstream model sent an invalid reply: " + err.Error()
	}
	return http.StatusBadGateway, "upstream_error", err.Error()
}

func writeAgentError(w http.ResponseWriter, err error) {
	status, code, msg := classifyError(err)
	writeError(w, status, code, msg)
}
