// Package e2b serves E2B's API over the server's sessions, so that the unmodified
// E2B SDKs (npm e2b and @e2b/code-interpreter) work against codeexec: an E2B sandbox
// is a session of the session.Manager, owned by the tenant of the X-API-Key that
// created it. It translates E2B's wire formats and calls the manager; it makes no
// sandbox, runs no queue and keeps no metrics of its own.
//
// One listener serves both planes at its root, as the SDKs expect with E2B_API_URL
// and E2B_SANDBOX_URL pointing at it: a request with an E2b-Sandbox-Id header goes to
// that sandbox's data plane (port 49999: the code interpreter; 49983: envd), any
// other to the control plane.
package e2b

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/jsonerr"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
)

// EnvdVersion is the envd version the sandboxes report. The SDKs gate features on
// it (octet-stream uploads from 0.5.7, closeStdin from 0.5.2, ...): it names the
// envd whose protocol this package speaks.
const EnvdVersion = "0.5.7"

// The ports of a sandbox's services, as E2b-Sandbox-Port names them.
const (
	portEnvd        = "49983"
	portInterpreter = "49999"
)

// Templates the SDKs create by default, both served by the server's default image.
var defaultTemplates = map[string]bool{"": true, "base": true, "code-interpreter-v1": true, "code-interpreter": true}

// Config is what a Server needs of the codeexec server.
type Config struct {
	Sessions *session.Manager
	// Keys are the server's API keys; empty: every caller is tenant.Anonymous.
	Keys []tenant.Key
	// Policy gives a sandbox's limits: its defaults, with runs allowed up to its
	// maximum timeout.
	Policy job.Policy
	// Domain is reported as each sandbox's domain.
	Domain string
	Log    *slog.Logger
	// Cluster forwards requests for other replicas' sandboxes to them; nil: a lone
	// server.
	Cluster *cluster.Cluster
}

// Server serves E2B's control plane and its sandboxes' data plane.
type Server struct {
	cfg Config

	// mu guards boxes: what E2B tells of a sandbox beyond its session (its
	// template, metadata, access token). An entry lives as long as its session: it is
	// dropped when the sandbox is killed, or found gone from the manager.
	mu    sync.Mutex
	boxes map[string]*box
}

// box is an E2B sandbox: a session and what E2B says about it.
type box struct {
	id       string
	owner    *tenant.Tenant
	template string
	metadata map[string]string
	envs     map[string]string
	network  *egress.Policy // its runs' and commands' egress (nil: none)
	token    string
	started  time.Time
	endAt    time.Time // as E2B sees it: now + timeout, moved by setTimeout
	exec     sync.Mutex
	count    int // executions in the default context, as Jupyter's execution_count

	cmdOnce  sync.Once
	commands *commands // see cmds

	ctxMu    sync.Mutex
	contexts map[string]*pyContext     // by id, besides the default one
	bash     *pyContext                // runs of language bash without a context, made at the first
	js       *pyContext                // runs of language javascript without a context, made at the first
	watchers map[string]*polledWatcher // CreateWatcher's, by id
}

// env is the environment of b's processes and contexts beyond the session's: HOME
// at /home/user and USER user, as in E2B's sandboxes (whose user the session's
// account files name so too), and the envVars it was created with.
func (b *box) env() map[string]string {
	env := map[string]string{"HOME": e2bHome, "USER": e2bUser}
	for k, v := range b.envs {
		env[k] = v
	}
	return env
}

// New returns a Server; cfg.Sessions must outlive it.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Server{cfg: cfg, boxes: map[string]*box{}}
}

