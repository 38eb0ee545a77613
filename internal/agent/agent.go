// Package agent runs the code-execution tool loop: the upstream model writes Python,
// the sandbox runs it, the output (or the error) goes back to the model, until it
// answers or calls one of the client's own tools.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// ToolName is the function the upstream model sees for code execution.
const ToolName = "code_execution"

// Model is the upstream the loop talks to; *llm.Client is one.
type Model interface {
	Chat(ctx context.Context, req *llm.ChatRequest) (*llm.ChatResponse, error)
	ChatStream(ctx context.Context, req *llm.ChatRequest) (ChunkStream, error)
}

// Upstream adapts an upstream client to Model.
func Upstream(c *llm.Client) Model { return upstream{c} }

type upstream struct{ c *llm.Client }

func (u upstream) Chat(ctx context.Context, req *llm.ChatRequest) (*llm.ChatResponse, error) {
	return u.c.Chat(ctx, req)
}

func (u upstream) ChatStream(ctx context.Context, req *llm.ChatRequest) (ChunkStream, error) {
	return u.c.ChatStream(ctx, req)
}

// ChunkStream is a streamed reply; *llm.Stream is one.
type ChunkStream interface {
	Next() (*llm.ChatChunk, error)
	Close() error
}

// Sandbox is where a completion's code runs: an interpreter whose variables and
// files persist from one run to the next. The caller of Complete owns it: it makes
// it, may lend it to several completions of one conversation, and ends it; Complete
// never does.
type Sandbox interface {
	// Start starts an interpreter unless one is running: at first use, or after a
	// limit stopped the last one, whose variables and files are then gone.
	Start(ctx context.Context) error
	// Started reports whether an interpreter is running, holding what the code run
	// in it so far defined.
	Started() bool
	// ID names the sandbox for the client to come back to (a session id), also
	// after its interpreter ended; "" when it has no such name or never started.
	ID() string
	// Run runs code, starting an interpreter if none is running. A program that
	// ends the interpreter (a limit) returns its Result; Started is false after it.
	Run(ctx context.Context, code string) (*job.Result, error)
	// WriteFile puts a file in the work dir, starting an interpreter if none is
	// running.
	WriteFile(path string, data []byte) error
}

// Verdict is a safety judge's decision on a piece of code.
type Verdict struct {
	Safe   bool   `json:"safe"`
	Reason string `json:"reason"`
}

// Judge decides whether code may run. An error means "do not run" (fail-closed).
type Judge interface {
	// Check judges code that may reach what network allows (nil: no network): a
	// program that uses that access is not unsafe for it.
	Check(ctx context.Context, code string, network *egress.Policy) (Verdict, error)
}

// Events receives what happens during a completion, as it happens; the streaming
// endpoint and the chat REPL show it. Every method may be left empty.
type Events interface {
	// Content is a piece of the model's answer text.
	Content(delta string)
	// CodeStarted is called when the model's code is about to run (before the
	// judge, if any): exec has its code, status "running" and container.
	CodeStarted(index int, id string, exec *llm.CodeExecution)
	// CodeFinished is called with the outcome of that run.
	CodeFinished(index int, id string, exec *llm.CodeExecution)
}

// Agent runs completions. It is plain configuration and safe for concurrent use.
type Agent struct {
	// Judge, when set, must approve each program before it runs.
	Judge Judge
	// MaxSteps bounds the model calls of one completion.
	MaxSteps int
	// MaxToolOutput bounds what the model is shown of one execution.
	MaxToolOutput int
	// Network is what the code may reach (the policy the Sandbox runs with); the
	// model and the judge are told of it. nil: no network.
	Network *egress.Policy
}

// ErrBadRequest marks a request the loop cannot serve as asked; every such error is
// a *RequestError.
var ErrBadRequest = errors.New("agent: bad request")

// RequestError is a client's mistake: a stable code and a message saying what to fix.
type RequestError struct {
	Code    string
	Message string
}

func (e *RequestError) Error() string { return e.Message }

// Is makes errors.Is(err, ErrBadRequest) true.
func (e *RequestError) Is(target error) bool { return target == ErrBadRequest }

