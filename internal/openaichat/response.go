package openaichat

import (
	"encoding/json"
	"maps"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/llm"
)

// ToChatCompletion encodes a completion's result as a chat completion: the
// upstream's last reply's id, model and other fields, the usage of every model
// call, and one choice whose message is the model's final message with, as its
// tool calls, one code_execution entry per run and then the client tool calls.
// link, if not nil, is applied to each entry (the server gives the files a run
// wrote their download URLs).
func ToChatCompletion(res *agent.Result, link func(*llm.CodeExecution)) *llm.ChatResponse {
	msg := llm.Message{Role: "assistant"}
	var execs, calls []llm.ToolCall
	for _, it := range res.Output {
		switch it := it.(type) {
		case *agent.Message:
			msg = llm.Message{Role: it.Role, Content: agent.LLMContent(it.Content), Name: it.Name, Extra: it.Extra}
		case *agent.Execution:
			e := entry(it)
			if link != nil {
				link(e)
			}
			execs = append(execs, llm.ToolCall{ID: it.ID, Type: llm.ToolTypeCodeExecution, CodeExecution: e})
		case *agent.ToolCall:
			calls = append(calls, agent.LLMToolCall(it))
		}
	}
	msg.ToolCalls = append(execs, calls...)
	usage := chatUsage(res.Usage)
	up := res.Upstream
	return &llm.ChatResponse{ID: up.ID, Object: up.Object, Created: up.Created, Model: up.Model,
		SystemFingerprint: up.SystemFingerprint, Extra: maps.Clone(up.Extra), Usage: &usage,
		Choices: []llm.Choice{{Index: 0, Message: msg, FinishReason: finishReason(res.Finish)}}}
}

// finishReason is a Finish as chat completions says it: the step limit is
// "length", as the model's own token limit.
func finishReason(f agent.Finish) string {
	if f == agent.FinishStepLimit {
		return string(agent.FinishLength)
	}
	return string(f)
}

func chatUsage(u agent.Usage) llm.Usage {
	return llm.Usage{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens, TotalTokens: u.TotalTokens}
}

// entry is the code_execution entry of a run: everything the model was shown of
// it, field by field as /v1/execute's Result has them.
func entry(e *agent.Execution) *llm.CodeExecution {
	out := &llm.CodeExecution{Code: e.Code, Output: e.Output, ContainerID: e.ContainerID}
	res := e.Result
	if res == nil {
		return out
	}
	out.Status = string(res.Status)
	out.Stdout, out.Stderr, out.StdoutTruncated, out.StderrTruncated = res.Stdout, res.Stderr, res.StdoutTruncated, res.StderrTruncated
	out.Result, out.ResultTruncated = res.Result, res.ResultTruncated
	out.ImagesTruncated, out.FilesTruncated = res.ImagesTruncated, res.FilesTruncated
	if res.Error != nil {
		out.Error = &llm.CodeError{Name: res.Error.Name, Message: res.Error.Message, Traceback: res.Error.Traceback}
	}
	for _, im := range res.Images {
		out.Images = append(out.Images, llm.CodeImage{Name: im.Name, MimeType: im.MimeType, Data: im.Data})
	}
	for _, f := range res.Files {
		out.Files = append(out.Files, llm.CodeFile{Path: f.Path, Size: f.Size})
	}
	return out
}

// startedEntry is the entry announcing a run: its code, status "running" and
// container.
func startedEntry(e *agent.Execution) *llm.CodeExecution {
	return &llm.CodeExecution{Code: e.Code, Status: llm.StatusRunning, ContainerID: e.ContainerID}
}

// Stream encodes a completion's events as chat.completion.chunk objects, the
// model's text as it comes, each run's entry when it starts and again when it
// ends; Finish sends the rest. Code and client tool calls are not streamed as the
// model writes them: clients of chat completions get a run's code when it starts
// and the client tool calls whole at the end. Send, ID, Model and Created must be
// set; Link is applied to each finished entry, as ToChatCompletion's link. The
// first chunk carries the role and waits for the first event, so that a request
// refused before anything happened (a bad attachment, an unknown container) can
// still get its HTTP status.
type Stream struct {
	// Send writes one chunk to the client.
	Send    func(*llm.ChatChunk)
	ID      string
	Model   string
	Created int64
	Link    func(*llm.CodeExecution)

	started bool
}

