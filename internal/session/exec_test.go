package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/tenant"
)

// gatedExecutor runs each execution once the test releases it; it reports the code
// of each run that starts.
type gatedExecutor struct {
	started chan string
	release chan struct{}
}

func (g *gatedExecutor) Run(ctx context.Context, req *job.Request) (*job.Result, error) {
	g.started <- req.Code
	select {
	case <-g.release:
		return &job.Result{Status: job.StatusOK}, nil
	case <-ctx.Done():
		return &job.Result{Status: job.StatusKilled}, nil
	}
}

// recorder is an Observer that keeps what it learns.
type recorder struct {
	mu   sync.Mutex
	seen []string // status/language/whether it took time
}

func (r *recorder) Executed(res *job.Result, language string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, string(res.Status)+"/"+language+"/"+map[bool]string{true: "timed", false: "0"}[took > 0])
}

func (r *recorder) get() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.seen, " ")
}

// TestAdmission: every execution passes its tenant's cap, then the caller's check,
// then the queue, in that order; each refusal has its own error, and the Observer
// learns of what was answered with a Result. No sandbox and no timing: the executor
// runs when the test says so.
func TestAdmission(t *testing.T) {
	cfg := testConfig
	cfg.MaxConcurrent, cfg.MaxQueued = 1, 1
	m := newManager(t, cfg, &countingStarter{err: errStart}, nil)
	obs := &recorder{}
	m.SetObserver(obs)
	g := &gatedExecutor{started: make(chan string, 4), release: make(chan struct{})}
	one := &tenant.Tenant{Name: "one", MaxConcurrent: 1}
	type answer struct {
		res *job.Result
		err error
	}
	run := func(ctx context.Context, owner *tenant.Tenant, code string, h Hooks) <-chan answer {
		c := make(chan answer, 1)
		go func() {
			res, err := m.Run(ctx, owner, g, &job.Request{Code: code}, h)
			c <- answer{res, err}
		}()
		return c
	}

	var order []string
	a := run(context.Background(), one, "a", Hooks{Started: func() { order = append(order, "started") }})
	if got := <-g.started; got != "a" {
		t.Fatalf("first run started %q", got)
	}
	order = append(order, "ran")
	if strings.Join(order, ",") != "started,ran" {
		t.Errorf("hooks in the order %v, want Started before the run", order)
	}

	// The tenant's cap comes before the check: a refused execution is not judged.
	checked := false
	check := func(context.Context, *job.Request) *job.Result { checked = true; return nil }
	if _, err := m.Run(context.Background(), one, g, &job.Request{Code: "x"}, Hooks{Check: check}); !errors.Is(err, ErrTenantBusy) || !strings.Contains(err.Error(), "1") || checked {
		t.Errorf("a second run of a tenant with MaxConcurrent 1: %v (checked %v); want ErrTenantBusy naming the limit, unchecked", err, checked)
	}

	waitCtx, leave := context.WithCancel(context.Background())
	b := run(waitCtx, tenant.Anonymous, "b", Hooks{})
	for m.QueueDepth() != 2 {
		time.Sleep(time.Millisecond)
	}
	if _, err := m.Run(context.Background(), tenant.Anonymous, g, &job.Request{Code: "c"}, Hooks{}); !errors.Is(err, ErrQueueFull) {
		t.Errorf("a run with one running and one waiting: %v, want ErrQueueFull", err)
	}
	// The check comes before the queue: a refusal is answered even when it is full.
	refusal := &job.Result{Status: job.StatusRejected}
	res, err := m.Run(context.Background(), tenant.Anonymous, g, &job.Request{Code: "d"},
		Hooks{Check: func(context.Context, *job.Request) *job.Result { return refusal }})
	if res != refusal || err != nil {
		t.Errorf("a run its check refuses: %v, %v; want the check's Result", res, err)
	}
	// A caller that leaves while waiting frees its place.
	leave()
	if got := <-b; !errors.Is(got.err, ErrWaitCancelled) || !errors.Is(got.err, context.Canceled) {
		t.Errorf("a waiting run whose caller left: %v, want ErrWaitCancelled and context.Canceled", got.err)
	}
	if d := m.QueueDepth(); d != 1 {
		t.Errorf("QueueDepth() = %d after the waiting caller left, want 1", d)
	}
	g.release <- struct{}{}
	if got := <-a; got.err != nil || got.res.Status != job.StatusOK {
		t.Fatalf("first run: %v, %v", got.res, got.err)
	}
	// Its execution over, the tenant may run again.
	e := run(context.Background(), one, "e", Hooks{})
	<-g.started
	g.release <- struct{}{}
	if got := <-e; got.err != nil {
		t.Errorf("the tenant's run after its first ended: %v", got.err)
	}
	if got, want := obs.get(), "rejected/python/0 ok/python/timed ok/python/timed"; got != want {
		t.Errorf("the observer saw %q, want %q", got, want)
	}
}

