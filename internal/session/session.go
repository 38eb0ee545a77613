// Package session owns every stateful sandbox of the server: it creates, finds,
// runs in, expires and ends them, admits each execution (the execution queue and
// each tenant's cap on concurrent executions), and reports it to an Observer. Every
// face (the HTTP API, the chat gateway, later ones) goes through its Manager.
package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// Errors of the manager, for the faces to map to their codes.
var (
	ErrNotFound = errors.New("session: not found")
	ErrTooMany  = errors.New("session: too many sessions")
	// ErrTenantTooMany: the tenant has as many sessions as its keys allow.
	ErrTenantTooMany = errors.New("session: too many sessions for this tenant")
	ErrClosed        = errors.New("session: manager closed")
	ErrBadTTL        = errors.New("session: bad ttl")
)

// Config bounds the sessions and executions of a Manager.
type Config struct {
	Max         int           // most sessions at once
	IdleTTL     time.Duration // default time a session lives after its last use
	MaxIdleTTL  time.Duration // the most idle time a caller may ask for
	MaxLifetime time.Duration // no session lives longer, however busy
	// MaxConcurrent executions (in sessions or not) run at once; up to MaxQueued
	// more wait their turn and the rest are refused with ErrQueueFull. A MaxConcurrent
	// of 0 means DefaultMaxConcurrent and DefaultMaxQueued, whatever MaxQueued says:
	// a Config that leaves both out must not refuse every execution.
	MaxConcurrent int
	MaxQueued     int
}

// The admission a Config that sets none gets.
const (
	DefaultMaxConcurrent = 16
	DefaultMaxQueued     = 64
)

// errSessionClosed cancels what runs or waits in a session that is being ended.
var errSessionClosed = fmt.Errorf("%w: closed", sandbox.ErrSessionEnded)

// Session is one live session: a sandbox kept between executions, with its id, its
// owner and its lifetime. Its Manager owns it: only Delete, expiry and the manager's
// Close end it.
type Session struct {
	ID      string
	Created time.Time
	// Owner is the name of the tenant that created the session; to anyone else it
	// does not exist.
	Owner string
	// Image is the image the session runs in, as the API named it; "" for a manager's
	// own starter when the server names no images.
	Image string
	sb    *sandbox.Session
	now   func() time.Time // the manager's clock
	// life ends when the session is ended (kill); what runs in it runs under it.
	life context.Context
	kill context.CancelFunc

	ttl       time.Duration
	mu        sync.Mutex
	lastUsed  time.Time
	execCount int
	running   int // executions in progress: a busy session does not expire
	maxExpiry time.Time
	language  string
}

// SetLanguage records the language the session was created for (see Language); its
// creator sets it before handing out the session's id.
func (s *Session) SetLanguage(lang string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.language = lang
}

// Language is the language of the session's executions that name none: "" (Python)
// unless SetLanguage said otherwise.
func (s *Session) Language() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.language
}

// begin records the start of an execution; the caller must call end after it.
func (s *Session) begin(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running++
	s.execCount++
	s.lastUsed = now
}

// end records the end of an execution, which counts as a use.
func (s *Session) end(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	s.lastUsed = now
}

// touch records a use other than an execution (a file upload, say), which pushes
// the idle expiry back.
func (s *Session) touch(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastUsed = now
}

// expired reports whether the session is idle past its expiry at now.
func (s *Session) expired(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running > 0 && now.Before(s.maxExpiry) {
		return false
	}
	return now.After(s.expiresLocked())
}

// close ends the session: it kills what runs in it first (the run answers killed),
// then waits for the sandbox to be released. Waiting first would hold the caller
// (Delete, the expiry loop, shutdown) behind whatever the program does, for up to
// its whole timeout. The manager must have removed it from its map.
func (s *Session) close() {
	s.kill()
	s.sb.Close()
}

