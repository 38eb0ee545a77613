package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/job"

	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
)

// CreateSessionRequest is the body of POST /v1/sessions.
type CreateSessionRequest struct {
	Language string `json:"language,omitempty"`
	// Image names the image the session runs in (see Images); empty: the default.
	Image     string `json:"image,omitempty"`
	TTLSecs   *int64 `json:"ttl_s,omitempty"`
	MemoryMB  *int64 `json:"memory_mb,omitempty"`
	TimeoutMS *int64 `json:"timeout_ms,omitempty"`
}

// CreateSessionReply is the reply to POST /v1/sessions.
type CreateSessionReply struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	Image     string    `json:"image,omitempty"`
}

func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	body, rerr := s.readBody(w, r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	var req CreateSessionRequest
	if len(body) > 0 {
		if err := decodeJSON(bytes.NewReader(body), &req); err != nil {
			writeRequestError(w, err)
			return
		}
	}
	// The session's limits hold for its whole life, within the policy of executions.
	req.Language = job.CanonicalLanguage(req.Language)
	if err := checkLanguage(req.Language); err != nil {
		writeRequestError(w, err)
		return
	}
	l, err := s.cfg.Policy.Limits(req.TimeoutMS, req.MemoryMB)
	if err != nil {
		writeRequestError(w, policyError(err))
		return
	}
	if err := l.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	var ttl time.Duration
	if req.TTLSecs != nil {
		// A ttl_s beyond what a Duration holds would wrap, possibly into a small
		// positive ttl that the manager accepts.
		if *req.TTLSecs <= 0 || *req.TTLSecs > int64(math.MaxInt64/time.Second) {
			writeError(w, http.StatusBadRequest, "invalid_ttl", fmt.Sprintf("ttl_s %d is not a positive number of seconds within range", *req.TTLSecs))
			return
		}
		ttl = time.Duration(*req.TTLSecs) * time.Second
	}
	image, runner, rerr := s.imageRunner(req.Image)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	var sess *session.Session
	var cerr error
	if nr, ok := runner.(nodeRunner); ok && req.Language == job.LangJavaScript {
		sess, cerr = s.sessions.CreateIn(r.Context(), tenantOf(r), image, nodeStarter{nr}, l, ttl)
	} else if runner != nil {
		sess, cerr = s.sessions.CreateIn(r.Context(), tenantOf(r), image, runner, l, ttl)
	} else {
		sess, cerr = s.sessions.Create(r.Context(), tenantOf(r), l, ttl)
	}
	if cerr != nil {
		writeSessionError(w, "", cerr)
		return
	}
	if req.Language != job.LangPython {
		sess.SetLanguage(req.Language)
	}
	writeJSON(w, http.StatusCreated, CreateSessionReply{ID: sess.ID, ExpiresAt: sess.ExpiresAt(), Image: sess.Image})
}

// nodeRunner is a runner that keeps started Node sandboxes (*sandbox.Runner).
type nodeRunner interface {
	NewNodeSession(ctx context.Context, l job.Limits) (*sandbox.Session, error)
}

// nodeStarter starts JavaScript sessions from the runner's Node pool, so that their
// first run finds Node started.
type nodeStarter struct{ r nodeRunner }

func (n nodeStarter) NewSession(ctx context.Context, l job.Limits) (*sandbox.Session, error) {
	return n.r.NewNodeSession(ctx, l)
}

// SessionList is the reply to GET /v1/sessions: the caller's sessions, oldest first.
type SessionList struct {
	Sessions []session.Info `json:"sessions"`
}