var _ agent.Events = (*Stream)(nil)

// Started reports whether a chunk was sent.
func (s *Stream) Started() bool { return s.started }

func (s *Stream) chunk(delta llm.Message, finish *string) *llm.ChatChunk {
	return &llm.ChatChunk{ID: s.ID, Object: "chat.completion.chunk", Created: s.Created, Model: s.Model,
		Choices: []llm.ChunkChoice{{Index: 0, Delta: delta, FinishReason: finish}}}
}

// send sends c, after the chunk with the role if it is the first.
func (s *Stream) send(c *llm.ChatChunk) {
	if !s.started {
		s.started = true
		s.Send(s.chunk(llm.Message{Role: "assistant", Content: llm.TextContent("")}, nil))
	}
	s.Send(c)
}

func (s *Stream) sendEntry(index int, id string, e *llm.CodeExecution) {
	s.send(s.chunk(llm.Message{ToolCalls: []llm.ToolCall{{Index: &index, ID: id, Type: llm.ToolTypeCodeExecution, CodeExecution: e}}}, nil))
}

// Text sends a piece of the model's text.
func (s *Stream) Text(delta string) {
	s.send(s.chunk(llm.Message{Content: llm.TextContent(delta)}, nil))
}

// ExecutionStarted sends the entry announcing the run.
func (s *Stream) ExecutionStarted(index int, e *agent.Execution) {
	s.sendEntry(index, e.ID, startedEntry(e))
}

// ExecutionFinished sends the run's entry.
func (s *Stream) ExecutionFinished(index int, e *agent.Execution) {
	linked := entry(e)
	if s.Link != nil {
		s.Link(linked)
	}
	s.sendEntry(index, e.ID, linked)
}

// CodeDelta sends nothing: the code comes with ExecutionStarted.
func (s *Stream) CodeDelta(int, string, string) {}

// ToolCallDelta sends nothing: the client's calls come whole with Finish.
func (s *Stream) ToolCallDelta(int, string, string, string) {}

// Finish sends the end of the stream but [DONE]: the client tool calls (if the
// model made any), the finish reason with extra as the chunk's other fields (the
// server names the container), and the usage when the client asked for it.
func (s *Stream) Finish(res *agent.Result, extra map[string]json.RawMessage, includeUsage bool) {
	var calls []llm.ToolCall
	execs := 0
	for _, it := range res.Output {
		switch it := it.(type) {
		case *agent.Execution:
			execs++
		case *agent.ToolCall:
			tc := agent.LLMToolCall(it)
			i := execs + len(calls) // its index among the reply's tool calls
			tc.Index = &i
			calls = append(calls, tc)
		}
	}
	if len(calls) > 0 {
		s.send(s.chunk(llm.Message{ToolCalls: calls}, nil))
	}
	reason := finishReason(res.Finish)
	last := s.chunk(llm.Message{}, &reason)
	last.Extra = extra
	s.send(last)
	if includeUsage {
		usage := chatUsage(res.Usage)
		c := s.chunk(llm.Message{}, nil)
		c.Choices = []llm.ChunkChoice{}
		c.Usage = &usage
		s.send(c)
	}
}

// Listener hears a completion's events as a chat completions stream shows them:
// text, and each run's entry when it starts and when it ends. codeexec chat's
// printer is one, for the in-process loop and for a server's stream alike.
type Listener interface {
	Content(delta string)
	CodeStarted(index int, id string, exec *llm.CodeExecution)
	CodeFinished(index int, id string, exec *llm.CodeExecution)
}

// Events makes l hear a completion's events.
func Events(l Listener) agent.Events { return listener{l: l} }

type listener struct {
	agent.NopEvents
	l Listener
}

func (l listener) Text(delta string) { l.l.Content(delta) }

func (l listener) ExecutionStarted(index int, e *agent.Execution) {
	l.l.CodeStarted(index, e.ID, startedEntry(e))
}

func (l listener) ExecutionFinished(index int, e *agent.Execution) {
	l.l.CodeFinished(index, e.ID, entry(e))
}
