package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
)

// codeToolParams is the JSON schema of the code tool's arguments.
const codeToolParams = `{"type":"object","properties":{"code":{"type":"string","description":"Python 3 source to run."}},"required":["code"]}`

// codeToolDescription is the description of the code tool's function.
const codeToolDescription = "Run Python code in a secure sandbox and return its output. Variables and files persist from one call to the next."

// systemHint tells the model what the tool can do and how results come back; the
// first %s is what it says of the network (see networkHint), the second of the
// state the sandbox starts with (see stateHint).
const systemHint = `You can run Python 3.11 code with the code_execution tool, in a secure sandbox %s. numpy, pandas, matplotlib, scipy, sympy and requests are installed. %s The working directory is /work, where the user's files are. Each call returns stdout, stderr and the value of the last expression (or of a variable named result); on an error you get the traceback, so fix the code and try again. matplotlib figures are captured automatically and shown to the user: do not call plt.savefig unless asked for a file. Use code for any calculation, data analysis or statistics rather than computing in your head, then answer with the actual numbers.`

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

// upstreamRequest turns a client's request into what the upstream model sees: the
// code tool becomes a function, the hint (saying what network the code has and
// whether earlier state is there) is added, and code executions in the history
// become function calls and their results.
func upstreamRequest(req *llm.ChatRequest, network *egress.Policy, resumed bool) (*llm.ChatRequest, error) {
	if err := checkTools(req); err != nil {
		return nil, err
	}
	hint := fmt.Sprintf(systemHint, networkHint(network), stateHint(resumed))
	up := req.Clone()
	up.Tools = nil
	for _, t := range req.Tools {
		if !isCodeTool(t) {
			up.Tools = append(up.Tools, t)
		}
	}
	up.Tools = append(up.Tools, llm.Tool{Type: llm.ToolTypeFunction, Function: &llm.FunctionDef{
		Name:        ToolName,
		Description: codeToolDescription,
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

// checkTools refuses a client function that would stand in for the code tool.
func checkTools(req *llm.ChatRequest) error {
	for _, t := range req.Tools {
		if !isCodeTool(t) && t.Function != nil && t.Function.Name == ToolName {
			return badRequest("invalid_tools", "a client function may not be named %q: codeexec runs that tool", ToolName)
		}
	}
	return nil
}

// Container returns the container (a session id) that req's code tool names with
// "container" or "session_id", or "" when it names none (or "container" is
// {"type": "auto"}, as OpenAI's Responses API writes a new one).
func Container(req *llm.ChatRequest) (string, error) {
	id := ""
	for _, t := range req.Tools {
		if !isCodeTool(t) {
			continue
		}
		for _, key := range []string{"container", "session_id"} {
			raw, ok := t.Extra[key]
			if !ok || isNull(raw) {
				continue
			}
			v, err := containerValue(raw)
			if err != nil {
				return "", badRequest("invalid_container", "the %s tool's %q: %v", t.Type, key, err)
			}
			if v != "" && id != "" && v != id {
				return "", badRequest("invalid_container", "the code tool names two containers, %q and %q", id, v)
			}
			if v != "" {
				id = v
			}
		}
	}
	return id, nil
}

func containerValue(raw json.RawMessage) (string, error) {
	var id string
	if err := json.Unmarshal(raw, &id); err == nil {
		return id, nil
	}
	var auto struct {
		Type string `json:"type"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&auto); err == nil && auto.Type == "auto" {
		return "", nil
	}
	return "", fmt.Errorf(`want a container id such as "sess_…" (from an earlier reply) or {"type": "auto"}, got %s`, clip(string(raw), 80))
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
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
		results = append(results, llm.Message{Role: "tool", ToolCallID: id, Content: llm.TextContent(historyResult(tc.CodeExecution))})
	}
	if len(results) == 0 {
		return []llm.Message{m}
	}
	m.ToolCalls = calls
	return append([]llm.Message{m}, results...)
}

// historyResult is what the model was told of a run that a client's history holds:
// rebuilt from the entry's fields, or its output alone for an entry that has only
// that (written by hand, or by a codeexec of before the fields).
func historyResult(e *llm.CodeExecution) string {
	structured := e.Stdout != "" || e.Stderr != "" || e.Result != nil || e.Error != nil || len(e.Files) > 0
	switch {
	case !structured || e.Status == "" || e.Status == llm.StatusRunning:
		return e.Output
	case e.Status == string(job.StatusRejected) && e.Error != nil:
		return rejectedMessage(e.Error.Message)
	case e.Error != nil && (e.Error.Name == "InvalidArguments" || e.Error.Name == "SessionEnded"):
		return e.Error.Message
	}
	res := &job.Result{Status: job.Status(e.Status), Stdout: e.Stdout, Stderr: e.Stderr,
		StdoutTruncated: e.StdoutTruncated, StderrTruncated: e.StderrTruncated, Result: e.Result, ResultTruncated: e.ResultTruncated}
	if e.Error != nil {
		res.Error = &job.Error{Name: e.Error.Name, Message: e.Error.Message, Traceback: e.Error.Traceback}
	}
	for _, im := range e.Images {
		res.Images = append(res.Images, job.Image{Name: im.Name})
	}
	for _, f := range e.Files {
		res.Files = append(res.Files, job.FileInfo{Path: f.Path, Size: f.Size})
	}
	return toolMessage(res, defaultMaxToolOutput)
}

// placeFiles moves files attached to user messages (file parts, and images sent as
// data URLs) into the sandbox's work dir and tells the model their names. req is
// the client's request (its message indices are the client's), which placeFiles
// changes: the caller passes a copy. Every attachment is checked before any is
// written. In a resumed sandbox, the files of messages before the last assistant
// message were placed by an earlier request and are not written again: the code
// may have changed them since.
func (c *completion) placeFiles(ctx context.Context, req *llm.ChatRequest, resumed bool) error {
	placedBefore := -1
	if resumed {
		for i, m := range req.Messages {
			if m.Role == "assistant" {
				placedBefore = i
			}
		}
	}
	type placed struct {
		file
		mi, pi int
	}
	var writes []placed
	names := map[string][sha256.Size]byte{} // name → content, to keep two files apart
	for mi, m := range req.Messages {
		if m.Role != "user" || !m.Content.IsParts() {
			continue
		}
		parts := slices.Clone(m.Parts())
		changed := false
		for pi, p := range parts {
			a, err := attachment(p)
			if err != nil {
				return badRequest(err.code, "messages[%d].content[%d]: %s", mi, pi, err.msg)
			}
			if a == nil {
				continue
			}
			a.name = uniqueName(a.name, sha256.Sum256(a.data), names)
			if mi > placedBefore {
				writes = append(writes, placed{*a, mi, pi})
			}
			note := llm.ContentPart{Type: llm.PartText, Text: fmt.Sprintf("[The file %s (%d bytes) is in the working directory /work for the code_execution tool.]", a.name, len(a.data))}
			if p.Type == llm.PartImageURL {
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
	for _, w := range writes {
		if err := c.sb.WriteFile(w.name, w.data); err != nil {
			if errors.Is(err, job.ErrStorageLimit) {
				// Not the request's fault alone: the caller answers 507.
				return fmt.Errorf("messages[%d].content[%d]: file %q: %w", w.mi, w.pi, w.name, err)
			}
			return badRequest("invalid_file", "messages[%d].content[%d]: file %q: %v", w.mi, w.pi, w.name, err)
		}
	}
	return nil
}

// uniqueName returns name, or name with a "-2", "-3", … suffix before its extension
// when a different file of that name is already in names: two attachments never
// overwrite each other. The same file attached twice keeps its name.
func uniqueName(name string, sum [sha256.Size]byte, names map[string][sha256.Size]byte) string {
	ext := path.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for n := 2; ; n++ {
		if prev, ok := names[name]; !ok || prev == sum {
			names[name] = sum
			return name
		}
		name = fmt.Sprintf("%s-%d%s", stem, n, ext)
	}
}

// file is an attachment to place in the sandbox.
type file struct {
	name string
	data []byte
}

// partError is what is wrong with a content part, with its stable code.
type partError struct{ code, msg string }

// attachment extracts a file from a content part: a "file" part with file_data, or
// an "image_url" part holding a data URL; nil for anything else. A file without a
// name is named by its kind, content and type: "file-1a2b3c4d.csv".
func attachment(p llm.ContentPart) (*file, *partError) {
	var raw, name, kind string
	switch {
	case p.Type == llm.PartFile && p.File != nil && p.File.FileData != "":
		raw, name, kind = p.File.FileData, p.File.Filename, "file"
	case p.Type == llm.PartFile && p.File != nil && p.File.FileID != "":
		return nil, &partError{"file_id_unsupported", fmt.Sprintf("file_id %q: this server stores no uploaded files; send the content inline as file_data (base64, or a data: URL)", p.File.FileID)}
	case p.Type == llm.PartFile:
		return nil, &partError{"invalid_file", "a file part needs file_data (base64, or a data: URL)"}
	case p.Type == llm.PartImageURL && p.ImageURL != nil && strings.HasPrefix(p.ImageURL.URL, "data:"):
		raw, kind = p.ImageURL.URL, "image"
	default:
		return nil, nil
	}
	mimeType := ""
	if rest, isURL := strings.CutPrefix(raw, "data:"); isURL {
		meta, payload, found := strings.Cut(rest, ",")
		if !found || !strings.HasSuffix(meta, ";base64") {
			return nil, &partError{"invalid_file", "a data URL must be base64-encoded (data:TYPE;base64,…)"}
		}
		mimeType, raw = strings.TrimSuffix(meta, ";base64"), payload
	}
	data, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, &partError{"invalid_file", fmt.Sprintf("file data is not valid base64: %v", err)}
	}
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	if name == "" || name == "." || name == "/" || name == ".." {
		sum := sha256.Sum256(data)
		name = fmt.Sprintf("%s-%x%s", kind, sum[:4], extension(mimeType, data))
	}
	if _, err := job.CleanInputPath(name); err != nil {
		return nil, &partError{"invalid_file", err.Error()}
	}
	return &file{name: name, data: data}, nil
}

// extension is the file name extension of a MIME type, or of the type sniffed from
// data when there is none; "" when neither says.
func extension(mimeType string, data []byte) string {
	if mimeType == "" || mimeType == "application/octet-stream" {
		mimeType = http.DetectContentType(data)
	}
	mimeType, _, _ = strings.Cut(mimeType, ";")
	switch strings.TrimSpace(mimeType) {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/gif":
		return ".gif"
	case "image/webp":
		return ".webp"
	case "application/pdf":
		return ".pdf"
	case "text/csv":
		return ".csv"
	case "application/json":
		return ".json"
	case "text/plain":
		return ".txt"
	case "application/zip":
		return ".zip"
	case "application/x-gzip", "application/gzip":
		return ".gz"
	}
	if exts, err := mime.ExtensionsByType(mimeType); err == nil && len(exts) > 0 {
		return exts[0]
	}
	return ""
}

// execution is the code_execution entry of a run for the client: everything the
// model is shown, field by field.
func execution(code string, res *job.Result) *llm.CodeExecution {
	e := &llm.CodeExecution{Code: code, Output: terminalOutput(res), Status: string(res.Status),
		Stdout: res.Stdout, Stderr: res.Stderr, StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		Result: res.Result, ResultTruncated: res.ResultTruncated, ImagesTruncated: res.ImagesTruncated, FilesTruncated: res.FilesTruncated}
	if res.Error != nil {
		e.Error = &llm.CodeError{Name: res.Error.Name, Message: res.Error.Message, Traceback: res.Error.Traceback}
	}
	for _, im := range res.Images {
		e.Images = append(e.Images, llm.CodeImage{Name: im.Name, MimeType: im.MimeType, Data: im.Data})
	}
	for _, f := range res.Files {
		e.Files = append(e.Files, llm.CodeFile{Path: f.Path, Size: f.Size})
	}
	return e
}

// notRun is the entry of code that did not run, and why.
func notRun(code string, status job.Status, name, message string) *llm.CodeExecution {
	out := message
	if status == job.StatusRejected {
		out = "Rejected: " + message
	}
	return &llm.CodeExecution{Code: code, Output: out, Status: string(status), Error: &llm.CodeError{Name: name, Message: message}}
}

func rejectedMessage(reason string) string {
	return "The code was NOT run: the safety policy refused it. Reason: " + reason +
		"\nDo not try to get around this. Answer the user without running it (you may show the code for them to run themselves)."
}

// terminalOutput is a run as a terminal shows it: stdout and stderr, the value of
// the last expression, and the error's message when no traceback in stderr says it.
func terminalOutput(res *job.Result) string {
	out := res.Stdout + res.Stderr
	line := func(s string) {
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += s
	}
	if res.Result != nil {
		line(*res.Result)
	}
	if res.Error != nil && res.Status != job.StatusError {
		line(res.Error.Message + "\n")
	}
	return out
}

// defaultMaxToolOutput bounds what the model is shown of one run unless the Agent
// says otherwise.
const defaultMaxToolOutput = 20000

// toolMessage is what the model is told of a run, at most max bytes of it (about:
// the notes on cuts are added). Every part is shown: when stdout, stderr and the
// result do not fit together, each is cut to a fair share (keeping its start and
// end), so that a long stdout never hides the traceback or the result.
func toolMessage(res *job.Result, max int) string {
	var head, tail strings.Builder
	fmt.Fprintf(&head, "status: %s\n", res.Status)
	if res.Error != nil {
		fmt.Fprintf(&tail, "error: %s: %s\n", res.Error.Name, firstLine(res.Error.Message, 500))
	}
	if len(res.Images) > 0 {
		names := make([]string, len(res.Images))
		for i, im := range res.Images {
			names[i] = im.Name
		}
		fmt.Fprintf(&tail, "figures (shown to the user): %s\n", strings.Join(names, ", "))
	}
	if res.ImagesTruncated {
		tail.WriteString("[more figures were drawn than are kept]\n")
	}
	if len(res.Files) > 0 {
		files := make([]string, len(res.Files))
		for i, f := range res.Files {
			files[i] = fmt.Sprintf("%s (%d bytes)", f.Path, f.Size)
		}
		fmt.Fprintf(&tail, "files written: %s\n", strings.Join(files, ", "))
	}
	if res.FilesTruncated {
		tail.WriteString("[more files were written than are listed]\n")
	}
	type section struct {
		name, text string
		truncated  bool
	}
	sections := []section{{"stdout", res.Stdout, res.StdoutTruncated}, {"stderr", res.Stderr, res.StderrTruncated}}
	if res.Result != nil {
		sections = append(sections, section{"result", *res.Result, res.ResultTruncated})
	}
	sizes := make([]int, len(sections))
	for i, s := range sections {
		sizes[i] = len(s.text)
	}
	budget := max - head.Len() - tail.Len()
	shares := fairShares(sizes, budget)
	var b strings.Builder
	b.WriteString(head.String())
	for i, s := range sections {
		if s.text == "" {
			continue
		}
		text := s.text
		if shares[i] < len(text) {
			text = cutMiddle(text, shares[i])
		}
		fmt.Fprintf(&b, "%s:\n%s", s.name, text)
		if !strings.HasSuffix(text, "\n") {
			b.WriteString("\n")
		}
		if s.truncated {
			fmt.Fprintf(&b, "[%s was truncated by the output limit]\n", s.name)
		}
	}
	b.WriteString(tail.String())
	return b.String()
}

// fairShares divides budget among parts of the given sizes: a part smaller than an
// equal share keeps all of it, and what it leaves goes to the others.
func fairShares(sizes []int, budget int) []int {
	shares := make([]int, len(sizes))
	left := make([]int, 0, len(sizes))
	for i := range sizes {
		left = append(left, i)
	}
	budget = max(budget, 0)
	for len(left) > 0 {
		share := budget / len(left)
		var next []int
		for _, i := range left {
			if sizes[i] <= share {
				shares[i] = sizes[i]
				budget -= sizes[i]
			} else {
				next = append(next, i)
			}
		}
		if len(next) == len(left) {
			for _, i := range next {
				shares[i] = share
			}
			break
		}
		left = next
	}
	return shares
}

// cutMiddle keeps about n bytes of s, its start and its end, and says how much of
// the middle was cut.
func cutMiddle(s string, n int) string {
	keep := max(n/2, 0)
	return strings.ToValidUTF8(s[:keep], "") + fmt.Sprintf("\n[… %d bytes cut: print less …]\n", len(s)-2*keep) + strings.ToValidUTF8(s[len(s)-keep:], "")
}

// firstLine is the first line of s, at most n bytes of it.
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	return clip(s, n)
}
