package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// codeToolParams is the JSON schema of the code tool's arguments.
const codeToolParams = `{"type":"object","properties":{"code":{"type":"string","description":"Python 3 source to run. State persists between calls in this conversation."}},"required":["code"]}`

// systemHint tells the model what the tool can do and how results come back; %s is
// what it says of the network (see networkHint).
const systemHint = `You can run Python 3.11 code with the code_execution tool, in a secure sandbox %s. numpy, pandas, matplotlib, scipy, sympy and requests are installed. Variables and files persist between calls in this conversation; the working directory is /work, where the user's files are. Each call returns stdout, stderr and the value of the last expression (or of a variable named result); on an error you get the traceback, so fix the code and try again. matplotlib figures are captured automatically and shown to the user: do not call plt.savefig unless asked for a file. Use code for any calculation, data analysis or statistics rather than computing in your head, then answer with the actual numbers.`

// networkHint describes the sandbox's network to the model: none, or HTTP(S) to the
// hosts of the egress allowlist.
func networkHint(p *egress.Policy) string {
	if p == nil || len(p.Allow) == 0 {
		return "with no network access"
	}
	return "whose only network access is HTTP(S) (e.g. with requests) to these hosts, through a proxy that refuses all others: " + strings.Join(p.Allow, ", ")
}

// upstreamRequest turns a client's request into what the upstream model sees: the
// code tool becomes a function, the hint (saying what network the code has) is
// added, and code executions in the history become function calls and their results.
func upstreamRequest(req *llm.ChatRequest, network *egress.Policy) (*llm.ChatRequest, error) {
	hint := fmt.Sprintf(systemHint, networkHint(network))
	up := req.Clone()
	up.Tools = nil
	for _, t := range req.Tools {
		if isCodeTool(t) {
			continue
		}
		if t.Function != nil && t.Function.Name == ToolName {
			return nil, fmt.Errorf("%w: a client function may not be named %q: codeexec runs that tool", ErrBadRequest, ToolName)
		}
		up.Tools = append(up.Tools, t)
	}
	up.Tools = append(up.Tools, llm.Tool{Type: llm.ToolTypeFunction, Function: &llm.FunctionDef{
		Name:        ToolName,
		Description: "Run Python code in a secure sandbox and return its output.",
		Parameters:  json.RawMessage(codeToolParams),
	}})
	msgs := []llm.Message{}
	hinted := false
	for _, m := range req.Messages {
		if !hinted && m.Role != "system" && m.Role != "developer" {
			msgs = append(msgs, llm.Message{Role: "system", Content: llm.TextContent(hint)})
			hinted = true
		}
		msgs = append(msgs, expandHistory(m)...)
	}
	if !hinted {
		msgs = append(msgs, llm.Message{Role: "system", Content: llm.TextContent(hint)})
	}
	up.Messages = msgs
	return up, nil
}

// expandHistory rewrites an assistant message that carries code_execution entries
// (a reply of ours, sent back by the client) into the function calls the model
// made and the tool results it got.
func expandHistory(m llm.Message) []llm.Message {
	if m.Role != "assistant" {
		return []llm.Message{m}
	}
	var results []llm.Message
	calls := make([]llm.ToolCall, 0, len(m.ToolCalls))
	for i, tc := range m.ToolCalls {
		if tc.Type != llm.ToolTypeCodeExecution || tc.CodeExecution == nil {
			calls = append(calls, tc)
			continue
		}
		id := tc.ID
		if id == "" {
			id = fmt.Sprintf("call_code_%d", i)
		}
		args, _ := json.Marshal(map[string]string{"code": tc.CodeExecution.Code})
		calls = append(calls, llm.ToolCall{ID: id, Type: llm.ToolTypeFunction, Function: &llm.FunctionCall{Name: ToolName, Arguments: string(args)}})
		results = append(results, llm.Message{Role: "tool", ToolCallID: id, Content: llm.TextContent(tc.CodeExecution.Output)})
	}
	if len(results) == 0 {
		return []llm.Message{m}
	}
	m.ToolCalls = calls
	return append([]llm.Message{m}, results...)
}

