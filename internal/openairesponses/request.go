// Package openairesponses is the Responses API face of the agent loop: it turns a
// POST /v1/responses body into an agent.Request, and an agent.Result into a
// Response object or a stream of Responses events, with OpenAI's
// code_interpreter_call items for the runs of codeexec's code tool. The functions
// are pure and named by direction, from the client's side: FromResponsesRequest,
// ToResponse. Beside openaichat, on the same loop.
package openairesponses

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/jsonerr"
)

// Request is a POST /v1/responses body. Optional values are pointers or raw JSON,
// so that "absent" and "zero" stay apart; Extra holds every other field.
type Request struct {
	Model              string
	Input              json.RawMessage
	Instructions       string
	Tools              []json.RawMessage
	ToolChoice         json.RawMessage
	MaxOutputTokens    *int
	Temperature        *float64
	TopP               *float64
	ParallelToolCalls  *bool
	Metadata           json.RawMessage
	Store              *bool
	Stream             bool
	PreviousResponseID string
	Include            []string
	User               string
	// Text is {"format": {...}}: the output format.
	Text json.RawMessage
	// Reasoning is {"effort": ...}; its effort goes upstream as reasoning_effort.
	Reasoning json.RawMessage
	// Extra holds the fields this face does not know, for the upstream as written.
	Extra map[string]json.RawMessage
	// Refused are the Refused fields the request sets, which FromResponsesRequest
	// refuses (a request forwarded to an upstream's own Responses API keeps them).
	Refused []string
}

// IncludeCodeOutputs is the include value that asks for the outputs of
// code_interpreter_call items.
const IncludeCodeOutputs = "code_interpreter_call.outputs"

// IncludesOutputs reports whether the request asks for code outputs.
func (r *Request) IncludesOutputs() bool {
	for _, v := range r.Include {
		if v == IncludeCodeOutputs {
			return true
		}
	}
	return false
}

// Stored reports whether the response is to be kept for previous_response_id: as
// OpenAI, unless the request says "store": false.
func (r *Request) Stored() bool { return r.Store == nil || *r.Store }

// Handling is what the Responses face does with a field of a request.
type Handling int

const (
	// Handled fields are read and translated for the loop or the reply.
	Handled Handling = iota + 1
	// Ignored fields are accepted and not sent upstream, whose chat completions
	// API has other meanings or none for them; the reply is as without them.
	Ignored
	// Forwarded fields go upstream as written (Request.Extra), as every field the
	// face does not know does.
	Forwarded
	// Refused fields, when set (not null, false, "", [] or {}), make the request a
	// 400 unsupported_parameter: what they ask for cannot be done on chat
	// completions, and dropping them would answer another question than the one
	// asked.
	Refused
)

// RequestFields says what becomes of each field of a Responses request that the
// OpenAI SDKs define. A field not listed is Forwarded, as any unknown field is;
// the guard test (fields_test.go) fails when openai-go's ResponseNewParams has a
// field not listed here, so that a new one is decided on, not silently forwarded.
var RequestFields = map[string]Handling{
	"model": Handled, "input": Handled, "instructions": Handled, "tools": Handled, "tool_choice": Handled,
	"max_output_tokens": Handled, "temperature": Handled, "top_p": Handled, "parallel_tool_calls": Handled,
	"metadata": Handled, "store": Handled, "stream": Handled, "previous_response_id": Handled, "include": Handled,
	"user": Handled, "text": Handled, "reasoning": Handled,
	// The reply says "truncation": "disabled", as the upstream does; the stream
	// has no obfuscation to turn off; cache keys and safety ids are OpenAI's own
	// bookkeeping; the loop's max_steps bounds its tool calls.
	"truncation": Ignored, "stream_options": Ignored, "prompt_cache_key": Ignored, "safety_identifier": Ignored,
	"max_tool_calls": Ignored,
	// Chat completions has these under the same names.
	"service_tier": Forwarded, "top_logprobs": Forwarded, "prompt_cache_retention": Forwarded, "prompt_cache_options": Forwarded,
	// A response run in the background, a stored conversation or prompt template,
	// server-side compaction, moderation and access programs are OpenAI's services.
	"background": Refused, "conversation": Refused, "prompt": Refused, "context_management": Refused,
	"moderation": Refused, "access_programs": Refused,
}

