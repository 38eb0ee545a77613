package mcp

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/textfit"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxText bounds the text content of one execution: hosts put it in the model's
// context, where a megabyte of output would crowd out everything else. The whole
// Result stays in the structured content.
const maxText = 20000

// executeContent is what the model sees of a run: one text block with its output,
// result and error; each figure as a PNG image; in a session, each file it wrote as
// a link to the file's resource.
func executeContent(res *job.Result, state *SessionState) []sdk.Content {
	content := []sdk.Content{&sdk.TextContent{Text: resultText(res, state, maxText)}}
	for _, im := range res.Images {
		content = append(content, &sdk.ImageContent{Data: im.Data, MIMEType: im.MimeType})
	}
	if state != nil && !state.Ended {
		for _, f := range res.Files {
			size := f.Size
			content = append(content, &sdk.ResourceLink{URI: fileURI(state.ID, f.Path), Name: f.Path,
				Title: "/work/" + f.Path, MIMEType: mimeByName(f.Path), Size: &size})
		}
	}
	return content
}

// resultText renders a run as sections a model reads well — status, stdout, stderr,
// result, the error and its traceback, then notes on figures, files, truncation
// and the session — within about max bytes: when the sections do not fit together,
// each is cut to a fair share, keeping its start and end, so that a long stdout
// never hides the traceback.
func resultText(res *job.Result, state *SessionState, max int) string {
	var head, tail strings.Builder
	fmt.Fprintf(&head, "status: %s\n", res.Status)
	if res.Status == job.StatusRejected && res.Error != nil {
		fmt.Fprintf(&head, "The code was NOT run: the safety policy refused it. Reason: %s\nDo not try to get around this.\n", res.Error.Message)
	} else if res.Error != nil {
		fmt.Fprintf(&tail, "error: %s: %s\n", res.Error.Name, textfit.FirstLine(res.Error.Message, 1000))
	}
	if len(res.Images) > 0 {
		fmt.Fprintf(&tail, "figures (attached as images): %s\n", strings.Join(res.FigureNames(), ", "))
	}
	if res.ImagesTruncated {
		tail.WriteString("[more figures were drawn than are kept]\n")
	}
	if len(res.Files) > 0 {
		fmt.Fprintf(&tail, "files written in /work: %s\n", strings.Join(res.FileSummaries(), ", "))
		switch {
		case state == nil:
			tail.WriteString("[this run had no session: its files are gone; to keep files and download them, run in a session (create_session)]\n")
		case !state.Ended:
			tail.WriteString("[attached as resource links; download_file reads them]\n")
		}
	}
	if res.FilesTruncated {
		tail.WriteString("[more files were written than are listed]\n")
	}
	if state != nil {
		if state.Ended {
			fmt.Fprintf(&tail, "session %s has ended (%s): its variables and files are gone; create a new session to go on\n", state.ID, state.Reason)
		} else {
			fmt.Fprintf(&tail, "session: %s (variables, imports and files persist)\n", state.ID)
		}
	}
	sections := []textfit.Section{{Name: "stdout", Text: res.Stdout, Truncated: res.StdoutTruncated}, {Name: "stderr", Text: res.Stderr, Truncated: res.StderrTruncated}}
	if res.Result != nil {
		sections = append(sections, textfit.Section{Name: "result", Text: *res.Result, Truncated: res.ResultTruncated})
	}
	// The harness prints the traceback to stderr too; shown again only when stderr
	// does not hold it (the program redirected stderr, or filled it).
	if e := res.Error; e != nil && e.Traceback != "" && !strings.Contains(res.Stderr, e.Traceback) {
		sections = append(sections, textfit.Section{Name: "traceback", Text: e.Traceback, Truncated: e.Truncated})
	}
	return textfit.Layout(head.String(), sections, tail.String(), max, textfit.Notes{
		Cut:       "[… %d bytes cut here; the structured result has them all …]",
		Truncated: "[%s was truncated at its limit]",
	})
}

