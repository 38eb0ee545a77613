// Package openaichat is the chat-completions face of the agent loop: it turns a
// chat completion request that has the code tool into an agent.Request, and an
// agent.Result into a chat completion or a stream of chunks, with codeexec's
// code_execution entries. The functions are pure and named by direction, from the
// client's side: FromChatRequest, ToChatCompletion.
package openaichat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/llm"
)

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

// FromChatRequest converts a chat completion request into the loop's request. Its
// errors are *agent.RequestError. The result shares raw values and maps with r.
//
// Fields the loop has no place for go into Extra, for the upstream as they came:
// n, max_completion_tokens, and stream_options of a request that does not stream
// (one that streams has the usage asked of the upstream by the loop, and given to
// the client by Stream.Finish).
func FromChatRequest(r *llm.ChatRequest) (*agent.Request, error) {
	req := &agent.Request{
		Model:             r.Model,
		ToolChoice:        r.ToolChoice,
		ParallelToolCalls: r.ParallelToolCalls,
		Stream:            r.Stream,
		Temperature:       r.Temperature,
		TopP:              r.TopP,
		MaxOutputTokens:   r.MaxTokens,
		Seed:              r.Seed,
		ResponseFormat:    r.ResponseFormat,
		User:              r.User,
		Extra:             maps.Clone(r.Extra),
	}
	var err error
	if req.Stop, err = stopSequences(r.Stop); err != nil {
		return nil, err
	}
	extra := map[string]any{"n": r.N, "max_completion_tokens": r.MaxCompletionTokens}
	if !r.Stream {
		extra["stream_options"] = r.StreamOptions
	}
	for key, v := range extra {
		if raw, _ := json.Marshal(v); string(raw) != "null" { // pointers to plain values always marshal
			if req.Extra == nil {
				req.Extra = map[string]json.RawMessage{}
			}
			req.Extra[key] = raw
		}
	}
	for _, t := range r.Tools {
		if !isCodeTool(t) {
			req.Tools = append(req.Tools, toolFromChat(t))
			continue
		}
		if req.Code == nil {
			req.Code = &agent.CodeTool{}
		}
		if err := containerOf(t, &req.Code.Container); err != nil {
			return nil, err
		}
		if err := languageOf(t, &req.Code.Language); err != nil {
			return nil, err
		}
	}
	for i, m := range r.Messages {
		req.Input = append(req.Input, itemsFromMessage(i, m)...)
	}
	return req, nil
}

// stopSequences reads "stop": a string or an array of strings.
func stopSequences(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || isNull(raw) {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, &agent.RequestError{Code: "invalid_stop", Message: fmt.Sprintf(`"stop" must be a string or an array of strings, got %s`, clip(string(raw), 80))}
	}
	return list, nil
}

func toolFromChat(t llm.Tool) agent.Tool {
	out := agent.Tool{Type: t.Type, EntryExtra: t.Extra}
	if f := t.Function; f != nil {
		out.Name, out.Description, out.Parameters, out.Strict, out.Extra = f.Name, f.Description, f.Parameters, f.Strict, f.Extra
	}
	return out
}

// containerOf sets id to the container (a session id) that the code tool t names
// with "container" or "session_id"; it leaves it alone when t names none (or
// "container" is {"type": "auto"}, as OpenAI's Responses API writes a new one).
// Two different ids in the request are an error.
func containerOf(t llm.Tool, id *string) error {
	for _, key := range []string{"container", "session_id"} {
		raw, ok := t.Extra[key]
		if !ok || isNull(raw) {
			continue
		}
		v, err := containerValue(raw)
		if err != nil {
			return &agent.RequestError{Code: "invalid_container", Message: fmt.Sprintf("the %s tool's %q: %v", t.Type, key, err)}
		}
		if v != "" && *id != "" && v != *id {
			return &agent.RequestError{Code: "invalid_container", Message: fmt.Sprintf("the code tool names two containers, %q and %q", *id, v)}
		}
		if v != "" {
			*id = v
		}
	}
	return nil
}

// languageOf reads the code tool's "language" (codeexec's option; the code tool is
// Python without it) into lang: a language the sandbox serves, the same in every
// code tool of the request.
func languageOf(t llm.Tool, lang *string) error {
	raw, ok := t.Extra["language"]
	if !ok || isNull(raw) {
		return nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return &agent.RequestError{Code: "unsupported_language", Message: fmt.Sprintf("the %s tool's \"language\" must be a string, one of %q", t.Type, job.Languages)}
	}
	v = job.CanonicalLanguage(v)
	if v == "" || !job.KnownLanguage(v) {
		return &agent.RequestError{Code: "unsupported_language", Message: fmt.Sprintf("the %s tool's language %q is not supported; use one of %q", t.Type, v, job.Languages)}
	}
	if *lang != "" && *lang != v {
		return &agent.RequestError{Code: "unsupported_language", Message: fmt.Sprintf("the code tools name two languages, %q and %q", *lang, v)}
	}
	*lang = v
	return nil
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

// itemsFromMessage is the i-th message as items: a tool message is a ToolOutput;
// any other is a Message followed by its tool calls, code_execution entries (a
// reply of ours, sent back by the client) being Executions.
func itemsFromMessage(i int, m llm.Message) []agent.Item {
	if m.Role == "tool" {
		return []agent.Item{&agent.ToolOutput{CallID: m.ToolCallID, Content: agent.ContentFromLLM(m.Content), Name: m.Name, Extra: m.Extra}}
	}
	items := []agent.Item{&agent.Message{Role: m.Role, Content: agent.ContentFromLLM(m.Content), Name: m.Name, Extra: m.Extra,
		Source: fmt.Sprintf("messages[%d]", i)}}
	for j, tc := range m.ToolCalls {
		if tc.Type != llm.ToolTypeCodeExecution || tc.CodeExecution == nil {
			items = append(items, agent.ToolCallFromLLM(tc))
			continue
		}
		id := tc.ID
		if id == "" {
			id = fmt.Sprintf("call_code_%d", j)
		}
		items = append(items, executionFromEntry(id, tc.CodeExecution))
	}
	return items
}

// executionFromEntry is a code_execution entry of the client's history as an
// Execution: with a Result rebuilt from its fields, or its output alone for an
// entry that has only that (written by hand, or by a codeexec of before the
// fields) or that announced a run.
func executionFromEntry(id string, e *llm.CodeExecution) *agent.Execution {
	x := &agent.Execution{ID: id, Code: e.Code, ContainerID: e.ContainerID, Output: e.Output}
	structured := e.Stdout != "" || e.Stderr != "" || e.Result != nil || e.Error != nil || len(e.Files) > 0
	if !structured || e.Status == "" || e.Status == llm.StatusRunning {
		return x
	}
	res := &job.Result{Status: job.Status(e.Status), Stdout: e.Stdout, Stderr: e.Stderr,
		StdoutTruncated: e.StdoutTruncated, StderrTruncated: e.StderrTruncated, Result: e.Result, ResultTruncated: e.ResultTruncated,
		ImagesTruncated: e.ImagesTruncated, FilesTruncated: e.FilesTruncated}
	if e.Error != nil {
		res.Error = &job.Error{Name: e.Error.Name, Message: e.Error.Message, Traceback: e.Error.Traceback}
	}
	for _, im := range e.Images {
		res.Images = append(res.Images, job.Image{Name: im.Name, MimeType: im.MimeType, Data: im.Data})
	}
	for _, f := range e.Files {
		res.Files = append(res.Files, job.FileInfo{Path: f.Path, Size: f.Size})
	}
	x.Result = res
	return x
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