// DecodeRequest reads a Responses request body. Only a value of the wrong JSON
// type is an error; meaning is checked by FromResponsesRequest.
func DecodeRequest(body []byte) (*Request, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("the body is not a JSON object: %s", jsonerr.Describe(err, nil))
	}
	r := &Request{}
	for key, raw := range fields {
		if isNull(raw) {
			continue
		}
		var err error
		switch key {
		case "model":
			err = json.Unmarshal(raw, &r.Model)
		case "input":
			r.Input = raw
		case "instructions":
			err = json.Unmarshal(raw, &r.Instructions)
		case "tools":
			err = json.Unmarshal(raw, &r.Tools)
		case "tool_choice":
			r.ToolChoice = raw
		case "max_output_tokens":
			err = json.Unmarshal(raw, &r.MaxOutputTokens)
		case "temperature":
			err = json.Unmarshal(raw, &r.Temperature)
		case "top_p":
			err = json.Unmarshal(raw, &r.TopP)
		case "parallel_tool_calls":
			err = json.Unmarshal(raw, &r.ParallelToolCalls)
		case "metadata":
			var m map[string]string
			err = json.Unmarshal(raw, &m)
			r.Metadata = raw
		case "store":
			err = json.Unmarshal(raw, &r.Store)
		case "stream":
			err = json.Unmarshal(raw, &r.Stream)
		case "previous_response_id":
			err = json.Unmarshal(raw, &r.PreviousResponseID)
		case "include":
			err = json.Unmarshal(raw, &r.Include)
		case "user":
			err = json.Unmarshal(raw, &r.User)
		case "text":
			r.Text = raw
		case "reasoning":
			r.Reasoning = raw
		default:
			switch RequestFields[key] {
			case Ignored:
				continue
			case Refused:
				if isSet(raw) {
					r.Refused = append(r.Refused, key)
				}
				continue
			}
			if r.Extra == nil {
				r.Extra = map[string]json.RawMessage{}
			}
			r.Extra[key] = raw
		}
		if err != nil {
			return nil, fmt.Errorf("field %q: %s", key, jsonerr.Describe(err, nil))
		}
	}
	return r, nil
}

// Names of the code tool: OpenAI's, and codeexec's own as an alias.
const (
	ToolTypeCodeInterpreter = "code_interpreter"
	ToolTypeCodeExecution   = "code_execution"
)

// Container is the code tool's "container": an id, or {"type": "auto", ...}.
type Container struct {
	// ID names an existing container (a session); "" for a new one.
	ID string
	// FileIDs are uploaded files to place in a new container.
	FileIDs []string
	// MemoryLimit is a new container's memory ("1g", "4g", "16g", "64g"); "" for
	// the server's default.
	MemoryLimit string
	// Network is the container's network_policy as a network setting of the
	// execute API ("none" or "allow=HOST,…"), which the server checks against its
	// allowlist; "" when the request sets none.
	Network string
}