// fileURIPrefix begins the URI of every session file: codeexec://sessions/{id}/files/{path}.
const fileURIPrefix = "codeexec://sessions/"

// fileURI is the resource URI of the file at p (a path in the work dir) of session
// id; each segment of p is escaped, so that any name makes a valid URI.
func fileURI(id, p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return fileURIPrefix + url.PathEscape(id) + "/files/" + strings.Join(segs, "/")
}

// filesURI is the resource URI of the list of session id's files.
func filesURI(id string) string { return fileURIPrefix + url.PathEscape(id) + "/files" }

var errNotFileURI = errors.New("not a codeexec://sessions/{id}/files/{path} URI")

// parseFileURI returns the session and path a file URI names; path is "" for the
// URI of the session's list of files.
func parseFileURI(uri string) (id, p string, err error) {
	rest, ok := strings.CutPrefix(uri, fileURIPrefix)
	if !ok {
		return "", "", errNotFileURI
	}
	rawID, rest, _ := strings.Cut(rest, "/")
	if rest != "files" && !strings.HasPrefix(rest, "files/") {
		return "", "", errNotFileURI
	}
	if id, err = url.PathUnescape(rawID); err != nil || id == "" {
		return "", "", errNotFileURI
	}
	rawPath := strings.TrimPrefix(strings.TrimPrefix(rest, "files"), "/")
	if p, err = url.PathUnescape(rawPath); err != nil {
		return "", "", fmt.Errorf("%w: %v", errNotFileURI, err)
	}
	return id, p, nil
}

// mimeByName is the media type of a file from its name's extension, or "".
func mimeByName(name string) string { return mime.TypeByExtension(path.Ext(name)) }

// fileContents is a file of a session as resource contents: UTF-8 text as text,
// anything else as a blob (base64 on the wire).
func fileContents(id, p string, data []byte) *sdk.ResourceContents {
	c := &sdk.ResourceContents{URI: fileURI(id, p), MIMEType: mimeByName(p)}
	if c.MIMEType == "" {
		c.MIMEType = http.DetectContentType(data)
	}
	if utf8.Valid(data) && bytes.IndexByte(data, 0) < 0 {
		c.Text = string(data)
		if c.Text == "" {
			// Text and Blob both empty would read as neither: an empty file is empty text.
			c.MIMEType = "text/plain"
		}
	} else {
		c.Blob = data
	}
	return c
}

// filesContent lists a session's files for the model, each also as a resource link.
func filesContent(id string, files []job.FileInfo, truncated bool) []sdk.Content {
	var b strings.Builder
	if len(files) == 0 {
		fmt.Fprintf(&b, "Session %s has no files in /work.", id)
	} else {
		fmt.Fprintf(&b, "Files of session %s in /work:\n", id)
		for _, f := range files {
			fmt.Fprintf(&b, "%s (%d bytes)\n", f.Path, f.Size)
		}
	}
	if truncated {
		b.WriteString("[the work dir holds more files than are listed]\n")
	}
	content := []sdk.Content{&sdk.TextContent{Text: b.String()}}
	for _, f := range files {
		size := f.Size
		content = append(content, &sdk.ResourceLink{URI: fileURI(id, f.Path), Name: f.Path, Title: "/work/" + f.Path,
			MIMEType: mimeByName(f.Path), Size: &size})
	}
	return content
}

// sessionsText lists sessions for the model.
func sessionsText(list []session.Info) string {
	if len(list) == 0 {
		return "You have no sessions. create_session starts one."
	}
	var b strings.Builder
	for _, s := range list {
		state := "alive"
		if !s.Alive {
			state = "ended"
		}
		fmt.Fprintf(&b, "%s: %s, %d executions, %d MiB in use, expires at %s\n", s.ID, state, s.Executions, s.MemoryBytes>>20,
			s.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return b.String()
}
