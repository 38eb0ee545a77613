// Package mcp serves codeexec over the Model Context Protocol — tools, resources and
// prompts — on stdio or streamable HTTP. It is a translation layer: every execution,
// session and file goes through the Sandboxes of the server, with the same policy,
// queue, judge and owners as the HTTP API.
package mcp

import (
	"context"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/session"
	"github.com/codeexec/codeexec/internal/tenant"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Sandboxes are the server's executions, sessions and files as the MCP face uses
// them, each for an owner: a session of another owner does not exist. Errors the
// caller can act on are *Error, with the HTTP API's code and message.
type Sandboxes interface {
	// Run runs e once in a fresh sandbox.
	Run(ctx context.Context, owner *tenant.Tenant, e *Execution) (*job.Result, error)
	// Exec runs e in session id; its state says whether the session lives on.
	Exec(ctx context.Context, owner *tenant.Tenant, id string, e *Execution) (*job.Result, SessionState, error)
	// Interrupt stops the execution running in session id as Ctrl-C would; it
	// returns sandbox.ErrNotRunning when none runs.
	Interrupt(owner *tenant.Tenant, id string) error
	// Create starts a session for language (job.LangPython, ...) in which each
	// execution may run up to the longest timeout the policy allows.
	Create(ctx context.Context, owner *tenant.Tenant, language string) (session.Info, error)
	// Close ends session id: its processes and files are gone.
	Close(owner *tenant.Tenant, id string) error
	// List returns the owner's sessions, oldest first.
	List(owner *tenant.Tenant) []session.Info
	// WriteFile puts data at path in the session's work dir, whole or not at all,
	// and returns the path as the session names it.
	WriteFile(owner *tenant.Tenant, id, path string, data []byte) (string, error)
	// ReadFile returns the file at path in the session's work dir.
	ReadFile(owner *tenant.Tenant, id, path string) ([]byte, error)
	// ListFiles lists the regular files of the session's work dir; truncated says
	// that there were more than are listed.
	ListFiles(owner *tenant.Tenant, id string) (files []job.FileInfo, truncated bool, err error)
}

// Execution is an execute tool's call before the server's policy: the policy gives it
// its limits and network, decodes and checks its files.
type Execution struct {
	Code string
	// Language is the code's: job.LangPython, LangJavaScript or LangBash.
	Language string
	// Timeout is the wall-clock limit the caller asked for; 0: the policy's default.
	Timeout time.Duration
	Files   []InputFile
	// Stdout and Stderr, when set, receive the program's output as it is written.
	Stdout, Stderr io.Writer
}

// InputFile is a file to place in the work dir before the code runs, as the caller
// sent it.
type InputFile struct {
	Path          string `json:"path"`
	ContentBase64 string `json:"content_base64"`
}

// SessionState tells the caller of an execution in a session what became of it.
type SessionState struct {
	ID string `json:"id"`
	// Ended is true when the run ended the session's interpreter (a limit, a kill,
	// the interpreter exiting): its variables and files are gone.
	Ended bool `json:"ended"`
	// Reason says why, when Ended (the HTTP API's session.reason).
	Reason string `json:"reason,omitempty"`
}

// Error is a request refused or a failure the caller can act on: the stable code
// and the message the HTTP API answers with.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Policy is what the model is told of the sandbox in the tools' descriptions; the
// Sandboxes enforce it.
type Policy struct {
	DefaultTimeout, MaxTimeout time.Duration
	MemoryBytes                int64
	OutputBytes                int64
	// Network lists the hosts executions may reach through the egress proxy; empty:
	// no network.
	Network []string
	// Judged says that a safety judge checks the code before it runs.
	Judged bool
	// MaxBodyBytes bounds one HTTP request to /mcp (a call with its arguments).
	MaxBodyBytes int64
}

// Server is codeexec's MCP server over one Sandboxes. It serves any number of MCP
// sessions at once, over HTTP (Handler) or stdio (ServeStdio). The creator must call
// Stop when the sandboxes are about to close.
type Server struct {
	sb     Sandboxes
	policy Policy
	log    *slog.Logger
	srv    *sdk.Server

	// stop is cancelled by Stop: every execution still running ends.
	stop   context.Context
	cancel context.CancelFunc

	turns turns

	mu sync.Mutex
	// made are the sessions each MCP session created, closed when it ends.
	made    map[*sdk.ServerSession]map[string]*tenant.Tenant
	closing bool
}

// New makes the MCP server of sb, describing policy to the model.
func New(sb Sandboxes, policy Policy, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{sb: sb, policy: policy, log: log, made: map[*sdk.ServerSession]map[string]*tenant.Tenant{},
		turns: turns{m: map[string]*turn{}}}
	s.stop, s.cancel = context.WithCancel(context.Background())
	s.srv = sdk.NewServer(&sdk.Implementation{Name: "codeexec", Title: "codeexec: secure Python execution", Version: version()},
		&sdk.ServerOptions{Instructions: instructions(policy), Logger: quiet(log),
			// No logging capability: the server sends no log messages.
			Capabilities: &sdk.ServerCapabilities{}})
	s.addTools()
	s.addResources()
	s.addPrompts()
	return s
}

// Stop ends every execution still running (a one-shot run is killed, a session's is
// killed too) and refuses new calls. Call it when the server shuts down.
func (s *Server) Stop() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.cancel()
}