// FromResponsesRequest converts a Responses request into the loop's request, with
// the code tool's container as the request wrote it. history is the conversation
// of the previous response (previous_response_id), which goes before the input;
// nil when there is none. refs resolves the item_reference items of the input:
// the item of an earlier response with that id, or nil (refs nil: none resolve).
// Its errors are *agent.RequestError.
func FromResponsesRequest(r *Request, history []agent.Item, refs func(id string) agent.Item) (*agent.Request, *Container, error) {
	if len(r.Refused) > 0 {
		slices.Sort(r.Refused)
		return nil, nil, badRequest("unsupported_parameter", "%s: codeexec runs the Responses API on chat completions, which cannot do this (without the code tool, an upstream with its own Responses API gets the request as it is)",
			strings.Join(quoted(r.Refused), ", "))
	}
	req := &agent.Request{
		Model:             r.Model,
		ParallelToolCalls: r.ParallelToolCalls,
		Stream:            r.Stream,
		Temperature:       r.Temperature,
		TopP:              r.TopP,
		MaxOutputTokens:   r.MaxOutputTokens,
		User:              r.User,
	}
	for k, v := range r.Extra {
		if req.Extra == nil {
			req.Extra = map[string]json.RawMessage{}
		}
		req.Extra[k] = v
	}
	var container *Container
	for i, raw := range r.Tools {
		t, c, err := toolFromResponses(i, raw)
		if err != nil {
			return nil, nil, err
		}
		if c == nil {
			req.Tools = append(req.Tools, *t)
			continue
		}
		if container != nil && c.ID != container.ID {
			return nil, nil, badRequest("invalid_container", "the request has two code tools with different containers, %q and %q", container.ID, c.ID)
		}
		container = c
	}
	if container != nil {
		req.Code = &agent.CodeTool{Container: container.ID}
	}
	var err error
	if req.ToolChoice, err = toolChoice(r.ToolChoice); err != nil {
		return nil, nil, err
	}
	if req.ResponseFormat, err = responseFormat(r.Text); err != nil {
		return nil, nil, err
	}
	if effort := reasoningEffort(r.Reasoning); effort != nil {
		if req.Extra == nil {
			req.Extra = map[string]json.RawMessage{}
		}
		req.Extra["reasoning_effort"] = effort
	}
	if r.Instructions != "" {
		// Instructions are not carried over from a previous response (as OpenAI): each
		// request's own go first.
		req.Input = append(req.Input, &agent.Message{Role: "system", Content: agent.Text(r.Instructions), Source: "instructions"})
	}
	req.Input = append(req.Input, history...)
	items, err := InputItems(r.Input, refs)
	if err != nil {
		return nil, nil, err
	}
	req.Input = append(req.Input, items...)
	if len(req.Input) == 0 {
		return nil, nil, badRequest("missing_input", `"input" must be a string or hold at least one item`)
	}
	return req, container, nil
}

func badRequest(code, format string, args ...any) error {
	return &agent.RequestError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// wireTool is a tool of the request: a function (its fields at the top, as the
// Responses API writes them) or the code tool.
type wireTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"`
	Container   json.RawMessage `json:"container"`
}

// toolFromResponses reads the i-th tool: a client's function, or the code tool
// (its container returned, non-nil). Hosted tools codeexec does not run
// (web_search, file_search, ...) are refused: an upstream that speaks chat
// completions would not know them either.
func toolFromResponses(i int, raw json.RawMessage) (*agent.Tool, *Container, error) {
	var t wireTool
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, nil, badRequest("invalid_tools", "tools[%d]: %v", i, err)
	}
	switch t.Type {
	case ToolTypeCodeInterpreter, ToolTypeCodeExecution:
		c, err := containerFrom(t.Container)
		if err != nil {
			return nil, nil, badRequest("invalid_container", "tools[%d].container: %v", i, err)
		}
		return nil, c, nil
	case agent.ToolTypeFunction:
		if t.Name == "" {
			return nil, nil, badRequest("invalid_tools", "tools[%d]: a function tool needs a \"name\"", i)
		}
		extra := map[string]json.RawMessage{}
		_ = json.Unmarshal(raw, &extra)
		for _, k := range []string{"type", "name", "description", "parameters", "strict"} {
			delete(extra, k)
		}
		if len(extra) == 0 {
			extra = nil
		}
		return &agent.Tool{Type: t.Type, Name: t.Name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict, Extra: extra}, nil, nil
	}
	return nil, nil, badRequest("unsupported_tool", "tools[%d]: codeexec runs the %q and %q tools and passes \"function\" tools to the client; it does not run %q tools", i,
		ToolTypeCodeInterpreter, ToolTypeCodeExecution, t.Type)
}

