package agent

import (
	"encoding/json"
	"strings"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
)

// The types of this file are the loop's own, in no client's wire format: a face
// (openaichat for chat completions; a Responses face beside it) turns a client's
// request into a Request and a Result into its reply. Where a value has no form of
// its own, it is kept in the upstream's form, which is chat completions' (the loop
// sends it on without reading it): ToolChoice, ResponseFormat and the Extra maps.

// Request is one completion asked of the loop.
type Request struct {
	Model string
	// Input is the conversation so far, in order: messages, the model's earlier
	// calls of the client's tools and their outputs, earlier code executions.
	Input []Item
	// Tools are the client's own tools, which it runs: a call of one ends the
	// completion and is returned to it.
	Tools []Tool
	// Code is the server-side code tool; nil when the request has none: the model is
	// then not offered it, and no file is placed.
	Code *CodeTool
	// ToolChoice is "none", "auto", "required" or an object naming a tool, in the
	// upstream's form; nil: not set.
	ToolChoice        json.RawMessage
	ParallelToolCalls *bool
	// Stream makes the upstream calls stream, so that Events come as the model
	// writes; without it, each model turn's events come when the turn is complete.
	Stream          bool
	Temperature     *float64
	TopP            *float64
	MaxOutputTokens *int
	// Stop are sequences where the model stops writing.
	Stop []string
	Seed *int64
	// ResponseFormat is {"type":"text"|"json_object"|"json_schema",…} in the
	// upstream's form; nil: not set.
	ResponseFormat json.RawMessage
	// User identifies the end user to the upstream.
	User string
	// Extra holds the request's other fields, for the upstream untouched (new
	// parameters, a provider's extensions).
	Extra map[string]json.RawMessage
}

// CodeTool is the request's code tool: code run in the caller's Sandbox.
type CodeTool struct {
	// Language is what the model writes: job.LangPython (also ""), LangJavaScript or
	// LangBash. The caller's Sandbox must run the code in it.
	Language string
	// Container names the sandbox of an earlier request to go on in ("" for a new
	// one). The caller resolves it to the Sandbox it passes; the loop does not read it.
	Container string
	// Network is what the code may reach, when the request chose it within the
	// operator's allowlist; nil: the Agent's Network. The caller's Sandbox must run
	// the code with the same policy: the model and the judge are told of this one.
	Network *egress.Policy
	// Files are the names of files the caller's Sandbox has in its work dir from
	// the start (a container's file_ids), which the model is told of.
	Files []string
}

// Tool is a tool of the client's.
type Tool struct {
	// Type is "function", or another type the upstream may know, whose fields are
	// all in EntryExtra.
	Type        string
	Name        string
	Description string
	// Parameters is the JSON schema of the arguments, kept raw so that no keyword
	// is lost.
	Parameters json.RawMessage
	Strict     *bool
	// Extra holds the definition's other fields; EntryExtra those of the tool's
	// entry around it (a gateway's cache_control, …). Both go upstream as written.
	Extra      map[string]json.RawMessage
	EntryExtra map[string]json.RawMessage
}

// ToolTypeFunction is the type of a client's function tool.
const ToolTypeFunction = "function"

// Item is an element of a conversation: *Message, *ToolCall, *ToolOutput or
// *Execution.
type Item interface{ isItem() }

func (*Message) isItem()    {}
func (*ToolCall) isItem()   {}
func (*ToolOutput) isItem() {}
func (*Execution) isItem()  {}

// Message is a message of the conversation. An assistant's tool calls are the
// items that follow it.
type Message struct {
	// Role is system, developer, user or assistant (or another the upstream knows).
	Role    string
	Content Content
	// Name tells participants of the same role apart.
	Name string
	// Extra holds the message's other fields (a provider's reasoning_content, …),
	// for the upstream as written.
	Extra map[string]json.RawMessage
	// Source is where the client's request has this message ("messages[2]"), for
	// error messages; "" for messages the loop made.
	Source string
}

// Form is how a content was written: the upstream gets it back in that form, since
// some upstreams treat a string and one text part differently.
type Form uint8

const (
	// FormParts is an array of parts.
	FormParts Form = iota
	// FormText is one string: Parts is one text part, or none for "".
	FormText
	// FormNull is null: an assistant message that only calls tools.
	FormNull
	// FormAbsent is no content at all.
	FormAbsent
)