// stopped reports whether Stop was called.
func (s *Server) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// track records that MCP session ss created session id for owner, so that it ends
// with ss; the first record starts the watch on ss.
func (s *Server) track(ss *sdk.ServerSession, owner *tenant.Tenant, id string) {
	if ss == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, watched := s.made[ss]
	if !watched {
		ids = map[string]*tenant.Tenant{}
		s.made[ss] = ids
		go s.closeWith(ss)
	}
	ids[id] = owner
}

// untrack forgets session id, closed by the caller.
func (s *Server) untrack(ss *sdk.ServerSession, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.made[ss], id)
}

// closeWith waits for MCP session ss to end, then closes the sessions it created: a
// host that goes away leaves nothing running behind it.
func (s *Server) closeWith(ss *sdk.ServerSession) {
	_ = ss.Wait()
	s.mu.Lock()
	ids := s.made[ss]
	delete(s.made, ss)
	s.mu.Unlock()
	for id, owner := range ids {
		// Not found: closed already, through the HTTP API or by expiry.
		_ = s.sb.Close(owner, id)
	}
}

// version names the build in the MCP handshake: the module's version, when the
// binary was built from one.
func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// quiet passes on log's warnings and errors only: the SDK logs every session's
// connection and handshake at the info level.
func quiet(log *slog.Logger) *slog.Logger {
	return slog.New(minLevel{log.Handler(), slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// turns let one call at a time of this server run in a session, in the order they
// come: Session.Interrupt stops whatever runs there, so a cancelled call may
// interrupt only when the run is its own. (A run through the HTTP API in the same
// session at the same moment can still be the one interrupted.)
type turns struct {
	mu sync.Mutex
	m  map[string]*turn
}

type turn struct {
	slot  chan struct{}
	users int // holders and waiters: the turn is dropped when none is left
}

// take waits for key's turn, or for ctx to end. The caller must call done.
func (t *turns) take(ctx context.Context, key string) (done func(), err error) {
	t.mu.Lock()
	tu := t.m[key]
	if tu == nil {
		tu = &turn{slot: make(chan struct{}, 1)}
		t.m[key] = tu
	}
	tu.users++
	t.mu.Unlock()
	leave := func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if tu.users--; tu.users == 0 {
			delete(t.m, key)
		}
	}
	select {
	case tu.slot <- struct{}{}:
		return func() { <-tu.slot; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}