// Handler serves both planes.
func (s *Server) Handler() http.Handler {
	cp := http.NewServeMux()
	cp.HandleFunc("POST /sandboxes", s.handleCreate)
	cp.HandleFunc("POST /v2/sandboxes", s.handleCreate)
	cp.HandleFunc("GET /sandboxes", s.handleList)
	cp.HandleFunc("GET /v2/sandboxes", s.handleList)
	cp.HandleFunc("GET /sandboxes/{id}", s.byPath(s.handleGet))
	cp.HandleFunc("DELETE /sandboxes/{id}", s.byPath(s.handleKill))
	cp.HandleFunc("POST /sandboxes/{id}/timeout", s.byPath(s.handleTimeout))
	cp.HandleFunc("POST /sandboxes/{id}/connect", s.byPath(s.handleConnect))
	cp.HandleFunc("POST /v2/sandboxes/{id}/connect", s.byPath(s.handleConnect))
	cp.HandleFunc("POST /sandboxes/{id}/refreshes", s.byPath(s.handleRefresh))
	for _, p := range []string{"POST /sandboxes/{id}/pause", "POST /sandboxes/{id}/resume", "POST /sandboxes/{id}/snapshots",
		"GET /snapshots", "POST /sandboxes/{id}/fork", "PUT /sandboxes/{id}/network", "GET /sandboxes/{id}/metrics",
		"/templates/", "/v2/templates/", "/v3/templates", "/volumes", "/volumes/", "/secrets", "/secrets/"} {
		cp.HandleFunc(p, notImplemented)
	}
	cp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %s is not part of the E2B API codeexec serves", r.Method, r.URL.Path))
	})
	control := s.auth(cp)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("E2b-Sandbox-Id"); id != "" {
			if s.cfg.Cluster.Forward(w, r, cluster.FaceE2B, id, writeLost) {
				return
			}
			s.dataPlane(w, r)
			return
		}
		if r.URL.Path == "/files" && r.URL.Query().Has("signature") {
			s.signedFiles(w, r)
			return
		}
		control.ServeHTTP(w, r)
	})
}

// Error is E2B's error body.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Error{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func notImplemented(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, fmt.Sprintf("%s %s: pause/resume, snapshots, forks, network updates, metrics, templates, volumes and secrets are not supported by codeexec", r.Method, r.URL.Path))
}

type tenantKey struct{}

// auth requires X-API-Key to be one of the server's keys, when it has any, and
// passes the request on with its tenant.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := tenant.Anonymous
		if len(s.cfg.Keys) > 0 {
			key := r.Header.Get("X-API-Key")
			if key == "" {
				writeError(w, http.StatusUnauthorized, "an API key is required: set E2B_API_KEY to one of the server's API keys")
				return
			}
			if t = s.keyTenant(key); t == nil {
				writeError(w, http.StatusUnauthorized, "the API key is not valid")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tenantKey{}, t)))
	})
}

// keyTenant compares key with every key in constant time (see api's keyTenant).
func (s *Server) keyTenant(key string) *tenant.Tenant {
	match := -1
	for i := len(s.cfg.Keys) - 1; i >= 0; i-- {
		eq := subtle.ConstantTimeCompare([]byte(s.cfg.Keys[i].Secret), []byte(key))
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return nil
	}
	return s.cfg.Keys[match].Tenant
}

func tenantOf(r *http.Request) *tenant.Tenant {
	return r.Context().Value(tenantKey{}).(*tenant.Tenant)
}

// NewSandbox is the body of POST /sandboxes.
type NewSandbox struct {
	TemplateID          string            `json:"templateID"`
	Timeout             *int64            `json:"timeout,omitempty"` // seconds
	Metadata            map[string]string `json:"metadata,omitempty"`
	EnvVars             map[string]string `json:"envVars,omitempty"`
	AllowInternetAccess *bool             `json:"allow_internet_access,omitempty"`
	Network             *NetworkRules     `json:"network,omitempty"`
	AutoPause           *bool             `json:"autoPause,omitempty"`
	Secure              *bool             `json:"secure,omitempty"`
}

// NetworkRules is the body's network: the hosts a sandbox may reach (allowOut)
// and those it may not (denyOut).
type NetworkRules struct {
	AllowOut []string `json:"allowOut,omitempty"`
	DenyOut  []string `json:"denyOut,omitempty"`
}

// denyAll are the denyOut entries that mean every host: E2B's way to say that
// allowOut is the whole list.
var denyAll = map[string]bool{"0.0.0.0/0": true, "::/0": true, "*": true}

// network is the egress policy of a sandbox, from its create body, within the
// operator's --net-allow: none by default (E2B's default is the internet; codeexec
// gives no network unless asked), the hosts of allowOut, or with
// allow_internet_access every host the operator allows. codeexec's network is an
// allowlist: a denyOut entry other than "everything" has no meaning in it.
func (s *Server) network(req NewSandbox) (*egress.Policy, error) {
	var allow []string
	if n := req.Network; n != nil {
		for _, d := range n.DenyOut {
			if !denyAll[d] && !slices.Contains(n.AllowOut, d) {
				return nil, fmt.Errorf("network.denyOut %q: codeexec's network is an allowlist (allowOut, within the server's --net-allow); denyOut can only be 0.0.0.0/0", d)
			}
		}
		allow = n.AllowOut
	}
	if len(allow) == 0 && req.AllowInternetAccess != nil && *req.AllowInternetAccess {
		if len(s.cfg.Policy.NetworkAllow) == 0 {
			return nil, errors.New("allow_internet_access: this server permits no network access; its operator can allow hosts with `codeexec serve --net-allow`, or create the sandbox with allowInternetAccess: false")
		}
		allow = s.cfg.Policy.NetworkAllow
	}
	if len(allow) == 0 {
		return nil, nil
	}
	return s.cfg.Policy.Network("allow=" + strings.Join(allow, ","))
}

