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
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
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
	container, err := agent.Container(req)
	if err != nil {
		writeAgentError(w, err)
		return
	}
	sb := s.gatewaySandbox(tenantOf(r))
	if container != "" {
		if sb.sess, err = s.sessions.Get(sb.owner.Name, container); err != nil {
			writeContainerError(w, container, err)
			return
		}
	}
	if req.Stream {
		s.streamAgent(w, r, m, req, sb)
		return
	}
	resp, err := s.gateway.Agent.Complete(r.Context(), m, req, sb, nil)
	if err != nil {
		// The client never learns the id of a session this request started: end it
		// rather than leave it to expire.
		sb.endCreated()
		writeAgentError(w, err)
		return
	}
	for _, tc := range resp.Choices[0].Message.ToolCalls {
		if tc.CodeExecution != nil {
			linkFiles(tc.CodeExecution)
		}
	}
	resp.Extra = sb.describe(resp.Extra)
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
func (s *Server) streamAgent(w http.ResponseWriter, r *http.Request, m agent.Model, req *llm.ChatRequest, sb *gatewaySandbox) {
	ev := &sseEvents{sse: newSSE(w), id: "chatcmpl-" + newID(), model: req.Model, created: time.Now().Unix(), sb: sb}
	resp, err := s.gateway.Agent.Complete(r.Context(), m, req, sb, ev)
	if err != nil {
		if !ev.roleSent {
			sb.endCreated() // the client never saw its id
		}
		ev.sse.fail(err)
		return
	}
	ev.finish(resp, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
}

// sse writes server-sent events. Writes after the client left are dropped.
type sse struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

// newSSE writes events to w, flushing each: w may be a wrapper (the request log's
// status recorder) that is no http.Flusher itself, so the flush goes through
// http.ResponseController, which unwraps it. Without it, every event waited in the
// server's buffer until the handler ended.
func newSSE(w http.ResponseWriter) *sse {
	return &sse{w: w, rc: http.NewResponseController(w)}
}

func (s *sse) write(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		h := s.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("Connection", "keep-alive")
		h.Set("X-Accel-Buffering", "no") // nor may a proxy in front (nginx) hold the events back
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	_, _ = fmt.Fprintf(s.w, "data: %s\n\n", data)
	_ = s.rc.Flush() // fails only when the client is gone, and the next write says so
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
	sb      *gatewaySandbox
	// roleSent is set once the first chunk, with the role, is sent.
	roleSent bool
}

func (e *sseEvents) chunk(delta llm.Message, finish *string) *llm.ChatChunk {
	return &llm.ChatChunk{ID: e.id, Object: "chat.completion.chunk", Created: e.created, Model: e.model,
		Choices: []llm.ChunkChoice{{Index: 0, Delta: delta, FinishReason: finish}}}
}

// send sends c, after the chunk with the role if it is the first. The role waits
// for the first event, so that a request refused before anything happens (a bad
// attachment, an unknown container) gets its HTTP status, not an error event.
func (e *sseEvents) send(c *llm.ChatChunk) {
	if !e.roleSent {
		e.roleSent = true
		e.sse.send(e.chunk(llm.Message{Role: "assistant", Content: llm.TextContent("")}, nil))
	}
	e.sse.send(c)
}

func (e *sseEvents) Content(delta string) {
	e.send(e.chunk(llm.Message{Content: llm.TextContent(delta)}, nil))
}

func (e *sseEvents) CodeStarted(index int, id string, exec *llm.CodeExecution) {
	e.send(e.chunk(llm.Message{ToolCalls: []llm.ToolCall{{Index: &index, ID: id, Type: llm.ToolTypeCodeExecution,
		CodeExecution: exec}}}, nil))
}

func (e *sseEvents) CodeFinished(index int, id string, exec *llm.CodeExecution) {
	linked := *exec
	linkFiles(&linked)
	e.send(e.chunk(llm.Message{ToolCalls: []llm.ToolCall{{Index: &index, ID: id, Type: llm.ToolTypeCodeExecution,
		CodeExecution: &linked}}}, nil))
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
		e.send(e.chunk(llm.Message{ToolCalls: client}, nil))
	}
	reason := choice.FinishReason
	last := e.chunk(llm.Message{}, &reason)
	last.Extra = e.sb.describe(nil)
	e.send(last)
	if usage && resp.Usage != nil {
		c := e.chunk(llm.Message{}, nil)
		c.Choices = []llm.ChunkChoice{}
		c.Usage = resp.Usage
		e.send(c)
	}
	e.sse.done()
}

// classifyError maps an agent, sandbox or upstream failure to a status, code and
// message.
func classifyError(err error) (int, string, string) {
	var apiErr *llm.APIError
	var reqErr *agent.RequestError
	switch {
	case errors.As(err, &reqErr):
		return http.StatusBadRequest, reqErr.Code, reqErr.Message
	case errors.Is(err, errQueueFull):
		return http.StatusTooManyRequests, "queue_full", "too many executions are running or waiting; retry shortly"
	case errors.Is(err, session.ErrTooMany):
		return http.StatusTooManyRequests, "too_many_sessions", "the code could not get a sandbox: " + err.Error() + "; delete a session or wait for one to expire"
	case errors.Is(err, sandbox.ErrNoWarm):
		return http.StatusServiceUnavailable, "sessions_unavailable", "the code could not get a sandbox: " + err.Error()
	case errors.Is(err, session.ErrClosed):
		return http.StatusServiceUnavailable, "shutting_down", "the server is shutting down"
	case errors.Is(err, job.ErrStorageLimit):
		return http.StatusInsufficientStorage, "storage_limit", err.Error()
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
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, status, code, msg)
}

// writeContainerError answers a request whose code tool names a container that
// cannot be used.
func writeContainerError(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, session.ErrNotFound) {
		writeError(w, http.StatusNotFound, "session_not_found", fmt.Sprintf(
			"no container %q: it expired (a session ends after a while without use) or never existed; leave \"container\" out to start a new one", id))
		return
	}
	writeSessionError(w, id, err)
}
