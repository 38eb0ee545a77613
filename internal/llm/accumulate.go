package llm

import (
	"cmp"
	"encoding/json"
	"maps"
	"slices"
)

// Accumulator rebuilds the ChatResponse a stream would have been without
// streaming: content pieces are joined, tool call fragments are merged by index,
// and the finish reason and usage are kept. The zero Accumulator is ready to use.
type Accumulator struct {
	resp    ChatResponse
	choices map[int]*accChoice
}

type accChoice struct {
	Choice
	text    []byte
	hasText bool
	calls   map[int]*ToolCall
}

// Add merges one chunk.
func (a *Accumulator) Add(c *ChatChunk) {
	if a.choices == nil {
		a.choices = map[int]*accChoice{}
	}
	a.resp.ID = cmp.Or(a.resp.ID, c.ID)
	a.resp.Created = cmp.Or(a.resp.Created, c.Created)
	a.resp.Model = cmp.Or(a.resp.Model, c.Model)
	a.resp.SystemFingerprint = cmp.Or(a.resp.SystemFingerprint, c.SystemFingerprint)
	if c.Usage != nil {
		u := *c.Usage
		a.resp.Usage = &u
	}
	for _, cc := range c.Choices {
		ch := a.choices[cc.Index]
		if ch == nil {
			ch = &accChoice{Choice: Choice{Index: cc.Index}, calls: map[int]*ToolCall{}}
			a.choices[cc.Index] = ch
		}
		ch.add(cc)
	}
}

func (ch *accChoice) add(cc ChunkChoice) {
	d := cc.Delta
	ch.Message.Role = cmp.Or(ch.Message.Role, d.Role)
	ch.Message.Name = cmp.Or(ch.Message.Name, d.Name)
	if d.Content.IsString() || d.Content.IsParts() {
		ch.text = append(ch.text, d.Content.Text()...)
		ch.hasText = true
	}
	for _, tc := range d.ToolCalls {
		i := len(ch.calls)
		if tc.Index != nil {
			i = *tc.Index
		}
		call := ch.calls[i]
		if call == nil {
			call = &ToolCall{}
			ch.calls[i] = call
		}
		mergeToolCall(call, tc)
	}
	ch.Message.Extra = mergeExtra(ch.Message.Extra, d.Extra)
	ch.Extra = mergeExtra(ch.Extra, cc.Extra)
	if cc.FinishReason != nil {
		ch.FinishReason = *cc.FinishReason
	}
}

// mergeToolCall adds the fragment f to call: id, type and name are set by the first
// fragment that has them, arguments are appended.
func mergeToolCall(call *ToolCall, f ToolCall) {
	call.ID = cmp.Or(call.ID, f.ID)
	call.Type = cmp.Or(call.Type, f.Type)
	if f.Function != nil {
		if call.Function == nil {
			call.Function = &FunctionCall{}
		}
		call.Function.Name = cmp.Or(call.Function.Name, f.Function.Name)
		call.Function.Arguments += f.Function.Arguments
	}
	if f.CodeExecution != nil {
		call.CodeExecution = f.CodeExecution
	}
	call.Extra = mergeExtra(call.Extra, f.Extra)
}

// mergeExtra merges streamed extra fields: string values are appended (a provider's
// reasoning_content arrives in pieces like content does), other values replace.
func mergeExtra(dst, src map[string]json.RawMessage) map[string]json.RawMessage {
	for k, v := range src {
		if dst == nil {
			dst = map[string]json.RawMessage{}
		}
		var add, have string
		if json.Unmarshal(v, &add) == nil && json.Unmarshal(dst[k], &have) == nil {
			if b, err := marshalNoEscape(have + add); err == nil {
				dst[k] = b
				continue
			}
		}
		if isJSONNull(v) && dst[k] != nil {
			continue // a later null does not erase what earlier chunks sent
		}
		dst[k] = v
	}
	return dst
}

// Response returns the response so far. A choice's content is a string when any
// chunk carried content, and null otherwise (a reply that only calls tools).
func (a *Accumulator) Response() *ChatResponse {
	r := a.resp
	r.Object = "chat.completion"
	r.Choices = nil
	for _, i := range slices.Sorted(maps.Keys(a.choices)) {
		ch := a.choices[i]
		c := ch.Choice
		c.Message.Content = NullContent()
		if ch.hasText {
			c.Message.Content = TextContent(string(ch.text))
		}
		c.Message.ToolCalls = nil
		for _, j := range slices.Sorted(maps.Keys(ch.calls)) {
			call := *ch.calls[j]
			call.Index = nil
			c.Message.ToolCalls = append(c.Message.ToolCalls, call)
		}
		r.Choices = append(r.Choices, c)
	}
	return &r
}
