package sandbox

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
}

// Error describes why the code failed.
type Error struct {
	Name      string `json:"name"`
	Message   string `json:"message"`
	Traceback string `json:"traceback,omitempty"`
}

// Image is a figure rendered by the code.
type Image struct {
	Name     string `json:"name"`
	MimeType string `json:"mime_type"`
	Data     []byte `json:"data"` // base64 in JSON
}

// FileInfo names a file the code created or changed in its work dir.
type FileInfo struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
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