// placeFiles moves files attached to user messages (file parts, and images sent as
// data URLs) into the sandbox's work dir and tells the model their names.
func (c *completion) placeFiles(ctx context.Context, req *llm.ChatRequest) error {
	n := 0
	for mi, m := range req.Messages {
		if m.Role != "user" || !m.Content.IsParts() {
			continue
		}
		parts := m.Parts()
		changed := false
		for pi, p := range parts {
			name, data, ok, err := attachment(p, &n)
			if err != nil {
				return fmt.Errorf("%w: messages[%d].content[%d]: %v", ErrBadRequest, mi, pi, err)
			}
			if !ok {
				continue
			}
			if c.sb == nil {
				sb, err := c.a.NewSandbox(ctx)
				if err != nil {
					return fmt.Errorf("agent: sandbox: %w", err)
				}
				c.sb = sb
			}
			if err := c.sb.WriteFile(name, data); err != nil {
				return fmt.Errorf("%w: file %q: %w", ErrBadRequest, name, err)
			}
			note := llm.ContentPart{Type: "text", Text: fmt.Sprintf("[The file %s (%d bytes) is in the working directory /work for the code_execution tool.]", name, len(data))}
			if p.Type == "image_url" {
				parts = append(parts, note) // keep the image itself for models that see
			} else {
				parts[pi] = note
			}
			changed = true
		}
		if changed {
			req.Messages[mi].Content = llm.PartsContent(parts...)
		}
	}
	return nil
}

// attachment extracts a file from a content part: a "file" part with file_data, or
// an "image_url" part holding a data URL. ok is false for anything else.
func attachment(p llm.ContentPart, n *int) (name string, data []byte, ok bool, err error) {
	var raw string
	switch {
	case p.Type == "file" && p.File != nil && p.File.FileData != "":
		raw, name = p.File.FileData, p.File.Filename
	case p.Type == "image_url" && p.ImageURL != nil && strings.HasPrefix(p.ImageURL.URL, "data:"):
		raw = p.ImageURL.URL
	default:
		return "", nil, false, nil
	}
	mime := ""
	if rest, isURL := strings.CutPrefix(raw, "data:"); isURL {
		meta, payload, found := strings.Cut(rest, ",")
		if !found || !strings.HasSuffix(meta, ";base64") {
			return "", nil, false, fmt.Errorf("a data URL must be base64-encoded")
		}
		mime, raw = strings.TrimSuffix(meta, ";base64"), payload
	}
	data, err = base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return "", nil, false, fmt.Errorf("file data is not valid base64: %v", err)
	}
	*n++
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	if name == "" || name == "." || name == "/" || name == ".." {
		name = fmt.Sprintf("file-%d%s", *n, extension(mime))
	}
	if _, err := sandbox.CleanInputPath(name); err != nil {
		return "", nil, false, err
	}
	return name, data, true, nil
}

func extension(mime string) string {
	switch mime {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "text/csv":
		return ".csv"
	case "application/json":
		return ".json"
	case "text/plain":
		return ".txt"
	}
	return ""
}

// execution is the code_execution entry of a run for the client.
func execution(code string, res *sandbox.Result) *llm.CodeExecution {
	out := res.Stdout + res.Stderr
	if out == "" && res.Result != nil {
		out = *res.Result
	}
	if res.Error != nil && res.Status != sandbox.StatusError {
		out += res.Error.Message + "\n"
	}
	e := &llm.CodeExecution{Code: code, Output: out, Status: string(res.Status)}
	for _, im := range res.Images {
		e.Images = append(e.Images, llm.CodeImage{Name: im.Name, MimeType: im.MimeType, Data: im.Data})
	}
	return e
}

// toolMessage is what the model is told of a run, at most max bytes of it.
func toolMessage(res *sandbox.Result, max int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "status: %s\n", res.Status)
	section := func(name, text string, truncated bool) {
		if text == "" {
			return
		}
		fmt.Fprintf(&b, "%s:\n%s", name, text)
		if !strings.HasSuffix(text, "\n") {
			b.WriteString("\n")
		}
		if truncated {
			fmt.Fprintf(&b, "[%s was truncated]\n", name)
		}
	}
	section("stdout", res.Stdout, res.StdoutTruncated)
	section("stderr", res.Stderr, res.StderrTruncated)
	if res.Result != nil {
		section("result", *res.Result, res.ResultTruncated)
	}
	if res.Error != nil && res.Status != sandbox.StatusError {
		section("error", res.Error.Message, false)
	}
	if len(res.Images) > 0 {
		names := make([]string, len(res.Images))
		for i, im := range res.Images {
			names[i] = im.Name
		}
		fmt.Fprintf(&b, "figures (shown to the user): %s\n", strings.Join(names, ", "))
	}
	if len(res.Files) > 0 {
		files := make([]string, len(res.Files))
		for i, f := range res.Files {
			files[i] = fmt.Sprintf("%s (%d bytes)", f.Path, f.Size)
		}
		fmt.Fprintf(&b, "files written: %s\n", strings.Join(files, ", "))
	}
	s := b.String()
	if len(s) > max {
		s = s[:max] + fmt.Sprintf("\n[output cut to %d of %d bytes: print less]\n", max, len(s))
	}
	return s
}
