// Package api serves codeexec's HTTP API: direct execution, sessions and their
// files, health and metrics, with OpenAI-style errors.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/job"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/mcp"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Executor runs one execution in a fresh sandbox; *sandbox.Runner is one.
type Executor = session.Executor

// ImageRunner runs executions and starts sessions in one image;
// *sandbox.Runner is one.
type ImageRunner interface {
	Executor
	session.Starter
}

// Images are the images a server runs code in, which requests name with "image".
type Images interface {
	// Default is the image of requests that name none. Its runner should be the
	// executor and session starter given to New, which the gateway and /readyz use.
	Default() string
	// Names are the images requests may name, Default among them.
	Names() []string
	// Runner returns the runner of image name, one of Names, starting it on first use.
	Runner(name string) (ImageRunner, error)
}

// Config is the API's settings: the execution policy it applies, sizes and keys.
// Plain data; see DefaultConfig.
type Config struct {
	// Policy are the limits a request gets and may ask for, and the hosts it may
	// reach: the same rules for every face.
	Policy job.Policy
	// MaxBodyBytes bounds a request body (JSON or an uploaded file).
	MaxBodyBytes int64
	// MaxCodeBytes bounds the code of one execution.
	MaxCodeBytes int
	// MaxDownloadBytes bounds a file read back from a session.
	MaxDownloadBytes int64
	// MaxFileStorage bounds the bytes of the files one tenant keeps with
	// /v1/files (in memory); 0: no bound.
	MaxFileStorage int64
	// Keys, when there are any, are required as "Authorization: Bearer <key>" on /v1,
	// and each request acts for its key's tenant. APIKeys are keys each of a tenant
	// of its own (named "key#N" by their place), checked after Keys.
	Keys    []tenant.Key
	APIKeys []string
	// MCPNetwork is the network of code run through MCP (/mcp and codeexec mcp),
	// whose tool has no network parameter: nil, none.
	MCPNetwork *egress.Policy
	// Conn bounds what one client can hold of the server (see HTTPServer and
	// LimitListener).
	Conn ConnLimits
}

// DefaultConfig is the API's policy unless configured otherwise.
func DefaultConfig() Config {
	l := job.DefaultLimits()
	max := l
	max.Timeout = 5 * time.Minute
	max.MemoryBytes = 4 << 30
	return Config{
		Policy:           job.Policy{Default: l, Max: max},
		MaxBodyBytes:     32 << 20,
		MaxCodeBytes:     1 << 20,
		MaxDownloadBytes: 64 << 20,
		MaxFileStorage:   256 << 20,
		Conn:             DefaultConnLimits(),
	}
}

// Server is the HTTP API over a session manager, which admits and runs every
// execution, and the executor of one-shot executions.
type Server struct {
	cfg      Config
	exec     Executor
	sessions *session.Manager
	ready    func() error
	log      *slog.Logger
	keys     []tenant.Key // cfg.Keys, then cfg.APIKeys
	metrics  *metrics
	registry *prometheus.Registry
	gateway  *Gateway // nil: no upstream model, chat endpoints answer 503
	judge    agent.Judge
	images   Images // nil: the executor's image only, and requests may not name one
	mcpOnce  sync.Once
	mcp      *mcp.Server // see MCP
	// containerNames are the names of the containers of /v1/containers.
	containerNames containerNames
	// files are the uploads of /v1/files.
	files    *fileStore
	cluster  *cluster.Cluster // nil: a lone server
	replica  string           // this replica's name, in the ids of responses
	draining drainFlag
}

// SetJudge makes j judge the code of /v1/execute and session executions before it
// runs (serve --safety-scope all); the gateway's code tool has its own, in its
// Agent. Call it before Handler.
func (s *Server) SetJudge(j agent.Judge) { s.judge = j }

// SetGateway enables /v1/chat/completions and /v1/models. Call it before Handler.
func (s *Server) SetGateway(g *Gateway) { s.gateway = g }

// SetImages lets requests name an image among im's; those that name none run in
// im.Default(). Call it before Handler.
func (s *Server) SetImages(im Images) { s.images = im }

// New makes a Server. exec runs the one-shot executions of the default image;
// sessions owns the sessions and admits every execution, and reports them to the
// Server's metrics from now on. ready reports whether executions can run (image
// present, zygote up); it backs /readyz.
func New(cfg Config, exec Executor, sessions *session.Manager, ready func() error, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	s := &Server{cfg: cfg, exec: exec, sessions: sessions, ready: ready, log: log, registry: reg, files: newFileStore(cfg.MaxFileStorage)}
	s.keys = append(s.keys, cfg.Keys...)
	for i, k := range cfg.APIKeys {
		s.keys = append(s.keys, tenant.Key{Secret: k, Tenant: &tenant.Tenant{Name: "key#" + strconv.Itoa(len(cfg.Keys)+i+1)}})
	}
	s.metrics = newMetrics(reg, s)
	sessions.SetObserver(s.metrics)
	return s
}

