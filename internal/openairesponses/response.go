package openairesponses

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/job"
)

// Response is the Response object.
type Response struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *ResponseError     `json:"error"`
	IncompleteDetails  *IncompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []OutputItem       `json:"output"`
	OutputText         string             `json:"output_text"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Store              bool               `json:"store"`
	Temperature        *float64           `json:"temperature"`
	TopP               *float64           `json:"top_p"`
	ToolChoice         json.RawMessage    `json:"tool_choice"`
	Tools              []json.RawMessage  `json:"tools"`
	Text               json.RawMessage    `json:"text"`
	Truncation         string             `json:"truncation"`
	Metadata           json.RawMessage    `json:"metadata"`
	Usage              *Usage             `json:"usage"`
	User               *string            `json:"user,omitempty"`
}

// ResponseError is why a response failed.
type ResponseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IncompleteDetails says why a response is incomplete: "max_output_tokens" (the
// model's token limit), "max_steps" (the loop's step limit), or an upstream's own
// reason such as "content_filter".
type IncompleteDetails struct {
	Reason string `json:"reason"`
}

// Usage counts the tokens of every model call of the response.
type Usage struct {
	InputTokens         int            `json:"input_tokens"`
	InputTokensDetails  map[string]int `json:"input_tokens_details"`
	OutputTokens        int            `json:"output_tokens"`
	OutputTokensDetails map[string]int `json:"output_tokens_details"`
	TotalTokens         int            `json:"total_tokens"`
}

// OutputItem is an item of the output: a message, a code_interpreter_call or a
// function_call; the fields of the others are left out.
type OutputItem struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Status string `json:"status"`
	// message
	Role    string        `json:"role,omitempty"`
	Content []ContentPart `json:"content,omitempty"`
	// code_interpreter_call; Outputs is null unless the request included them.
	Code        *string       `json:"code,omitempty"`
	ContainerID string        `json:"container_id,omitempty"`
	Outputs     *[]CodeOutput `json:"outputs,omitempty"`
	// function_call
	CallID    string `json:"call_id,omitempty"`
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments,omitempty"`
}

// MarshalJSON writes the fields of the item's type, each of them even when empty,
// as OpenAI does: the SDKs' stream accumulators append to a message's "content"
// and a call's "arguments" from the output_item.added event on, and fail on an
// absent one ("output.content is not iterable").
func (it OutputItem) MarshalJSON() ([]byte, error) {
	switch it.Type {
	case TypeMessage:
		content := it.Content
		if content == nil {
			content = []ContentPart{}
		}
		return json.Marshal(struct {
			ID      string        `json:"id"`
			Type    string        `json:"type"`
			Status  string        `json:"status"`
			Role    string        `json:"role"`
			Content []ContentPart `json:"content"`
		}{it.ID, it.Type, it.Status, it.Role, content})
	case TypeCodeInterpreterCall:
		return json.Marshal(struct {
			ID          string        `json:"id"`
			Type        string        `json:"type"`
			Status      string        `json:"status"`
			Code        *string       `json:"code"`
			ContainerID string        `json:"container_id"`
			Outputs     *[]CodeOutput `json:"outputs"`
		}{it.ID, it.Type, it.Status, it.Code, it.ContainerID, it.Outputs})
	case TypeFunctionCall:
		return json.Marshal(struct {
			ID        string `json:"id"`
			Type      string `json:"type"`
			Status    string `json:"status"`
			CallID    string `json:"call_id"`
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		}{it.ID, it.Type, it.Status, it.CallID, it.Name, it.Arguments})
	}
	type plain OutputItem // without this method
	return json.Marshal(plain(it))
}

// ContentPart is an output_text part of a message.
type ContentPart struct {
	Type        string       `json:"type"`
	Text        string       `json:"text"`
	Annotations []Annotation `json:"annotations"`
	Logprobs    []any        `json:"logprobs"`
}

// Annotation cites a file the code wrote in its container.
type Annotation struct {
	Type        string `json:"type"`
	ContainerID string `json:"container_id"`
	FileID      string `json:"file_id"`
	Filename    string `json:"filename"`
	StartIndex  int    `json:"start_index"`
	EndIndex    int    `json:"end_index"`
}

// CodeOutput is an output of a run: its logs, or an image.
type CodeOutput struct {
	Type string `json:"type"`
	Logs string `json:"logs,omitempty"`
	URL  string `json:"url,omitempty"`
}

// Item types and statuses.
const (
	TypeMessage             = "message"
	TypeCodeInterpreterCall = "code_interpreter_call"
	TypeFunctionCall        = "function_call"

	StatusCompleted    = "completed"
	StatusIncomplete   = "incomplete"
	StatusFailed       = "failed"
	StatusInProgress   = "in_progress"
	StatusInterpreting = "interpreting"
)