// containerFrom reads a code tool's container: absent, an id, or {"type":"auto"}.
func containerFrom(raw json.RawMessage) (*Container, error) {
	if len(raw) == 0 || isNull(raw) {
		return &Container{}, nil
	}
	var id string
	if err := json.Unmarshal(raw, &id); err == nil {
		return &Container{ID: id}, nil
	}
	var auto struct {
		Type          string          `json:"type"`
		FileIDs       []string        `json:"file_ids"`
		MemoryLimit   *string         `json:"memory_limit"`
		NetworkPolicy json.RawMessage `json:"network_policy"`
	}
	if err := json.Unmarshal(raw, &auto); err != nil || auto.Type != "auto" {
		return nil, fmt.Errorf(`want a container id (from an earlier response or POST /v1/containers) or {"type": "auto"}, got %s`, clip(string(raw), 80))
	}
	c := &Container{FileIDs: auto.FileIDs}
	if auto.MemoryLimit != nil {
		c.MemoryLimit = *auto.MemoryLimit
	}
	var err error
	c.Network, err = networkSpec(auto.NetworkPolicy)
	return c, err
}

// networkSpec is a network_policy as a network setting: {"type": "disabled"} is
// "none", {"type": "allowlist", "allowed_domains": [...]} "allow=…". Domain
// secrets are refused: the egress proxy injects no credentials.
func networkSpec(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || isNull(raw) {
		return "", nil
	}
	var p struct {
		Type           string            `json:"type"`
		AllowedDomains []string          `json:"allowed_domains"`
		DomainSecrets  []json.RawMessage `json:"domain_secrets"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fmt.Errorf(`"network_policy" must be {"type": "disabled"} or {"type": "allowlist", "allowed_domains": [...]}, got %s`, clip(string(raw), 80))
	}
	switch {
	case p.Type == "disabled":
		return "none", nil
	case p.Type != "allowlist":
		return "", fmt.Errorf(`"network_policy.type" must be "disabled" or "allowlist", got %q`, p.Type)
	case len(p.DomainSecrets) > 0:
		return "", fmt.Errorf(`"network_policy.domain_secrets" are not supported: codeexec's egress proxy adds no credentials to requests`)
	case len(p.AllowedDomains) == 0:
		return "", fmt.Errorf(`"network_policy.allowed_domains" must name at least one domain (or use {"type": "disabled"})`)
	}
	for _, d := range p.AllowedDomains {
		if d == "" || strings.ContainsAny(d, ", ") {
			return "", fmt.Errorf(`"network_policy.allowed_domains" holds %q, which is not a domain`, d)
		}
	}
	return "allow=" + strings.Join(p.AllowedDomains, ","), nil
}

// toolChoice is the Responses tool_choice in chat completions' form: "none",
// "auto", "required" as they are; {"type":"function","name":X} becomes
// {"type":"function","function":{"name":X}}; the code tool is the code_execution
// function.
func toolChoice(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || isNull(raw) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		switch s {
		case "none", "auto", "required":
			return raw, nil
		}
		return nil, badRequest("invalid_tool_choice", `"tool_choice" must be "none", "auto", "required" or an object naming a tool, got %q`, s)
	}
	var obj struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, badRequest("invalid_tool_choice", `"tool_choice": %v`, err)
	}
	name := obj.Name
	switch obj.Type {
	case agent.ToolTypeFunction:
	case ToolTypeCodeInterpreter, ToolTypeCodeExecution:
		name = agent.ToolName
	default:
		return nil, badRequest("invalid_tool_choice", `"tool_choice" of type %q is not supported: name a function or the code_interpreter tool`, obj.Type)
	}
	if name == "" {
		return nil, badRequest("invalid_tool_choice", `"tool_choice" of type "function" needs a "name"`)
	}
	return json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": name}})
}

