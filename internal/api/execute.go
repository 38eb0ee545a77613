package api

import (
	"bytes"
	"context"
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

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
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
	// Stream answers with server-sent events as the program prints (see stream.go).
	Stream bool `json:"stream,omitempty"`
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
		return badRequest("invalid_json", "request body: %s", DescribeJSONError(err, v))
	}
	if dec.More() {
		return badRequest("invalid_json", "request body has data after the JSON object")
	}
	return nil
}

// DecodeExecute parses and checks an execute body into a sandbox request within the
// policy of cfg. It never runs anything.
func DecodeExecute(body []byte, cfg *Config) (*ExecuteRequest, *job.Request, error) {
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

func (req *ExecuteRequest) toSandbox(cfg *Config) (*job.Request, *requestError) {
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
	sb := &job.Request{Code: *req.Code, Limits: l, Network: network}
	for i, f := range req.Files {
		data, err := base64.StdEncoding.DecodeString(f.ContentBase64)
		if err != nil {
			return nil, badRequest("invalid_file", "files[%d] (%q): content_base64 is not valid base64: %v", i, f.Path, err)
		}
		p, err := job.CleanInputPath(f.Path)
		if err != nil {
			return nil, badRequest("invalid_file_path", "files[%d]: %v", i, err)
		}
		sb.Files = append(sb.Files, job.InputFile{Path: p, Data: data})
	}
	if err := sb.Validate(); err != nil {
		if errors.Is(err, job.ErrStorageLimit) {
			return nil, storageLimitError(err)
		}
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
		if isDeadline(err) {
			l := s.cfg.Conn
			return nil, &requestError{http.StatusRequestTimeout, "body_timeout",
				fmt.Sprintf("the request body did not arrive in time (%v, plus 1s for every %d bytes received)", l.BodyTimeout, l.BodyMinRate)}
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
	t := tenantOf(r)
	var sess *session.Session
	var runner ImageRunner // nil: s.exec
	if sessionID != "" {
		if sess, err = s.sessions.Get(t.Name, sessionID); err != nil {
			writeSessionError(w, sessionID, err)
			return
		}
		var rerr *requestError
		if sb.Limits, rerr = sessionRunLimits(req, sess.Sandbox().Limits()); rerr != nil {
			writeRequestError(w, rerr)
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
	leave, ok := s.tenants.enter(t)
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "tenant_concurrency_limit",
			fmt.Sprintf("your key's tenant is at its limit of %d executions running or waiting; retry when one ends", t.MaxConcurrent))
		return
	}
	defer leave()
	if s.judge != nil {
		if res := s.judged(r.Context(), sb); res != nil {
			s.metrics.observe(res, "python", 0)
			var stream *execStream
			if req.Stream {
				stream = startExecStream(w)
				defer stream.close()
			}
			writeExecuteReply(w, stream, sess, res)
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
	var stream *execStream
	if req.Stream {
		stream = startExecStream(w)
		defer stream.close()
		sb.Stdout, sb.Stderr = stream.output(0), stream.output(1)
	}
	fail := func(status int, code, message string) {
		if stream != nil {
			stream.fail(status, code, message)
			return
		}
		writeError(w, status, code, message)
	}
	start := time.Now()
	var res *job.Result
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
			fail(http.StatusGone, "session_ended", fmt.Sprintf("session %q has ended (%v); create a new one", sessionID, err))
			return
		}
		if errors.Is(err, sandbox.ErrSessionLimits) || errors.Is(err, sandbox.ErrAboveTotal) {
			fail(http.StatusBadRequest, "invalid_limits", err.Error())
			return
		}
		if errors.Is(err, job.ErrStorageLimit) {
			fail(http.StatusInsufficientStorage, "storage_limit", err.Error())
			return
		}
		if isClientGone(r.Context().Err()) {
			fail(499, "client_closed", "the request was cancelled")
			return
		}
		if stream != nil {
			s.log.Error("execution failed", "err", err)
			fail(http.StatusInternalServerError, "sandbox_error", "the sandbox failed (an internal error; the server's log has the details)")
			return
		}
		internalError(w, "sandbox_error", "the sandbox failed", err)
		return
	}
	s.metrics.observe(res, "python", time.Since(start))
	writeExecuteReply(w, stream, sess, res)
}

// writeExecuteReply answers an execute with its Result: as JSON, or as the stream's
// last event; in a session, with what became of the session.
func writeExecuteReply(w http.ResponseWriter, stream *execStream, sess *session.Session, res *job.Result) {
	var reply any = res
	if sess != nil {
		state := SessionState{ID: sess.ID, Ended: !sess.Sandbox().Alive(), Reason: sess.Sandbox().EndReason()}
		if state.Ended && state.Reason == "" {
			state.Reason = sandbox.EndExited
		}
		reply = SessionExecuteReply{Result: res, Session: state}
	}
	if stream != nil {
		stream.finish("result", reply)
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

// SessionExecuteReply is the reply to an execute in a session: the Result, and
// whether the session lives on.
type SessionExecuteReply struct {
	*job.Result
	Session SessionState `json:"session"`
}

// SessionState tells the caller of a session execute what became of the session.
type SessionState struct {
	ID string `json:"id"`
	// Ended is true once the session's interpreter is gone, with its variables and
	// files: this run hit a limit that kills it (timeout, memory, output, a
	// cancellation) or the interpreter exited. Every later call answers 410
	// session_ended.
	Ended bool `json:"ended"`
	// Reason says why, when Ended: the Status of the run that ended it (timeout,
	// memory_limit, output_limit, killed), "exited" when the interpreter exited or
	// crashed by itself, "freeze_failed" when what the run left running could not be
	// paused until the next run.
	Reason string `json:"reason,omitempty"`
}

// sessionRunLimits are the limits of an execute in a session with limits have: only
// those the body names, the session's own for the rest. A session's memory is set
// when it is created, because everything it keeps between runs lives in it: a lower
// limit for one run would count that state (and a cut below it would make the kernel
// kill the interpreter), a higher one would break the session's bound. So memory_mb
// may only repeat the session's; timeout_ms may lower the session's, not raise it.
// Anything else is refused with 400, never ignored.
func sessionRunLimits(req *ExecuteRequest, have job.Limits) (job.Limits, *requestError) {
	var l job.Limits
	if req.MemoryMB != nil {
		if *req.MemoryMB<<20 != have.MemoryBytes {
			return l, badRequest("session_limit", "memory_mb %d: a session's memory limit is set when it is created (this one has %d MiB, which holds everything it keeps between runs); leave memory_mb out, or create a session with \"memory_mb\": %d",
				*req.MemoryMB, have.MemoryBytes>>20, *req.MemoryMB)
		}
		l.MemoryBytes = have.MemoryBytes
	}
	if req.TimeoutMS != nil {
		if maxMS := have.Timeout.Milliseconds(); *req.TimeoutMS > maxMS {
			return l, badRequest("session_limit", "timeout_ms %d is more than this session's %d, set when it was created; ask for less, or create a session with \"timeout_ms\": %d",
				*req.TimeoutMS, maxMS, *req.TimeoutMS)
		}
		l.Timeout = time.Duration(*req.TimeoutMS) * time.Millisecond
	}
	return l, nil
}

// judged asks the judge about req's code, for the network req runs with, and
// returns the Result of a refusal, or nil when the code may run. A judge that fails
// refuses (fail-closed), as in the gateway.
func (s *Server) judged(ctx context.Context, req *job.Request) *job.Result {
	v, err := s.judge.Check(ctx, req.Code, req.Network)
	if err != nil {
		v = agent.Verdict{Reason: "the safety check failed (" + err.Error() + "), so the code was not run"}
	}
	if v.Safe {
		return nil
	}
	return &job.Result{Status: job.StatusRejected, Error: &job.Error{Name: "Rejected", Message: v.Reason},
		Images: []job.Image{}, Files: []job.FileInfo{}}
}

// storageLimitError answers files, or a sandbox, that do not fit: 507, whose text
// says which limit they met.
func storageLimitError(err error) *requestError {
	return &requestError{http.StatusInsufficientStorage, "storage_limit", err.Error()}
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
