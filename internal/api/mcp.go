package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/mcp"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
)

// The MCP face — /mcp here, and `codeexec mcp` over stdio — is a translation layer
// over this server: mcpSandboxes gives it the execute policy, the tenants' gate, the
// judge, the queue, the metrics, the sessions and the error codes of the HTTP routes.

// MCP returns the server's MCP server, made on first use. Call it (or Handler) after
// SetJudge and SetImages, which it describes to the model.
func (s *Server) MCP() *mcp.Server {
	s.mcpOnce.Do(func() {
		l := s.cfg.Policy.Default
		p := mcp.Policy{DefaultTimeout: l.Timeout, MaxTimeout: s.cfg.Policy.Max.Timeout, MemoryBytes: l.MemoryBytes,
			OutputBytes: l.OutputBytes, Judged: s.judge != nil, MaxBodyBytes: s.cfg.MaxBodyBytes}
		if s.cfg.MCPNetwork != nil {
			p.Network = s.cfg.MCPNetwork.Allow
		}
		s.mcp = mcp.New(mcpSandboxes{s}, p, s.log)
	})
	return s.mcp
}

// mcpSandboxes is the server as the MCP face uses it.
type mcpSandboxes struct{ s *Server }

// request applies the execute policy to e: the same checks, defaults and errors as
// an execute body with those fields, and the MCP face's network.
func (a mcpSandboxes) request(e *mcp.Execution) (*ExecuteRequest, *job.Request, error) {
	req := &ExecuteRequest{Code: &e.Code, Language: e.Language}
	if e.Timeout > 0 {
		ms := (e.Timeout + time.Millisecond - 1).Milliseconds() // a part of a millisecond is one
		req.TimeoutMS = &ms
	}
	for _, f := range e.Files {
		req.Files = append(req.Files, InputFile{Path: f.Path, ContentBase64: f.ContentBase64})
	}
	sb, rerr := req.toSandbox(&a.s.cfg)
	if rerr != nil {
		return nil, nil, mcpError(rerr)
	}
	sb.Network = a.s.cfg.MCPNetwork
	sb.Stdout, sb.Stderr = e.Stdout, e.Stderr
	return req, sb, nil
}

func (a mcpSandboxes) Run(ctx context.Context, owner *tenant.Tenant, e *mcp.Execution) (*job.Result, error) {
	_, sb, err := a.request(e)
	if err != nil {
		return nil, err
	}
	_, runner, rerr := a.s.imageRunner("")
	if rerr != nil {
		return nil, mcpError(rerr)
	}
	var exec Executor = a.s.exec
	if runner != nil {
		exec = runner
	}
	res, err := a.s.sessions.Run(ctx, owner, exec, sb, a.s.hooks(nil))
	return res, a.runError(ctx, "", err)
}

func (a mcpSandboxes) Exec(ctx context.Context, owner *tenant.Tenant, id string, e *mcp.Execution) (*job.Result, mcp.SessionState, error) {
	state := mcp.SessionState{ID: id}
	sess, err := a.s.sessions.Get(owner.Name, id)
	if err != nil {
		return nil, state, a.sessionError(id, err)
	}
	req, sb, err := a.request(e)
	if err != nil {
		return nil, state, err
	}
	// A session made by Create allows the longest timeout; a run that names none
	// gets the default, as a run outside a session does.
	if req.TimeoutMS == nil {
		ms := min(a.s.cfg.Policy.Default.Timeout, sess.Limits().Timeout).Milliseconds()
		req.TimeoutMS = &ms
	}
	var rerr *requestError
	if sb.Limits, rerr = sessionRunLimits(req, sess.Limits()); rerr != nil {
		return nil, state, mcpError(rerr)
	}
	if sb.Language, rerr = sessionLanguage(sb.Language, sess); rerr != nil {
		return nil, state, mcpError(rerr)
	}
	res, err := a.s.sessions.Exec(ctx, owner, id, sb, a.s.hooks(nil))
	if err != nil {
		return nil, state, a.runError(ctx, id, err)
	}
	state.Ended = !sess.Alive()
	if state.Ended {
		if state.Reason = sess.EndReason(); state.Reason == "" {
			state.Reason = sandbox.EndExited
		}
	}
	return res, state, nil
}

// runError gives an execution's failure the execute route's code; nil stays nil.
func (a mcpSandboxes) runError(ctx context.Context, sessionID string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, session.ErrNotFound):
		return a.sessionError(sessionID, err)
	case errors.Is(err, session.ErrTenantBusy):
		return &mcp.Error{Code: "tenant_concurrency_limit", Message: "your key's tenant is at its limit of executions running or waiting; retry when one ends"}
	case errors.Is(err, session.ErrQueueFull):
		return &mcp.Error{Code: "queue_full", Message: "too many executions are running or waiting; retry shortly"}
	case errors.Is(err, session.ErrWaitCancelled):
		return &mcp.Error{Code: "client_closed", Message: "the call was cancelled while waiting for its turn"}
	case errors.Is(err, sandbox.ErrSessionEnded):
		return &mcp.Error{Code: "session_ended", Message: fmt.Sprintf("session %q has ended (%v); create a new one", sessionID, err)}
	case errors.Is(err, sandbox.ErrSessionLimits), errors.Is(err, sandbox.ErrAboveTotal):
		return &mcp.Error{Code: "invalid_limits", Message: err.Error()}
	case errors.Is(err, job.ErrStorageLimit):
		return &mcp.Error{Code: "storage_limit", Message: err.Error()}
	case isClientGone(ctx.Err()):
		return &mcp.Error{Code: "client_closed", Message: "the call was cancelled"}
	}
	a.s.log.Error("mcp execution failed", "err", err)
	return &mcp.Error{Code: "sandbox_error", Message: "the sandbox failed (an internal error; the server's log has the details)"}
}