// responseFormat is text.format in chat completions' form (response_format).
func responseFormat(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || isNull(raw) {
		return nil, nil
	}
	var text struct {
		Format map[string]json.RawMessage `json:"format"`
	}
	if err := json.Unmarshal(raw, &text); err != nil {
		return nil, badRequest("invalid_text", `"text": %v`, err)
	}
	if text.Format == nil {
		return nil, nil
	}
	var typ string
	_ = json.Unmarshal(text.Format["type"], &typ)
	switch typ {
	case "text", "json_object":
		return json.Marshal(map[string]string{"type": typ})
	case "json_schema":
		schema := map[string]json.RawMessage{}
		for k, v := range text.Format {
			if k != "type" {
				schema[k] = v
			}
		}
		return json.Marshal(map[string]any{"type": typ, "json_schema": schema})
	}
	return nil, badRequest("invalid_text", `"text.format.type" must be "text", "json_object" or "json_schema", got %q`, typ)
}

func reasoningEffort(raw json.RawMessage) json.RawMessage {
	var r struct {
		Effort json.RawMessage `json:"effort"`
	}
	if json.Unmarshal(raw, &r) != nil || len(r.Effort) == 0 || isNull(r.Effort) {
		return nil
	}
	return r.Effort
}

// wireItem is an input item, every kind's fields in one.
type wireItem struct {
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	Role        string          `json:"role"`
	Content     json.RawMessage `json:"content"`
	CallID      string          `json:"call_id"`
	Name        string          `json:"name"`
	Arguments   string          `json:"arguments"`
	Output      json.RawMessage `json:"output"`
	Code        string          `json:"code"`
	ContainerID string          `json:"container_id"`
	Outputs     []CodeOutput    `json:"outputs"`
}

// InputItems reads "input": a string (one user message) or an array of items;
// refs resolves item_reference items (see FromResponsesRequest).
func InputItems(raw json.RawMessage, refs func(id string) agent.Item) ([]agent.Item, error) {
	if len(raw) == 0 || isNull(raw) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []agent.Item{&agent.Message{Role: "user", Content: agent.Text(s), Source: "input"}}, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badRequest("invalid_input", `"input" must be a string or an array of items, got %s`, clip(string(raw), 80))
	}
	var items []agent.Item
	for i, raw := range list {
		var w wireItem
		if err := json.Unmarshal(raw, &w); err != nil {
			return nil, badRequest("invalid_input", "input[%d]: %v", i, err)
		}
		where := fmt.Sprintf("input[%d]", i)
		switch {
		case w.Type == "message" || (w.Type == "" && w.Role != ""):
			content, err := contentFrom(where, w.Content)
			if err != nil {
				return nil, err
			}
			items = append(items, &agent.Message{Role: w.Role, Content: content, Source: where})
		case w.Type == "function_call":
			items = append(items, &agent.ToolCall{ID: w.CallID, Type: agent.ToolTypeFunction, Name: w.Name, Arguments: w.Arguments})
		case w.Type == "function_call_output":
			content, err := contentFrom(where+".output", w.Output)
			if err != nil {
				return nil, err
			}
			items = append(items, &agent.ToolOutput{CallID: w.CallID, Content: content})
		case w.Type == "code_interpreter_call":
			items = append(items, &agent.Execution{ID: w.ID, Code: w.Code, ContainerID: w.ContainerID, Output: logsOf(w.Outputs)})
		case w.Type == "item_reference":
			// An item of an earlier stored response, by its id: what the Vercel AI SDK
			// sends for its earlier turns' items when store is on.
			var it agent.Item
			if refs != nil && w.ID != "" {
				it = refs(w.ID)
			}
			if it == nil {
				return nil, badRequest("item_not_found", "input[%d]: no item %q: the response that had it expired, was made with \"store\": false, or never existed", i, w.ID)
			}
			items = append(items, it)
		case w.Type == "reasoning":
			// A reasoning item of an OpenAI model's: an upstream that speaks chat
			// completions has no place for it.
		default:
			return nil, badRequest("unsupported_input_item", "input[%d]: items of type %q are not supported (messages, function_call, function_call_output, code_interpreter_call and item_reference are)", i, w.Type)
		}
	}
	return items, nil
}

