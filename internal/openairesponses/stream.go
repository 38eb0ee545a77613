package openairesponses

import (
	"strings"

	"github.com/codeexec/codeexec/internal/agent"
)

// Event is one event of a Responses stream: its type and its fields (with "type"
// and "sequence_number" among them), as the SDKs parse it.
type Event map[string]any

// Type is the event's type, the SSE event name.
func (e Event) Type() string { s, _ := e["type"].(string); return s }

// Stream encodes a completion's events as the Responses event stream:
// response.created and response.in_progress, then per output item
// output_item.added … output_item.done — a message's content_part and
// output_text events, a run's code_interpreter_call events (its code as the model
// writes it, interpreting while it runs, completed), a client call's
// function_call_arguments events — and response.completed (or
// response.incomplete) with the whole Response, whose item ids are those
// streamed. Send and Options must be set. The first events wait for the first
// event of the loop, so that a request refused before anything happened can
// still get its HTTP status.
type Stream struct {
	// Send writes one event to the client.
	Send    func(Event)
	Options Options
	// Container, if set, names the container of a run announced before it starts
	// (while the model writes its code); the run's later events carry its own.
	Container func() string

	seq     int
	started bool
	resp    *Response
	n       *namer
	open    *openItem   // the message or run being written
	calls   []*openItem // the client calls, open until the end
	files   []Annotation
}

type openItem struct {
	index int
	item  OutputItem
	text  strings.Builder // a message's text, a run's code or a call's arguments
}

var _ agent.Events = (*Stream)(nil)

// Started reports whether an event was sent.
func (s *Stream) Started() bool { return s.started }

func (s *Stream) send(typ string, fields Event) {
	s.begin()
	s.emit(typ, fields)
}

func (s *Stream) emit(typ string, fields Event) {
	fields["type"] = typ
	fields["sequence_number"] = s.seq
	s.seq++
	s.Send(fields)
}

// begin sends response.created and response.in_progress, once.
func (s *Stream) begin() {
	if s.started {
		return
	}
	s.started = true
	s.n = newNamer(s.Options.ID)
	s.resp = newResponse(s.Options)
	s.emit("response.created", Event{"response": s.resp})
	s.emit("response.in_progress", Event{"response": s.resp})
}

// add opens an item: output_item.added.
func (s *Stream) add(item OutputItem) *openItem {
	s.begin()
	// Only client calls stay open beside another item, and they come last.
	o := &openItem{index: len(s.resp.Output) + len(s.calls), item: item}
	s.send("response.output_item.added", Event{"output_index": o.index, "item": item})
	return o
}

// closeOpen ends the message or run being written. A message closed by the end
// of the completion is the final one, which cites the files the code wrote.
func (s *Stream) closeOpen(final bool) {
	o := s.open
	if o == nil {
		return
	}
	s.open = nil
	if o.item.Type != TypeMessage {
		// A run announced by its code that never ran (the loop failed): its item ends
		// as written so far.
		code := o.text.String()
		o.item.Code, o.item.Status = &code, StatusIncomplete
		s.done(o)
		return
	}
	text := o.text.String()
	var ann []Annotation
	if final {
		ann = cite(text, s.files)
	}
	o.item = messageItem(o.item.ID, text, ann, StatusCompleted)
	at := Event{"item_id": o.item.ID, "output_index": o.index, "content_index": 0}
	s.send("response.output_text.done", with(at, Event{"text": text, "logprobs": []any{}}))
	s.send("response.content_part.done", with(at, Event{"part": o.item.Content[0]}))
	s.done(o)
}

func (s *Stream) done(o *openItem) {
	s.send("response.output_item.done", Event{"output_index": o.index, "item": o.item})
	s.resp.Output = append(s.resp.Output, o.item)
}