func (a mcpSandboxes) Interrupt(owner *tenant.Tenant, id string) error {
	sess, err := a.s.sessions.Get(owner.Name, id)
	if err != nil {
		return a.sessionError(id, err)
	}
	return sess.Interrupt()
}

func (a mcpSandboxes) Create(ctx context.Context, owner *tenant.Tenant, language string) (session.Info, error) {
	// The limits of a session made with an empty create body, but each run may ask
	// for the longest timeout: MCP's create_session takes no limits, and a model
	// cannot make a session over for a longer run.
	code := ""
	sb, rerr := (&ExecuteRequest{Code: &code}).toSandbox(&a.s.cfg)
	if rerr != nil {
		return session.Info{}, mcpError(rerr)
	}
	l := sb.Limits
	l.Timeout = a.s.cfg.Policy.Max.Timeout
	image, runner, rerr := a.s.imageRunner("")
	if rerr != nil {
		return session.Info{}, mcpError(rerr)
	}
	var sess *session.Session
	var err error
	if runner != nil {
		sess, err = a.s.sessions.CreateIn(ctx, owner, image, runner, l, 0)
	} else {
		sess, err = a.s.sessions.Create(ctx, owner, l, 0)
	}
	if err != nil {
		return session.Info{}, a.sessionError("", err)
	}
	if language != job.LangPython {
		sess.SetLanguage(language)
	}
	return sess.Info(), nil
}

func (a mcpSandboxes) Close(owner *tenant.Tenant, id string) error {
	if err := a.s.sessions.Delete(owner.Name, id); err != nil {
		return a.sessionError(id, err)
	}
	return nil
}

func (a mcpSandboxes) List(owner *tenant.Tenant) []session.Info {
	var list []session.Info
	for _, sess := range a.s.sessions.List(owner.Name) {
		list = append(list, sess.Info())
	}
	return list
}

// file finds owner's session id and cleans path p as the files routes do.
func (a mcpSandboxes) file(owner *tenant.Tenant, id, p string) (*session.Session, string, error) {
	sess, err := a.s.sessions.Get(owner.Name, id)
	if err != nil {
		return nil, "", a.sessionError(id, err)
	}
	clean, err := job.CleanInputPath(p)
	if err != nil {
		return nil, "", &mcp.Error{Code: "invalid_file_path", Message: err.Error()}
	}
	return sess, clean, nil
}

func (a mcpSandboxes) WriteFile(owner *tenant.Tenant, id, p string, data []byte) (string, error) {
	sess, clean, err := a.file(owner, id, p)
	if err != nil {
		return "", err
	}
	if err := sess.WriteFile(clean, data); err != nil {
		return "", a.fileError(clean, err)
	}
	return clean, nil
}

func (a mcpSandboxes) ReadFile(owner *tenant.Tenant, id, p string) ([]byte, error) {
	sess, clean, err := a.file(owner, id, p)
	if err != nil {
		return nil, err
	}
	data, err := sess.ReadFile(clean, a.s.cfg.MaxDownloadBytes)
	if err != nil {
		return nil, a.fileError(clean, err)
	}
	return data, nil
}

func (a mcpSandboxes) ListFiles(owner *tenant.Tenant, id string) ([]job.FileInfo, bool, error) {
	sess, err := a.s.sessions.Get(owner.Name, id)
	if err != nil {
		return nil, false, a.sessionError(id, err)
	}
	files, truncated, err := sess.Files()
	if err != nil {
		return nil, false, a.fileError("", err)
	}
	return files, truncated, nil
}

func mcpError(re *requestError) error { return &mcp.Error{Code: re.code, Message: re.message} }

// sessionError and fileError are what writeSessionError and writeFileError answer
// for err, as an mcp.Error: the one place each code is decided serves both faces.
func (a mcpSandboxes) sessionError(id string, err error) error {
	return a.replyError(err, func(w http.ResponseWriter) { writeSessionError(w, id, err) })
}

func (a mcpSandboxes) fileError(p string, err error) error {
	return a.replyError(err, func(w http.ResponseWriter) { writeFileError(w, p, err) })
}

// replyError turns the error reply write makes for err into an mcp.Error; the cause
// of a failure of the server's own, which the reply hides, goes to the log.
func (a mcpSandboxes) replyError(err error, write func(http.ResponseWriter)) error {
	rec := &replyRecorder{header: http.Header{}}
	write(rec)
	var body errorBody
	if json.Unmarshal(rec.body.Bytes(), &body) != nil || body.Error.Code == "" {
		return fmt.Errorf("api: no error reply for %w", err)
	}
	if rec.status >= 500 {
		a.s.log.Warn("mcp call failed", "code", body.Error.Code, "err", err)
	}
	return &mcp.Error{Code: body.Error.Code, Message: body.Error.Message}
}

// replyRecorder keeps a reply written in memory.
type replyRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *replyRecorder) Header() http.Header         { return r.header }
func (r *replyRecorder) WriteHeader(status int)      { r.status = status }
func (r *replyRecorder) Write(p []byte) (int, error) { return r.body.Write(p) }
