package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sentinel errors, wrapped with context by the client; test them with errors.Is.
var (
	// ErrInvalidResponse: the upstream's answer is not valid JSON, or not the JSON
	// it should be.
	ErrInvalidResponse = errors.New("invalid response")
	// ErrTimeout: the upstream did not answer, or stopped streaming, within the
	// provider's Timeout.
	ErrTimeout = errors.New("timed out")
	// ErrTooLarge: the upstream's body or one streamed event exceeds the size cap.
	ErrTooLarge = errors.New("response too large")
	// ErrStreamTruncated: a stream ended without "data: [DONE]".
	ErrStreamTruncated = errors.New("stream ended without data: [DONE]")
)

// APIError is an error the upstream answered with, in OpenAI's shape
// {"error":{"message","type","code"}}, or the raw body when it had none.
type APIError struct {
	// Provider names the upstream that answered.
	Provider string
	// Status is the HTTP status; 0 when the error arrived inside a stream.
	Status  int
	Type    string
	Code    string
	Param   string
	Message string
}

// Error says which upstream answered what.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream %q ", e.Provider)
	if e.Status == 0 {
		b.WriteString("sent an error in the stream")
	} else {
		fmt.Fprintf(&b, "answered %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	var attrs []string
	if e.Type != "" {
		attrs = append(attrs, "type "+strconv.Quote(e.Type))
	}
	if e.Code != "" {
		attrs = append(attrs, "code "+strconv.Quote(e.Code))
	}
	if e.Param != "" {
		attrs = append(attrs, "param "+strconv.Quote(e.Param))
	}
	if len(attrs) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(attrs, ", "))
	}
	return b.String()
}

// maxErrorMessage bounds the raw body quoted in an APIError when it is not JSON.
const maxErrorMessage = 1 << 10

// parseAPIError reads an error body in any of the shapes OpenAI-compatible servers
// use: {"error":{…}} (OpenAI, xAI, Ollama, llama.cpp), {"error":"text"}, and a
// top-level {"message","type","code"} (vLLM). Anything else becomes the Message,
// truncated to maxErrorMessage bytes.
func parseAPIError(provider string, status int, body []byte) *APIError {
	e := &APIError{Provider: provider, Status: status}
	var outer struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &outer) == nil {
		var inner errorFields
		switch {
		case len(outer.Error) > 0 && outer.Error[0] == '"':
			_ = json.Unmarshal(outer.Error, &e.Message)
			return e
		case len(outer.Error) > 0 && json.Unmarshal(outer.Error, &inner) == nil && inner.Message != "":
			inner.fill(e)
			return e
		case json.Unmarshal(body, &inner) == nil && inner.Message != "":
			inner.fill(e)
			return e
		}
	}
	e.Message = truncateText(bytes.TrimSpace(body), maxErrorMessage)
	if e.Message == "" {
		e.Message = "(empty body)"
	}
	return e
}

// errorFields is the inside of an OpenAI error; code and param may be strings,
// numbers or null depending on the server.
type errorFields struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
	Param   json.RawMessage `json:"param"`
}

func (f errorFields) fill(e *APIError) {
	e.Message, e.Type = f.Message, f.Type
	e.Code, e.Param = rawString(f.Code), rawString(f.Param)
}

// rawString returns a JSON string's value, a number's text, or "" for null.
func rawString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if len(raw) == 0 || isJSONNull(raw) {
		return ""
	}
	return string(raw)
}

// truncateText returns b as text of at most n bytes, cut at a rune boundary and
// marked with "…" when cut.
func truncateText(b []byte, n int) string {
	if len(b) <= n {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return strings.ToValidUTF8(string(b[:cut]), "\uFFFD") + "…"
}
