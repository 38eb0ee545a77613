// Package harness holds the Python program that runs user code inside a sandbox and
// the decoder for the report it sends back.
package harness

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// Source is the harness program, run as `python3 -c Source` inside the sandbox.
// It reads the user's code from fd CodeFD and writes one JSON Report to fd ReportFD.
// It needs the environment Env. The kernel mode (kernel.py, see KernelVar) comes
// first: harness.py ends by running the program, and uses it.
var Source = kernelSource + "\n" + harnessSource

//go:embed harness.py
var harnessSource string

//go:embed kernel.py
var kernelSource string

// KernelVar names the environment variable that makes a Python run a kernel run
// (kernel.py): a notebook cell's syntax and display data, Report.Outputs. Its value
// is the JSON of a KernelOptions. The harness removes it before the program runs.
const KernelVar = "CODEEXEC_KERNEL"

// KernelOptions are a kernel run's settings, as the harness reads them.
type KernelOptions struct {
	// Env is set in the interpreter's environment for this run only: afterwards
	// each variable is back to its value before the run.
	Env map[string]string `json:"env,omitempty"`
	// BaseEnv is set for good: the environment of every later run too.
	BaseEnv map[string]string `json:"base_env,omitempty"`
	// Stream has the harness write each display data bundle on the report pipe as
	// the program shows it, a line {"output": Output} each, before the report (the
	// last line, which ends without a newline and still holds every output).
	Stream bool `json:"stream,omitempty"`
}

//go:embed zygote.py
var zygoteSource string

// NodeSource is the JavaScript harness, run as `node -e NodeSource -- NAME ARGS...`.
// Alone it reads the program from fd CodeFD and writes one Report to fd ReportFD, as
// Source does; with CODEEXEC_JS_SERVE=1 in its environment it serves a session's
// runs on fd ReportFD (see harness.js and node.py).
//
//go:embed harness.js
var NodeSource string

// nodeHost is the part of the zygote that runs JavaScript programs with Node.
//
//go:embed node.py
var nodeHost string

// Zygote returns the zygote program: constants (Python assignments the fork server
// uses, which the sandbox package generates from Go), the harness, and a fork server
// that serves executions from a process that has already imported the scientific
// stack. Its control socket is fd ReportFD.
func Zygote(constants string) string {
	js, err := json.Marshal(NodeSource) // a JSON string is a Python string literal
	if err != nil {
		panic("harness: marshalling the Node harness: " + err.Error()) // strings never fail
	}
	return "CODEEXEC_ZYGOTE = True\n" + constants + Source + "\nNODE_HARNESS = " + string(js) + "\n" + nodeHost + "\n" + zygoteSource
}

// File descriptors the harness uses, as numbered inside the sandbox.
const (
	ReportFD = 3
	CodeFD   = 4
)

// Caps of a report. Go is their only authority: Env hands them to the harness,
// which keeps within them (and flags what it cut), and Parse refuses a report that
// breaks any of them — such a report was written by the program, not the harness.
const (
	// MaxImages is the most figures one run returns.
	MaxImages = 16
	// MaxImageBytes bounds the PNG bytes of all figures of a run together: a few
	// large plots, while a reply stays small enough for a model's context and a
	// client's memory.
	MaxImageBytes = 8 << 20
	// MaxResultBytes bounds the UTF-8 repr of the result: more is not read by a
	// person or a model, and the program can write a file for the rest.
	MaxResultBytes = 64 << 10
	// MaxErrorNameBytes bounds the exception's type name (an identifier in practice,
	// but Python allows any string).
	MaxErrorNameBytes = 256
	// MaxErrorMessageBytes and MaxTracebackBytes bound the exception's message and
	// traceback; the whole traceback also goes to stderr, under the output limit.
	MaxErrorMessageBytes = 64 << 10
	MaxTracebackBytes    = 64 << 10
	// MaxOutputs bounds a kernel run's display data: one bundle a display() call,
	// a figure or the main result.
	MaxOutputs = 64
	// MaxOutputBytes bounds the JSON of all of a kernel run's bundles together, as
	// the harness writes it (ASCII: it is its own worst encoding). Figures of a
	// kernel run are bundles, not Images.
	MaxOutputBytes = 8 << 20
	// MaxReportBytes bounds the report as read from the pipe: the caps above, each
	// at its worst JSON encoding (see the check below).
	MaxReportBytes = 24 << 20
)