// FileID is the id of the file at path in a container: the path itself, encoded
// so that it is one URL segment. Stateless, so the container's files need no
// table of ids beside them.
func FileID(path string) string {
	return "cfile_" + base64.RawURLEncoding.EncodeToString([]byte(path))
}

// FilePath is the path a FileID names.
func FilePath(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, "cfile_")
	if !ok {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

// Options are what the Response says beyond the Result: its id, the request's
// settings it echoes, and how its items are written.
type Options struct {
	ID        string
	CreatedAt int64
	Request   *Request
	// Outputs: the request included code_interpreter_call.outputs.
	Outputs bool
	// ImageURL, if set, is the URL of the i-th image of a run (one the client can
	// fetch from codeexec); nil: a data: URL.
	ImageURL func(e *agent.Execution, i int) string
}

// ToResponse encodes a completion's result as a Response: each run a
// code_interpreter_call, the model's text messages, the client's function calls,
// and the final message citing the files the code wrote.
func ToResponse(res *agent.Result, o Options) *Response {
	r := newResponse(o)
	n := newNamer(o.ID)
	var files []Annotation
	finalMsg := lastMessage(res.Output)
	for _, it := range res.Output {
		switch it := it.(type) {
		case *agent.Message:
			text := it.Content.Text()
			if text == "" {
				continue
			}
			var ann []Annotation
			if it == finalMsg {
				ann = cite(text, files)
				r.OutputText = text
			}
			r.Output = append(r.Output, messageItem(n.message(), text, ann, StatusCompleted))
		case *agent.Execution:
			r.Output = append(r.Output, codeItem(it, n.code(it.ID), o, true))
			files = append(files, written(it)...)
		case *agent.ToolCall:
			r.Output = append(r.Output, OutputItem{ID: n.call(it.ID), Type: TypeFunctionCall, Status: StatusCompleted,
				CallID: it.ID, Name: it.Name, Arguments: it.Arguments})
		}
	}
	r.Status, r.IncompleteDetails = status(res.Finish)
	r.Usage = usage(res.Usage)
	if res.Upstream.Model != "" {
		r.Model = res.Upstream.Model
	}
	return r
}

// ItemsByID names the items of a response's output by the ids ToResponse gives
// them, for item_reference items of later requests.
func ItemsByID(respID string, output []agent.Item) map[string]agent.Item {
	n := newNamer(respID)
	byID := map[string]agent.Item{}
	for _, it := range output {
		switch it := it.(type) {
		case *agent.Message:
			if it.Content.Text() != "" {
				byID[n.message()] = it
			}
		case *agent.Execution:
			byID[n.code(it.ID)] = it
		case *agent.ToolCall:
			byID[n.call(it.ID)] = it
		}
	}
	return byID
}

// newResponse is the response before its output: status in_progress.
func newResponse(o Options) *Response {
	q := o.Request
	if q == nil {
		q = &Request{}
	}
	r := &Response{ID: o.ID, Object: "response", CreatedAt: o.CreatedAt, Status: StatusInProgress, Model: q.Model,
		Output: []OutputItem{}, ParallelToolCalls: q.ParallelToolCalls == nil || *q.ParallelToolCalls, Store: q.Stored(),
		Temperature: q.Temperature, TopP: q.TopP, MaxOutputTokens: q.MaxOutputTokens, Truncation: "disabled",
		ToolChoice: q.ToolChoice, Tools: q.Tools, Text: q.Text, Metadata: q.Metadata}
	if q.Instructions != "" {
		r.Instructions = &q.Instructions
	}
	if q.PreviousResponseID != "" {
		r.PreviousResponseID = &q.PreviousResponseID
	}
	if q.User != "" {
		r.User = &q.User
	}
	if r.ToolChoice == nil {
		r.ToolChoice = json.RawMessage(`"auto"`)
	}
	if r.Tools == nil {
		r.Tools = []json.RawMessage{}
	}
	if r.Text == nil {
		r.Text = json.RawMessage(`{"format":{"type":"text"}}`)
	}
	if r.Metadata == nil {
		r.Metadata = json.RawMessage(`{}`)
	}
	return r
}

func lastMessage(items []agent.Item) *agent.Message {
	for i := len(items) - 1; i >= 0; i-- {
		if m, ok := items[i].(*agent.Message); ok {
			return m
		}
	}
	return nil
}

// status is a Finish as the Responses API says it.
func status(f agent.Finish) (string, *IncompleteDetails) {
	switch f {
	case agent.FinishStop, agent.FinishToolCalls, "":
		return StatusCompleted, nil
	case agent.FinishLength:
		return StatusIncomplete, &IncompleteDetails{Reason: "max_output_tokens"}
	case agent.FinishStepLimit:
		return StatusIncomplete, &IncompleteDetails{Reason: "max_steps"}
	}
	return StatusIncomplete, &IncompleteDetails{Reason: string(f)}
}

func usage(u agent.Usage) *Usage {
	return &Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, TotalTokens: u.TotalTokens,
		InputTokensDetails: map[string]int{"cached_tokens": 0}, OutputTokensDetails: map[string]int{"reasoning_tokens": 0}}
}

