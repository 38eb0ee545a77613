package agent

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
)

// The upstream speaks chat completions: this file builds its requests from a
// Request, and converts between the loop's types and its wire types (llm). The
// conversions are exported for the chat-completions face, whose wire types are the
// same.

// codeToolParams is the JSON schema of the code tool's arguments.
const codeToolParams = `{"type":"object","properties":{"code":{"type":"string","description":"Python 3 source to run."}},"required":["code"]}`

// codeToolDescription is the description of the code tool's function.
const codeToolDescription = "Run Python code in a secure sandbox and return its output. Variables and files persist from one call to the next."

// systemHint tells the model what the tool can do and how results come back; the
// first %s is what it says of the network (see networkHint), the second of the
// state the sandbox starts with (see stateHint).
const systemHint = `You can run Python 3 code with the code_execution tool, in a secure sandbox %s. numpy, pandas, matplotlib, scipy, sympy and requests are installed. %s The working directory is /work, where the user's files are. Each call returns stdout, stderr and the value of the last expression (or of a variable named result); on an error you get the traceback, so fix the code and try again. matplotlib figures are captured automatically and shown to the user: do not call plt.savefig unless asked for a file. Use code for any calculation, data analysis or statistics rather than computing in your head, then answer with the actual numbers.`

// codeLanguage is what the model is told of the code tool in a language other than
// Python: the code parameter, the function's description and the system hint (the
// same two %s as systemHint's).
type codeLanguage struct{ params, description, hint string }

var codeLanguages = map[string]codeLanguage{
	job.LangJavaScript: {
		params:      `{"type":"object","properties":{"code":{"type":"string","description":"JavaScript (Node.js 20) source to run as a script; top-level await works."}},"required":["code"]}`,
		description: "Run JavaScript in Node.js in a secure sandbox and return its output. Variables, functions and files persist from one call to the next.",
		hint:        `You can run JavaScript with the code_execution tool, in Node.js 20 in a secure sandbox %s. Node's built-in modules (fs, path, crypto, child_process, ...) are there, but no npm packages. %s The working directory is /work, where the user's files are. Each call returns stdout, stderr and the value of the last expression; top-level await works; on an error you get the stack, so fix the code and try again. Use code for any calculation or data processing rather than computing in your head, then answer with the actual numbers.`,
	},
	job.LangBash: {
		params:      `{"type":"object","properties":{"code":{"type":"string","description":"A bash script to run."}},"required":["code"]}`,
		description: "Run a bash script in a secure sandbox and return its stdout, stderr and exit status. The working directory, exported variables and files persist from one call to the next.",
		hint:        `You can run bash scripts with the code_execution tool, in a secure Debian sandbox %s. coreutils, python3 (with numpy, pandas, scipy, sympy and matplotlib) and node are installed. %s The working directory is /work, where the user's files are. Each call returns stdout, stderr and the exit status; on a failure, read stderr, fix the script and try again. Use commands for any calculation or data processing rather than computing in your head, then answer with the actual results.`,
	},
}

// networkHint describes the sandbox's network to the model: none, or HTTP(S) to the
// hosts of the egress allowlist.
func networkHint(p *egress.Policy) string {
	if p == nil || len(p.Allow) == 0 {
		return "with no network access"
	}
	return "whose only network access is HTTP(S) (e.g. with requests) to these hosts, through a proxy that refuses all others: " + strings.Join(p.Allow, ", ")
}

// stateHint tells the model the truth about the sandbox's state: either it goes on
// from earlier requests of the conversation (the client named its container), or it
// is new, and code shown in the history ran in a sandbox that is gone.
func stateHint(resumed bool) string {
	if resumed {
		return "Variables and files persist between calls: what code earlier in this conversation defined is still there."
	}
	return "The sandbox is new in this request: anything code in earlier messages defined is gone, so define again what you need. Variables and files persist between calls from here on."
}

