package job

import (
	"encoding/json"
	"fmt"
)

// Status is the outcome class of one execution.
type Status string

// Status values, as in API.md.
const (
	StatusOK          Status = "ok"
	StatusError       Status = "error"
	StatusTimeout     Status = "timeout"
	StatusMemoryLimit Status = "memory_limit"
	StatusOutputLimit Status = "output_limit"
	StatusKilled      Status = "killed"
	StatusRejected    Status = "rejected"
)

// Result is the outcome of one execution, shared by the CLI, HTTP API, agent and MCP.
type Result struct {
	Status          Status  `json:"status"`
	Stdout          string  `json:"stdout"`
	Stderr          string  `json:"stderr"`
	StdoutTruncated bool    `json:"stdout_truncated"`
	StderrTruncated bool    `json:"stderr_truncated"`
	Result          *string `json:"result"`
	// ResultTruncated is set when the repr of the result was cut to fit the limit.
	ResultTruncated bool    `json:"result_truncated,omitempty"`
	Error           *Error  `json:"error"`
	Images          []Image `json:"images"`
	// ImagesTruncated is set when figures were dropped to respect the image limits.
	ImagesTruncated bool       `json:"images_truncated,omitempty"`
	Files           []FileInfo `json:"files"`
	// FilesTruncated is set when the work dir held more files than are listed.
	FilesTruncated bool    `json:"files_truncated,omitempty"`
	ExitCode       int     `json:"exit_code"`
	DurationMS     float64 `json:"duration_ms"`
	Usage          Usage   `json:"usage"`
	// Outputs are a kernel run's display data (Request.Kernel), in the order shown;
	// other runs have none.
	Outputs []Output `json:"outputs,omitempty"`
	// OutputsTruncated is set when display data was dropped or cut to the limits.
	OutputsTruncated bool `json:"outputs_truncated,omitempty"`
}

// FigureNames are the names of the run's figures, in order.
func (r *Result) FigureNames() []string {
	names := make([]string, len(r.Images))
	for i, im := range r.Images {
		names[i] = im.Name
	}
	return names
}

// FileSummaries name the files the run wrote, each as "path (N bytes)".
func (r *Result) FileSummaries() []string {
	files := make([]string, len(r.Files))
	for i, f := range r.Files {
		files[i] = fmt.Sprintf("%s (%d bytes)", f.Path, f.Size)
	}
	return files
}

// Output is one display data bundle of a kernel run: the representations of one
// object by MIME type: text as JSON strings, binary types (image/png, image/jpeg,
// application/pdf) as base64 strings, JSON types (application/json, e2b/data) as
// JSON.
type Output struct {
	Data map[string]json.RawMessage `json:"data"`
	// Main is set for the value of the cell's last expression.
	Main bool `json:"main"`
}

// Error describes why the code failed.
type Error struct {
	Name      string `json:"name"`
	Message   string `json:"message"`
	Traceback string `json:"traceback,omitempty"`
	// Truncated is set when the name, message or traceback was cut to its limit
	// (the traceback keeps its end).
	Truncated bool `json:"truncated,omitempty"`
}

// Image is a figure rendered by the code.
type Image struct {
	// Name is given by the server: figure-1.png, figure-2.png, … in the order the
	// figures were rendered.
	Name     string `json:"name"`
	MimeType string `json:"mime_type"`
	Data     []byte `json:"data"` // base64 in JSON
	Saved
}

// FileInfo names a file the code created or changed in its work dir.
type FileInfo struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	Saved
}

// Saved says where a produced file or figure was copied when the Request has an
// OutputDir (run --out); both are empty without one.
type Saved struct {
	// SavedAs is the path of the copy: OutputDir joined with the file's path, or
	// with the next free name ("a (2).csv") when that is taken, since no file in
	// OutputDir is ever replaced.
	SavedAs string `json:"saved_as,omitempty"`
	// SaveError says why it could not be copied (a name clash, a name too long for
	// OutputDir, …); the other files are copied all the same.
	SaveError string `json:"save_error,omitempty"`
}

// Usage is the resource consumption measured by the kernel (and, with limited
// network, by the egress proxy).
type Usage struct {
	CPUMS          float64       `json:"cpu_ms"`
	MaxMemoryBytes int64         `json:"max_memory_bytes"`
	Network        *NetworkUsage `json:"network,omitempty"`
}

// NetworkUsage is what an execution with limited network did through the egress
// proxy.
type NetworkUsage struct {
	Connections   int   `json:"connections"`    // upstream connections opened
	Denied        int   `json:"denied"`         // requests the proxy refused
	BytesSent     int64 `json:"bytes_sent"`     // to upstream hosts
	BytesReceived int64 `json:"bytes_received"` // from upstream hosts
}