func (s *Server) handleListSessions(w http.ResponseWriter, r *http.Request) {
	list := SessionList{Sessions: []session.Info{}}
	for _, sess := range s.sessions.List(tenantOf(r).Name) {
		list.Sessions = append(list.Sessions, sess.Info())
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) handleGetSession(w http.ResponseWriter, r *http.Request) {
	sess, err := s.sessions.Get(tenantOf(r).Name, r.PathValue("id"))
	if err != nil {
		writeSessionError(w, r.PathValue("id"), err)
		return
	}
	writeJSON(w, http.StatusOK, sess.Info())
}

func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.sessions.Delete(tenantOf(r).Name, id); err != nil {
		writeSessionError(w, id, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

// FileReply describes a stored file.
type FileReply struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// sessionFile finds the session and the file path a files route names, or answers
// the error itself and returns ok false.
func (s *Server) sessionFile(w http.ResponseWriter, r *http.Request) (sess *session.Session, path string, ok bool) {
	sess, err := s.sessions.Get(tenantOf(r).Name, r.PathValue("id"))
	if err != nil {
		writeSessionError(w, r.PathValue("id"), err)
		return nil, "", false
	}
	path, err = job.CleanInputPath(r.PathValue("path"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_file_path", err.Error())
		return nil, "", false
	}
	return sess, path, true
}

func (s *Server) handlePutFile(w http.ResponseWriter, r *http.Request) {
	sess, p, ok := s.sessionFile(w, r)
	if !ok {
		return
	}
	data, rerr := s.readBody(w, r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	if err := sess.WriteFile(p, data); err != nil {
		writeFileError(w, p, err)
		return
	}
	writeJSON(w, http.StatusOK, FileReply{Path: p, Size: int64(len(data))})
}

func (s *Server) handleListFiles(w http.ResponseWriter, r *http.Request) {
	sess, err := s.sessions.Get(tenantOf(r).Name, r.PathValue("id"))
	if err != nil {
		writeSessionError(w, r.PathValue("id"), err)
		return
	}
	files, truncated, err := sess.Files()
	if err != nil {
		writeFileError(w, "", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": files, "truncated": truncated})
}

func (s *Server) handleGetFile(w http.ResponseWriter, r *http.Request) {
	sess, p, ok := s.sessionFile(w, r)
	if !ok {
		return
	}
	data, err := sess.ReadFile(p, s.cfg.MaxDownloadBytes)
	if err != nil {
		writeFileError(w, p, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType(p, data))
	h.Set("Content-Length", strconv.Itoa(len(data)))
	// The bytes are the program's: a browser must save them, never render them
	// as a page of this origin (an HTML file would run its scripts here).
	disposition := mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(p)})
	if disposition == "" {
		disposition = "attachment"
	}
	h.Set("Content-Disposition", disposition)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// contentType is the media type of a downloaded file: from its name's extension,
// else from its first bytes (text or application/octet-stream).
func contentType(name string, data []byte) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return http.DetectContentType(data)
}

func (s *Server) handleDeleteFile(w http.ResponseWriter, r *http.Request) {
	sess, p, ok := s.sessionFile(w, r)
	if !ok {
		return
	}
	if err := sess.RemoveFile(p); err != nil {
		writeFileError(w, p, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": p, "deleted": true})
}

// InterruptReply is the reply to POST /v1/sessions/{id}/interrupt.
type InterruptReply struct {
	ID string `json:"id"`
	// Interrupted says whether an execution was running and got the interrupt; false
	// means there was nothing to stop.
	Interrupted bool `json:"interrupted"`
}

// handleInterruptSession stops the session's running execution as Ctrl-C would: the
// program gets KeyboardInterrupt, its execute call answers with that error, and the
// session keeps its variables and files.
func (s *Server) handleInterruptSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sess, err := s.sessions.Get(tenantOf(r).Name, id)
	if err != nil {
		writeSessionError(w, id, err)
		return
	}
	switch err := sess.Interrupt(); {
	case err == nil:
		writeJSON(w, http.StatusOK, InterruptReply{ID: id, Interrupted: true})
	case errors.Is(err, sandbox.ErrNotRunning):
		writeJSON(w, http.StatusOK, InterruptReply{ID: id, Interrupted: false})
	case errors.Is(err, sandbox.ErrSessionEnded):
		writeError(w, http.StatusGone, "session_ended", fmt.Sprintf("session %q has ended (%v); create a new one", id, err))
	default:
		s.log.Error("interrupt failed", "session", id, "err", err)
		writeError(w, http.StatusInternalServerError, "sandbox_error", "the interrupt could not be sent: "+err.Error())
	}
}

func writeSessionError(w http.ResponseWriter, id string, err error) {
	switch {
	case errors.Is(err, session.ErrNotFound):
		writeError(w, http.StatusNotFound, "session_not_found", fmt.Sprintf("no session %q (it may have expired)", id))
	case errors.Is(err, session.ErrTenantTooMany):
		writeError(w, http.StatusTooManyRequests, "tenant_session_limit",
			strings.TrimPrefix(err.Error(), "session: ")+"; delete one of its sessions (GET /v1/sessions lists them) or wait for one to expire")
	case errors.Is(err, session.ErrTooMany):
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, "too_many_sessions", err.Error()+"; delete a session or wait for one to expire")
	case errors.Is(err, sandbox.ErrNoWarm):
		writeError(w, http.StatusServiceUnavailable, "sessions_unavailable", err.Error())
	case errors.Is(err, session.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the server is shutting down")
	case errors.Is(err, session.ErrBadTTL):
		writeError(w, http.StatusBadRequest, "invalid_ttl", err.Error())
	case errors.Is(err, sandbox.ErrAboveTotal):
		writeError(w, http.StatusBadRequest, "invalid_limits", err.Error())
	case errors.Is(err, job.ErrStorageLimit):
		writeRequestError(w, storageLimitError(err))
	case isClientGone(err):
		writeError(w, 499, "client_closed", "the request was cancelled")
	default:
		internalError(w, "sandbox_error", "the session could not be started", err)
	}
}

func writeFileError(w http.ResponseWriter, p string, err error) {
	switch {
	case errors.Is(err, sandbox.ErrSessionEnded):
		writeError(w, http.StatusGone, "session_ended", err.Error())
	case errors.Is(err, os.ErrNotExist):
		writeError(w, http.StatusNotFound, "file_not_found", fmt.Sprintf("no file %q in the session", p))
	case errors.Is(err, job.ErrBadPath):
		writeError(w, http.StatusBadRequest, "invalid_file_path", err.Error())
	case errors.Is(err, sandbox.ErrNotAFile):
		writeError(w, http.StatusBadRequest, "not_a_file", fmt.Sprintf("%q is not a regular file (a directory, say); name a file", p))
	case errors.Is(err, job.ErrStorageLimit):
		writeRequestError(w, storageLimitError(err))
	default:
		writeError(w, http.StatusBadRequest, "file_error", err.Error())
	}
}
