// Package agent runs the code-execution tool loop: the upstream model writes Python,
// the sandbox runs it, the output (or the error) goes back to the model, until it
// answers or calls one of the client's own tools. It takes a Request and returns a
// Result in no client's wire format; the faces (openaichat) translate.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/safety"
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

// Judge decides whether code may run. An error means "do not run" (fail-closed).
type Judge interface {
	// Check judges code that may reach what network allows (nil: no network): a
	// program that uses that access is not unsafe for it.
	Check(ctx context.Context, code string, network *egress.Policy) (safety.Verdict, error)
}

// Agent runs completions. It is plain configuration and safe for concurrent use.
type Agent struct {
	// Judge, when set, must approve each program before it runs.
	Judge Judge
	// MaxSteps bounds the model calls of one completion.
	MaxSteps int
	// MaxToolOutput bounds what the model is shown of one execution.
	MaxToolOutput int
	// Network is what the code may reach (the policy the Sandbox runs with) unless a
	// request's code tool says otherwise; the model and the judge are told of it.
	// nil: no network.
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

// completion is the state of one Complete call.
type completion struct {
	a        *Agent
	model    Model
	ev       Events
	sb       Sandbox
	code     bool // the request has the code tool
	network  *egress.Policy
	declared map[string]bool // the client's function names
	stream   bool
	usage    Usage
	output   []Item // Result.Output so far
	execs    int    // executions in output
	// state is whether the model believes the interpreter holds what earlier code
	// defined: false once it was told that a limit stopped the interpreter.
	state bool
}

// Complete answers req, running code in sb as the model asks; sb may be nil for a
// request without the code tool. A call to a tool the client did not declare is
// answered to the model as an error and the loop goes on: the client never sees
// it. ev (nil: none) hears of each step as it happens.
func (a *Agent) Complete(ctx context.Context, model Model, req *Request, sb Sandbox, ev Events) (*Result, error) {
	if ev == nil {
		ev = NopEvents{}
	}
	if err := checkTools(req); err != nil {
		return nil, err
	}
	c := &completion{a: a, model: model, ev: ev, sb: sb, code: req.Code != nil, network: a.Network,
		declared: clientToolNames(req), stream: req.Stream}
	up, err := upstreamRequest(req)
	if err != nil {
		return nil, err
	}
	input, hint := req.Input, ""
	if c.code {
		if sb == nil {
			return nil, errors.New("agent: a request with the code tool needs a sandbox")
		}
		if req.Code.Network != nil {
			c.network = req.Code.Network
		}
		c.state = sb.Started()
		if input, err = placeFiles(sb, req.Input, c.state); err != nil {
			return nil, err
		}
		hint = codeHint(req.Code.Language, c.network, c.state, req.Code.Files)
	}
	up.Messages = upstreamMessages(input, hint)
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
		msg := resp.Choices[0].Message
		var clientCalls []llm.ToolCall
		ours := 0 // code calls and calls of undeclared tools, answered here
		for _, tc := range msg.ToolCalls {
			if tc.Function != nil && (c.isCode(tc.Function.Name) || !c.declared[tc.Function.Name]) {
				ours++
			} else {
				clientCalls = append(clientCalls, tc)
			}
		}
		final := ours == 0 || len(clientCalls) > 0
		if final || msg.Text() != "" {
			c.output = append(c.output, messageFromLLM(msg))
		}
		if ours == 0 {
			return c.result(resp, clientCalls), nil
		}
		up.Messages = append(up.Messages, msg)
		for _, tc := range msg.ToolCalls {
			var out string
			switch {
			case tc.Function == nil:
				continue
			case c.isCode(tc.Function.Name):
				if out, err = c.execute(ctx, tc); err != nil {
					return nil, err
				}
			case !c.declared[tc.Function.Name]:
				out = unknownTool(tc.Function.Name, c.declared, c.code)
			default:
				continue
			}
			up.Messages = append(up.Messages, llm.Message{Role: "tool", ToolCallID: tc.ID, Content: llm.TextContent(out)})
		}
		if final {
			// The client's tools run on the client: hand the turn back; its next request
			// carries their results and the code runs above as history.
			return c.result(resp, clientCalls), nil
		}
	}
	stop := fmt.Sprintf("Stopped: the model used all %d steps without giving a final answer.", maxSteps)
	c.ev.Text(stop)
	c.output = append(c.output, &Message{Role: "assistant", Content: Text(stop)})
	res := c.result(last, nil)
	res.Finish = FinishStepLimit
	return res, nil
}

func (c *completion) isCode(name string) bool { return c.code && name == ToolName }

// result is the completion's Result, ending with the client's calls; resp is the
// upstream's last reply.
func (c *completion) result(resp *llm.ChatResponse, clientCalls []llm.ToolCall) *Result {
	for _, tc := range clientCalls {
		c.output = append(c.output, ToolCallFromLLM(tc))
	}
	finish := FinishStop
	if len(clientCalls) > 0 {
		finish = FinishToolCalls
	} else if r := resp.Choices[0].FinishReason; r != "" && r != string(FinishToolCalls) {
		finish = Finish(r)
	}
	return &Result{Output: c.output, Usage: c.usage, Finish: finish, Upstream: UpstreamReply{
		ID: resp.ID, Object: resp.Object, Created: resp.Created, Model: resp.Model,
		SystemFingerprint: resp.SystemFingerprint, Extra: resp.Extra,
	}}
}