func messageItem(id, text string, ann []Annotation, status string) OutputItem {
	if ann == nil {
		ann = []Annotation{}
	}
	return OutputItem{ID: id, Type: TypeMessage, Status: status, Role: "assistant",
		Content: []ContentPart{{Type: "output_text", Text: text, Annotations: ann, Logprobs: []any{}}}}
}

// codeItem is the code_interpreter_call of a run; done: the run ended (else it is
// being announced, without outputs).
func codeItem(e *agent.Execution, id string, o Options, done bool) OutputItem {
	code := e.Code
	it := OutputItem{ID: id, Type: TypeCodeInterpreterCall, Status: StatusInProgress, Code: &code, ContainerID: e.ContainerID}
	if !done {
		return it
	}
	it.Status = runStatus(e.Result)
	if o.Outputs {
		outs := []CodeOutput{{Type: "logs", Logs: e.Output}}
		if e.Result != nil {
			for i, im := range e.Result.Images {
				url := "data:" + im.MimeType + ";base64," + base64.StdEncoding.EncodeToString(im.Data)
				if o.ImageURL != nil {
					if u := o.ImageURL(e, i); u != "" {
						url = u
					}
				}
				outs = append(outs, CodeOutput{Type: "image", URL: url})
			}
		}
		it.Outputs = &outs
	}
	return it
}

// runStatus: a run that raised is "completed" (its logs say how), as OpenAI's; a
// run a limit stopped is "incomplete"; code that did not run is "failed".
func runStatus(res *job.Result) string {
	if res == nil {
		return StatusCompleted
	}
	switch res.Status {
	case job.StatusOK, job.StatusError:
		if res.Error != nil {
			switch res.Error.Name {
			case agent.ErrorRejected, agent.ErrorInvalidArguments, agent.ErrorSessionEnded:
				return StatusFailed
			}
		}
		return StatusCompleted
	case job.StatusRejected:
		return StatusFailed
	}
	return StatusIncomplete
}

// written are the files a run wrote, and its figures saved in its container, as
// citations without a place in the text.
func written(e *agent.Execution) []Annotation {
	if e.Result == nil || e.ContainerID == "" {
		return nil
	}
	var out []Annotation
	cite := func(p string) {
		name := p[strings.LastIndex(p, "/")+1:]
		out = append(out, Annotation{Type: "container_file_citation", ContainerID: e.ContainerID, FileID: FileID(p), Filename: name})
	}
	for _, f := range e.Result.Files {
		cite(f.Path)
	}
	// The figures saved in the container are files of it too (see Options.ImageURL).
	for _, im := range e.Result.Images {
		if im.SavedAs != "" {
			cite(im.SavedAs)
		}
	}
	return out
}

// cite places each file's citation where the text names it (its path or its
// name), or at the end of the text when it does not. The last run's write of a
// path wins.
func cite(text string, files []Annotation) []Annotation {
	seen := map[string]int{}
	var out []Annotation
	for _, a := range files {
		if i, ok := seen[a.FileID]; ok {
			out[i] = a
			continue
		}
		seen[a.FileID] = len(out)
		out = append(out, a)
	}
	for i := range out {
		path, _ := FilePath(out[i].FileID)
		start, end := len(text), len(text)
		for _, s := range []string{path, out[i].Filename} {
			if k := strings.Index(text, s); k >= 0 {
				start, end = k, k+len(s)
				break
			}
		}
		out[i].StartIndex, out[i].EndIndex = utf16Index(text, start), utf16Index(text, end)
	}
	return out
}

// utf16Index is byte offset i of s in UTF-16 code units, as JavaScript's string
// indices (the SDKs') count.
func utf16Index(s string, i int) int {
	n := 0
	for _, r := range s[:i] {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// namer gives a response's items their ids: derived from the response's id and
// the item's place, so that a stream and the final object agree.
type namer struct {
	base     string
	messages int
}

func newNamer(respID string) *namer { return &namer{base: strings.TrimPrefix(respID, "resp_")} }

func (n *namer) message() string {
	n.messages++
	return fmt.Sprintf("msg_%s_%d", n.base, n.messages)
}

// code is a run's id: the model's call id, which the model is shown again when
// the client sends the item back.
func (n *namer) code(callID string) string {
	if callID == "" {
		return "ci_" + n.base
	}
	return callID
}

func (n *namer) call(callID string) string { return "fc_" + strings.TrimPrefix(callID, "call_") }