// Info is what the API reports about a session.
type Info struct {
	ID          string    `json:"id"`
	CreatedAt   time.Time `json:"created_at"`
	LastUsedAt  time.Time `json:"last_used_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	Image       string    `json:"image,omitempty"`
	Language    string    `json:"language"` // python, bash or javascript
	Executions  int       `json:"executions"`
	Alive       bool      `json:"alive"`
	MemoryBytes int64     `json:"memory_bytes"`
}

// ExpiresAt is when the session ends unless it is used again.
func (s *Session) ExpiresAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expiresLocked()
}

func (s *Session) expiresLocked() time.Time {
	e := s.lastUsed.Add(s.ttl)
	if e.After(s.maxExpiry) {
		return s.maxExpiry
	}
	return e
}

// Info describes the session now.
func (s *Session) Info() Info {
	mem, _ := s.sb.MemoryBytes()
	s.mu.Lock()
	defer s.mu.Unlock()
	lang := s.language
	if lang == "" {
		lang = "python"
	}
	return Info{ID: s.ID, CreatedAt: s.Created, LastUsedAt: s.lastUsed, ExpiresAt: s.expiresLocked(),
		Image: s.Image, Language: lang, Executions: s.execCount, Alive: s.sb.Alive(), MemoryBytes: mem}
}

// Limits are the session's limits, fixed when it was created.
func (s *Session) Limits() job.Limits { return s.sb.Limits() }

// Alive reports whether the session can still run code.
func (s *Session) Alive() bool { return s.sb.Alive() }

// EndReason says why the session's sandbox ended ("" while it has not); see
// sandbox.Session.EndReason.
func (s *Session) EndReason() string { return s.sb.EndReason() }

// WriteFile puts data at p in the session's work dir (see sandbox.Session.WriteFile).
// It is a use of the session.
func (s *Session) WriteFile(p string, data []byte) error {
	s.touch(s.now())
	return s.sb.WriteFile(p, data)
}

// ReadFile returns the file p of the session's work dir, at most max bytes (see
// sandbox.Session.ReadFile). It is a use of the session.
func (s *Session) ReadFile(p string, max int64) ([]byte, error) {
	s.touch(s.now())
	return s.sb.ReadFile(p, max)
}

// RemoveFile deletes p from the session's work dir. It is a use of the session.
func (s *Session) RemoveFile(p string) error {
	s.touch(s.now())
	return s.sb.RemoveFile(p)
}

// Files lists the files of the session's work dir and whether the list is cut
// short. Like Info, it is no use of the session: it does not push its expiry back.
func (s *Session) Files() ([]job.FileInfo, bool, error) { return s.sb.Files() }

// Interrupt stops the session's running execution as Ctrl-C would, and keeps the
// session (see sandbox.Session.Interrupt). It is a use of the session.
func (s *Session) Interrupt() error {
	s.touch(s.now())
	return s.sb.Interrupt()
}

// SetTTL makes the session expire after ttl of idleness from now on, within the
// manager's MaxIdleTTL (an E2B sandbox's setTimeout). It is a use of the session.
func (m *Manager) SetTTL(owner, id string, ttl time.Duration) error {
	if ttl <= 0 || ttl > m.cfg.MaxIdleTTL {
		return fmt.Errorf("%w: %v is outside 1s..%v", ErrBadTTL, ttl, m.cfg.MaxIdleTTL)
	}
	s, err := m.Get(owner, id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = ttl
	s.lastUsed = m.now()
	return nil
}

// MaxTTL is the longest idle time a caller may ask for.
func (m *Manager) MaxTTL() time.Duration { return m.cfg.MaxIdleTTL }

// Start starts cmd in the session's sandbox (see sandbox.Session.Start): a command
// beside its interpreter. It counts as an execution in the session's books: the
// session does not expire while the command runs, and its end is a use. The caller
// must call the Process's Wait.
func (s *Session) Start(ctx context.Context, cmd *sandbox.Command) (*sandbox.Process, error) {
	s.begin(s.now())
	p, err := s.sb.Start(ctx, cmd)
	if err != nil {
		s.end(s.now())
		return nil, err
	}
	go func() {
		_, _ = p.Wait()
		s.end(s.now())
	}()
	return p, nil
}

// NewContext starts another interpreter context in the session (see
// sandbox.Session.NewContext); Manager.ExecIn runs code in it. It is a use of the
// session. The caller must Close the context, or the session's end closes it.
func (s *Session) NewContext(ctx context.Context) (*sandbox.Context, error) {
	s.touch(s.now())
	return s.sb.NewContext(ctx)
}