// Sandbox is the reply to a create or connect.
type Sandbox struct {
	SandboxID       string  `json:"sandboxID"`
	TemplateID      string  `json:"templateID"`
	ClientID        string  `json:"clientID"`
	EnvdVersion     string  `json:"envdVersion"`
	EnvdAccessToken string  `json:"envdAccessToken,omitempty"`
	Domain          *string `json:"domain"`
}

// defaultTimeout is E2B's default sandbox timeout.
const defaultTimeout = 300 * time.Second

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req NewSandbox
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid body: "+jsonerr.Describe(err, nil))
		return
	}
	if !defaultTemplates[req.TemplateID] {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("template %q is not available: codeexec serves base and code-interpreter-v1", req.TemplateID))
		return
	}
	if req.AutoPause != nil && *req.AutoPause {
		writeError(w, http.StatusNotImplemented, "autoPause: codeexec does not pause sandboxes")
		return
	}
	network, err := s.network(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl := defaultTimeout
	if req.Timeout != nil {
		ttl = time.Duration(*req.Timeout) * time.Second
	}
	if max := s.cfg.Sessions.MaxTTL(); ttl > max {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("timeout %v is above the server's maximum of %v", ttl, max))
		return
	}
	if ttl <= 0 {
		writeError(w, http.StatusBadRequest, "timeout must be positive")
		return
	}
	maxMS := s.cfg.Policy.Max.Timeout.Milliseconds()
	l, err := s.cfg.Policy.Limits(&maxMS, nil)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	owner := tenantOf(r)
	// The work dir at /home/user, where E2B's users and programs look for it.
	sess, err := s.cfg.Sessions.CreateWith(r.Context(), owner, l, ttl, sandbox.SessionOptions{Home: true})
	if err != nil {
		writeSessionError(w, err)
		return
	}
	tmpl := req.TemplateID
	if tmpl == "" {
		tmpl = "base"
	}
	b := &box{id: sess.ID, owner: owner, template: tmpl, metadata: req.Metadata, envs: req.EnvVars,
		token: newToken(), started: sess.Created, endAt: time.Now().Add(ttl), network: network}
	s.mu.Lock()
	s.prune()
	s.boxes[b.id] = b
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, s.reply(b))
}

// prune forgets the boxes whose sessions have ended (expired, or deleted through
// another face), so that the table holds no more boxes than the manager holds
// sessions, plus one. s.mu must be held.
func (s *Server) prune() {
	for id, b := range s.boxes {
		if _, err := s.cfg.Sessions.Get(b.owner.Name, id); err != nil {
			delete(s.boxes, id)
		}
	}
}

func (s *Server) reply(b *box) Sandbox {
	var d *string
	if s.cfg.Domain != "" {
		d = &s.cfg.Domain
	}
	return Sandbox{SandboxID: b.id, TemplateID: b.template, ClientID: "codeexec", EnvdVersion: EnvdVersion,
		EnvdAccessToken: b.token, Domain: d}
}

func newToken() string {
	var t [24]byte
	_, _ = rand.Read(t[:])
	return hex.EncodeToString(t[:])
}

func writeSessionError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, session.ErrNotFound):
		writeError(w, http.StatusNotFound, "sandbox not found (it may have timed out or been killed)")
	case errors.Is(err, session.ErrTooMany), errors.Is(err, session.ErrTenantTooMany):
		writeError(w, http.StatusTooManyRequests, strings.TrimPrefix(err.Error(), "session: ")+"; kill a sandbox or wait for one to time out")
	case errors.Is(err, session.ErrBadTTL):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, session.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "the server is shutting down")
	case errors.Is(err, session.ErrDraining):
		drainingError(w)
	default:
		writeError(w, http.StatusInternalServerError, "sandbox error: "+err.Error())
	}
}

// find returns owner's box id with its live session; ErrNotFound otherwise. A box
// whose session has ended is forgotten.
func (s *Server) find(owner *tenant.Tenant, id string) (*box, *session.Session, error) {
	s.mu.Lock()
	b := s.boxes[id]
	s.mu.Unlock()
	if b == nil || b.owner.Name != owner.Name {
		return nil, nil, session.ErrNotFound
	}
	sess, err := s.cfg.Sessions.Get(owner.Name, id)
	if err != nil {
		s.forget(id)
		return nil, nil, err
	}
	return b, sess, nil
}

