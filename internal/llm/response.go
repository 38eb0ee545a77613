package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ChatResponse is the body of a non-streaming chat completion.
type ChatResponse struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"` // "chat.completion"
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	Choices           []Choice `json:"choices"`
	Usage             *Usage   `json:"usage,omitempty"`
	SystemFingerprint string   `json:"system_fingerprint,omitempty"`

	// Extra holds every other field (service_tier, a provider's extensions), verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes r, keeping unknown fields in r.Extra.
func (r *ChatResponse) UnmarshalJSON(data []byte) error {
	type plain ChatResponse
	extra, err := decodeWithExtra(data, (*plain)(r))
	r.Extra = extra
	return err
}

// MarshalJSON encodes r with its extra fields; no choices are written as [].
func (r ChatResponse) MarshalJSON() ([]byte, error) {
	type plain ChatResponse
	if r.Choices == nil {
		r.Choices = []Choice{}
	}
	return encodeWithExtra(plain(r), r.Extra)
}

// DecodeChatResponse decodes an upstream's chat completion body. Anything but a JSON
// object is an error that quotes the start of data.
func DecodeChatResponse(data []byte) (*ChatResponse, error) {
	var r ChatResponse
	if err := decodeObject(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Choice is one alternative of a chat completion.
type Choice struct {
	Index   int     `json:"index"`
	Message Message `json:"message"`
	// FinishReason is stop, length, tool_calls, content_filter or a provider's own.
	FinishReason string `json:"finish_reason"`

	// Extra holds every other field (logprobs, …), verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes c, keeping unknown fields in c.Extra.
func (c *Choice) UnmarshalJSON(data []byte) error {
	type plain Choice
	extra, err := decodeWithExtra(data, (*plain)(c))
	c.Extra = extra
	return err
}

// MarshalJSON encodes c with its extra fields.
func (c Choice) MarshalJSON() ([]byte, error) {
	type plain Choice
	return encodeWithExtra(plain(c), c.Extra)
}

// Usage counts the tokens of one request.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`

	// Extra holds the details objects and a provider's own counters, verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes u, keeping unknown fields in u.Extra.
func (u *Usage) UnmarshalJSON(data []byte) error {
	type plain Usage
	extra, err := decodeWithExtra(data, (*plain)(u))
	u.Extra = extra
	return err
}

// MarshalJSON encodes u with its extra fields.
func (u Usage) MarshalJSON() ([]byte, error) {
	type plain Usage
	return encodeWithExtra(plain(u), u.Extra)
}

// Add adds v's token counts to u; extra fields are not summed.
func (u *Usage) Add(v Usage) {
	u.PromptTokens += v.PromptTokens
	u.CompletionTokens += v.CompletionTokens
	u.TotalTokens += v.TotalTokens
}

// ChatChunk is one server-sent event of a streaming chat completion.
type ChatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"` // "chat.completion.chunk"
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []ChunkChoice `json:"choices"`
	// Usage is set on the last chunk when stream_options.include_usage was asked for.
	Usage             *Usage `json:"usage,omitempty"`
	SystemFingerprint string `json:"system_fingerprint,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes c, keeping unknown fields in c.Extra.
func (c *ChatChunk) UnmarshalJSON(data []byte) error {
	type plain ChatChunk
	extra, err := decodeWithExtra(data, (*plain)(c))
	c.Extra = extra
	return err
}

// MarshalJSON encodes c with its extra fields; no choices are written as [].
func (c ChatChunk) MarshalJSON() ([]byte, error) {
	type plain ChatChunk
	if c.Choices == nil {
		c.Choices = []ChunkChoice{}
	}
	return encodeWithExtra(plain(c), c.Extra)
}

// DecodeChatChunk decodes the data of one streamed event. Anything but a JSON object
// is an error that quotes the start of data.
func DecodeChatChunk(data []byte) (*ChatChunk, error) {
	var c ChatChunk
	if err := decodeObject(data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// ChunkChoice is one alternative's part of a streamed chunk.
type ChunkChoice struct {
	Index int `json:"index"`
	// Delta is what this chunk adds to the message: role in the first chunk, then
	// content pieces and tool call fragments.
	Delta Message `json:"delta"`
	// FinishReason is nil (written as null) until the choice's last chunk.
	FinishReason *string `json:"finish_reason"`

	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes c, keeping unknown fields in c.Extra.
func (c *ChunkChoice) UnmarshalJSON(data []byte) error {
	type plain ChunkChoice
	extra, err := decodeWithExtra(data, (*plain)(c))
	c.Extra = extra
	return err
}

// MarshalJSON encodes c with its extra fields.
func (c ChunkChoice) MarshalJSON() ([]byte, error) {
	type plain ChunkChoice
	return encodeWithExtra(plain(c), c.Extra)
}

// Model is one entry of GET /models.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created,omitempty"`
	OwnedBy string `json:"owned_by,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes m, keeping unknown fields in m.Extra.
func (m *Model) UnmarshalJSON(data []byte) error {
	type plain Model
	extra, err := decodeWithExtra(data, (*plain)(m))
	m.Extra = extra
	return err
}

// MarshalJSON encodes m with its extra fields.
func (m Model) MarshalJSON() ([]byte, error) {
	type plain Model
	return encodeWithExtra(plain(m), m.Extra)
}

// ModelList is the body of GET /models.
type ModelList struct {
	Object string  `json:"object"` // "list"
	Data   []Model `json:"data"`
}

// decodeObject decodes data, which must be one JSON object, into v.
func decodeObject(data []byte, v any) error {
	t := bytes.TrimSpace(data)
	if len(t) == 0 {
		return fmt.Errorf("empty body")
	}
	if t[0] != '{' {
		return fmt.Errorf("want a JSON object, got %s", snippet(t))
	}
	return json.Unmarshal(t, v)
}
