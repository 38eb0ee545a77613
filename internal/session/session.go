// Package session keeps the stateful execution sessions of the API: their ids,
// owners, lifetimes, idle expiry and the caps on how many exist.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/tenant"
)

// Errors of the manager, for the API to map to status codes.
var (
	ErrNotFound = errors.New("session: not found")
	ErrTooMany  = errors.New("session: too many sessions")
	// ErrTenantTooMany: the tenant has as many sessions as its keys allow.
	ErrTenantTooMany = errors.New("session: too many sessions for this tenant")
	ErrClosed        = errors.New("session: manager closed")
	ErrBadTTL        = errors.New("session: bad ttl")
)

// Starter makes sandbox sessions; *sandbox.Runner is one.
type Starter interface {
	NewSession(ctx context.Context, l job.Limits) (*sandbox.Session, error)
}

// Config bounds the sessions of a Manager.
type Config struct {
	Max         int           // most sessions at once
	IdleTTL     time.Duration // default time a session lives after its last use
	MaxIdleTTL  time.Duration // the most idle time a caller may ask for
	MaxLifetime time.Duration // no session lives longer, however busy
}

// Session is one live session as the API sees it.
type Session struct {
	ID      string
	Created time.Time
	// Owner is the name of the tenant that created the session; to anyone else it
	// does not exist.
	Owner string
	// Image is the image the session runs in, as the API named it; "" for a manager's
	// own starter when the server names no images.
	Image     string
	sb        *sandbox.Session
	ttl       time.Duration
	mu        sync.Mutex
	lastUsed  time.Time
	execCount int
	running   int // executions in progress: a busy session does not expire
	maxExpiry time.Time
}

// Begin records the start of an execution; the caller must call End after it.
func (s *Session) Begin(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running++
	s.execCount++
	s.lastUsed = now
}