// The caps at their worst encoding must fit MaxReportBytes: base64 of the figures
// (padded per figure), every string byte escaped as \u00XX (6 bytes), and a margin
// for the keys, the figures' names (ignored, but read) and the other fields. It does
// not compile if they do not fit.
const (
	worstImages  = (MaxImageBytes+2*MaxImages)/3*4 + MaxImages*(4+maxImageNameBytes*6+64)
	worstStrings = 6 * (MaxResultBytes + MaxErrorNameBytes + MaxErrorMessageBytes + MaxTracebackBytes)
	worstOutputs = MaxOutputBytes + MaxOutputs*32 // each bundle's separator and "main" key
	_            = uint64(MaxReportBytes - worstImages - worstStrings - worstOutputs - 4<<10)
)

// maxImageNameBytes bounds the name the harness gives a figure. The server names
// figures itself; the name is only read to keep the format self-describing.
const maxImageNameBytes = 64

// Env is what the harness must find in its environment: the caps it keeps to.
func Env() []string {
	return []string{
		"CODEEXEC_MAX_IMAGES=" + strconv.Itoa(MaxImages),
		"CODEEXEC_MAX_IMAGE_BYTES=" + strconv.Itoa(MaxImageBytes),
		"CODEEXEC_MAX_RESULT=" + strconv.Itoa(MaxResultBytes),
		"CODEEXEC_MAX_ERROR_NAME=" + strconv.Itoa(MaxErrorNameBytes),
		"CODEEXEC_MAX_ERROR_MESSAGE=" + strconv.Itoa(MaxErrorMessageBytes),
		"CODEEXEC_MAX_TRACEBACK=" + strconv.Itoa(MaxTracebackBytes),
		"CODEEXEC_MAX_OUTPUTS=" + strconv.Itoa(MaxOutputs),
		"CODEEXEC_MAX_OUTPUT_BYTES=" + strconv.Itoa(MaxOutputBytes),
	}
}

// Report is what the harness says about the run. It comes from inside the sandbox
// and is untrusted: it describes the program's own output, never its limits, and
// Parse holds it to the caps above.
type Report struct {
	OK              bool         `json:"ok"`
	Result          *string      `json:"result"`
	ResultTruncated bool         `json:"result_truncated"`
	Error           *ReportError `json:"error"`
	Images          Images       `json:"images"`
	ImagesTruncated bool         `json:"images_truncated"`
	ExitCode        int          `json:"exit_code"`
	// Outputs are a kernel run's display data, in the order the program showed
	// them; OutputsTruncated says some were dropped or cut to the caps.
	Outputs          []Output `json:"outputs"`
	OutputsTruncated bool     `json:"outputs_truncated"`
}

// Output is one display data bundle: representations of one object by MIME type
// (text/plain, text/html, image/png as base64, application/json as JSON, ...).
type Output struct {
	Data map[string]json.RawMessage `json:"data"`
	// Main is set for the value of the cell's last expression (Jupyter's
	// execute_result), clear for display() calls and figures.
	Main bool `json:"main"`
}

// maxMIMEBytes bounds a bundle's MIME type names (IANA's limit is 127 bytes), and
// maxBundleTypes their number.
const (
	maxMIMEBytes   = 127
	maxBundleTypes = 32
)

// ReportError is the exception the program raised.
type ReportError struct {
	Name      string `json:"name"`
	Message   string `json:"message"`
	Traceback string `json:"traceback"`
	// Truncated is set when the harness cut the name, message or traceback to its cap.
	Truncated bool `json:"truncated"`
}

// Image is a rendered figure.
type Image struct {
	// Name is the harness's name for the figure. It is not trusted: the server
	// names figures by their order.
	Name     string `json:"name"`
	MimeType string `json:"mime_type"`
	Data     []byte `json:"data"` // base64 in JSON
}

// Images are a report's figures. They decode one at a time, and no further than
// MaxImages: a forged report of 185,000 tiny figures costs no more to refuse than
// one of 17.
type Images []Image