// upstreamRequest is what the upstream model is asked for req, but for the
// messages (see upstreamMessages): its fields, the client's tools and, with the
// code tool, its function.
func upstreamRequest(req *Request) (*llm.ChatRequest, error) {
	// Extra first, so that the fields the loop sets win; a key that is a field of
	// the upstream's request (n, max_completion_tokens, …) lands in that field.
	up := &llm.ChatRequest{}
	if len(req.Extra) > 0 {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		err := enc.Encode(req.Extra)
		if err == nil {
			err = json.Unmarshal(buf.Bytes(), up)
		}
		if err != nil {
			return nil, badRequest("invalid_request", "the request's other fields: %v", err)
		}
	}
	up.Model, up.User = req.Model, cmp.Or(req.User, up.User)
	setRaw(&up.ToolChoice, req.ToolChoice)
	setRaw(&up.ResponseFormat, req.ResponseFormat)
	setPtr(&up.ParallelToolCalls, req.ParallelToolCalls)
	setPtr(&up.Temperature, req.Temperature)
	setPtr(&up.TopP, req.TopP)
	setPtr(&up.MaxTokens, req.MaxOutputTokens)
	setPtr(&up.Seed, req.Seed)
	if req.Stop != nil {
		up.Stop, _ = json.Marshal(req.Stop) // a []string always marshals
	}
	up.Tools = nil
	for _, t := range req.Tools {
		up.Tools = append(up.Tools, llmTool(t))
	}
	if req.Code != nil {
		description, params := codeToolDescription, codeToolParams
		if l, ok := codeLanguages[req.Code.Language]; ok {
			description, params = l.description, l.params
		}
		up.Tools = append(up.Tools, llm.Tool{Type: llm.ToolTypeFunction, Function: &llm.FunctionDef{
			Name:        ToolName,
			Description: description,
			Parameters:  json.RawMessage(params),
		}})
	}
	return up, nil
}

// codeHint is the system message that tells the model of the code tool: the
// language, what network the code has, whether earlier state is there and which
// files it was given.
func codeHint(language string, network *egress.Policy, resumed bool, files []string) string {
	hint := systemHint
	if l, ok := codeLanguages[language]; ok {
		hint = l.hint
	}
	hint = fmt.Sprintf(hint, networkHint(network), stateHint(resumed))
	if len(files) > 0 {
		hint += " These files are in /work: " + strings.Join(files, ", ") + "."
	}
	return hint
}

func setRaw(dst *json.RawMessage, v json.RawMessage) {
	if v != nil {
		*dst = v
	}
}

func setPtr[T any](dst **T, v *T) {
	if v != nil {
		*dst = v
	}
}

// upstreamMessages is the conversation as chat messages: the hint (unless "") as a
// system message after the leading system and developer messages; each assistant
// message with the calls and executions that follow it as its tool calls, and the
// executions' results right after it.
func upstreamMessages(items []Item, hint string) []llm.Message {
	msgs := []llm.Message{}
	hinted := hint == ""
	var turn *llm.Message     // the assistant message collecting tool calls
	var results []llm.Message // the tool messages of turn's executions
	flush := func() {
		if turn != nil {
			msgs = append(msgs, *turn)
			msgs = append(msgs, results...)
		}
		turn, results = nil, nil
	}
	assistant := func() *llm.Message {
		if turn == nil {
			turn = &llm.Message{Role: "assistant", Content: llm.NullContent()}
		}
		return turn
	}
	for _, it := range items {
		if m, ok := it.(*Message); !hinted && (!ok || m.Role != "system" && m.Role != "developer") {
			flush()
			msgs = append(msgs, llm.Message{Role: "system", Content: llm.TextContent(hint)})
			hinted = true
		}
		switch it := it.(type) {
		case *Message:
			flush()
			m := llm.Message{Role: it.Role, Content: LLMContent(it.Content), Name: it.Name, Extra: it.Extra}
			if it.Role == "assistant" {
				turn = &m
			} else {
				msgs = append(msgs, m)
			}
		case *ToolCall:
			t := assistant()
			t.ToolCalls = append(t.ToolCalls, LLMToolCall(it))
		case *Execution:
			t := assistant()
			args, _ := json.Marshal(map[string]string{"code": it.Code}) // a map of strings always marshals
			t.ToolCalls = append(t.ToolCalls, llm.ToolCall{ID: it.ID, Type: llm.ToolTypeFunction, Function: &llm.FunctionCall{Name: ToolName, Arguments: string(args)}})
			results = append(results, llm.Message{Role: "tool", ToolCallID: it.ID, Content: llm.TextContent(historyResult(it))})
		case *ToolOutput:
			flush()
			msgs = append(msgs, llm.Message{Role: "tool", ToolCallID: it.CallID, Content: LLMContent(it.Content), Name: it.Name, Extra: it.Extra})
		}
	}
	flush()
	if !hinted {
		msgs = append(msgs, llm.Message{Role: "system", Content: llm.TextContent(hint)})
	}
	return msgs
}

// checkTools refuses a client function that would stand in for the code tool.
func checkTools(req *Request) error {
	if req.Code == nil {
		return nil
	}
	for _, t := range req.Tools {
		if t.Name == ToolName {
			return badRequest("invalid_tools", "a client function may not be named %q: codeexec runs that tool", ToolName)
		}
	}
	return nil
}

// historyResult is what the model was told of a run of an earlier request: rebuilt
// from its Result, or its Output alone for an execution that has only that.
func historyResult(e *Execution) string {
	res := e.Result
	switch {
	case res == nil:
		return e.Output
	case res.Status == job.StatusRejected && res.Error != nil:
		return rejectedMessage(res.Error.Message)
	case res.Error != nil && (res.Error.Name == ErrorInvalidArguments || res.Error.Name == ErrorSessionEnded):
		return res.Error.Message
	}
	return toolMessage(res, defaultMaxToolOutput)
}