// Content is what a message, or a tool's output, holds.
type Content struct {
	Parts []Part
	Form  Form
}

// Text is a content of one string.
func Text(s string) Content {
	return Content{Form: FormText, Parts: []Part{{Type: PartText, Text: s}}}
}

// Text returns the text of the content's text parts, joined by newlines.
func (c Content) Text() string {
	var texts []string
	for _, p := range c.Parts {
		if p.Type == PartText {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// Part types the loop knows; a part of another type keeps its type's name and its
// fields in Extra, and goes upstream as written.
const (
	PartText  = "text"
	PartImage = "image"
	PartFile  = "file"
)

// Part is one part of a content.
type Part struct {
	Type string
	// Text is a text part's text.
	Text string
	// URL is an image part's image: an https: URL, or a data: URL, which the loop
	// also places in the sandbox as a file.
	URL string
	// Detail is an image part's detail ("low", "high", "auto"); "" unset.
	Detail string
	// Filename, FileData and FileID are a file part's: FileData is base64 (or a
	// data: URL), which the loop places in the sandbox; FileID names an uploaded file.
	Filename string
	FileData string
	FileID   string
	// Extra holds the part's other fields, for the upstream as written.
	Extra map[string]json.RawMessage
}

// ToolCall is a call of one of the client's tools.
type ToolCall struct {
	ID string
	// Type is "function", or another type whose fields are in Extra.
	Type string
	Name string
	// Arguments is the JSON text of the arguments.
	Arguments string
	// Extra holds the call's other fields, for the upstream as written.
	Extra map[string]json.RawMessage
}

// ToolOutput is the client's result of one of its tool calls.
type ToolOutput struct {
	CallID  string
	Content Content
	// Name is the tool's, which some upstreams want with its output.
	Name  string
	Extra map[string]json.RawMessage
}

// Execution is one run of the code tool: in a Result, one the loop made; in a
// Request, one of an earlier request, which the model is shown again.
type Execution struct {
	// ID is the model's id of the call.
	ID   string
	Code string
	// ContainerID names the sandbox the code ran in (Sandbox.ID), for the client to
	// come back to; "" when it has none.
	ContainerID string
	// Result is the outcome. Code that did not run has a Result whose Error.Name
	// says why: ErrorRejected (Status "rejected"), ErrorInvalidArguments (Code is the
	// model's arguments as written), ErrorSessionEnded. In a Request, nil for an
	// execution known only by its Output.
	Result *job.Result
	// Output is the run as a terminal shows it (stdout, stderr, the value of the
	// last expression, and the error's message when no traceback says it), or why
	// the code did not run. The loop sets it on every execution it makes.
	Output string
}

// Names of Result.Error of code that did not run.
const (
	ErrorRejected         = "Rejected"
	ErrorInvalidArguments = "InvalidArguments"
	ErrorSessionEnded     = "SessionEnded"
)

// Result is what a completion produced.
type Result struct {
	// Output holds, in order: the text the model wrote between runs (a Message), each
	// code execution, the model's final Message, and the client tool calls it made
	// (the client runs them and sends their outputs in its next request). The final
	// Message is the last Message of Output; its content is null when the model only
	// called tools.
	Output []Item
	Usage  Usage
	Finish Finish
	// Upstream describes the upstream's last reply, for a face that names it.
	Upstream UpstreamReply
}

// Usage counts the tokens of every model call of a completion.
type Usage struct {
	InputTokens  int
	OutputTokens int
	TotalTokens  int
}

// Finish is why a completion ended: one of the constants, or an upstream's own
// reason (such as content_filter) passed on.
type Finish string

const (
	// FinishStop: the model answered.
	FinishStop Finish = "stop"
	// FinishToolCalls: the model called client tools, which Output ends with.
	FinishToolCalls Finish = "tool_calls"
	// FinishLength: the model's answer reached the output token limit.
	FinishLength Finish = "length"
	// FinishStepLimit: the model used every step (Agent.MaxSteps) without answering;
	// the final Message says so.
	FinishStepLimit Finish = "step_limit"
)

// UpstreamReply is the metadata of an upstream's reply.
type UpstreamReply struct {
	ID                string
	Object            string
	Created           int64
	Model             string
	SystemFingerprint string
	// Extra holds the reply's other fields (service_tier, a provider's extensions).
	Extra map[string]json.RawMessage
}