// UnmarshalJSON decodes a JSON array of at most MaxImages figures, each with known
// fields only.
func (ims *Images) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*ims = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return errors.New("figures are not a list")
	}
	list := Images{}
	for dec.More() {
		if len(list) == MaxImages {
			return capError(fmt.Sprintf("has more than %d figures", MaxImages))
		}
		var im Image
		dec.DisallowUnknownFields()
		if err := dec.Decode(&im); err != nil {
			return err
		}
		list = append(list, im)
	}
	*ims = list
	return nil
}

// capError is a cap the report breaks.
type capError string

func (e capError) Error() string { return string(e) }

// ErrEmpty means the harness wrote no report: the interpreter died before it could.
var ErrEmpty = errors.New("harness: no report")

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// Parse decodes a report, rejecting anything malformed or beyond a cap: unknown
// fields, trailing data, more than MaxImages figures or MaxImageBytes of them, a
// figure that is not a PNG, a result, error name, message or traceback over its cap,
// and an error on a run that says it succeeded (or none on one that failed).
func Parse(data []byte) (*Report, error) {
	if len(data) == 0 {
		return nil, ErrEmpty
	}
	if len(data) > MaxReportBytes {
		return nil, fmt.Errorf("harness: report exceeds %d bytes", MaxReportBytes)
	}
	var r Report
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		var ce capError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("harness: report %w", ce)
		}
		// The decoder quotes the input (an unknown field's name): keep it short.
		return nil, fmt.Errorf("harness: bad report: %s", clip(err.Error(), 200))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("harness: bad report: data after the report")
	}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("harness: report %w", err)
	}
	return &r, nil
}

// check holds a decoded report to the caps.
func (r *Report) check() error {
	if len(r.Images) > MaxImages { // Images.UnmarshalJSON stops at the cap; a guard
		return capError(fmt.Sprintf("has more than %d figures", MaxImages))
	}
	total := 0
	for i, im := range r.Images {
		if im.MimeType != "image/png" || !bytes.HasPrefix(im.Data, pngMagic) {
			return fmt.Errorf("figure %d is not a PNG", i+1)
		}
		if len(im.Name) > maxImageNameBytes {
			return fmt.Errorf("names figure %d in %d bytes, more than %d", i+1, len(im.Name), maxImageNameBytes)
		}
		total += len(im.Data)
	}
	if total > MaxImageBytes {
		return fmt.Errorf("has %d bytes of figures, more than %d", total, MaxImageBytes)
	}
	if err := checkOutputs(r.Outputs); err != nil {
		return err
	}
	if r.Result != nil && len(*r.Result) > MaxResultBytes {
		return fmt.Errorf("has a result of %d bytes, more than %d", len(*r.Result), MaxResultBytes)
	}
	switch e := r.Error; {
	case r.OK && e != nil:
		return errors.New("has an error on a run that succeeded")
	case !r.OK && e == nil:
		return errors.New("has no error on a run that failed")
	case e == nil:
	case len(e.Name) > MaxErrorNameBytes:
		return fmt.Errorf("has an error name of %d bytes, more than %d", len(e.Name), MaxErrorNameBytes)
	case len(e.Message) > MaxErrorMessageBytes:
		return fmt.Errorf("has an error message of %d bytes, more than %d", len(e.Message), MaxErrorMessageBytes)
	case len(e.Traceback) > MaxTracebackBytes:
		return fmt.Errorf("has a traceback of %d bytes, more than %d", len(e.Traceback), MaxTracebackBytes)
	}
	return nil
}

// checkOutputs holds a kernel run's display data to its caps: the report's size
// already bounds it, this keeps a forged one to what the harness would write.
func checkOutputs(outs []Output) error {
	if len(outs) > MaxOutputs {
		return capError(fmt.Sprintf("has %d display outputs, more than %d", len(outs), MaxOutputs))
	}
	total := 0
	for i, o := range outs {
		if len(o.Data) > maxBundleTypes {
			return fmt.Errorf("has %d types in display output %d, more than %d", len(o.Data), i+1, maxBundleTypes)
		}
		for mime, v := range o.Data {
			if mime == "" || len(mime) > maxMIMEBytes {
				return fmt.Errorf("has a type name of %d bytes in display output %d", len(mime), i+1)
			}
			total += len(mime) + len(v)
		}
	}
	if total > MaxOutputBytes {
		return fmt.Errorf("has %d bytes of display outputs, more than %d", total, MaxOutputBytes)
	}
	return nil
}

// clip cuts s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
