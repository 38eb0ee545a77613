package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
)

// ChatRequest is the body of POST /chat/completions. Fields the gateway reasons about
// are typed; every other field is kept in Extra and sent upstream unchanged.
type ChatRequest struct {
	Model    string    `json:"model"`
	Messages []Message `json:"messages"`
	Tools    []Tool    `json:"tools,omitempty"`
	// ToolChoice is "none", "auto", "required" or an object naming a tool; kept raw.
	ToolChoice        json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
	// Stream false is written by omission, which OpenAI treats the same way.
	Stream              bool           `json:"stream,omitempty"`
	StreamOptions       *StreamOptions `json:"stream_options,omitempty"`
	Temperature         *float64       `json:"temperature,omitempty"`
	TopP                *float64       `json:"top_p,omitempty"`
	MaxTokens           *int           `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int           `json:"max_completion_tokens,omitempty"`
	N                   *int           `json:"n,omitempty"`
	// Stop is a string or an array of strings; kept raw.
	Stop json.RawMessage `json:"stop,omitempty"`
	Seed *int64          `json:"seed,omitempty"`
	// ResponseFormat is {"type":"text"|"json_object"|"json_schema",…}; kept raw.
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
	User           string          `json:"user,omitempty"`

	// Extra holds every other field of the request, verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes r, keeping unknown fields in r.Extra.
func (r *ChatRequest) UnmarshalJSON(data []byte) error {
	type plain ChatRequest
	extra, err := decodeWithExtra(data, (*plain)(r))
	r.Extra = extra
	return err
}

// MarshalJSON encodes r with its extra fields.
func (r ChatRequest) MarshalJSON() ([]byte, error) {
	type plain ChatRequest
	return encodeWithExtra(plain(r), r.Extra)
}

// DecodeChatRequest decodes a client's chat completion request. Unknown fields are
// kept in Extra, not rejected: they belong to the upstream (DESIGN: OpenAI-compatible
// bodies are the one exception to DisallowUnknownFields). The caller bounds the size
// of r, e.g. with http.MaxBytesReader.
func DecodeChatRequest(r io.Reader) (*ChatRequest, error) {
	dec := json.NewDecoder(r)
	var req ChatRequest
	if err := dec.Decode(&req); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("decoding chat request: empty body")
		}
		return nil, fmt.Errorf("decoding chat request: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("decoding chat request: data after the JSON object")
	}
	return &req, nil
}

// Clone returns a copy of r whose top-level fields and Extra map can be changed
// without changing r. Messages, tools and raw values are shared.
func (r *ChatRequest) Clone() *ChatRequest {
	c := *r
	c.Extra = maps.Clone(r.Extra)
	return &c
}

// StreamOptions is the stream_options object of a streaming request.
type StreamOptions struct {
	// IncludeUsage asks for a last chunk carrying the usage of the whole request.
	IncludeUsage bool                       `json:"include_usage,omitempty"`
	Extra        map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes o, keeping unknown fields in o.Extra.
func (o *StreamOptions) UnmarshalJSON(data []byte) error {
	type plain StreamOptions
	extra, err := decodeWithExtra(data, (*plain)(o))
	o.Extra = extra
	return err
}

// MarshalJSON encodes o with its extra fields.
func (o StreamOptions) MarshalJSON() ([]byte, error) {
	type plain StreamOptions
	return encodeWithExtra(plain(o), o.Extra)
}

// Message is one chat message: a request's history, a reply, or a streamed delta
// (where every field is optional).
type Message struct {
	// Role is system, developer, user, assistant or tool; empty in later deltas.
	Role       string     `json:"role,omitempty"`
	Content    Content    `json:"content,omitzero"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`

	// Extra holds every other field (refusal, audio, annotations, a provider's
	// reasoning_content, …), verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes m, keeping unknown fields in m.Extra.
func (m *Message) UnmarshalJSON(data []byte) error {
	type plain Message
	extra, err := decodeWithExtra(data, (*plain)(m))
	m.Extra = extra
	return err
}

// MarshalJSON encodes m with its extra fields.
func (m Message) MarshalJSON() ([]byte, error) {
	type plain Message
	return encodeWithExtra(plain(m), m.Extra)
}

// Text returns the message's text: see Content.Text.
func (m Message) Text() string { return m.Content.Text() }

// Parts returns the message's content as parts: see Content.Parts.
func (m Message) Parts() []ContentPart { return m.Content.Parts() }

// Tool types codeexec knows.
const (
	ToolTypeFunction      = "function"
	ToolTypeCodeExecution = "code_execution"
)

// Tool is one entry of a request's tools: a function, or another type (such as
// code_execution) whose other fields are kept in Extra.
type Tool struct {
	Type     string       `json:"type"`
	Function *FunctionDef `json:"function,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes t, keeping unknown fields in t.Extra.
func (t *Tool) UnmarshalJSON(data []byte) error {
	type plain Tool
	extra, err := decodeWithExtra(data, (*plain)(t))
	t.Extra = extra
	return err
}

// MarshalJSON encodes t with its extra fields.
func (t Tool) MarshalJSON() ([]byte, error) {
	type plain Tool
	return encodeWithExtra(plain(t), t.Extra)
}

// FunctionDef declares a function tool.
type FunctionDef struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Parameters is a JSON Schema object; kept raw so that no keyword is lost.
	Parameters json.RawMessage `json:"parameters,omitempty"`
	Strict     *bool           `json:"strict,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes f, keeping unknown fields in f.Extra.
func (f *FunctionDef) UnmarshalJSON(data []byte) error {
	type plain FunctionDef
	extra, err := decodeWithExtra(data, (*plain)(f))
	f.Extra = extra
	return err
}

// MarshalJSON encodes f with its extra fields.
func (f FunctionDef) MarshalJSON() ([]byte, error) {
	type plain FunctionDef
	return encodeWithExtra(plain(f), f.Extra)
}

// ToolCall is a tool call in an assistant message, or a fragment of one in a streamed
// delta. Types other than function and code_execution keep their fields in Extra.
type ToolCall struct {
	// Index says which call a streamed fragment belongs to; nil outside deltas.
	Index *int   `json:"index,omitempty"`
	ID    string `json:"id,omitempty"`
	// Type is empty in the fragments after the first of a streamed call.
	Type     string        `json:"type,omitempty"`
	Function *FunctionCall `json:"function,omitempty"`
	// CodeExecution is set on the entries codeexec adds to its own replies.
	CodeExecution *CodeExecution `json:"code_execution,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes c, keeping unknown fields in c.Extra.
func (c *ToolCall) UnmarshalJSON(data []byte) error {
	type plain ToolCall
	extra, err := decodeWithExtra(data, (*plain)(c))
	c.Extra = extra
	return err
}

// MarshalJSON encodes c with its extra fields.
func (c ToolCall) MarshalJSON() ([]byte, error) {
	type plain ToolCall
	return encodeWithExtra(plain(c), c.Extra)
}

// FunctionCall is the function a tool call invokes.
type FunctionCall struct {
	// Name is empty in the fragments after the first of a streamed call.
	Name string `json:"name,omitempty"`
	// Arguments is the JSON text of the arguments (or a fragment of it), always
	// written, even when empty, as OpenAI does.
	Arguments string `json:"arguments"`
}

// CodeExecution is one code run that codeexec reports in a reply's tool_calls: what
// the model was shown of it, field by field as /v1/execute's Result has them.
type CodeExecution struct {
	Code string `json:"code"`
	// Output is the run as a terminal shows it: stdout, stderr, then the value of the
	// last expression, then the error's message when the status is not "error" (whose
	// traceback is in stderr). Kept for the clients that read only it.
	Output string `json:"output"`
	// Status is the outcome (ok, error, timeout, memory_limit, output_limit, killed,
	// rejected), or "running" in the streamed fragment that announces the run. Every
	// entry codeexec writes has one.
	Status          string `json:"status"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	// Result is the repr of the last expression (or of a variable named result).
	Result          *string     `json:"result"`
	ResultTruncated bool        `json:"result_truncated,omitempty"`
	Error           *CodeError  `json:"error"`
	Images          []CodeImage `json:"images"`
	ImagesTruncated bool        `json:"images_truncated,omitempty"`
	Files           []CodeFile  `json:"files"`
	FilesTruncated  bool        `json:"files_truncated,omitempty"`
	// ContainerID is the session the code ran in: pass it as the code tool's
	// "container" to run later code with the same variables and files.
	ContainerID string `json:"container_id,omitempty"`
}

// StatusRunning is the status of the streamed fragment that announces a run.
const StatusRunning = "running"

// MarshalJSON writes a finished run with every field, empty ones included (as
// /v1/execute's Result); the fragment announcing a run with its code, status and
// container only; and an entry without a status (one a client wrote, passed
// through) with the fields it has, so that it goes upstream as it came.
func (e CodeExecution) MarshalJSON() ([]byte, error) {
	switch e.Status {
	case StatusRunning:
		return marshalNoEscape(struct {
			Code        string `json:"code"`
			Status      string `json:"status"`
			ContainerID string `json:"container_id,omitempty"`
		}{e.Code, e.Status, e.ContainerID})
	case "":
		return marshalNoEscape(struct {
			Code            string      `json:"code"`
			Output          string      `json:"output"`
			Status          string      `json:"status,omitempty"`
			Stdout          string      `json:"stdout,omitempty"`
			Stderr          string      `json:"stderr,omitempty"`
			StdoutTruncated bool        `json:"stdout_truncated,omitempty"`
			StderrTruncated bool        `json:"stderr_truncated,omitempty"`
			Result          *string     `json:"result,omitempty"`
			ResultTruncated bool        `json:"result_truncated,omitempty"`
			Error           *CodeError  `json:"error,omitempty"`
			Images          []CodeImage `json:"images,omitempty"`
			ImagesTruncated bool        `json:"images_truncated,omitempty"`
			Files           []CodeFile  `json:"files,omitempty"`
			FilesTruncated  bool        `json:"files_truncated,omitempty"`
			ContainerID     string      `json:"container_id,omitempty"`
		}(e))
	}
	type plain CodeExecution
	if e.Images == nil {
		e.Images = []CodeImage{}
	}
	if e.Files == nil {
		e.Files = []CodeFile{}
	}
	return marshalNoEscape(plain(e))
}

// CodeError is why a run failed.
type CodeError struct {
	Name      string `json:"name"`
	Message   string `json:"message"`
	Traceback string `json:"traceback,omitempty"`
}

// CodeImage is a figure from a code execution.
type CodeImage struct {
	Name     string `json:"name"`
	MimeType string `json:"mime_type"`
	Data     []byte `json:"data"` // base64 in JSON
}

// CodeFile is a file the code wrote in its work dir.
type CodeFile struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	// URL downloads it (GET, relative to the server) while its container lives.
	URL string `json:"url,omitempty"`
}

// isJSONNull reports whether data is the JSON literal null.
func isJSONNull(data []byte) bool {
	return bytes.Equal(bytes.TrimSpace(data), []byte("null"))
}
