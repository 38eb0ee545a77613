package llm

import (
	"cmp"
	"encoding/json"
	"maps"
	"slices"
	"strings"
)

// Accumulator rebuilds the ChatResponse a stream would have been without
// streaming: content pieces are joined, tool call fragments are merged by index,
// and the finish reason and usage are kept. The zero Accumulator is ready to use.
// Adding a chunk costs time in proportion to the chunk, not to what came before.
type Accumulator struct {
	resp    ChatResponse
	choices map[int]*accChoice
}

// accChoice is one choice being rebuilt.
type accChoice struct {
	Choice
	text    strings.Builder
	hasText bool
	extra   extraAcc // of the message
	calls   map[int]*accCall
}

// accCall is one tool call being rebuilt.
type accCall struct {
	ToolCall
	args  strings.Builder
	extra extraAcc
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
			ch = &accChoice{Choice: Choice{Index: cc.Index}, calls: map[int]*accCall{}}
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
		ch.text.WriteString(d.Content.Text())
		ch.hasText = true
	}
	for _, f := range d.ToolCalls {
		i := len(ch.calls) // a fragment without an index starts a new call
		if f.Index != nil {
			i = *f.Index
		}
		call := ch.calls[i]
		if call == nil {
			call = &accCall{}
			ch.calls[i] = call
		}
		call.add(f)
	}
	ch.extra.add(d.Extra)
	for k, v := range cc.Extra {
		if ch.Extra == nil {
			ch.Extra = map[string]json.RawMessage{}
		}
		ch.Extra[k] = v
	}
	if cc.FinishReason != nil {
		ch.FinishReason = *cc.FinishReason
	}
}

// add merges fragment f: id, type and name come from the first fragment that has
// them, arguments are appended.
func (call *accCall) add(f ToolCall) {
	call.ID = cmp.Or(call.ID, f.ID)
	call.Type = cmp.Or(call.Type, f.Type)
	if f.Function != nil {
		if call.Function == nil {
			call.Function = &FunctionCall{}
		}
		call.Function.Name = cmp.Or(call.Function.Name, f.Function.Name)
		call.args.WriteString(f.Function.Arguments)
	}
	if f.CodeExecution != nil {
		call.CodeExecution = f.CodeExecution
	}
	call.extra.add(f.Extra)
}

// extraAcc merges streamed extra fields: string values are appended (a provider's
// reasoning_content arrives in pieces, as content does), other values replace, and
// a null does not erase what came before.
type extraAcc struct {
	texts map[string]*strings.Builder
	other map[string]json.RawMessage
}

func (e *extraAcc) add(extra map[string]json.RawMessage) {
	for k, v := range extra {
		var s string
		switch {
		case json.Unmarshal(v, &s) == nil && !isJSONNull(v):
			if e.texts == nil {
				e.texts = map[string]*strings.Builder{}
			}
			if e.texts[k] == nil {
				e.texts[k] = &strings.Builder{}
			}
			e.texts[k].WriteString(s)
			delete(e.other, k)
		case isJSONNull(v) && (e.texts[k] != nil || e.other[k] != nil):
		default:
			if e.other == nil {
				e.other = map[string]json.RawMessage{}
			}
			e.other[k] = v
			delete(e.texts, k)
		}
	}
}

// fields returns the merged extra fields, or nil if there are none.
func (e *extraAcc) fields() map[string]json.RawMessage {
	if len(e.texts)+len(e.other) == 0 {
		return nil
	}
	out := maps.Clone(e.other)
	if out == nil {
		out = map[string]json.RawMessage{}
	}
	for k, b := range e.texts {
		if raw, err := marshalNoEscape(b.String()); err == nil {
			out[k] = raw
		}
	}
	return out
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
		c.Extra = maps.Clone(ch.Extra)
		c.Message.Content = NullContent()
		if ch.hasText {
			c.Message.Content = TextContent(ch.text.String())
		}
		c.Message.Extra = ch.extra.fields()
		c.Message.ToolCalls = nil
		for _, j := range slices.Sorted(maps.Keys(ch.calls)) {
			acc := ch.calls[j]
			call := acc.ToolCall
			call.Index = nil
			if call.Function != nil {
				fn := *call.Function
				fn.Arguments = acc.args.String()
				call.Function = &fn
			}
			call.Extra = acc.extra.fields()
			c.Message.ToolCalls = append(c.Message.ToolCalls, call)
		}
		r.Choices = append(r.Choices, c)
	}
	return &r
}
