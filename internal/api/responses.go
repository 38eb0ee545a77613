package api

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/openairesponses"
	"github.com/codeexec/codeexec/internal/tenant"
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
	if !openairesponses.HasCodeTool(req) && s.gateway.forwards(client) && !s.continuesHere(owner.Name, req) && s.forwardResponses(w, r, client, body, req.Stream) {
		return
	}
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
	if areq.Code == nil {
		// No sandbox takes the files: the upstream gets them inline.
		if areq.Input, err = s.inlineUploads(owner.Name, areq.Input); err != nil {
			writeAgentError(w, err)
			return
		}
	}
	var sb agent.Sandbox // nil: the request has no code tool
	var gsb *gatewaySandbox
	if areq.Code != nil {
		var ok bool
		if gsb, ok = s.codeSandbox(w, owner, areq, container); !ok {
			return
		}
		sb = gsb
	}
	opts := openairesponses.Options{ID: cluster.ID("resp", s.replica, newID()), CreatedAt: time.Now().Unix(), Request: req,
		Outputs: req.IncludesOutputs()}
	if gsb != nil && !s.gateway.DataURLImages {
		gsb.figures = true
		opts.ImageURL = figureURL(r)
	}
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

// codeSandbox is the sandbox of a request with the code tool: the container it
// names, whose code runs with the limits it was made with, or a new one with the
// memory and files its container asks for; either with the container's network.
// It answers a container that cannot be had itself (false).
func (s *Server) codeSandbox(w http.ResponseWriter, owner *tenant.Tenant, areq *agent.Request, container *openairesponses.Container) (*gatewaySandbox, bool) {
	gsb := s.gatewaySandbox(owner)
	if container == nil {
		container = &openairesponses.Container{}
	}
	var lerr *requestError
	if gsb.limits, lerr = s.containerLimits(container.MemoryLimit); lerr != nil {
		writeRequestError(w, lerr)
		return nil, false
	}
	if container.Network != "" {
		// Per run, so in a container the request names too.
		network, err := s.cfg.Policy.Network(container.Network)
		if err != nil {
			writeRequestError(w, policyError(err))
			return nil, false
		}
		gsb.network, areq.Code.Network = network, network
		if network == nil {
			areq.Code.Network = &egress.Policy{} // none, not the gateway's default
		}
	}
	if id := areq.Code.Container; id != "" {
		if err := gsb.resume(id); err != nil {
			writeContainerError(w, id, err)
			return nil, false
		}
		return gsb, true
	}
	// A new container gets its files; one the conversation goes on in has had them
	// (and its memory) since it was made.
	var err error
	if gsb.place, err = s.uploadedFiles(owner.Name, container.FileIDs); err != nil {
		writeError(w, http.StatusNotFound, "file_not_found", err.Error())
		return nil, false
	}
	for _, f := range gsb.place {
		areq.Code.Files = append(areq.Code.Files, f.name)
	}
	return gsb, true
}

// inlineUploads is input with each file part that names an upload of owner's by
// file_id holding its content as file_data instead (an image part, as a data:
// URL), for an upstream that knows
// nothing of codeexec's uploads. The items of input are not changed: they may be
// a stored response's.
func (s *Server) inlineUploads(owner string, input []agent.Item) ([]agent.Item, error) {
	out, cloned := input, false
	for i, it := range input {
		m, ok := it.(*agent.Message)
		if !ok {
			continue
		}
		var parts []agent.Part
		for j, p := range m.Content.Parts {
			file := p.Type == agent.PartFile && p.FileData == ""
			image := p.Type == agent.PartImage && p.URL == ""
			if p.FileID == "" || !file && !image {
				continue
			}
			f := s.files.get(owner, p.FileID, time.Now())
			if f == nil {
				return nil, &agent.RequestError{Code: "file_not_found", Message: fmt.Sprintf(
					"%s.content[%d]: no file %q: upload it with POST /v1/files first (files are kept in memory: a restart forgets them)",
					cmp.Or(m.Source, fmt.Sprintf("input[%d]", i)), j, p.FileID)}
			}
			if parts == nil {
				parts = slices.Clone(m.Content.Parts)
			}
			if image {
				parts[j] = agent.ImageData(p, f.data)
				continue
			}
			parts[j].FileID, parts[j].FileData = "", base64.StdEncoding.EncodeToString(f.data)
			parts[j].Filename = cmp.Or(p.Filename, f.obj.Filename)
		}
		if parts == nil {
			continue
		}
		if !cloned {
			out, cloned = slices.Clone(input), true
		}
		c := *m
		c.Content.Parts = parts
		out[i] = &c
	}
	return out, nil
}

