package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/openairesponses"
)

// handleResponses serves POST /v1/responses on the same agent loop as chat
// completions: the request is translated by openairesponses, the code runs in the
// gateway's sandbox (a session of the caller's tenant), errors are the chat
// gateway's.
func (s *Server) handleResponses(w http.ResponseWriter, r *http.Request) {
	if s.gateway == nil {
		writeError(w, http.StatusServiceUnavailable, "gateway_disabled", "no upstream model is configured")
		return
	}
	body, rerr := s.readBody(w, r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	req, err := openairesponses.DecodeRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", err.Error())
		return
	}
	if req.Model == "" {
		writeError(w, http.StatusBadRequest, "missing_model", `"model" is required`)
		return
	}
	client, err := s.gateway.Upstreams.Route(req.Model)
	if err != nil {
		writeError(w, http.StatusBadRequest, "unknown_model", err.Error())
		return
	}
	owner := tenantOf(r)
	var prev *storedResponse
	if id := req.PreviousResponseID; id != "" {
		if prev = s.gateway.store().get(owner.Name, id, time.Now()); prev == nil {
			writeError(w, http.StatusNotFound, "response_not_found", fmt.Sprintf(
				"no response %q: it expired (responses are kept for a while), was made with \"store\": false, or never existed", id))
			return
		}
	}
	var history []agent.Item
	if prev != nil {
		history = prev.conversation
	}
	refs := func(id string) agent.Item { return s.gateway.store().item(owner.Name, id, time.Now()) }
	areq, container, err := openairesponses.FromResponsesRequest(req, history, refs)
	if err != nil {
		writeAgentError(w, err)
		return
	}
	if areq.Code != nil && areq.Code.Container == "" && prev != nil && prev.container != "" {
		// A follow-up goes on in its conversation's container unless it names another.
		areq.Code.Container = prev.container
	}
	if container != nil && len(container.FileIDs) > 0 {
		writeError(w, http.StatusBadRequest, "file_ids_unsupported",
			`"file_ids" are not supported yet: send files as input_file parts (file_data), or upload them with PUT /v1/sessions/{id}/files/{path} and name the session as the container`)
		return
	}
	var sb agent.Sandbox // nil: the request has no code tool
	var gsb *gatewaySandbox
	if areq.Code != nil {
		gsb = s.gatewaySandbox(owner)
		if id := areq.Code.Container; id != "" {
			if gsb.sess, err = s.sessions.Get(owner.Name, id); err != nil {
				writeContainerError(w, id, err)
				return
			}
		}
		sb = gsb
	}
	opts := openairesponses.Options{ID: cluster.ID("resp", s.replica, newID()), CreatedAt: time.Now().Unix(), Request: req,
		Outputs: req.IncludesOutputs()}
	if req.Stream {
		s.streamResponse(w, r, agent.Upstream(client), areq, sb, gsb, opts)
		return
	}
	res, err := s.gateway.Agent.Complete(r.Context(), agent.Upstream(client), areq, sb, nil)
	if err != nil {
		if gsb != nil {
			// The client never learns the id of a container this request started.
			gsb.endCreated()
		}
		writeAgentError(w, err)
		return
	}
	s.keep(owner.Name, req, areq, res, gsb, opts.ID)
	writeJSON(w, http.StatusOK, openairesponses.ToResponse(res, opts))
}

// keep stores the response for a follow-up unless the request said "store": false:
// the conversation without this request's instructions (each request gives its
// own), then the output.
func (s *Server) keep(owner string, req *openairesponses.Request, areq *agent.Request, res *agent.Result, gsb *gatewaySandbox, id string) {
	if !req.Stored() {
		return
	}
	var conv []agent.Item
	for _, it := range areq.Input {
		if m, ok := it.(*agent.Message); ok && m.Source == "instructions" {
			continue
		}
		conv = append(conv, it)
	}
	conv = append(conv, res.Output...)
	r := &storedResponse{owner: owner, conversation: conv, items: openairesponses.ItemsByID(id, res.Output)}
	if gsb != nil {
		r.container = gsb.ID()
	}
	s.gateway.store().put(id, r, time.Now())
}

// streamResponse runs the loop and streams it as Responses events.
func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, m agent.Model, areq *agent.Request, sb agent.Sandbox, gsb *gatewaySandbox, opts openairesponses.Options) {
	out := newSSE(w)
	ev := &openairesponses.Stream{Send: out.event, Options: opts}
	if gsb != nil {
		// The container is started when the model begins to write code, not when the
		// code runs: the clients read a run's container_id from its
		// output_item.added (the AI SDK's streamText keeps the first one it sees).
		// Should the start fail, the run's own start reports it.
		ev.Container = func() string {
			_ = gsb.Start(r.Context())
			return gsb.ID()
		}
	}
	res, err := s.gateway.Agent.Complete(r.Context(), m, areq, sb, ev)
	if err != nil {
		if !ev.Started() {
			if gsb != nil {
				gsb.endCreated() // the client never saw its id
			}
			writeAgentError(w, err)
			return
		}
		_, code, msg := classifyError(err)
		ev.Fail(code, msg)
		return
	}
	s.keep(tenantOf(r).Name, opts.Request, areq, res, gsb, opts.ID)
	ev.Finish(res)
}

// event writes a named server-sent event, as the Responses API streams them
// (with no [DONE] after the last).
func (s *sse) event(ev openairesponses.Event) {
	data, err := json.Marshal(ev)
	if err != nil {
		data, _ = json.Marshal(map[string]any{"type": "error", "code": "internal_error", "message": "encode event: " + err.Error()})
	}
	s.writeRaw([]byte(fmt.Sprintf("event: %s\ndata: %s\n\n", ev.Type(), data)))
}
