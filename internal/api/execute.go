package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
)

// ExecuteRequest is the body of POST /v1/execute and /v1/sessions/{id}/execute.
type ExecuteRequest struct {
	Code      *string     `json:"code"`
	Language  string      `json:"language,omitempty"`
	SessionID string      `json:"session_id,omitempty"`
	TimeoutMS *int64      `json:"timeout_ms,omitempty"`
	MemoryMB  *int64      `json:"memory_mb,omitempty"`
	Network   string      `json:"network,omitempty"`
	Files     []InputFile `json:"files,omitempty"`
	// Image names the image to run in (see Images); empty: the server's default. In a
	// session it must be empty or the session's.
	Image string `json:"image,omitempty"`
}

// InputFile is a file placed in the work dir before the code runs.
type InputFile struct {
	Path          string `json:"path"`
	ContentBase64 string `json:"content_base64"`
}

// requestError is a client mistake: its status, stable code and message.
type requestError struct {
	status  int
	code    string
	message string
}

func (e *requestError) Error() string { return e.message }

func badRequest(code, format string, args ...any) *requestError {
	return &requestError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
}

// decodeJSON reads a JSON body strictly: unknown fields and trailing data are errors.
func decodeJSON(r io.Reader, v any) *requestError {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &requestError{http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit)}
		}
		if errors.Is(err, io.EOF) {
			return badRequest("invalid_json", "request body is empty; expected a JSON object")
		}
		return badRequest("invalid_json", "request body is not valid JSON for this endpoint: %v", err)
	}
	if dec.More() {
		return badRequest("invalid_json", "request body has data after the JSON object")
	}
	return nil
}

// DecodeExecute parses and checks an execute body into a sandbox request within the
// policy of cfg. It never runs anything.
func DecodeExecute(body []byte, cfg *Config) (*ExecuteRequest, *sandbox.Request, error) {
	var req ExecuteRequest
	if err := decodeJSON(bytes.NewReader(body), &req); err != nil {
		return nil, nil, err
	}
	sb, err := req.toSandbox(cfg)
	if err != nil {
		return nil, nil, err
	}
	return &req, sb, nil
}

func (req *ExecuteRequest) toSandbox(cfg *Config) (*sandbox.Request, *requestError) {
	if req.Code == nil {
		return nil, badRequest("missing_code", `"code" is required`)
	}
	if len(*req.Code) > cfg.MaxCodeBytes {
		return nil, badRequest("code_too_large", "code has %d bytes; the limit is %d", len(*req.Code), cfg.MaxCodeBytes)
	}
	if req.Language != "" && req.Language != "python" {
		return nil, badRequest("unsupported_language", "language %q is not supported; use \"python\"", req.Language)
	}
	network, nerr := networkPolicy(req.Network, cfg.NetworkAllow)
	if nerr != nil {
		return nil, nerr
	}
	l := cfg.DefaultLimits
	if req.TimeoutMS != nil {
		// Compared in milliseconds, before any conversion: a Duration of a huge
		// timeout_ms overflows and could wrap into a small timeout that passes.
		maxMS := cfg.MaxLimits.Timeout.Milliseconds()
		if *req.TimeoutMS <= 0 || *req.TimeoutMS > maxMS {
			return nil, badRequest("invalid_timeout", "timeout_ms %d is outside 1..%d", *req.TimeoutMS, maxMS)
		}
		l.Timeout = time.Duration(*req.TimeoutMS) * time.Millisecond
	}
	if req.MemoryMB != nil {
		maxMB := cfg.MaxLimits.MemoryBytes >> 20
		if *req.MemoryMB < 16 || *req.MemoryMB > maxMB {
			return nil, badRequest("invalid_memory", "memory_mb %d is outside 16..%d", *req.MemoryMB, maxMB)
		}
		l.MemoryBytes = *req.MemoryMB << 20
	}
	sb := &sandbox.Request{Code: *req.Code, Limits: l, Network: network}
	var total int64
	for i, f := range req.Files {
		data, err := base64.StdEncoding.DecodeString(f.ContentBase64)
		if err != nil {
			return nil, badRequest("invalid_file", "files[%d] (%q): content_base64 is not valid base64: %v", i, f.Path, err)
		}
		p, err := sandbox.CleanInputPath(f.Path)
		if err != nil {
			return nil, badRequest("invalid_file_path", "files[%d]: %v", i, err)
		}
		total += int64(len(data))
		sb.Files = append(sb.Files, sandbox.InputFile{Path: p, Data: data})
	}
	if total > l.WorkBytes {
		return nil, badRequest("files_too_large", "files total %d bytes; the work dir holds %d", total, l.WorkBytes)
	}
	if err := sb.Validate(); err != nil {
		return nil, badRequest("invalid_request", "%v", err)
	}
	return sb, nil
}