// startedWriter closes started at the program's first output.
type startedWriter struct {
	once    sync.Once
	started chan struct{}
}

func (w *startedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	return len(p), nil
}

// TestEndKillsFirst: Delete, expiry and Close kill what runs in a session before
// they wait for it: the run answers killed at once, not at its 20s timeout (Close
// used to wait for the run while holding the session), and the session's processes
// are gone. An execution still waiting for its turn ends with ErrSessionEnded.
func TestEndKillsFirst(t *testing.T) {
	r := testRunner(t)
	cfg := testConfig
	cfg.MaxLifetime = time.Hour
	for _, tt := range []struct {
		name string
		end  func(t *testing.T, m *Manager, clock *fakeClock, s *Session)
	}{
		{"Delete", func(t *testing.T, m *Manager, _ *fakeClock, s *Session) {
			if err := m.Delete(tenant.AnonymousName, s.ID); err != nil {
				t.Errorf("Delete: %v", err)
			}
		}},
		{"expiry at the lifetime's end", func(t *testing.T, m *Manager, clock *fakeClock, _ *Session) {
			clock.Advance(cfg.MaxLifetime + time.Second)
			if n := m.ExpireNow(); n != 1 {
				t.Errorf("ExpireNow ended %d sessions, want 1", n)
			}
		}},
		{"Close", func(t *testing.T, m *Manager, _ *fakeClock, _ *Session) { m.Close() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			m := newManager(t, cfg, r, clock)
			s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			procs := sessionProcs(t, s)
			out := &startedWriter{started: make(chan struct{})}
			done := make(chan error, 1)
			var res *job.Result
			go func() {
				var err error
				res, err = m.Exec(context.Background(), tenant.Anonymous, s.ID, &job.Request{
					Code: "print('started', flush=True)\nimport time\ntime.sleep(600)", Stdout: out}, Hooks{})
				done <- err
			}()
			select {
			case <-out.started:
			case err := <-done:
				t.Fatalf("the run ended before it printed: %v, %+v", err, res)
			}
			tt.end(t, m, clock, s)
			if err := <-done; err != nil || res.Status != job.StatusKilled {
				t.Fatalf("the run in the ended session: %+v, %v; want status killed", res, err)
			}
			if s.Alive() {
				t.Error("the session is alive after it ended")
			}
			waitGone(t, "the ended session's processes", procs)
		})
	}

	t.Run("waiting for a turn", func(t *testing.T) {
		cfg := cfg
		cfg.MaxConcurrent, cfg.MaxQueued = 1, 1
		m := newManager(t, cfg, r, nil)
		s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		g := &gatedExecutor{started: make(chan string, 1), release: make(chan struct{})}
		held := make(chan error, 1)
		go func() {
			_, err := m.Run(context.Background(), tenant.Anonymous, g, &job.Request{Code: "hold"}, Hooks{})
			held <- err
		}()
		<-g.started
		done := make(chan error, 1)
		go func() {
			_, err := m.Exec(context.Background(), tenant.Anonymous, s.ID, &job.Request{Code: "1"}, Hooks{})
			done <- err
		}()
		for m.QueueDepth() != 2 {
			time.Sleep(time.Millisecond)
		}
		if err := m.Delete(tenant.AnonymousName, s.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		// A deadlock guard, not a measure: the wait used to last until the turn came.
		select {
		case err := <-done:
			if !errors.Is(err, sandbox.ErrSessionEnded) {
				t.Errorf("an execution waiting in a deleted session: %v, want ErrSessionEnded", err)
			}
		case <-time.After(time.Minute):
			t.Error("an execution waiting in a deleted session still waits a minute later")
		}
		close(g.release)
		if err := <-held; err != nil {
			t.Errorf("the run that held the turn: %v", err)
		}
	})
}

// TestCreateCancelled: a session whose caller leaves while it starts is ended, not
// left to expire with an id nobody learnt.
func TestCreateCancelled(t *testing.T) {
	r := testRunner(t)
	g := &gatedStarter{r: r, entered: make(chan struct{}, 1), gate: make(chan struct{}), made: make(chan *sandbox.Session, 1)}
	m := newManager(t, testConfig, g, nil)
	ctx, leave := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.Create(ctx, tenant.Anonymous, sessionLimits(), 0)
		done <- err
	}()
	<-g.entered
	leave()
	close(g.gate)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Create whose caller left: %v, want context.Canceled", err)
	}
	select {
	case sb := <-g.made:
		if sb.Alive() {
			t.Error("the sandbox session started for a caller who left is alive")
		}
	case <-time.After(time.Minute):
		t.Fatal("the gated start made no session")
	}
	if n := m.Len(); n != 0 {
		t.Errorf("Len() = %d, want 0", n)
	}
}
