package api

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"time"

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
	// The session's limits hold for its whole life; reuse the execute checks.
	code := ""
	l, err := (&ExecuteRequest{Code: &code, Language: req.Language, TimeoutMS: req.TimeoutMS, MemoryMB: req.MemoryMB}).toSandbox(&s.cfg)
	if err != nil {
		writeRequestError(w, err)
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
	if runner != nil {
		sess, cerr = s.sessions.CreateIn(image, runner, l.Limits, ttl)
	} else {
		sess, cerr = s.sessions.Create(l.Limits, ttl)
	}
	if cerr != nil {
		writeSessionError(w, "", cerr)
		return
	}
	writeJSON(w, http.StatusCreated, CreateSessionReply{ID: sess.ID, ExpiresAt: sess.ExpiresAt(), Image: sess.Image})
}

func (s *Server) handleGetSession(w http.ResponseWriter, r *http.Request) {
	sess, err := s.sessions.Get(r.PathValue("id"))
	if err != nil {
		writeSessionError(w, r.PathValue("id"), err)
		return
	}
	writeJSON(w, http.StatusOK, sess.Info())
}

func (s *Server) handleDeleteSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.sessions.Delete(id); err != nil {
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
	sess, err := s.sessions.Get(r.PathValue("id"))
	if err != nil {
		writeSessionError(w, r.PathValue("id"), err)
		return nil, "", false
	}
	path, err = sandbox.CleanInputPath(r.PathValue("path"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_file_path", err.Error())
		return nil, "", false
	}
	sess.Touch(time.Now())
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
	if err := sess.Sandbox().WriteFile(p, data); err != nil {
		writeFileError(w, p, err)
		return
	}
	writeJSON(w, http.StatusOK, FileReply{Path: p, Size: int64(len(data))})
}

func (s *Server) handleListFiles(w http.ResponseWriter, r *http.Request) {
	sess, err := s.sessions.Get(r.PathValue("id"))
	if err != nil {
		writeSessionError(w, r.PathValue("id"), err)
		return
	}
	files, truncated, err := sess.Sandbox().Files()
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
	data, err := sess.Sandbox().ReadFile(p, s.cfg.MaxDownloadBytes)
	if err != nil {
		writeFileError(w, p, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

func writeSessionError(w http.ResponseWriter, id string, err error) {
	switch {
	case errors.Is(err, session.ErrNotFound):
		writeError(w, http.StatusNotFound, "session_not_found", fmt.Sprintf("no session %q (it may have expired)", id))
	case errors.Is(err, session.ErrTooMany):
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, "too_many_sessions", err.Error()+"; delete a session or wait for one to expire")
	case errors.Is(err, sandbox.ErrNoWarm):
		writeError(w, http.StatusServiceUnavailable, "sessions_unavailable", err.Error())
	case errors.Is(err, session.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the server is shutting down")
	case errors.Is(err, session.ErrBadTTL):
		writeError(w, http.StatusBadRequest, "invalid_ttl", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "sandbox_error", "the session could not be started: "+err.Error())
	}
}

func writeFileError(w http.ResponseWriter, p string, err error) {
	switch {
	case errors.Is(err, sandbox.ErrSessionEnded):
		writeError(w, http.StatusGone, "session_ended", err.Error())
	case errors.Is(err, os.ErrNotExist):
		writeError(w, http.StatusNotFound, "file_not_found", fmt.Sprintf("no file %q in the session", p))
	case errors.Is(err, sandbox.ErrBadPath):
		writeError(w, http.StatusBadRequest, "invalid_file_path", err.Error())
	default:
		writeError(w, http.StatusBadRequest, "file_error", err.Error())
	}
}
