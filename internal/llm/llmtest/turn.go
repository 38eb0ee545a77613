package llmtest

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/codeexec/codeexec/internal/llm"
)

// Turn is what the scripted model answers to one /chat/completions request. Build
// one with Text, Calls, Error, Raw or InvalidJSON, then adjust it with After,
// WithHeader or its fields.
type Turn struct {
	// Content is the assistant's text.
	Content string
	// Calls are the function tools the model calls, in order.
	Calls []Call
	// FinishReason defaults to "tool_calls" when there are Calls, else "stop".
	FinishReason string
	// Usage defaults to counts derived from the request and answer sizes.
	Usage *llm.Usage
	// Body, when set, is sent verbatim with Status (default 200) instead of a
	// completion: an error body, broken JSON, or raw SSE for a streaming request.
	Status int
	Body   string
	// Header is added to the answer, e.g. Retry-After.
	Header http.Header
	// Delay is waited before answering; ChunkDelay between two stream events.
	Delay      time.Duration
	ChunkDelay time.Duration
	// Hold, when set, stops a streamed answer after its content until it is
	// closed: a test sees what reached the client while the model is still
	// "writing".
	Hold <-chan struct{}
}

// Call is one function tool call; Arguments is its JSON text.
type Call struct {
	Name      string
	Arguments string
}

// Text answers with assistant text.
func Text(content string) Turn { return Turn{Content: content} }

// Calls answers with tool calls and no text.
func Calls(calls ...Call) Turn { return Turn{Calls: calls} }

// Error answers with status and an OpenAI-shaped error body carrying message.
func Error(status int, message string) Turn {
	typ, code := "server_error", ""
	switch {
	case status == http.StatusTooManyRequests:
		typ, code = "rate_limit_error", "rate_limit_exceeded"
	case status == http.StatusUnauthorized:
		typ, code = "authentication_error", "invalid_api_key"
	case status < 500:
		typ = "invalid_request_error"
	}
	var codeJSON any // null unless there is a code
	if code != "" {
		codeJSON = code
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": message, "type": typ, "code": codeJSON, "param": nil,
	}})
	return Turn{Status: status, Body: string(b)}
}

// Raw answers with status and body verbatim.
func Raw(status int, body string) Turn { return Turn{Status: status, Body: body} }

// InvalidJSON answers 200 with a body cut off in the middle of the JSON.
func InvalidJSON() Turn {
	return Raw(http.StatusOK, `{"id":"chatcmpl-broken","object":"chat.completion","choices":[{"index":0,"message":{"role":"assis`)
}

// After returns t answered only after waiting d (to test timeouts).
func (t Turn) After(d time.Duration) Turn {
	t.Delay = d
	return t
}

// WithHeader returns t with header key set to value in the answer.
func (t Turn) WithHeader(key, value string) Turn {
	h := t.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set(key, value)
	t.Header = h
	return t
}
