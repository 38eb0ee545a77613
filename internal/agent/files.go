package agent

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/codeexec/codeexec/internal/job"
)

// placeFiles moves files attached to user messages (file parts, and images sent as
// data URLs) into the sandbox's work dir and returns the input with each file part
// replaced by a note telling the model the file's name (an image keeps its part,
// for models that see, and gains the note). The request's items are not changed.
// Every attachment is checked before any is written. In a resumed sandbox, the
// files of messages before the model's last output were placed by an earlier
// request and are not written again: the code may have changed them since.
func placeFiles(sb Sandbox, input []Item, resumed bool) ([]Item, error) {
	uploads, _ := sb.(Uploads)
	placedBefore := -1
	if resumed {
		for i, it := range input {
			if isModelOutput(it) {
				placedBefore = i
			}
		}
	}
	type placed struct {
		file
		where string
	}
	var writes []placed
	names := map[string][sha256.Size]byte{} // name → content, to keep two files apart
	out := slices.Clone(input)
	for i, it := range input {
		m, ok := it.(*Message)
		if !ok || m.Role != "user" || m.Content.Form != FormParts {
			continue
		}
		source := m.Source
		if source == "" {
			source = fmt.Sprintf("input[%d]", i)
		}
		parts := slices.Clone(m.Content.Parts)
		changed := false
		for pi, p := range m.Content.Parts {
			where := fmt.Sprintf("%s.content[%d]", source, pi)
			a, err := attachment(p, uploads)
			if err != nil && err.code == "file_not_found" && i <= placedBefore {
				// Placed by an earlier request and deleted since: the conversation goes
				// on, and the model learns no more than that.
				parts[pi] = Part{Type: PartText, Text: fmt.Sprintf("[An uploaded file (%s) was placed in the working directory /work earlier; it has been deleted from the uploads since.]", p.FileID)}
				changed = true
				continue
			}
			if err != nil {
				return nil, badRequest(err.code, "%s: %s", where, err.msg)
			}
			if a == nil {
				continue
			}
			a.name = UniqueName(a.name, sha256.Sum256(a.data), names)
			if i > placedBefore {
				writes = append(writes, placed{*a, where})
			}
			note := Part{Type: PartText, Text: fmt.Sprintf("[The file %s (%d bytes) is in the working directory /work for the code_execution tool.]", a.name, len(a.data))}
			if p.Type == PartImage {
				if p.URL == "" {
					// An upload by file_id: the upstream knows nothing of it.
					parts[pi] = ImageData(p, a.data)
				}
				parts = append(parts, note) // keep the image itself for models that see
			} else {
				parts[pi] = note
			}
			changed = true
		}
		if changed {
			c := *m
			c.Content = Content{Form: FormParts, Parts: parts}
			out[i] = &c
		}
	}
	for _, w := range writes {
		if err := sb.WriteFile(w.name, w.data); err != nil {
			if errors.Is(err, job.ErrStorageLimit) {
				// Not the request's fault alone: the caller answers 507.
				return nil, fmt.Errorf("%s: file %q: %w", w.where, w.name, err)
			}
			return nil, badRequest("invalid_file", "%s: file %q: %v", w.where, w.name, err)
		}
	}
	return out, nil
}

// ImageData is image part p, an upload named by its FileID, with data as its
// URL (a data: URL of the type sniffed from data) instead: what an upstream can
// read.
func ImageData(p Part, data []byte) Part {
	p.URL = "data:" + http.DetectContentType(data) + ";base64," + base64.StdEncoding.EncodeToString(data)
	p.FileID = ""
	return p
}

// isModelOutput reports whether it is something the model wrote: an assistant
// message, a call of a tool or a code execution.
func isModelOutput(it Item) bool {
	switch it := it.(type) {
	case *Message:
		return it.Role == "assistant"
	case *ToolCall, *Execution:
		return true
	}
	return false
}

// UniqueName returns name, or name with a "-2", "-3", … suffix before its extension
// when a different file of that name is already in names: two attachments never
// overwrite each other. The same file attached twice keeps its name.
func UniqueName(name string, sum [sha256.Size]byte, names map[string][sha256.Size]byte) string {
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

// Uploads is what a Sandbox implements when the client may attach files it
// uploaded before (file parts with a FileID): it finds them.
type Uploads interface {
	// Uploaded returns the filename and bytes of the uploaded file id, or an error
	// that says why there is none, for the client.
	Uploaded(id string) (filename string, data []byte, err error)
}

// attachment extracts a file from a content part: a file part with FileData or
// with a FileID that uploads has, or an image part holding a data URL; nil for
// anything else. A file without a name is named by its kind, content and type:
// "file-1a2b3c4d.csv".
func attachment(p Part, uploads Uploads) (*file, *partError) {
	var raw, name, kind string
	switch {
	case p.Type == PartFile && p.FileData != "":
		raw, name, kind = p.FileData, p.Filename, "file"
	case p.Type == PartFile && p.FileID != "" && uploads == nil:
		return nil, &partError{"file_id_unsupported", fmt.Sprintf("file_id %q: this server stores no uploaded files; send the content inline as file_data (base64, or a data: URL)", p.FileID)}
	case p.Type == PartFile && p.FileID != "":
		filename, data, err := uploads.Uploaded(p.FileID)
		if err != nil {
			return nil, &partError{"file_not_found", err.Error()}
		}
		return named(cmp.Or(p.Filename, filename), "file", "", data)
	case p.Type == PartFile:
		return nil, &partError{"invalid_file", "a file part needs file_data (base64, or a data: URL)"}
	case p.Type == PartImage && p.URL == "" && p.FileID != "":
		if uploads == nil {
			return nil, &partError{"file_id_unsupported", fmt.Sprintf("file_id %q: this server stores no uploaded files; send the image as a data: URL", p.FileID)}
		}
		filename, data, err := uploads.Uploaded(p.FileID)
		if err != nil {
			return nil, &partError{"file_not_found", err.Error()}
		}
		return named(filename, "image", "", data)
	case p.Type == PartImage && strings.HasPrefix(p.URL, "data:"):
		raw, kind = p.URL, "image"
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
	return named(name, kind, mimeType, data)
}

// named is an attachment under its name's last element, or, without a name, one
// made of its kind, content and type.
func named(name, kind, mimeType string, data []byte) (*file, *partError) {
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