// Handler routes every endpoint of the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	v1 := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, s.auth(h))
	}
	// byPath and byBody send a request for another replica's state there (see
	// route.go); creating refuses new work while the server drains.
	v1("POST /v1/chat/completions", s.byBody(s.handleChat))
	v1("POST /v1/responses", s.byBody(s.handleResponses))
	v1("GET /v1/models", s.handleModels)
	v1("POST /v1/execute", s.byBody(s.handleExecute))
	v1("POST /v1/sessions", s.creating(s.handleCreateSession))
	v1("GET /v1/sessions", s.handleListSessions)
	v1("GET /v1/sessions/{id}", s.byPath(s.handleGetSession))
	v1("DELETE /v1/sessions/{id}", s.byPath(s.handleDeleteSession))
	v1("POST /v1/sessions/{id}/execute", s.byPath(s.handleSessionExecute))
	v1("POST /v1/sessions/{id}/interrupt", s.byPath(s.handleInterruptSession))
	v1("PUT /v1/sessions/{id}/files/{path...}", s.byPath(s.handlePutFile))
	v1("GET /v1/sessions/{id}/files", s.byPath(s.handleListFiles))
	v1("GET /v1/sessions/{id}/files/{path...}", s.byPath(s.handleGetFile))
	v1("DELETE /v1/sessions/{id}/files/{path...}", s.byPath(s.handleDeleteFile))
	v1("POST /v1/containers", s.creating(s.handleCreateContainer))
	v1("GET /v1/containers", s.handleListContainers)
	v1("GET /v1/containers/{id}", s.byPath(s.handleGetContainer))
	v1("DELETE /v1/containers/{id}", s.byPath(s.handleDeleteContainer))
	v1("POST /v1/containers/{id}/files", s.byPath(s.handleCreateContainerFile))
	v1("GET /v1/containers/{id}/files", s.byPath(s.handleListContainerFiles))
	v1("GET /v1/containers/{id}/files/{file_id}", s.byPath(s.handleGetContainerFile))
	v1("GET /v1/containers/{id}/files/{file_id}/content", s.byPath(s.handleContainerFileContent))
	v1("DELETE /v1/containers/{id}/files/{file_id}", s.byPath(s.handleDeleteContainerFile))
	v1("POST /v1/files", s.creating(s.handleCreateFile))
	v1("GET /v1/files", s.handleListUploadedFiles)
	v1("GET /v1/files/{file_id}", s.byPathValue("file_id", s.handleGetUploadedFile))
	v1("GET /v1/files/{file_id}/content", s.byPathValue("file_id", s.handleUploadedFileContent))
	v1("DELETE /v1/files/{file_id}", s.byPathValue("file_id", s.handleDeleteUploadedFile))
	mux.Handle("/mcp", s.auth(s.byMCPSession(s.MCP().Handler())))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	return s.logRequests(s.bodyDeadlines(routeOrRefuse(mux)))
}

// methods are those a request may be refused with 405 for; routes use no others.
var methods = []string{"DELETE", "GET", "HEAD", "POST", "PUT"}

// routeOrRefuse serves what mux routes, and answers the rest in the API's error
// shape: 405 with Allow when the path has routes for other methods, else 404. The
// mux's own answers to those are plain text.
func routeOrRefuse(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var allow []string
		for _, m := range methods {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 {
			writeError(w, http.StatusNotFound, "not_found", "no route for "+r.Method+" "+r.URL.Path)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
			fmt.Sprintf("%s is not allowed on %s; it takes %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
	})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeError(w, http.StatusServiceUnavailable, "draining", "this replica is shutting down: it finishes what runs and takes no new work")
		return
	}
	if err := s.ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// errorBody is OpenAI's error shape.
type errorBody struct {
	Error apiError `json:"error"`
}

type apiError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
}

// errorType maps a status to OpenAI's error type names.
func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// writeError is the one place an API error is written.
func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorBody{Error: apiError{Message: message, Type: errorType(status), Code: code}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// statusRecorder remembers the status a handler wrote, for the request log, and
// gives each piece of the reply its send deadline (nil: none); it keeps the error
// of a failure of the server's own for the log line too.
type statusRecorder struct {
	http.ResponseWriter
	status int
	send   *sendDeadline
	err    error
}

// internalError answers a failure of the server's own with 500: the client learns
// what failed, not the error, which may name host paths, cgroups or pids; the
// request's log line carries it.
func internalError(w http.ResponseWriter, code, what string, err error) {
	for inner := w; inner != nil; {
		if rec, ok := inner.(*statusRecorder); ok {
			rec.err = err
			break
		}
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		inner = u.Unwrap()
	}
	writeError(w, http.StatusInternalServerError, code, what+" (an internal error; the server's log has the details)")
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.send.arm()
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.send == nil {
		return r.ResponseWriter.Write(p)
	}
	written := 0
	for len(p) > 0 {
		piece := p[:min(len(p), sendPiece)]
		r.send.arm()
		n, err := r.ResponseWriter.Write(piece)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// Flush sends what is buffered: streams depend on it (http.Flusher).
func (r *statusRecorder) Flush() {
	r.send.arm()
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		if d := s.cfg.Conn.SendTimeout; d > 0 {
			rec.send = &sendDeadline{rc: http.NewResponseController(w), timeout: d}
		}
		defer func() {
			// The server flushes the end of the reply after this: give it a fresh
			// deadline, whenever the handler last wrote.
			rec.send.arm()
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					// A forwarded reply whose owner failed in the middle: net/http
					// cuts the client's connection, the only honest end of a
					// reply whose status is already sent.
					s.log.Warn("request aborted", "method", r.Method, "path", r.URL.Path, "status", rec.status, "ctx", context.Cause(r.Context()))
					panic(v)
				}
				// A bug must cost one request, never the server.
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", v)
				writeError(rec, http.StatusInternalServerError, "internal_error", "internal error")
			}
			ms := strconv.FormatFloat(float64(time.Since(start).Microseconds())/1000, 'f', 2, 64)
			if rec.err != nil {
				s.log.Error("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "ms", ms, "err", rec.err)
				return
			}
			s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "ms", ms)
		}()
		next.ServeHTTP(rec, r)
	})
}

// newID returns a random identifier for replies the server makes itself.
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// isClientGone reports whether err came from the caller going away.
func isClientGone(err error) bool {
	return errors.Is(err, context.Canceled)
}
