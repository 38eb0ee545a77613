// Package harness holds the Python program that runs user code inside a sandbox and
// the decoder for the report it sends back.
package harness

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
)

// Source is the harness program, run as `python3 -c Source` inside the sandbox.
// It reads the user's code from fd CodeFD and writes one JSON Report to fd ReportFD.
//
//go:embed harness.py
var Source string

//go:embed zygote.py
var zygoteSource string

// ZygoteSource is the zygote program: the harness plus a fork server that serves
// executions from a process that has already imported the scientific stack. Its
// control socket is fd ReportFD.
var ZygoteSource = "CODEEXEC_ZYGOTE = True\n" + Source + "\n" + zygoteSource

// File descriptors the harness uses, as numbered inside the sandbox.
const (
	ReportFD = 3
	CodeFD   = 4
)

// Report is what the harness says about the run. It comes from inside the sandbox
// and is untrusted: it describes the program's own output, never its limits.
type Report struct {
	OK              bool         `json:"ok"`
	Result          *string      `json:"result"`
	ResultTruncated bool         `json:"result_truncated"`
	Error           *ReportError `json:"error"`
	Images          []Image      `json:"images"`
	ImagesTruncated bool         `json:"images_truncated"`
	ExitCode        int          `json:"exit_code"`
}

// ReportError is the exception the program raised.
type ReportError struct {
	Name      string `json:"name"`
	Message   string `json:"message"`
	Traceback string `json:"traceback"`
}

// Image is a rendered figure.
type Image struct {
	Name     string `json:"name"`
	MimeType string `json:"mime_type"`
	Data     []byte `json:"data"` // base64 in JSON
}

// ErrEmpty means the harness wrote no report: the interpreter died before it could.
var ErrEmpty = errors.New("harness: no report")

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// Parse decodes a report, rejecting anything malformed. Every image must be a PNG.
func Parse(data []byte) (*Report, error) {
	if len(data) == 0 {
		return nil, ErrEmpty
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("harness: bad report: %w", err)
	}
	for i, im := range r.Images {
		if im.MimeType != "image/png" || !bytes.HasPrefix(im.Data, pngMagic) {
			return nil, fmt.Errorf("harness: image %d is not a PNG", i)
		}
	}
	return &r, nil
}
