package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/openaichat"
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
	// ResponseTTL is how long a response of /v1/responses is kept for a follow-up
	// request's previous_response_id; 0: an hour.
	ResponseTTL time.Duration
	// DataURLImages makes the images of /v1/responses' code_interpreter_call
	// outputs data: URLs, for clients that want them inline; by default they are
	// URLs of the container's files on this server (the figures are saved there).
	DataURLImages bool
	// UpstreamResponses says when a Responses request without the code tool goes
	// to the upstream's own POST /responses as it is: "on" (always), "off" (never:
	// it is translated to chat completions like the rest), or "auto" (or ""): to
	// each upstream until it answers that it has no such endpoint (404 or 405),
	// which its first such request finds out.
	UpstreamResponses string

	// hasResponses is, by provider name, whether "auto" found its endpoint.
	hasResponses sync.Map

	responses     *responseStore
	responsesOnce sync.Once
}

// store is the gateway's response store, made at first use.
func (g *Gateway) store() *responseStore {
	g.responsesOnce.Do(func() {
		ttl := g.ResponseTTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		g.responses = newResponseStore(ttl)
	})
	return g.responses
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
	if !openaichat.HasCodeTool(req) {
		s.proxyChat(w, r, m, req)
		return
	}
	areq, err := openaichat.FromChatRequest(req)
	if err != nil {
		writeAgentError(w, err)
		return
	}
	container := areq.Code.Container
	sb := s.gatewaySandbox(tenantOf(r))
	sb.language = areq.Code.Language
	if container != "" {
		if err = sb.resume(container); err != nil {
			writeContainerError(w, container, err)
			return
		}
		// The container's interpreter is its language's: the tool must be too.
		if _, rerr := sessionLanguage(cmp.Or(sb.language, job.LangPython), sb.sess); rerr != nil {
			writeRequestError(w, rerr)
			return
		}
	}
	if req.Stream {
		s.streamAgent(w, r, m, req, areq, sb)
		return
	}
	res, err := s.gateway.Agent.Complete(r.Context(), m, areq, sb, nil)
	if err != nil {
		// The client never learns the id of a session this request started: end it
		// rather than leave it to expire.
		sb.endCreated()
		writeAgentError(w, err)
		return
	}
	resp := openaichat.ToChatCompletion(res, linkFiles)
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
func (s *Server) streamAgent(w http.ResponseWriter, r *http.Request, m agent.Model, req *llm.ChatRequest, areq *agent.Request, sb *gatewaySandbox) {
	out := newSSE(w)
	ev := &openaichat.Stream{Send: func(c *llm.ChatChunk) { out.send(c) }, ID: "chatcmpl-" + newID(), Model: req.Model,
		Created: time.Now().Unix(), Link: linkFiles}
	res, err := s.gateway.Agent.Complete(r.Context(), m, areq, sb, ev)
	if err != nil {
		if !ev.Started() {
			sb.endCreated() // the client never saw its id
		}
		out.fail(err)
		return
	}
	ev.Finish(res, sb.describe(nil), req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
	out.done()
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
	s.writeRaw([]byte(fmt.Sprintf("data: %s\n\n", data)))
}

// writeRaw writes frames as they are, after the headers if they are the first.
func (s *sse) writeRaw(frames []byte) {
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
	_, _ = s.w.Write(frames)
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

// classifyError maps an agent, sandbox or upstream failure to a status, code and
// message.
func classifyError(err error) (int, string, string) {
	var apiErr *llm.APIError
	var reqErr *agent.RequestError
	switch {
	case errors.As(err, &reqErr):
		return http.StatusBadRequest, reqErr.Code, reqErr.Message
	case errors.Is(err, session.ErrQueueFull):
		return http.StatusTooManyRequests, "queue_full", "too many executions are running or waiting; retry shortly"
	case errors.Is(err, session.ErrTenantBusy):
		return http.StatusTooManyRequests, "tenant_concurrency_limit", "the code could not run: your key's tenant is at its limit of executions running or waiting (" +
			strings.TrimPrefix(err.Error(), session.ErrTenantBusy.Error()+": ") + "); retry when one ends"
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
