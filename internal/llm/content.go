package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Content is a message's content, in the form it arrived: absent, null, a string, or
// an array of parts. It round-trips each form as it was, so a string stays a string
// and a one-part array stays an array. The zero Content is absent.
type Content struct {
	form  contentForm
	text  string
	parts []ContentPart
}

type contentForm uint8

const (
	contentAbsent contentForm = iota
	contentNull
	contentText
	contentParts
)

// TextContent returns content that is the string s.
func TextContent(s string) Content { return Content{form: contentText, text: s} }

// PartsContent returns content that is an array of parts.
func PartsContent(parts ...ContentPart) Content {
	if parts == nil {
		parts = []ContentPart{}
	}
	return Content{form: contentParts, parts: parts}
}

// NullContent returns content written as null, as an assistant message that only
// calls tools has it.
func NullContent() Content { return Content{form: contentNull} }

// IsZero reports whether the content is absent; encoding/json's omitzero uses it.
func (c Content) IsZero() bool { return c.form == contentAbsent }

// IsNull reports whether the content is null.
func (c Content) IsNull() bool { return c.form == contentNull }

// IsString reports whether the content is a string.
func (c Content) IsString() bool { return c.form == contentText }

// IsParts reports whether the content is an array of parts.
func (c Content) IsParts() bool { return c.form == contentParts }

// Text returns a string content as it is, or the text of an array's text parts
// joined by newlines (other parts are skipped); "" for absent or null content.
func (c Content) Text() string {
	switch c.form {
	case contentText:
		return c.text
	case contentParts:
		var texts []string
		for _, p := range c.parts {
			if p.Type == PartText {
				texts = append(texts, p.Text)
			}
		}
		return strings.Join(texts, "\n")
	}
	return ""
}

// Parts returns an array content's parts, a string content as one text part, and
// nil for absent or null content. The slice is shared with c.
func (c Content) Parts() []ContentPart {
	switch c.form {
	case contentText:
		return []ContentPart{{Type: PartText, Text: c.text}}
	case contentParts:
		return c.parts
	}
	return nil
}

// MarshalJSON writes the content in its own form; absent content is written as null
// when it is not omitted by omitzero.
func (c Content) MarshalJSON() ([]byte, error) {
	switch c.form {
	case contentText:
		return marshalNoEscape(c.text)
	case contentParts:
		return marshalNoEscape(c.parts)
	}
	return []byte("null"), nil
}

// UnmarshalJSON reads a string, an array of parts or null.
func (c *Content) UnmarshalJSON(data []byte) error {
	t := bytes.TrimSpace(data)
	switch {
	case len(t) == 0:
		return fmt.Errorf("content is empty")
	case isJSONNull(t):
		*c = NullContent()
	case t[0] == '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return fmt.Errorf("content: %w", err)
		}
		*c = TextContent(s)
	case t[0] == '[':
		var parts []ContentPart
		if err := json.Unmarshal(t, &parts); err != nil {
			return fmt.Errorf("content: %w", err)
		}
		*c = PartsContent(parts...)
	default:
		return fmt.Errorf("content must be a string, an array of parts or null, got %s", snippet(t))
	}
	return nil
}

// Content part types codeexec knows; others keep their fields in ContentPart.Extra.
const (
	PartText     = "text"
	PartImageURL = "image_url"
	PartFile     = "file"
)

// ContentPart is one element of an array content.
type ContentPart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
	File     *File     `json:"file,omitempty"`

	// Extra holds the fields of other part types (input_audio, …), verbatim.
	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes p, keeping unknown fields in p.Extra.
func (p *ContentPart) UnmarshalJSON(data []byte) error {
	type plain ContentPart
	extra, err := decodeWithExtra(data, (*plain)(p))
	p.Extra = extra
	return err
}

// MarshalJSON encodes p with its extra fields. A text part always has "text", even
// an empty one, since OpenAI rejects a text part without it.
func (p ContentPart) MarshalJSON() ([]byte, error) {
	if p.Type == PartText {
		type textPart struct {
			Type     string                     `json:"type"`
			Text     string                     `json:"text"`
			ImageURL *ImageURL                  `json:"image_url,omitempty"`
			File     *File                      `json:"file,omitempty"`
			Extra    map[string]json.RawMessage `json:"-"`
		}
		return encodeWithExtra(textPart(p), p.Extra)
	}
	type plain ContentPart
	return encodeWithExtra(plain(p), p.Extra)
}

// ImageURL is an image_url part's image: an https URL or a data: URL.
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// File is a file part's file: inline data (a data: URL) with a name, or an uploaded
// file's id.
type File struct {
	FileData string `json:"file_data,omitempty"`
	FileID   string `json:"file_id,omitempty"`
	Filename string `json:"filename,omitempty"`
}
