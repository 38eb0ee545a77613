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

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/jsonerr"

	"github.com/codeexec/codeexec/internal/safety"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
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
		return badRequest("invalid_json", "request body: %s", jsonerr.Describe(err, v))
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
	req.Language = job.CanonicalLanguage(req.Language)
	if err := checkLanguage(req.Language); err != nil {
		return nil, err
	}
	network, err := cfg.Policy.Network(req.Network)
	if err != nil {
		return nil, policyError(err)
	}
	l, err := cfg.Policy.Limits(req.TimeoutMS, req.MemoryMB)
	if err != nil {
		return nil, policyError(err)
	}
	sb := &job.Request{Code: *req.Code, Language: req.Language, Limits: l, Network: network}
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

// checkLanguage refuses a language that is not served, naming those that are.
func checkLanguage(lang string) *requestError {
	if !job.KnownLanguage(lang) {
		return badRequest("unsupported_language", "language %q is not supported; use one of %q", lang, job.Languages)
	}
	return nil
}

// sessionLanguage is the language of an execution in a session: the session's when
// the request names none. A session's state is one interpreter's (Python variables
// or a shell's directory and environment), so another language is refused.
func sessionLanguage(asked string, sess *session.Session) (string, *requestError) {
	have := sess.Language()
	if asked == "" || asked == have || (asked == job.LangPython && have == "") {
		return have, nil
	}
	name := have
	if name == "" {
		name = job.LangPython
	}
	return "", badRequest("language_mismatch", "session %q runs %s, not %s; leave out \"language\" or create a session for %s", sess.ID, name, asked, asked)
}

// policyError answers a request the execution policy refuses, with the code of the
// rule it broke.
func policyError(err error) *requestError {
	status, code := http.StatusBadRequest, "invalid_request"
	switch {
	case errors.Is(err, job.ErrInvalidTimeout):
		code = "invalid_timeout"
	case errors.Is(err, job.ErrInvalidMemory):
		code = "invalid_memory"
	case errors.Is(err, job.ErrInvalidNetwork):
		code = "invalid_network"
	case errors.Is(err, job.ErrNetworkNotPermitted):
		status, code = http.StatusForbidden, "network_not_permitted"
	}
	return &requestError{status, code, err.Error()}
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
// or the body). The session manager admits and runs it; this decodes the request,
// checks it against the session it names, and encodes the answer.
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
	runner := s.exec
	if sessionID != "" {
		if sess, err = s.sessions.Get(t.Name, sessionID); err != nil {
			writeSessionError(w, sessionID, err)
			return
		}
		var rerr *requestError
		if sb.Limits, rerr = sessionRunLimits(req, sess.Limits()); rerr != nil {
			writeRequestError(w, rerr)
			return
		}
		if sb.Language, rerr = sessionLanguage(req.Language, sess); rerr != nil {
			writeRequestError(w, rerr)
			return
		}
		if req.Image != "" && req.Image != s.sessionImage(sess) {
			writeError(w, http.StatusBadRequest, "image_mismatch", fmt.Sprintf("session %q runs in image %q, not %q; leave out \"image\" or create a session in that image", sessionID, s.sessionImage(sess), req.Image))
			return
		}
	} else {
		_, image, rerr := s.imageRunner(req.Image)
		if rerr != nil {
			writeRequestError(w, rerr)
			return
		}
		if image != nil {
			runner = image
		}
	}
	hooks := s.hooks(nil)
	var stream *execStream
	if req.Stream {
		// Its headers go out once the execution has its turn: what is refused before
		// (a full queue) is a plain HTTP error, as without stream.
		stream = newExecStream(w)
		defer stream.close()
		sb.Stdout, sb.Stderr = stream.output(0), stream.output(1)
		hooks.Started = stream.start
	}
	var res *job.Result
	if sess != nil {
		res, err = s.sessions.Exec(r.Context(), t, sess.ID, sb, hooks)
	} else {
		res, err = s.sessions.Run(r.Context(), t, runner, sb, hooks)
	}
	if err != nil {
		s.writeExecuteError(w, r, stream, t, sessionID, err)
		return
	}
	if stream != nil {
		stream.start() // a refusal of the judge is answered in a stream too
	}
	writeExecuteReply(w, stream, sess, res)
}

// writeExecuteError answers an execution the manager did not run to a Result: in the
// stream once it has started, else as a plain error.
func (s *Server) writeExecuteError(w http.ResponseWriter, r *http.Request, stream *execStream, t *tenant.Tenant, sessionID string, err error) {
	fail := func(status int, code, message string) {
		if stream.started() {
			stream.fail(status, code, message)
			return
		}
		writeError(w, status, code, message)
	}
	switch {
	case errors.Is(err, session.ErrNotFound):
		writeSessionError(w, sessionID, err)
	case errors.Is(err, session.ErrTenantBusy):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "tenant_concurrency_limit",
			fmt.Sprintf("your key's tenant is at its limit of %d executions running or waiting; retry when one ends", t.MaxConcurrent))
	case errors.Is(err, session.ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "queue_full", "too many executions are running or waiting; retry shortly")
	case errors.Is(err, session.ErrWaitCancelled):
		writeError(w, 499, "client_closed", "the request was cancelled while waiting")
	case errors.Is(err, sandbox.ErrSessionEnded):
		fail(http.StatusGone, "session_ended", fmt.Sprintf("session %q has ended (%v); create a new one", sessionID, err))
	case errors.Is(err, sandbox.ErrSessionLimits), errors.Is(err, sandbox.ErrAboveTotal):
		fail(http.StatusBadRequest, "invalid_limits", err.Error())
	case errors.Is(err, job.ErrStorageLimit):
		fail(http.StatusInsufficientStorage, "storage_limit", err.Error())
	case isClientGone(r.Context().Err()):
		fail(499, "client_closed", "the request was cancelled")
	case stream.started():
		s.log.Error("execution failed", "err", err)
		fail(http.StatusInternalServerError, "sandbox_error", "the sandbox failed (an internal error; the server's log has the details)")
	default:
		internalError(w, "sandbox_error", "the sandbox failed", err)
	}
}

// writeExecuteReply answers an execute with its Result: as JSON, or as the stream's
// last event; in a session, with what became of the session.
func writeExecuteReply(w http.ResponseWriter, stream *execStream, sess *session.Session, res *job.Result) {
	var reply any = res
	if sess != nil {
		state := SessionState{ID: sess.ID, Ended: !sess.Alive(), Reason: sess.EndReason()}
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

// hooks are the manager hooks of a direct execution (execute, MCP): the judge's
// check when the server judges them, and started, if any.
func (s *Server) hooks(started func()) session.Hooks {
	h := session.Hooks{Started: started}
	if s.judge != nil {
		h.Check = s.judged
	}
	return h
}

// judged asks the judge about req's code, for the network req runs with, and
// returns the Result of a refusal, or nil when the code may run. A judge that fails
// refuses (fail-closed), as in the gateway.
func (s *Server) judged(ctx context.Context, req *job.Request) *job.Result {
	v, err := s.judge.Check(ctx, req.Code, req.Network)
	if err != nil {
		v = safety.Verdict{Reason: "the safety check failed (" + err.Error() + "), so the code was not run"}
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