func with(a, b Event) Event {
	out := Event{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// Text sends a piece of the model's text, opening a message for it.
func (s *Stream) Text(delta string) {
	if delta == "" {
		return
	}
	if s.open == nil || s.open.item.Type != TypeMessage {
		s.closeOpen(false)
		s.begin()
		item := OutputItem{ID: s.n.message(), Type: TypeMessage, Status: StatusInProgress, Role: "assistant", Content: []ContentPart{}}
		s.open = s.add(item)
		s.send("response.content_part.added", Event{"item_id": item.ID, "output_index": s.open.index, "content_index": 0,
			"part": ContentPart{Type: "output_text", Text: "", Annotations: []Annotation{}, Logprobs: []any{}}})
	}
	s.open.text.WriteString(delta)
	s.send("response.output_text.delta", Event{"item_id": s.open.item.ID, "output_index": s.open.index, "content_index": 0,
		"delta": delta, "logprobs": []any{}})
}

// run returns the open run of call id, opening it (output_item.added,
// code_interpreter_call.in_progress) if it is not.
func (s *Stream) run(id, container string) *openItem {
	s.begin()
	if s.open != nil && s.open.item.Type == TypeCodeInterpreterCall && s.open.item.ID == s.n.code(id) {
		return s.open
	}
	s.closeOpen(false)
	if container == "" && s.Container != nil {
		container = s.Container()
	}
	empty := ""
	s.open = s.add(OutputItem{ID: s.n.code(id), Type: TypeCodeInterpreterCall, Status: StatusInProgress, Code: &empty, ContainerID: container})
	s.send("response.code_interpreter_call.in_progress", Event{"item_id": s.open.item.ID, "output_index": s.open.index})
	return s.open
}

// CodeDelta sends a piece of a run's code as the model writes it.
func (s *Stream) CodeDelta(_ int, id, delta string) {
	o := s.run(id, "")
	o.text.WriteString(delta)
	s.send("response.code_interpreter_call_code.delta", Event{"item_id": o.item.ID, "output_index": o.index, "delta": delta})
}

// ExecutionStarted sends the run's whole code (code_interpreter_call_code.done)
// and that it is interpreting.
func (s *Stream) ExecutionStarted(_ int, e *agent.Execution) {
	o := s.run(e.ID, e.ContainerID)
	if o.text.Len() == 0 && e.Code != "" {
		// The model's turn came whole (an upstream that does not stream): the code
		// comes as one piece.
		o.text.WriteString(e.Code)
		s.send("response.code_interpreter_call_code.delta", Event{"item_id": o.item.ID, "output_index": o.index, "delta": e.Code})
	}
	s.send("response.code_interpreter_call_code.done", Event{"item_id": o.item.ID, "output_index": o.index, "code": e.Code})
	s.send("response.code_interpreter_call.interpreting", Event{"item_id": o.item.ID, "output_index": o.index})
}

// ExecutionFinished sends the run's outcome: code_interpreter_call.completed and
// its item, with outputs when the request included them.
func (s *Stream) ExecutionFinished(_ int, e *agent.Execution) {
	o := s.run(e.ID, e.ContainerID)
	s.open = nil
	o.item = codeItem(e, o.item.ID, s.Options, true)
	s.send("response.code_interpreter_call.completed", Event{"item_id": o.item.ID, "output_index": o.index})
	s.done(o)
	s.files = append(s.files, written(e)...)
}

// ToolCallDelta sends a piece of a client call's arguments, opening its item.
func (s *Stream) ToolCallDelta(_ int, id, name, delta string) {
	var o *openItem
	for _, c := range s.calls {
		if c.item.CallID == id {
			o = c
		}
	}
	if o == nil {
		s.closeOpen(true)
		s.begin()
		o = s.add(OutputItem{ID: s.n.call(id), Type: TypeFunctionCall, Status: StatusInProgress, CallID: id, Name: name})
		s.calls = append(s.calls, o)
	}
	if delta == "" {
		return
	}
	o.text.WriteString(delta)
	s.send("response.function_call_arguments.delta", Event{"item_id": o.item.ID, "output_index": o.index, "delta": delta})
}

// Finish ends the stream with the completion's result: the open items end, and
// response.completed (response.incomplete when a limit ended it) carries the
// whole Response, which it returns.
func (s *Stream) Finish(res *agent.Result) *Response {
	s.begin()
	s.closeOpen(true)
	final := ToResponse(res, s.Options)
	for _, c := range s.calls {
		for _, it := range final.Output {
			if it.Type == TypeFunctionCall && it.CallID == c.item.CallID {
				c.item = it
			}
		}
		s.send("response.function_call_arguments.done", Event{"item_id": c.item.ID, "output_index": c.index, "name": c.item.Name, "arguments": c.item.Arguments})
		s.send("response.output_item.done", Event{"output_index": c.index, "item": c.item})
	}
	typ := "response.completed"
	if final.Status == StatusIncomplete {
		typ = "response.incomplete"
	}
	s.send(typ, Event{"response": final})
	return final
}

// Fail ends the stream with an error: an error event, then response.failed.
func (s *Stream) Fail(code, message string) {
	s.begin()
	s.closeOpen(false)
	s.send("error", Event{"code": code, "message": message, "param": nil})
	s.resp.Status = StatusFailed
	s.resp.Error = &ResponseError{Code: code, Message: message}
	s.send("response.failed", Event{"response": s.resp})
}
