package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/tenant"
)

// Manager owns every session: it creates, finds, runs in, expires and ends them,
// and admits every execution, in a session or not (see Exec and Run). Each session
// belongs to the tenant that created it: the manager finds it for that tenant only.
// The creator must call Close.
type Manager struct {
	cfg     Config
	starter Starter
	now     func() time.Time
	queue   *queue
	tenants *tenantGate
	obs     Observer // nil: none

	mu       sync.Mutex
	sessions map[string]*Session
	pending  int            // sessions being started, counted against Max
	owned    map[string]int // live and starting sessions by owner, for tenants' caps
	closed   bool
	draining bool
	stop     chan struct{}
	done     chan struct{}
}

// NewManager starts a manager and its expiry loop; starter starts the sessions of
// Create. The caller must call Close.
func NewManager(cfg Config, starter Starter) *Manager {
	running, waiting := cfg.MaxConcurrent, cfg.MaxQueued
	if running == 0 {
		running, waiting = DefaultMaxConcurrent, DefaultMaxQueued
	}
	m := &Manager{cfg: cfg, starter: starter, now: time.Now, queue: newQueue(running, waiting), tenants: newTenantGate(),
		sessions: map[string]*Session{}, owned: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go m.expireLoop()
	return m
}

// SetObserver makes o learn of every execution from now on. Call it before the
// manager runs anything.
func (m *Manager) SetObserver(o Observer) { m.obs = o }

// Create starts a session for owner with limits l that expires after ttl of idleness
// (0: the default; more than the maximum is an error). The owner's MaxSessions, when
// set, caps its sessions below the manager's Max. The session is the manager's: it
// ends by Delete, expiry or Close.
func (m *Manager) Create(ctx context.Context, owner *tenant.Tenant, l job.Limits, ttl time.Duration) (*Session, error) {
	return m.CreateIn(ctx, owner, "", m.starter, l, ttl)
}

// CreateWith is Create with the sandbox's options o; the manager's starter must be
// an OptionsStarter.
func (m *Manager) CreateWith(ctx context.Context, owner *tenant.Tenant, l job.Limits, ttl time.Duration, o sandbox.SessionOptions) (*Session, error) {
	return m.CreateIn(ctx, owner, "", withOptions{m.starter, o}, l, ttl)
}

// CreateIn is Create with the session started by st, the starter of image (the
// runner of another image than the manager's own); the cap on sessions covers them
// all. No lock is held while the sandbox starts: a start takes a while (a fork of the
// zygote at best), and Get, List and the expiry loop must not wait for it.
func (m *Manager) CreateIn(ctx context.Context, owner *tenant.Tenant, image string, st Starter, l job.Limits, ttl time.Duration) (*Session, error) {
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
	if m.draining {
		m.mu.Unlock()
		return nil, ErrDraining
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

	sb, err := st.NewSession(ctx, l)
	if err == nil && ctx.Err() != nil {
		// Its caller left while it started: nobody would learn its id.
		sb.Close()
		sb, err = nil, ctx.Err()
	}
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
	life, kill := context.WithCancelCause(context.Background())
	s := &Session{ID: newID(m.cfg.Replica), Created: now, Owner: owner.Name, Image: image, sb: sb, now: m.now,
		life: life, kill: func() { kill(errSessionClosed) },
		ttl: ttl, lastUsed: now, maxExpiry: now.Add(m.cfg.MaxLifetime)}
	m.sessions[s.ID] = s
	return s, nil
}

// disown forgets one session of owner. m.mu must be held.
func (m *Manager) disown(owner string) {
	if m.owned[owner]--; m.owned[owner] <= 0 {
		delete(m.owned, owner)
	}
}

// newID returns an unguessable session id that names replica (see cluster.ID). The
// id alone does not give access: a session is found only for its owner.
func newID(replica string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return cluster.ID("sess", replica, hex.EncodeToString(b[:]))
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

// Delete ends session id if owner owns it: what runs in it is killed (its Exec
// answers with status killed), then its processes and files are gone.
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
	s.close()
	return nil
}

// Len is the number of live sessions.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// ExpireNow ends every session past its expiry and returns how many it ended. A
// session running an execution is left alone until its maximum lifetime, when its
// run is killed. A session whose interpreter died stays until its expiry, so that
// its users learn why.
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
		s.close()
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

// Drain makes Create refuse with ErrDraining from now on: the server is stopping,
// and a session made now would be lost with it. The live sessions go on serving
// until Close.
func (m *Manager) Drain() {
	m.mu.Lock()
	m.draining = true
	m.mu.Unlock()
}

// Close ends every session and stops the expiry loop: it kills what runs in the
// sessions first, then waits for them to be released. A server drains its requests
// before (http.Server.Shutdown), so that only what outlived the drain is killed.
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
			s.close()
		}()
	}
	wg.Wait()
}
