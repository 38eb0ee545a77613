package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/tenant"
)

// Errors of admission, for the faces to map to their codes.
var (
	// ErrQueueFull: as many executions run and wait as the Config allows.
	ErrQueueFull = errors.New("session: execution queue full")
	// ErrTenantBusy: the tenant has as many executions running or waiting as its
	// keys allow.
	ErrTenantBusy = errors.New("session: too many executions for this tenant")
	// ErrWaitCancelled: the caller's context ended while the execution waited for a
	// turn; the error wraps the context's too.
	ErrWaitCancelled = errors.New("session: cancelled while waiting for a turn")
)

// Executor runs one execution in a fresh sandbox; *sandbox.Runner is one.
type Executor interface {
	Run(ctx context.Context, req *job.Request) (*job.Result, error)
}

// Observer learns of each execution the manager answered with a Result: its status,
// its language and how long it ran once admitted (0 for one refused by Check). It
// is called from the executions' goroutines, concurrently. The API's Prometheus
// metrics are one; the manager keeps no metrics of its own.
type Observer interface {
	Executed(res *job.Result, language string, took time.Duration)
}

// Hooks are a caller's part in an execution the manager runs; each may be nil.
type Hooks struct {
	// Check is asked about the request once its tenant admits it, before it waits
	// for a turn (a safety judge). A Result it returns is the execution's answer, and
	// nothing runs.
	Check func(ctx context.Context, req *job.Request) *job.Result
	// Started is called once the execution has its turn, just before it runs: a
	// streamed reply sends its headers then, so that a refusal before (a full queue)
	// can still be a plain error.
	Started func()
}

// Exec runs req in session id of owner, once admitted: within owner's cap on
// executions in flight, Check's verdict, then a turn in the queue. It keeps the
// session's books (a busy session does not expire; the run is a use) and reports
// the Result to the Observer. A zero field of req.Limits means the session's (see
// sandbox.Session.Run). If the session is ended meanwhile (Delete, expiry, Close),
// the run is killed and answers with status killed; a wait for a turn ends with
// sandbox.ErrSessionEnded.
func (m *Manager) Exec(ctx context.Context, owner *tenant.Tenant, id string, req *job.Request, h Hooks) (*job.Result, error) {
	return m.exec(ctx, owner, id, req, h, func(live context.Context, s *Session) (*job.Result, error) {
		return s.sb.Run(live, req)
	})
}

// ExecIn is Exec in c, an interpreter context that the session's NewContext made,
// instead of the session's default one.
func (m *Manager) ExecIn(ctx context.Context, owner *tenant.Tenant, id string, c *sandbox.Context, req *job.Request, h Hooks) (*job.Result, error) {
	return m.exec(ctx, owner, id, req, h, func(live context.Context, _ *Session) (*job.Result, error) {
		return c.Run(live, req)
	})
}

func (m *Manager) exec(ctx context.Context, owner *tenant.Tenant, id string, req *job.Request, h Hooks, run func(context.Context, *Session) (*job.Result, error)) (*job.Result, error) {
	s, err := m.Get(owner.Name, id)
	if err != nil {
		return nil, err
	}
	// The run and its wait last as long as the caller and the session both do.
	live, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(s.life, func() { cancel(context.Cause(s.life)) })()
	return m.admit(ctx, live, owner, req, h, func() (*job.Result, error) {
		s.begin(m.now())
		defer func() { s.end(m.now()) }()
		return run(live, s)
	})
}

// Run runs req in a fresh sandbox of x (the runner of the image the request names),
// admitted and reported as Exec's are. Nothing of the sandbox outlives the call.
func (m *Manager) Run(ctx context.Context, owner *tenant.Tenant, x Executor, req *job.Request, h Hooks) (*job.Result, error) {
	return m.admit(ctx, ctx, owner, req, h, func() (*job.Result, error) {
		return x.Run(ctx, req)
	})
}

// admit runs run once owner's tenant, h.Check and the queue admit req, and reports
// its Result. The caller's ctx is the one Check gets and whose end is
// ErrWaitCancelled; wait is ctx or a context that ends before it (a session's end).
func (m *Manager) admit(ctx, wait context.Context, owner *tenant.Tenant, req *job.Request, h Hooks, run func() (*job.Result, error)) (*job.Result, error) {
	leave, ok := m.tenants.enter(owner)
	if !ok {
		return nil, fmt.Errorf("%w: its limit is %d running or waiting", ErrTenantBusy, owner.MaxConcurrent)
	}
	defer leave()
	if h.Check != nil {
		if res := h.Check(ctx, req); res != nil {
			m.observe(res, req.Language, 0)
			return res, nil
		}
	}
	release, err := m.queue.acquire(wait)
	if err != nil {
		switch {
		case errors.Is(err, ErrQueueFull):
			return nil, err
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %w", ErrWaitCancelled, ctx.Err())
		}
		return nil, context.Cause(wait)
	}
	defer release()
	if h.Started != nil {
		h.Started()
	}
	start := time.Now()
	res, err := run()
	if err != nil {
		return nil, err
	}
	m.observe(res, req.Language, time.Since(start))
	return res, nil
}

func (m *Manager) observe(res *job.Result, language string, took time.Duration) {
	if language == "" {
		language = job.LangPython
	}
	if m.obs != nil {
		m.obs.Executed(res, language, took)
	}
}

// QueueDepth is the number of executions running or waiting for a turn.
func (m *Manager) QueueDepth() int64 { return m.queue.depth() }