// End records the end of an execution, which counts as a use.
func (s *Session) End(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
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

// Sandbox returns the session's interpreter.
func (s *Session) Sandbox() *sandbox.Session { return s.sb }

// Touch records a use other than an execution (a file upload, say), which pushes
// the idle expiry back.
func (s *Session) Touch(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastUsed = now
}

// Info is what the API reports about a session.
type Info struct {
	ID          string    `json:"id"`
	CreatedAt   time.Time `json:"created_at"`
	LastUsedAt  time.Time `json:"last_used_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	Image       string    `json:"image,omitempty"`
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
	return Info{ID: s.ID, CreatedAt: s.Created, LastUsedAt: s.lastUsed, ExpiresAt: s.expiresLocked(),
		Image: s.Image, Executions: s.execCount, Alive: s.sb.Alive(), MemoryBytes: mem}
}

// Manager owns every session: it creates, finds, expires and ends them. Each session
// belongs to the tenant that created it: the manager finds it for that tenant only.
// The creator must call Close.
type Manager struct {
	cfg     Config
	starter Starter
	now     func() time.Time

	mu       sync.Mutex
	sessions map[string]*Session
	pending  int            // sessions being started, counted against Max
	owned    map[string]int // live and starting sessions by owner, for tenants' caps
	closed   bool
	stop     chan struct{}
	done     chan struct{}
}

// NewManager starts a manager and its expiry loop. The caller must call Close.
func NewManager(cfg Config, starter Starter) *Manager {
	m := &Manager{cfg: cfg, starter: starter, now: time.Now, sessions: map[string]*Session{},
		owned: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go m.expireLoop()
	return m
}

// Create starts a session for owner with limits l that expires after ttl of idleness
// (0: the default; more than the maximum is an error). The owner's MaxSessions, when
// set, caps its sessions below the manager's Max.
func (m *Manager) Create(owner *tenant.Tenant, l job.Limits, ttl time.Duration) (*Session, error) {
	return m.CreateIn(owner, "", m.starter, l, ttl)
}

// CreateIn is Create with the session started by st, the starter of image (the
// runner of another image than the manager's own); the cap on sessions covers them all.
func (m *Manager) CreateIn(owner *tenant.Tenant, image string, st Starter, l job.Limits, ttl time.Duration) (*Session, error) {
	if ttl == 0 {
		ttl = m.cfg.IdleTTL
	}
	if ttl < 0 || ttl > m.cfg.MaxIdleTTL {
		return nil, fmt.Errorf("%w: %v is outside 1s..%v", ErrBadTTL, ttl, m.cfg.MaxIdleTTL)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	// The tenant's cap first: it is the one its caller can do something about.
	if owner.MaxSessions > 0 && m.owned[owner.Name] >= owner.MaxSessions {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: its limit is %d", ErrTenantTooMany, owner.MaxSessions)
	}
	if len(m.sessions)+m.pending >= m.cfg.Max {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: the limit is %d", ErrTooMany, m.cfg.Max)
	}
	m.pending++
	m.owned[owner.Name]++
	m.mu.Unlock()

	sb, err := st.NewSession(context.TODO(), l) // the caller's context once Create takes one
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending--
	if err != nil {
		m.disown(owner.Name)
		return nil, err
	}
	if m.closed {
		m.disown(owner.Name)
		sb.Close()
		return nil, ErrClosed
	}
	now := m.now()
	s := &Session{ID: newID(), Created: now, Owner: owner.Name, Image: image, sb: sb, ttl: ttl, lastUsed: now, maxExpiry: now.Add(m.cfg.MaxLifetime)}
	m.sessions[s.ID] = s
	return s, nil
}

// disown forgets one session of owner. m.mu must be held.
func (m *Manager) disown(owner string) {
	if m.owned[owner]--; m.owned[owner] <= 0 {
		delete(m.owned, owner)
	}
}

// newID returns an unguessable session id. The id alone does not give access: a
// session is found only for its owner.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "sess_" + hex.EncodeToString(b[:])
}

// Get returns the live session id if owner owns it. A session of another owner is
// ErrNotFound, exactly like one that does not exist.
func (m *Manager) Get(owner, id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok || s.Owner != owner {
		return nil, ErrNotFound
	}
	return s, nil
}

// List returns owner's live sessions, oldest first.
func (m *Manager) List(owner string) []*Session {
	m.mu.Lock()
	var list []*Session
	for _, s := range m.sessions {
		if s.Owner == owner {
			list = append(list, s)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(list, func(a, b *Session) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return list
}

// Delete ends session id if owner owns it: its processes and files are gone.
func (m *Manager) Delete(owner, id string) error {
	m.mu.Lock()
	s, ok := m.sessions[id]
	if ok && s.Owner == owner {
		delete(m.sessions, id)
		m.disown(owner)
	}
	m.mu.Unlock()
	if !ok || s.Owner != owner {
		return ErrNotFound
	}
	s.sb.Close()
	return nil
}

// Len is the number of live sessions.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// ExpireNow ends every session past its expiry and returns how many it ended. A
// session running an execution is left alone until its maximum lifetime. A session
// whose interpreter died stays until its expiry, so that its users learn why.
func (m *Manager) ExpireNow() int {
	now := m.now()
	var ended []*Session
	m.mu.Lock()
	for id, s := range m.sessions {
		if s.expired(now) {
			ended = append(ended, s)
			delete(m.sessions, id)
			m.disown(s.Owner)
		}
	}
	m.mu.Unlock()
	for _, s := range ended {
		s.sb.Close()
	}
	return len(ended)
}

func (m *Manager) expireLoop() {
	defer close(m.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.ExpireNow()
		}
	}
}

// Close ends every session and stops the expiry loop. It waits for executions in
// progress to finish; cancel their contexts first to end them sooner.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	all := m.sessions
	m.sessions = map[string]*Session{}
	m.owned = map[string]int{}
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sb.Close()
		}()
	}
	wg.Wait()
}