// networkPolicy turns a request's network setting into the egress policy of its
// execution: nil for none, and only hosts the operator's permitted patterns cover.
func networkPolicy(spec string, permitted []string) (*egress.Policy, *requestError) {
	policy, err := egress.ParseSpec(spec)
	if err != nil {
		return nil, badRequest("invalid_network", "%v", err)
	}
	if policy == nil {
		return nil, nil
	}
	if len(permitted) == 0 {
		return nil, &requestError{http.StatusForbidden, "network_not_permitted",
			"this server permits no network access; its operator can allow hosts with `codeexec serve --net-allow`"}
	}
	if err := egress.Covered(policy.Allow, permitted); err != nil {
		return nil, &requestError{http.StatusForbidden, "network_not_permitted", err.Error()}
	}
	return policy, nil
}

// readBody reads a request body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *requestError) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &requestError{http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodyBytes)}
		}
		return nil, badRequest("unreadable_body", "reading the request body: %v", err)
	}
	return data, nil
}

func (s *Server) handleExecute(w http.ResponseWriter, r *http.Request) {
	s.execute(w, r, "")
}

func (s *Server) handleSessionExecute(w http.ResponseWriter, r *http.Request) {
	s.execute(w, r, r.PathValue("id"))
}

// execute runs an execute request, in session sessionID when it is set (from the path
// or the body).
func (s *Server) execute(w http.ResponseWriter, r *http.Request, sessionID string) {
	body, rerr := s.readBody(w, r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	req, sb, err := DecodeExecute(body, &s.cfg)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	if sessionID == "" {
		sessionID = req.SessionID
	} else if req.SessionID != "" && req.SessionID != sessionID {
		writeError(w, http.StatusBadRequest, "session_mismatch", "session_id in the body differs from the one in the path")
		return
	}
	var sess *session.Session
	var runner ImageRunner // nil: s.exec
	if sessionID != "" {
		if sess, err = s.sessions.Get(sessionID); err != nil {
			writeSessionError(w, sessionID, err)
			return
		}
		if req.Image != "" && req.Image != s.sessionImage(sess) {
			writeError(w, http.StatusBadRequest, "image_mismatch", fmt.Sprintf("session %q runs in image %q, not %q; leave out \"image\" or create a session in that image", sessionID, s.sessionImage(sess), req.Image))
			return
		}
	} else {
		var rerr *requestError
		if _, runner, rerr = s.imageRunner(req.Image); rerr != nil {
			writeRequestError(w, rerr)
			return
		}
	}
	release, err := s.queue.acquire(r.Context())
	if err != nil {
		if errors.Is(err, errQueueFull) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "queue_full", "too many executions are running or waiting; retry shortly")
			return
		}
		writeError(w, 499, "client_closed", "the request was cancelled while waiting")
		return
	}
	defer release()
	start := time.Now()
	var res *sandbox.Result
	if sess != nil {
		sess.Begin(start)
		res, err = sess.Sandbox().Run(r.Context(), sb)
		sess.End(time.Now())
	} else if runner != nil {
		res, err = runner.Run(r.Context(), sb)
	} else {
		res, err = s.exec.Run(r.Context(), sb)
	}
	if err != nil {
		if errors.Is(err, sandbox.ErrSessionEnded) {
			writeError(w, http.StatusGone, "session_ended", fmt.Sprintf("session %q has ended (%v); create a new one", sessionID, err))
			return
		}
		if isClientGone(r.Context().Err()) {
			writeError(w, 499, "client_closed", "the request was cancelled")
			return
		}
		s.log.Error("execution failed", "err", err)
		writeError(w, http.StatusInternalServerError, "sandbox_error", "the sandbox failed: "+err.Error())
		return
	}
	s.metrics.observe(res, "python", time.Since(start))
	writeJSON(w, http.StatusOK, res)
}

func writeRequestError(w http.ResponseWriter, err error) {
	var re *requestError
	if errors.As(err, &re) {
		writeError(w, re.status, re.code, re.message)
		return
	}
	writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
}

// imageRunner resolves the image a request names: its name and runner. Without Images
// the runner is nil (the Server's own executor and session starter) and the request may
// not name an image; with them, "" means the default.
func (s *Server) imageRunner(name string) (string, ImageRunner, *requestError) {
	if s.images == nil {
		if name != "" {
			return "", nil, badRequest("unknown_image", "image %q is not served here: this server runs code in its default image only", name)
		}
		return "", nil, nil
	}
	if name == "" {
		name = s.images.Default()
	}
	if names := s.images.Names(); !slices.Contains(names, name) {
		return "", nil, badRequest("unknown_image", "image %q is not served here; this server serves %s", name, strings.Join(quoteAll(names), ", "))
	}
	r, err := s.images.Runner(name)
	if err != nil {
		s.log.Error("opening an image's runner", "image", name, "err", err)
		return "", nil, &requestError{http.StatusServiceUnavailable, "image_unavailable", fmt.Sprintf("image %q cannot run code now: %v", name, err)}
	}
	return name, r, nil
}

// sessionImage is the image sess runs in, as requests name it.
func (s *Server) sessionImage(sess *session.Session) string {
	if sess.Image == "" && s.images != nil {
		return s.images.Default()
	}
	return sess.Image
}

func quoteAll(ss []string) []string {
	q := make([]string, len(ss))
	for i, v := range ss {
		q[i] = strconv.Quote(v)
	}
	return q
}