// llmTool is a client tool in the upstream's form.
func llmTool(t Tool) llm.Tool {
	out := llm.Tool{Type: t.Type, Extra: t.EntryExtra}
	if t.Type == ToolTypeFunction || t.Name != "" || t.Description != "" || t.Parameters != nil || t.Strict != nil || t.Extra != nil {
		out.Function = &llm.FunctionDef{Name: t.Name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict, Extra: t.Extra}
	}
	return out
}

// LLMToolCall is a tool call in the chat completions form.
func LLMToolCall(c *ToolCall) llm.ToolCall {
	tc := llm.ToolCall{ID: c.ID, Type: c.Type, Extra: c.Extra}
	if c.Type == ToolTypeFunction || c.Type == "" || c.Name != "" || c.Arguments != "" {
		tc.Function = &llm.FunctionCall{Name: c.Name, Arguments: c.Arguments}
	}
	return tc
}

// ToolCallFromLLM is a chat completions tool call (not a code_execution entry) as
// a ToolCall.
func ToolCallFromLLM(tc llm.ToolCall) *ToolCall {
	c := &ToolCall{ID: tc.ID, Type: tc.Type, Extra: tc.Extra}
	if tc.Function != nil {
		c.Name, c.Arguments = tc.Function.Name, tc.Function.Arguments
	}
	return c
}

// LLMContent is c in the chat completions form.
func LLMContent(c Content) llm.Content {
	switch c.Form {
	case FormText:
		return llm.TextContent(c.Text())
	case FormNull:
		return llm.NullContent()
	case FormAbsent:
		return llm.Content{}
	}
	parts := make([]llm.ContentPart, len(c.Parts))
	for i, p := range c.Parts {
		parts[i] = llmPart(p)
	}
	return llm.PartsContent(parts...)
}

// ContentFromLLM is a chat completions content as a Content.
func ContentFromLLM(c llm.Content) Content {
	switch {
	case c.IsZero():
		return Content{Form: FormAbsent}
	case c.IsNull():
		return Content{Form: FormNull}
	case c.IsString():
		return Text(c.Text())
	}
	parts := make([]Part, len(c.Parts()))
	for i, p := range c.Parts() {
		parts[i] = partFromLLM(p)
	}
	return Content{Form: FormParts, Parts: parts}
}

// partTypes maps the loop's part types to chat completions'.
var partTypes = map[string]string{PartText: llm.PartText, PartImage: llm.PartImageURL, PartFile: llm.PartFile}

func llmPart(p Part) llm.ContentPart {
	out := llm.ContentPart{Type: p.Type, Text: p.Text, Extra: p.Extra}
	if t, ok := partTypes[p.Type]; ok {
		out.Type = t
	}
	if p.Type == PartImage || p.URL != "" || p.Detail != "" {
		out.ImageURL = &llm.ImageURL{URL: p.URL, Detail: p.Detail}
	}
	if p.Type == PartFile || p.Filename != "" || p.FileData != "" || p.FileID != "" {
		out.File = &llm.File{Filename: p.Filename, FileData: p.FileData, FileID: p.FileID}
	}
	return out
}

func partFromLLM(p llm.ContentPart) Part {
	out := Part{Type: p.Type, Text: p.Text, Extra: p.Extra}
	for ours, theirs := range partTypes {
		if p.Type == theirs {
			out.Type = ours
		}
	}
	if p.ImageURL != nil {
		out.URL, out.Detail = p.ImageURL.URL, p.ImageURL.Detail
	}
	if p.File != nil {
		out.Filename, out.FileData, out.FileID = p.File.Filename, p.File.FileData, p.File.FileID
	}
	return out
}

// messageFromLLM is an upstream's message as a Message, without its tool calls.
func messageFromLLM(m llm.Message) *Message {
	role := m.Role
	if role == "" {
		role = "assistant"
	}
	return &Message{Role: role, Content: ContentFromLLM(m.Content), Name: m.Name, Extra: m.Extra}
}

// clientToolNames are the names of the functions the client declared.
func clientToolNames(req *Request) map[string]bool {
	names := map[string]bool{}
	for _, t := range req.Tools {
		if t.Name != "" {
			names[t.Name] = true
		}
	}
	return names
}

// unknownTool is what the model is told of a call to a tool that does not exist:
// forwarding it would hand the client a call it cannot answer.
func unknownTool(name string, declared map[string]bool, code bool) string {
	names := slices.Sorted(maps.Keys(declared))
	if code {
		names = append([]string{ToolName}, names...)
	}
	return fmt.Sprintf("error: there is no tool named %q; the tools you can call are: %s.", name, strings.Join(names, ", "))
}