// call makes one upstream call, streaming when the request streams so that text
// and calls reach ev as the model writes; its reply has at least one choice.
func (c *completion) call(ctx context.Context, req *llm.ChatRequest) (*llm.ChatResponse, error) {
	w := &callWatch{c: c, nextExec: c.execs, calls: map[int]*watchedCall{}}
	if !c.stream {
		resp, err := c.model.Chat(ctx, req)
		if err != nil {
			return nil, err
		}
		if resp.Usage != nil {
			c.addUsage(*resp.Usage)
		}
		if len(resp.Choices) == 0 {
			return nil, fmt.Errorf("agent: upstream reply has no choices")
		}
		msg := resp.Choices[0].Message
		if t := msg.Text(); t != "" {
			c.ev.Text(t)
		}
		for i, tc := range msg.ToolCalls {
			tc.Index = &i
			w.add(tc)
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
			c.addUsage(*chunk.Usage)
		}
		acc.Add(chunk)
		for _, ch := range chunk.Choices {
			if ch.Index != 0 {
				continue
			}
			if t := ch.Delta.Text(); t != "" {
				c.ev.Text(t)
			}
			for _, f := range ch.Delta.ToolCalls {
				w.add(f)
			}
		}
	}
	resp := acc.Response()
	if len(resp.Choices) == 0 {
		return nil, fmt.Errorf("agent: upstream reply has no choices")
	}
	return resp, nil
}

func (c *completion) addUsage(u llm.Usage) {
	c.usage.InputTokens += u.PromptTokens
	c.usage.OutputTokens += u.CompletionTokens
	c.usage.TotalTokens += u.TotalTokens
}

// execute runs one code call (after the judge, if any) and returns what the model
// is told.
func (c *completion) execute(ctx context.Context, tc llm.ToolCall) (string, error) {
	index := c.execs
	var args struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil || strings.TrimSpace(args.Code) == "" {
		// The model's mistake: tell it, so it can call again properly.
		msg := `error: the arguments must be JSON like {"code": "print(1)"}`
		if err != nil {
			msg += fmt.Sprintf(" (%v)", err)
		}
		c.record(index, notRun(tc.ID, tc.Function.Arguments, "", job.StatusError, ErrorInvalidArguments, msg))
		return msg, nil
	}
	restarted := c.state && !c.sb.Started()
	if err := c.sb.Start(ctx); err != nil {
		return "", fmt.Errorf("agent: start the sandbox: %w", err)
	}
	container := c.sb.ID()
	c.ev.ExecutionStarted(index, &Execution{ID: tc.ID, Code: args.Code, ContainerID: container})
	if c.a.Judge != nil {
		v, err := c.a.Judge.Check(ctx, args.Code, c.network)
		if err != nil {
			v = safety.Verdict{Safe: false, Reason: "the safety check failed (" + err.Error() + "), so the code was not run"}
		}
		if !v.Safe {
			c.record(index, notRun(tc.ID, args.Code, container, job.StatusRejected, ErrorRejected, v.Reason))
			return rejectedMessage(v.Reason), nil
		}
	}
	res, err := c.sb.Run(ctx, args.Code)
	if errors.Is(err, sandbox.ErrSessionEnded) {
		// The interpreter stopped between Start and Run: the next call starts another.
		c.state = false
		msg := "error: the interpreter had stopped, so the code did not run, and variables from before are gone. Run the code again, defining what it needs."
		c.record(index, notRun(tc.ID, args.Code, container, job.StatusKilled, ErrorSessionEnded, msg))
		return msg, nil
	}
	if err != nil {
		return "", fmt.Errorf("agent: run code: %w", err)
	}
	c.record(index, ran(tc.ID, args.Code, container, res))
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

func (c *completion) record(index int, e *Execution) {
	c.output = append(c.output, e)
	c.execs++
	c.ev.ExecutionFinished(index, e)
}

// callWatch turns the tool call fragments of one model turn, as they come, into
// code and tool call deltas. A call is known by its index in the turn, as
// llm.Accumulator merges fragments; it is numbered among the completion's
// executions or client calls when its name comes, in the order the calls start,
// which is the order they run and are returned in (upstreams write a turn's calls
// one after the other).
type callWatch struct {
	c          *completion
	nextExec   int
	nextClient int
	calls      map[int]*watchedCall
}

type watchedCall struct {
	id, name string
	args     strings.Builder // what came before the name
	kind     callKind
	index    int
	code     codeScanner
}

type callKind uint8

const (
	callUnnamed callKind = iota // no name yet
	callCode
	callClient
	callOther // an undeclared tool, answered here: no events
)

// add reads one fragment of a call.
func (w *callWatch) add(f llm.ToolCall) {
	i := len(w.calls) // a fragment without an index starts a new call
	if f.Index != nil {
		i = *f.Index
	}
	call := w.calls[i]
	if call == nil {
		call = &watchedCall{}
		w.calls[i] = call
	}
	if call.id == "" {
		call.id = f.ID
	}
	if f.Function == nil {
		return
	}
	args := f.Function.Arguments
	if call.kind == callUnnamed {
		call.name = f.Function.Name // the first fragment with a name has it whole
		if call.name == "" {
			call.args.WriteString(args)
			return
		}
		switch {
		case w.c.isCode(call.name):
			call.kind, call.index = callCode, w.nextExec
			w.nextExec++
		case w.c.declared[call.name]:
			call.kind, call.index = callClient, w.nextClient
			w.nextClient++
			w.c.ev.ToolCallDelta(call.index, call.id, call.name, "")
		default:
			call.kind = callOther
		}
		args = call.args.String() + args
		call.args.Reset()
	}
	switch call.kind {
	case callCode:
		if d := call.code.feed(args); d != "" {
			w.c.ev.CodeDelta(call.index, call.id, d)
		}
	case callClient:
		if args != "" {
			w.c.ev.ToolCallDelta(call.index, call.id, call.name, args)
		}
	}
}