// logsOf joins the logs of a code_interpreter_call's outputs: what the model is
// shown of an earlier run.
func logsOf(outputs []CodeOutput) string {
	var logs []string
	for _, o := range outputs {
		if o.Type == "logs" {
			logs = append(logs, o.Logs)
		}
	}
	return strings.Join(logs, "\n")
}

// wirePart is a content part of an input message.
type wirePart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL string `json:"image_url"`
	Detail   string `json:"detail"`
	FileID   string `json:"file_id"`
	FileData string `json:"file_data"`
	FileURL  string `json:"file_url"`
	Filename string `json:"filename"`
}

// contentFrom reads a message's (or a tool output's) content: a string or parts.
func contentFrom(where string, raw json.RawMessage) (agent.Content, error) {
	if len(raw) == 0 || isNull(raw) {
		return agent.Content{Form: agent.FormAbsent}, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return agent.Text(s), nil
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil {
		return agent.Content{}, badRequest("invalid_input", "%s: content must be a string or an array of parts, got %s", where, clip(string(raw), 80))
	}
	c := agent.Content{Form: agent.FormParts}
	for j, raw := range parts {
		var p wirePart
		if err := json.Unmarshal(raw, &p); err != nil {
			return agent.Content{}, badRequest("invalid_input", "%s.content[%d]: %v", where, j, err)
		}
		switch p.Type {
		case "input_text", "output_text", "text":
			c.Parts = append(c.Parts, agent.Part{Type: agent.PartText, Text: p.Text})
		case "refusal":
			var r struct {
				Refusal string `json:"refusal"`
			}
			_ = json.Unmarshal(raw, &r)
			c.Parts = append(c.Parts, agent.Part{Type: agent.PartText, Text: r.Refusal})
		case "input_image":
			if p.ImageURL == "" && p.FileID == "" {
				return agent.Content{}, badRequest("invalid_image", "%s.content[%d]: an input_image needs an \"image_url\" (an https: or data: URL) or the \"file_id\" of an upload", where, j)
			}
			c.Parts = append(c.Parts, agent.Part{Type: agent.PartImage, URL: p.ImageURL, FileID: p.FileID, Detail: p.Detail})
		case "input_file":
			if p.FileURL != "" {
				return agent.Content{}, badRequest("invalid_file", "%s.content[%d]: file_url is not supported: send the file's content as file_data", where, j)
			}
			c.Parts = append(c.Parts, agent.Part{Type: agent.PartFile, Filename: p.Filename, FileData: p.FileData, FileID: p.FileID})
		default:
			return agent.Content{}, badRequest("invalid_input", "%s.content[%d]: parts of type %q are not supported (input_text, input_image, input_file are)", where, j, p.Type)
		}
	}
	return c, nil
}

// isSet reports whether a value sets its field: not null, false, "", [] or {}.
func isSet(raw json.RawMessage) bool {
	switch string(bytes.Join(bytes.Fields(raw), nil)) {
	case "null", "false", `""`, "[]", "{}":
		return false
	}
	return true
}

func quoted(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// HasCodeTool reports whether the request's tools hold the code tool: without it
// the request may go to an upstream's own Responses endpoint as it is.
func HasCodeTool(r *Request) bool {
	for _, raw := range r.Tools {
		var t struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(raw, &t) == nil && (t.Type == ToolTypeCodeInterpreter || t.Type == ToolTypeCodeExecution) {
			return true
		}
	}
	return false
}

// ItemReferences are the ids of the request's item_reference items.
func ItemReferences(r *Request) []string {
	var items []struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	if json.Unmarshal(r.Input, &items) != nil {
		return nil // a string, or invalid: FromResponsesRequest says so
	}
	var ids []string
	for _, it := range items {
		if it.Type == "item_reference" {
			ids = append(ids, it.ID)
		}
	}
	return ids
}