func (s *Server) forget(id string) {
	s.mu.Lock()
	delete(s.boxes, id)
	s.mu.Unlock()
}

// ListedSandbox is one sandbox of GET /v2/sandboxes and GET /sandboxes/{id}.
type ListedSandbox struct {
	SandboxID   string            `json:"sandboxID"`
	TemplateID  string            `json:"templateID"`
	ClientID    string            `json:"clientID"`
	StartedAt   time.Time         `json:"startedAt"`
	EndAt       time.Time         `json:"endAt"`
	CPUCount    int               `json:"cpuCount"`
	MemoryMB    int64             `json:"memoryMB"`
	DiskSizeMB  int64             `json:"diskSizeMB"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	State       string            `json:"state"`
	EnvdVersion string            `json:"envdVersion"`
	Domain      *string           `json:"domain"`
}

func (s *Server) listed(b *box, sess *session.Session) ListedSandbox {
	l := sess.Limits()
	cpus := int(l.CPUs)
	if cpus < 1 {
		cpus = 1
	}
	var d *string
	if s.cfg.Domain != "" {
		d = &s.cfg.Domain
	}
	return ListedSandbox{SandboxID: b.id, TemplateID: b.template, ClientID: "codeexec", StartedAt: b.started.UTC(),
		EndAt: sess.ExpiresAt().UTC(), CPUCount: cpus, MemoryMB: l.MemoryBytes >> 20, DiskSizeMB: l.WorkBytes >> 20,
		Metadata: b.metadata, State: "running", EnvdVersion: EnvdVersion, Domain: d}
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	owner := tenantOf(r)
	q := r.URL.Query()
	want := map[string]string{}
	if m := q.Get("metadata"); m != "" {
		vals, err := url.ParseQuery(m)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("metadata filter %q: %v", m, err))
			return
		}
		for k := range vals {
			want[k] = vals.Get(k)
		}
	}
	// Only running sandboxes exist here: a filter for paused ones matches none.
	if st := q.Get("state"); st != "" && !strings.Contains(st, "running") {
		writeJSON(w, http.StatusOK, []ListedSandbox{})
		return
	}
	out := []ListedSandbox{}
	for _, sess := range s.cfg.Sessions.List(owner.Name) {
		s.mu.Lock()
		b := s.boxes[sess.ID]
		s.mu.Unlock()
		if b == nil {
			continue // a session of the HTTP API, not an E2B sandbox
		}
		ok := true
		for k, v := range want {
			if b.metadata[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, s.listed(b, sess))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	b, sess, err := s.find(tenantOf(r), r.PathValue("id"))
	if err != nil {
		writeSessionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.listed(b, sess))
}

func (s *Server) handleKill(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, _, err := s.find(tenantOf(r), id)
	if err == nil {
		err = s.cfg.Sessions.Delete(b.owner.Name, id)
	}
	if err != nil {
		writeSessionError(w, err)
		return
	}
	s.forget(id)
	w.WriteHeader(http.StatusNoContent)
}

type timeoutBody struct {
	Timeout *int64 `json:"timeout"`
}

// setTTL applies the timeout of body (seconds), if any.
func (s *Server) setTTL(w http.ResponseWriter, r *http.Request, b *box, need bool) bool {
	var t timeoutBody
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&t); err != nil && (need || err.Error() != "EOF") {
		writeError(w, http.StatusBadRequest, "invalid body: "+jsonerr.Describe(err, nil))
		return false
	}
	if t.Timeout == nil {
		if need {
			writeError(w, http.StatusBadRequest, "timeout is required")
			return false
		}
		return true
	}
	ttl := time.Duration(*t.Timeout) * time.Second
	if err := s.cfg.Sessions.SetTTL(b.owner.Name, b.id, ttl); err != nil {
		writeSessionError(w, err)
		return false
	}
	return true
}

func (s *Server) handleTimeout(w http.ResponseWriter, r *http.Request) {
	b, _, err := s.find(tenantOf(r), r.PathValue("id"))
	if err != nil {
		writeSessionError(w, err)
		return
	}
	if s.setTTL(w, r, b, true) {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request) {
	b, _, err := s.find(tenantOf(r), r.PathValue("id"))
	if err != nil {
		writeSessionError(w, err)
		return
	}
	if s.setTTL(w, r, b, false) {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	b, _, err := s.find(tenantOf(r), r.PathValue("id"))
	if err != nil {
		writeSessionError(w, err)
		return
	}
	if s.setTTL(w, r, b, false) {
		writeJSON(w, http.StatusOK, s.reply(b))
	}
}