func badRequest(code, format string, args ...any) error {
	return &RequestError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// HasCodeTool reports whether req asks for server-side code execution.
func HasCodeTool(req *llm.ChatRequest) bool {
	for _, t := range req.Tools {
		if isCodeTool(t) {
			return true
		}
	}
	return false
}

// isCodeTool accepts codeexec's name and OpenAI's.
func isCodeTool(t llm.Tool) bool {
	return t.Type == llm.ToolTypeCodeExecution || t.Type == "code_interpreter"
}

// completion is the state of one Complete call.
type completion struct {
	a      *Agent
	model  Model
	ev     Events
	sb     Sandbox
	usage  llm.Usage
	execs  []llm.ToolCall // code_execution entries for the reply
	stream bool
	// state is whether the model believes the interpreter holds what earlier code
	// defined: false once it was told that a limit stopped the interpreter.
	state bool
}

// Complete answers req, running code in sb as the model asks. The reply's message
// carries one code_execution entry per run and, if the model called client tools,
// those calls with finish_reason "tool_calls". A call to a tool the client did not
// declare is answered to the model as an error and the loop goes on: the client
// never sees it.
func (a *Agent) Complete(ctx context.Context, model Model, req *llm.ChatRequest, sb Sandbox, ev Events) (*llm.ChatResponse, error) {
	if ev == nil {
		ev = nopEvents{}
	}
	if err := checkTools(req); err != nil {
		return nil, err
	}
	resumed := sb.Started()
	c := &completion{a: a, model: model, ev: ev, sb: sb, stream: req.Stream, state: resumed}
	in := req.Clone()
	in.Messages = slices.Clone(req.Messages)
	if err := c.placeFiles(ctx, in, resumed); err != nil {
		return nil, err
	}
	up, err := upstreamRequest(in, a.Network, resumed)
	if err != nil {
		return nil, err
	}
	declared := clientTools(req)
	maxSteps := a.MaxSteps
	if maxSteps <= 0 {
		maxSteps = 10
	}
	var last *llm.ChatResponse
	for step := 0; step < maxSteps; step++ {
		resp, err := c.call(ctx, up)
		if err != nil {
			return nil, err
		}
		last = resp
		if len(resp.Choices) == 0 {
			return nil, fmt.Errorf("agent: upstream reply has no choices")
		}
		msg := resp.Choices[0].Message
		var clientCalls []llm.ToolCall
		ours := 0 // code calls and calls of undeclared tools, answered here
		for _, tc := range msg.ToolCalls {
			if tc.Function != nil && (tc.Function.Name == ToolName || !declared[tc.Function.Name]) {
				ours++
			} else {
				clientCalls = append(clientCalls, tc)
			}
		}
		if ours == 0 {
			return c.reply(resp, msg, clientCalls), nil
		}
		up.Messages = append(up.Messages, msg)
		for _, tc := range msg.ToolCalls {
			var out string
			switch {
			case tc.Function == nil:
				continue
			case tc.Function.Name == ToolName:
				if out, err = c.execute(ctx, tc); err != nil {
					return nil, err
				}
			case !declared[tc.Function.Name]:
				out = unknownTool(tc.Function.Name, declared)
			default:
				continue
			}
			up.Messages = append(up.Messages, llm.Message{Role: "tool", ToolCallID: tc.ID, Content: llm.TextContent(out)})
		}
		if len(clientCalls) > 0 {
			// The client's tools run on the client: hand the turn back; its next request
			// carries their results and the code runs above as history.
			return c.reply(resp, msg, clientCalls), nil
		}
	}
	stop := fmt.Sprintf("Stopped: the model used all %d steps without giving a final answer.", maxSteps)
	c.ev.Content(stop)
	msg := llm.Message{Role: "assistant", Content: llm.TextContent(stop)}
	resp := c.reply(last, msg, nil)
	resp.Choices[0].FinishReason = "length"
	return resp, nil
}

// clientTools are the names of the function tools the client declared.
func clientTools(req *llm.ChatRequest) map[string]bool {
	names := map[string]bool{}
	for _, t := range req.Tools {
		if t.Function != nil && !isCodeTool(t) {
			names[t.Function.Name] = true
		}
	}
	return names
}

// unknownTool is what the model is told of a call to a tool that does not exist:
// forwarding it would hand the client a call it cannot answer.
func unknownTool(name string, declared map[string]bool) string {
	names := []string{ToolName}
	for n := range declared {
		names = append(names, n)
	}
	slices.Sort(names[1:])
	return fmt.Sprintf("error: there is no tool named %q; the tools you can call are: %s.", name, strings.Join(names, ", "))
}

// reply builds the client's reply from the model's last message.
func (c *completion) reply(resp *llm.ChatResponse, msg llm.Message, clientCalls []llm.ToolCall) *llm.ChatResponse {
	out := *resp
	msg.ToolCalls = append(append([]llm.ToolCall{}, c.execs...), clientCalls...)
	if msg.Role == "" {
		msg.Role = "assistant"
	}
	finish := "stop"
	if len(clientCalls) > 0 {
		finish = "tool_calls"
	} else if len(resp.Choices) > 0 && resp.Choices[0].FinishReason != "" && resp.Choices[0].FinishReason != "tool_calls" {
		finish = resp.Choices[0].FinishReason
	}
	usage := c.usage
	out.Usage = &usage
	out.Choices = []llm.Choice{{Index: 0, Message: msg, FinishReason: finish}}
	return &out
}

// call makes one upstream call, streaming when the client streams so that text
// reaches it as the model writes.
func (c *completion) call(ctx context.Context, req *llm.ChatRequest) (*llm.ChatResponse, error) {
	if !c.stream {
		resp, err := c.model.Chat(ctx, req)
		if err != nil {
			return nil, err
		}
		if resp.Usage != nil {
			c.usage.Add(*resp.Usage)
		}
		if len(resp.Choices) > 0 {
			if t := resp.Choices[0].Message.Text(); t != "" {
				c.ev.Content(t)
			}
		}
		return resp, nil
	}
	r := req.Clone()
	r.Stream = true
	r.StreamOptions = &llm.StreamOptions{IncludeUsage: true}
	s, err := c.model.ChatStream(ctx, r)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var acc llm.Accumulator
	for {
		chunk, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if chunk.Usage != nil {
			c.usage.Add(*chunk.Usage)
		}
		acc.Add(chunk)
		for _, ch := range chunk.Choices {
			if t := ch.Delta.Text(); ch.Index == 0 && t != "" {
				c.ev.Content(t)
			}
		}
	}
	return acc.Response(), nil
}

// execute runs one code call (after the judge, if any) and returns what the model
// is told.
func (c *completion) execute(ctx context.Context, tc llm.ToolCall) (string, error) {
	index := len(c.execs)
	var args struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil || strings.TrimSpace(args.Code) == "" {
		// The model's mistake: tell it, so it can call again properly.
		msg := `error: the arguments must be JSON like {"code": "print(1)"}`
		if err != nil {
			msg += fmt.Sprintf(" (%v)", err)
		}
		c.record(index, tc.ID, notRun(tc.Function.Arguments, job.StatusError, "InvalidArguments", msg))
		return msg, nil
	}
	restarted := c.state && !c.sb.Started()
	if err := c.sb.Start(ctx); err != nil {
		return "", fmt.Errorf("agent: start the sandbox: %w", err)
	}
	container := c.sb.ID()
	c.ev.CodeStarted(index, tc.ID, &llm.CodeExecution{Code: args.Code, Status: llm.StatusRunning, ContainerID: container})
	if c.a.Judge != nil {
		v, err := c.a.Judge.Check(ctx, args.Code, c.a.Network)
		if err != nil {
			v = Verdict{Safe: false, Reason: "the safety check failed (" + err.Error() + "), so the code was not run"}
		}
		if !v.Safe {
			e := notRun(args.Code, job.StatusRejected, "Rejected", v.Reason)
			e.ContainerID = container
			c.record(index, tc.ID, e)
			return rejectedMessage(v.Reason), nil
		}
	}
	res, err := c.sb.Run(ctx, args.Code)
	if errors.Is(err, sandbox.ErrSessionEnded) {
		// The interpreter stopped between Start and Run: the next call starts another.
		c.state = false
		msg := "error: the interpreter had stopped, so the code did not run, and variables from before are gone. Run the code again, defining what it needs."
		e := notRun(args.Code, job.StatusKilled, "SessionEnded", msg)
		e.ContainerID = container
		c.record(index, tc.ID, e)
		return msg, nil
	}
	if err != nil {
		return "", fmt.Errorf("agent: run code: %w", err)
	}
	e := execution(args.Code, res)
	e.ContainerID = container
	c.record(index, tc.ID, e)
	out := toolMessage(res, c.a.maxToolOutput())
	if restarted {
		out = "note: the interpreter had ended since the last call, so this ran in a fresh one: variables and files defined before are gone.\n" + out
	}
	c.state = c.sb.Started()
	if !c.state {
		out += "The interpreter ended with this run (a limit stopped it, or the code exited): variables and files defined so far are gone, and the next call starts a fresh one.\n"
	}
	return out, nil
}

func (a *Agent) maxToolOutput() int {
	if a.MaxToolOutput > 0 {
		return a.MaxToolOutput
	}
	return defaultMaxToolOutput
}

func (c *completion) record(index int, id string, e *llm.CodeExecution) {
	c.execs = append(c.execs, llm.ToolCall{ID: id, Type: llm.ToolTypeCodeExecution, CodeExecution: e})
	c.ev.CodeFinished(index, id, e)
}

type nopEvents struct{}

func (nopEvents) Content(string)                               {}
func (nopEvents) CodeStarted(int, string, *llm.CodeExecution)  {}
func (nopEvents) CodeFinished(int, string, *llm.CodeExecution) {}
