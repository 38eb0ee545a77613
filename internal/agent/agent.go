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
	"strings"

	"github.com/codeexec/codeexec/internal/egress"
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

// Sandbox runs the code of one conversation; variables persist between runs.
type Sandbox interface {
	Run(ctx context.Context, code string) (*sandbox.Result, error)
	WriteFile(path string, data []byte) error
	Close()
}

// Verdict is a safety judge's decision on a piece of code.
type Verdict struct {
	Safe   bool   `json:"safe"`
	Reason string `json:"reason"`
}

// Judge decides whether code may run. An error means "do not run" (fail-closed).
type Judge interface {
	Check(ctx context.Context, code string) (Verdict, error)
}

// Events receives what happens during a completion, as it happens; the streaming
// endpoint and the chat REPL show it. Every method may be left empty.
type Events interface {
	// Content is a piece of the model's answer text.
	Content(delta string)
	// CodeStarted is called when the model asks to run code.
	CodeStarted(index int, id, code string)
	// CodeFinished is called with the outcome of that run.
	CodeFinished(index int, id string, exec *llm.CodeExecution)
}

// Agent runs completions. It is plain configuration and safe for concurrent use.
type Agent struct {
	// NewSandbox makes the sandbox of one completion; it is closed at the end.
	NewSandbox func(ctx context.Context) (Sandbox, error)
	// Judge, when set, must approve each program before it runs.
	Judge Judge
	// MaxSteps bounds the model calls of one completion.
	MaxSteps int
	// MaxToolOutput bounds what the model is shown of one execution.
	MaxToolOutput int
	// Network is what the code may reach (the policy given to Sessions); the model
	// is told of it. nil: no network.
	Network *egress.Policy
}

// ErrBadRequest marks a request the loop cannot serve as asked.
var ErrBadRequest = errors.New("agent: bad request")

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
}

// Complete answers req, running code as the model asks. The reply's message carries
// one code_execution entry per run and, if the model called client tools, those
// calls with finish_reason "tool_calls".
func (a *Agent) Complete(ctx context.Context, model Model, req *llm.ChatRequest, ev Events) (*llm.ChatResponse, error) {
	if ev == nil {
		ev = nopEvents{}
	}
	up, err := upstreamRequest(req, a.Network)
	if err != nil {
		return nil, err
	}
	c := &completion{a: a, model: model, ev: ev, stream: req.Stream}
	defer func() {
		if c.sb != nil {
			c.sb.Close()
		}
	}()
	if err := c.placeFiles(ctx, up); err != nil {
		return nil, err
	}
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
		var codeCalls, clientCalls []llm.ToolCall
		for _, tc := range msg.ToolCalls {
			if tc.Function != nil && tc.Function.Name == ToolName {
				codeCalls = append(codeCalls, tc)
			} else {
				clientCalls = append(clientCalls, tc)
			}
		}
		if len(codeCalls) == 0 {
			return c.reply(resp, msg, clientCalls), nil
		}
		up.Messages = append(up.Messages, msg)
		for _, tc := range codeCalls {
			out, err := c.execute(ctx, tc)
			if err != nil {
				return nil, err
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
		c.record(index, tc.ID, &llm.CodeExecution{Code: tc.Function.Arguments, Output: msg})
		return msg, nil
	}
	c.ev.CodeStarted(index, tc.ID, args.Code)
	if c.a.Judge != nil {
		v, err := c.a.Judge.Check(ctx, args.Code)
		if err != nil {
			v = Verdict{Safe: false, Reason: "the safety check failed (" + err.Error() + "), so the code was not run"}
		}
		if !v.Safe {
			out := "Rejected: " + v.Reason
			c.record(index, tc.ID, &llm.CodeExecution{Code: args.Code, Output: out, Status: string(sandbox.StatusRejected)})
			return "The code was NOT run: the safety policy refused it. Reason: " + v.Reason +
				"\nDo not try to get around this. Answer the user without running it (you may show the code for them to run themselves).", nil
		}
	}
	if c.sb == nil {
		sb, err := c.a.NewSandbox(ctx)
		if err != nil {
			return "", fmt.Errorf("agent: sandbox: %w", err)
		}
		c.sb = sb
	}
	res, err := c.sb.Run(ctx, args.Code)
	if err != nil {
		if errors.Is(err, sandbox.ErrSessionEnded) {
			// A limit killed the interpreter earlier: start over with a fresh one.
			c.sb.Close()
			c.sb = nil
			msg := "error: the interpreter was restarted after an earlier limit; variables from before are gone. Run the code again, redefining what it needs."
			c.record(index, tc.ID, &llm.CodeExecution{Code: args.Code, Output: msg, Status: string(sandbox.StatusKilled)})
			return msg, nil
		}
		return "", fmt.Errorf("agent: run code: %w", err)
	}
	c.record(index, tc.ID, execution(args.Code, res))
	return toolMessage(res, c.a.maxToolOutput()), nil
}

func (a *Agent) maxToolOutput() int {
	if a.MaxToolOutput > 0 {
		return a.MaxToolOutput
	}
	return 20000
}

func (c *completion) record(index int, id string, e *llm.CodeExecution) {
	c.execs = append(c.execs, llm.ToolCall{ID: id, Type: llm.ToolTypeCodeExecution, CodeExecution: e})
	c.ev.CodeFinished(index, id, e)
}

type nopEvents struct{}

func (nopEvents) Content(string)                               {}
func (nopEvents) CodeStarted(int, string, string)              {}
func (nopEvents) CodeFinished(int, string, *llm.CodeExecution) {}