// forwards reports whether a request without the code tool goes to client's own
// Responses endpoint (see Gateway.UpstreamResponses).
func (g *Gateway) forwards(client *llm.Client) bool {
	switch g.UpstreamResponses {
	case "on":
		return true
	case "off":
		return false
	}
	has, known := g.hasResponses.Load(client.Provider().Name)
	return !known || has.(bool)
}

// continuesHere reports whether the request goes on from a response of this
// server's (previous_response_id, an item_reference), which the upstream does not
// know: it is translated here, whatever the upstream has.
func (s *Server) continuesHere(owner string, req *openairesponses.Request) bool {
	now := time.Now()
	if req.PreviousResponseID != "" && s.gateway.store().get(owner, req.PreviousResponseID, now) != nil {
		return true
	}
	for _, id := range openairesponses.ItemReferences(req) {
		if s.gateway.store().item(owner, id, now) != nil {
			return true
		}
	}
	return false
}

// forwardResponses sends body to client's POST /responses and relays the reply
// as it comes (each piece flushed: a stream stays a stream). false: "auto" found
// that the upstream has no such endpoint, and nothing was written; the caller
// translates the request instead.
func (s *Server) forwardResponses(w http.ResponseWriter, r *http.Request, client *llm.Client, body []byte, stream bool) bool {
	name := client.Provider().Name
	reply, err := client.Responses(r.Context(), body, stream)
	var apiErr *llm.APIError
	if errors.As(err, &apiErr) && noEndpoint(apiErr) && s.gateway.UpstreamResponses != "on" {
		s.gateway.hasResponses.Store(name, false)
		s.log.Info("the upstream has no Responses endpoint: its Responses requests are translated to chat completions", "provider", name, "status", apiErr.Status)
		return false
	}
	if err != nil {
		writeAgentError(w, err)
		return true
	}
	s.gateway.hasResponses.Store(name, true)
	defer reply.Body.Close()
	w.Header().Set("Content-Type", reply.ContentType)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := reply.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return true // the client went away
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			// The status is sent: the client sees the reply end early.
			s.log.Warn("relaying the upstream's Responses reply", "provider", name, "err", err)
			return true
		}
	}
}

// noEndpoint reports whether an upstream's error says it has no Responses
// endpoint: a 405, or a 404 about the route (vLLM's {"detail": "Not Found"},
// Ollama's plain text, OpenAI's "Invalid URL", llama.cpp's code 404), not about
// something the request names — OpenAI answers 404 with a code or a param for an
// unknown model or previous_response_id, which is relayed.
func noEndpoint(e *llm.APIError) bool {
	switch e.Status {
	case http.StatusMethodNotAllowed:
		return true
	case http.StatusNotFound:
		return e.Param == "" && (e.Code == "" || e.Code == "404" || e.Code == "not_found")
	}
	return false
}

// figureURL gives a figure saved in its container the URL of its content among
// the container's files, on the address the client used for this request (the
// route wants the API key, as every /v1 route does).
func figureURL(r *http.Request) func(e *agent.Execution, i int) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host
	return func(e *agent.Execution, i int) string {
		im := e.Result.Images[i]
		if im.SavedAs == "" || e.ContainerID == "" {
			return ""
		}
		return base + "/v1/containers/" + url.PathEscape(e.ContainerID) + "/files/" + openairesponses.FileID(im.SavedAs) + "/content"
	}
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
