package session

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
	"github.com/codeexec/codeexec/internal/tenant"
)

// testCgroupParent is the parent cgroup of this package's sandboxes: processes found
// under it are ours, whatever other test runs share the machine and the host uids.
const testCgroupParent = "codeexec-sessiontest"

func TestMain(m *testing.M) {
	// The runner re-executes this binary as the sandbox's init stage.
	sandbox.MaybeInit()
	sandboxtest.CgroupParent = testCgroupParent
	code := m.Run()
	sandboxtest.Close()
	os.Exit(code)
}

// skipOrFail skips a test that cannot run here, or fails it under
// CODEEXEC_REQUIRE_INTEGRATION=1 so that CI never skips silently.
func skipOrFail(t testing.TB, reason string) { sandboxtest.Skip(t, reason) }

// testRunner returns the package's warm Runner, made on first use; tests that need
// real sandbox sessions skip without root or the image.
func testRunner(t testing.TB) *sandbox.Runner { return sandboxtest.Shared(t) }

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

var testConfig = Config{Max: 5, IdleTTL: 10 * time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: 4 * time.Hour}

// newManager makes a Manager closed when the test ends. With a clock, the manager
// reads time from it and its background expiry loop is stopped, so that only the
// test's ExpireNow calls expire sessions.
func newManager(t testing.TB, cfg Config, st Starter, clock *fakeClock) *Manager {
	t.Helper()
	m := NewManager(cfg, st)
	if clock != nil {
		// Stop the loop before touching m.now: the loop reads it, and its exit (done
		// closed) orders that read before this write. Close still works, since it
		// closes the new stop channel and finds done already closed.
		close(m.stop)
		<-m.done
		m.stop = make(chan struct{})
		m.now = clock.Now
	}
	t.Cleanup(m.Close)
	return m
}

// sessionLimits are the limits of the test sessions.
func sessionLimits() job.Limits {
	l := job.DefaultLimits()
	l.Timeout = 20 * time.Second
	return l
}

// run executes code in s and fails the test unless it succeeds.
func run(t testing.TB, s *Session, code string) *job.Result {
	t.Helper()
	res, err := s.sb.Run(context.Background(), &job.Request{Code: code, Limits: sessionLimits()})
	if err != nil {
		t.Fatalf("Run(%q) in %s: %v", code, s.ID, err)
	}
	if res.Status != job.StatusOK {
		t.Fatalf("Run(%q) in %s: status %s, stderr %q", code, s.ID, res.Status, res.Stderr)
	}
	return res
}

// userProcs maps each cgroup under testCgroupParent to the processes in it that run
// as the sandbox user's host uid. A session's interpreter runs as that uid once it
// has run a program; the zygote and preforked children do not.
func userProcs() map[string][]int {
	uid := strconv.Itoa(sandbox.DefaultHostUID + image.SandboxUID)
	found := map[string][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil || !hasUID(string(status), uid) {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(cg), "\n") {
			// hierarchy-id:controllers:path
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && strings.HasPrefix(parts[2], "/"+testCgroupParent+"/") {
				found[parts[2]] = append(found[parts[2]], pid)
				break
			}
		}
	}
	return found
}

func hasUID(status, uid string) bool {
	for _, line := range strings.Split(status, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1] == uid
		}
	}
	return false
}

// sessionProcs runs a program in s, which starts its interpreter, and returns the
// cgroups whose processes of the sandbox user changed: a session's init runs as
// that user from its start, its interpreter from its first run. No other session of
// the package may run code meanwhile.
func sessionProcs(t testing.TB, s *Session) map[string][]int {
	t.Helper()
	before := userProcs()
	run(t, s, "x = 1")
	found := map[string][]int{}
	for cg, pids := range userProcs() {
		if !slices.Equal(before[cg], pids) {
			found[cg] = pids
		}
	}
	if len(found) == 0 {
		t.Fatalf("session %s: no process of the sandbox user after a run (cgroups before %v)", s.ID, before)
	}
	return found
}

// waitGone fails unless every cgroup of procs has no user process left within a
// few seconds; the runner tears sessions down in the background.
func waitGone(t testing.TB, what string, procs map[string][]int) {
	t.Helper()
	var left map[string][]int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		left = map[string][]int{}
		now := userProcs()
		for cg := range procs {
			if pids, ok := now[cg]; ok {
				left[cg] = pids
			}
		}
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("%s: processes still running after 10s: %v", what, left)
}

// countingStarter fails every start with err and counts the calls; gate, when set,
// holds each call until it is closed.
type countingStarter struct {
	err     error
	gate    chan struct{}
	entered chan struct{}
	mu      sync.Mutex
	calls   int
}

var errStart = errors.New("test starter: no sandbox")

func (s *countingStarter) NewSession(context.Context, job.Limits) (*sandbox.Session, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.gate != nil {
		<-s.gate
	}
	return nil, s.err
}

func (s *countingStarter) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func TestCreateTTL(t *testing.T) {
	tests := []struct {
		ttl     time.Duration
		wantErr error // ErrBadTTL, or errStart when the ttl is accepted
	}{
		{-time.Second, ErrBadTTL},
		{-1, ErrBadTTL},
		{time.Hour + 1, ErrBadTTL},
		{100 * time.Hour, ErrBadTTL},
		{0, errStart}, // the default, 10m
		{time.Second, errStart},
		{time.Hour, errStart}, // the maximum itself
	}
	for _, tt := range tests {
		st := &countingStarter{err: errStart}
		m := newManager(t, testConfig, st, nil)
		s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), tt.ttl)
		if s != nil || !errors.Is(err, tt.wantErr) {
			t.Errorf("Create(ttl %v) = %v, %v; want the error %v", tt.ttl, s, err, tt.wantErr)
			continue
		}
		calls := st.Calls()
		if tt.wantErr == ErrBadTTL && (calls != 0 || !strings.Contains(err.Error(), tt.ttl.String())) {
			t.Errorf("Create(ttl %v): error %q, starter called %d times; want the ttl quoted and no start", tt.ttl, err, calls)
		}
		if tt.wantErr == errStart && calls != 1 {
			t.Errorf("Create(ttl %v): starter called %d times, want 1", tt.ttl, calls)
		}
	}
}

// TestDefaultTTLOutsideMaximum: a default above the maximum a caller may ask for is
// refused as well rather than silently granted.
func TestDefaultTTLOutsideMaximum(t *testing.T) {
	cfg := testConfig
	cfg.IdleTTL = 2 * cfg.MaxIdleTTL
	m := newManager(t, cfg, &countingStarter{err: errStart}, nil)
	if _, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0); !errors.Is(err, ErrBadTTL) {
		t.Errorf("Create(default ttl %v above max %v) error %v, want ErrBadTTL", cfg.IdleTTL, cfg.MaxIdleTTL, err)
	}
}

// TestStartFailure: a start that fails returns its error and frees its place.
func TestStartFailure(t *testing.T) {
	cfg := testConfig
	cfg.Max = 1
	st := &countingStarter{err: errStart}
	m := newManager(t, cfg, st, nil)
	for i := range 3 {
		if _, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0); !errors.Is(err, errStart) {
			t.Fatalf("Create #%d error %v, want the starter's %v (a failed start must not hold a place)", i, err, errStart)
		}
	}
	if n := m.Len(); n != 0 {
		t.Errorf("Len() = %d after failed starts, want 0", n)
	}
}

// TestPendingCountsAgainstMax: a session still starting holds its place, so that
// concurrent creates cannot overshoot Max.
func TestPendingCountsAgainstMax(t *testing.T) {
	cfg := testConfig
	cfg.Max = 1
	st := &countingStarter{err: errStart, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	m := newManager(t, cfg, st, nil)
	first := make(chan error, 1)
	go func() {
		_, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
		first <- err
	}()
	<-st.entered
	if _, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0); !errors.Is(err, ErrTooMany) {
		t.Errorf("Create while one is starting (Max 1): error %v, want ErrTooMany", err)
	}
	close(st.gate)
	if err := <-first; !errors.Is(err, errStart) {
		t.Errorf("first Create: error %v, want %v", err, errStart)
	}
	st.entered = nil
	if _, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0); !errors.Is(err, errStart) {
		t.Errorf("Create after the pending start failed: error %v, want %v", err, errStart)
	}
}

func TestNotFound(t *testing.T) {
	m := newManager(t, testConfig, &countingStarter{err: errStart}, nil)
	for _, id := range []string{"", "sess_", "sess_00000000000000000000000000000000", "../x"} {
		if s, err := m.Get(tenant.AnonymousName, id); s != nil || !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, %v; want ErrNotFound", id, s, err)
		}
		if err := m.Delete(tenant.AnonymousName, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestCreateGetInfo(t *testing.T) {
	r := testRunner(t)
	clock := newFakeClock()
	start := clock.Now()
	m := newManager(t, testConfig, r, clock)
	a, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	b, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 30*time.Second)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, s := range []*Session{a, b} {
		if !strings.HasPrefix(s.ID, "sess_") || len(s.ID) != len("sess_")+32 {
			t.Errorf("id %q, want sess_ and 32 hex digits", s.ID)
		}
	}
	if a.ID == b.ID {
		t.Errorf("two sessions share the id %q", a.ID)
	}
	if got, err := m.Get(tenant.AnonymousName, a.ID); got != a || err != nil {
		t.Errorf("Get(%q) = %p, %v; want %p", a.ID, got, err, a)
	}
	if n := m.Len(); n != 2 {
		t.Errorf("Len() = %d, want 2", n)
	}
	if got, want := a.ExpiresAt(), start.Add(testConfig.IdleTTL); !got.Equal(want) {
		t.Errorf("default ttl: ExpiresAt() = %v, want %v", got, want)
	}
	if got, want := b.ExpiresAt(), start.Add(30*time.Second); !got.Equal(want) {
		t.Errorf("ttl 30s: ExpiresAt() = %v, want %v", got, want)
	}

	info := a.Info()
	if info.ID != a.ID || !info.CreatedAt.Equal(start) || !info.LastUsedAt.Equal(start) || info.Executions != 0 || !info.Alive {
		t.Errorf("Info() of a new session = %+v", info)
	}
	used := clock.Advance(time.Minute)
	a.begin(used)
	a.end(used)
	run(t, a, "import json\ny = [0] * 100000")
	a.touch(clock.Now()) // a use that is not an execution
	info = a.Info()
	if info.Executions != 1 || !info.LastUsedAt.Equal(used) || !info.ExpiresAt.Equal(used.Add(testConfig.IdleTTL)) || !info.Alive || info.MemoryBytes <= 0 {
		t.Errorf("Info() after one execution at %v = %+v; want 1 execution, expiry %v, alive, memory > 0", used, info, used.Add(testConfig.IdleTTL))
	}
	// The state persists.
	if res := run(t, a, "json.dumps(len(y))"); res.Result == nil || *res.Result != "'100000'" {
		t.Errorf("second run: result %v, want '100000'", res.Result)
	}
}

func TestMax(t *testing.T) {
	r := testRunner(t)
	cfg := testConfig
	cfg.Max = 2
	m := newManager(t, cfg, r, nil)
	var ids []string
	for range 2 {
		s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		ids = append(ids, s.ID)
	}
	s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
	if s != nil || !errors.Is(err, ErrTooMany) || !strings.Contains(err.Error(), "2") {
		t.Fatalf("third Create with Max 2 = %v, %v; want ErrTooMany naming the limit", s, err)
	}
	if err := m.Delete(tenant.AnonymousName, ids[0]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0); err != nil {
		t.Errorf("Create after a Delete freed a place: %v", err)
	}
}

// TestMaxConcurrent: however creates race, no more than Max sessions are made.
func TestMaxConcurrent(t *testing.T) {
	r := testRunner(t)
	cfg := testConfig
	cfg.Max = 3
	m := newManager(t, cfg, r, nil)
	const tries = 8
	errs := make(chan error, tries)
	var wg sync.WaitGroup
	for range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	made, refused := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			made++
		case errors.Is(err, ErrTooMany):
			refused++
		default:
			t.Errorf("Create: %v", err)
		}
	}
	if made != cfg.Max || refused != tries-cfg.Max || m.Len() != cfg.Max {
		t.Errorf("%d concurrent creates with Max %d: %d made, %d refused, Len %d; want %d, %d, %d",
			tries, cfg.Max, made, refused, m.Len(), cfg.Max, tries-cfg.Max, cfg.Max)
	}
}

func TestDelete(t *testing.T) {
	r := testRunner(t)
	m := newManager(t, testConfig, r, nil)
	s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	procs := sessionProcs(t, s)
	if err := m.Delete(tenant.AnonymousName, s.ID); err != nil {
		t.Fatalf("Delete(%q): %v", s.ID, err)
	}
	if got, err := m.Get(tenant.AnonymousName, s.ID); got != nil || !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, %v; want ErrNotFound", got, err)
	}
	if err := m.Delete(tenant.AnonymousName, s.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if n := m.Len(); n != 0 {
		t.Errorf("Len() = %d after Delete, want 0", n)
	}
	if s.sb.Alive() {
		t.Error("the sandbox session is alive after Delete")
	}
	if _, err := s.sb.Run(context.Background(), &job.Request{Code: "1", Limits: sessionLimits()}); !errors.Is(err, sandbox.ErrSessionEnded) {
		t.Errorf("Run after Delete: %v, want ErrSessionEnded", err)
	}
	waitGone(t, "deleted session", procs)
}

func TestExpiry(t *testing.T) {
	r := testRunner(t)
	clock := newFakeClock()
	start := clock.Now()
	cfg := Config{Max: 5, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: 3 * time.Minute}
	m := newManager(t, cfg, r, clock)
	a, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0) // idle ttl 1m
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	b, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 2*time.Minute)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	procs := sessionProcs(t, a) // b runs nothing, so only a's interpreter is the user's

	expire := func(at time.Duration, want int, alive ...*Session) {
		t.Helper()
		clock.Advance(start.Add(at).Sub(clock.Now()))
		if n := m.ExpireNow(); n != want {
			t.Errorf("ExpireNow at +%v ended %d sessions, want %d", at, n, want)
		}
		if n := m.Len(); n != len(alive) {
			t.Errorf("Len() at +%v = %d, want %d", at, n, len(alive))
		}
		for _, s := range alive {
			if _, err := m.Get(tenant.AnonymousName, s.ID); err != nil {
				t.Errorf("Get(%s) at +%v: %v, want the session", s.ID, at, err)
			}
		}
	}
	expire(59*time.Second, 0, a, b)
	a.begin(clock.Now())
	a.end(clock.Now()) // a now expires at +1m59s
	expire(time.Minute+30*time.Second, 0, a, b)
	expire(time.Minute+59*time.Second, 0, a, b) // exactly at its expiry a still lives
	if got, want := a.ExpiresAt(), start.Add(time.Minute+59*time.Second); !got.Equal(want) {
		t.Errorf("a.ExpiresAt() = %v, want %v", got, want)
	}
	b.touch(clock.Now()) // b's idle expiry, +3m59s, is past its lifetime
	if got, want := b.ExpiresAt(), start.Add(cfg.MaxLifetime); !got.Equal(want) {
		t.Errorf("b.ExpiresAt() = %v, want the lifetime's end %v", got, want)
	}
	expire(time.Minute+59*time.Second+time.Millisecond, 1, b)
	if _, err := m.Get(tenant.AnonymousName, a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of the expired session: %v, want ErrNotFound", err)
	}
	if a.sb.Alive() {
		t.Error("the expired session's sandbox is alive")
	}
	waitGone(t, "expired session", procs)

	// However busy, b ends at its lifetime: here it is even mid-execution.
	b.begin(start.Add(2*time.Minute + 59*time.Second))
	expire(3*time.Minute, 0, b)
	expire(3*time.Minute+time.Millisecond, 1)
	if b.sb.Alive() {
		t.Error("the session past its lifetime is alive")
	}
}

// TestExpireLoop: the manager's own loop expires sessions, without ExpireNow calls.
func TestExpireLoop(t *testing.T) {
	r := testRunner(t)
	m := newManager(t, testConfig, r, nil)
	s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), time.Second)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	procs := sessionProcs(t, s)
	for deadline := time.Now().Add(15 * time.Second); m.Len() > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := m.Get(tenant.AnonymousName, s.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a session with a 1s ttl is still there 15s later (Get: %v)", err)
	}
	waitGone(t, "session expired by the loop", procs)
}

func TestClose(t *testing.T) {
	r := testRunner(t)
	m := newManager(t, testConfig, r, nil)
	var sessions []*Session
	procs := map[string][]int{}
	for range 2 {
		s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		sessions = append(sessions, s)
		for cg, pids := range sessionProcs(t, s) {
			procs[cg] = pids
		}
	}
	m.Close()
	if n := m.Len(); n != 0 {
		t.Errorf("Len() after Close = %d, want 0", n)
	}
	for _, s := range sessions {
		if s.sb.Alive() {
			t.Errorf("session %s alive after Close", s.ID)
		}
		if _, err := m.Get(tenant.AnonymousName, s.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) after Close: %v, want ErrNotFound", s.ID, err)
		}
	}
	waitGone(t, "sessions after Close", procs)
	if s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0); s != nil || !errors.Is(err, ErrClosed) {
		t.Errorf("Create after Close = %v, %v; want ErrClosed", s, err)
	}
	m.Close() // a second Close is harmless
}

// gatedStarter starts real sessions, each once the test opens the gate. It starts
// them whatever becomes of the caller's ctx meanwhile, as a start already past the
// point of no return would: what the manager does with such a session is the test.
type gatedStarter struct {
	r       *sandbox.Runner
	entered chan struct{}
	gate    chan struct{}
	made    chan *sandbox.Session
}

func (g *gatedStarter) NewSession(_ context.Context, l job.Limits) (*sandbox.Session, error) {
	g.entered <- struct{}{}
	<-g.gate
	s, err := g.r.NewSession(context.Background(), l)
	if err == nil {
		g.made <- s
	}
	return s, err
}

// TestCloseWhileStarting: a session that finishes starting after Close is ended at
// once, not leaked.
func TestCloseWhileStarting(t *testing.T) {
	r := testRunner(t)
	g := &gatedStarter{r: r, entered: make(chan struct{}, 1), gate: make(chan struct{}), made: make(chan *sandbox.Session, 1)}
	m := newManager(t, testConfig, g, nil)
	done := make(chan error, 1)
	go func() {
		_, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0)
		done <- err
	}()
	<-g.entered
	m.Close()
	close(g.gate)
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Create that finished after Close: %v, want ErrClosed", err)
	}
	sb := <-g.made
	if sb.Alive() {
		t.Error("the sandbox session started during Close is alive")
	}
	if _, err := sb.Run(context.Background(), &job.Request{Code: "1", Limits: sessionLimits()}); !errors.Is(err, sandbox.ErrSessionEnded) {
		t.Errorf("Run in it: %v, want ErrSessionEnded", err)
	}
}

// TestBusySessionNotExpired: a session whose execution runs longer than its idle
// ttl is in use, not idle, and must survive it.
func TestBusySessionNotExpired(t *testing.T) {
	r := testRunner(t)
	m := newManager(t, testConfig, r, nil)
	s, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), time.Second)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	res, err := m.Exec(context.Background(), tenant.Anonymous, s.ID, &job.Request{Code: "import time\ntime.sleep(2.5)", Limits: sessionLimits()}, Hooks{})
	if err != nil || res.Status != job.StatusOK {
		t.Fatalf("a 2.5s execution: %v, %v", res, err)
	}
	if _, err := m.Get(tenant.AnonymousName, s.ID); err != nil {
		t.Errorf("Get right after a 2.5s execution in a session with a 1s idle ttl: %v, want the session", err)
	}
}

// TestOwners: a session exists for its owner only. To another tenant every call
// answers exactly as for an id that was never made.
func TestOwners(t *testing.T) {
	r := testRunner(t)
	clock := newFakeClock()
	m := newManager(t, testConfig, r, clock)
	alice, bob := &tenant.Tenant{Name: "alice"}, &tenant.Tenant{Name: "bob"}
	a1, err := m.Create(context.Background(), alice, sessionLimits(), 0)
	if err != nil {
		t.Fatalf("Create for alice: %v", err)
	}
	clock.Advance(time.Second)
	a2, err := m.Create(context.Background(), alice, sessionLimits(), 0)
	if err != nil {
		t.Fatalf("Create for alice: %v", err)
	}
	b1, err := m.Create(context.Background(), bob, sessionLimits(), 0)
	if err != nil {
		t.Fatalf("Create for bob: %v", err)
	}
	if a1.Owner != "alice" || b1.Owner != "bob" {
		t.Errorf("owners %q and %q, want alice and bob", a1.Owner, b1.Owner)
	}
	_, unknown := m.Get("bob", "sess_00000000000000000000000000000000")
	for _, who := range []string{"bob", tenant.AnonymousName, "", "Alice"} {
		s, err := m.Get(who, a1.ID)
		if s != nil || !errors.Is(err, ErrNotFound) || err.Error() != unknown.Error() {
			t.Errorf("Get(%q, alice's session) = %v, %v; want %v, as for an unknown id", who, s, err, unknown)
		}
		if err := m.Delete(who, a1.ID); !errors.Is(err, ErrNotFound) || err.Error() != unknown.Error() {
			t.Errorf("Delete(%q, alice's session) = %v; want %v, as for an unknown id", who, err, unknown)
		}
	}
	if got, err := m.Get("alice", a1.ID); got != a1 || err != nil {
		t.Fatalf("Get(alice, a1) after bob's tries = %v, %v; want the session", got, err)
	}
	if !a1.sb.Alive() {
		t.Error("alice's session died of bob's Delete")
	}
	ids := func(list []*Session) []string {
		var out []string
		for _, s := range list {
			out = append(out, s.ID)
		}
		return out
	}
	for _, c := range []struct {
		owner string
		want  []string
	}{{"alice", []string{a1.ID, a2.ID}}, {"bob", []string{b1.ID}}, {"carol", nil}} {
		if got := ids(m.List(c.owner)); strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("List(%q) = %v, want %v (oldest first)", c.owner, got, c.want)
		}
	}
	if err := m.Delete("alice", a1.ID); err != nil {
		t.Errorf("Delete(alice, a1): %v", err)
	}
	if got := ids(m.List("alice")); len(got) != 1 || got[0] != a2.ID {
		t.Errorf("List(alice) after a Delete = %v, want [%s]", got, a2.ID)
	}
}

// TestTenantMax: a tenant's MaxSessions caps its own sessions, counting those still
// starting; deletes, failed starts and expiry give places back; other tenants are
// not affected.
func TestTenantMax(t *testing.T) {
	r := testRunner(t)
	clock := newFakeClock()
	m := newManager(t, testConfig, r, clock)
	capped, other := &tenant.Tenant{Name: "capped", MaxSessions: 2}, &tenant.Tenant{Name: "other"}
	var mine []*Session
	for range 2 {
		s, err := m.Create(context.Background(), capped, sessionLimits(), time.Minute)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		mine = append(mine, s)
	}
	s, err := m.Create(context.Background(), capped, sessionLimits(), 0)
	if s != nil || !errors.Is(err, ErrTenantTooMany) || !strings.Contains(err.Error(), "2") {
		t.Fatalf("third Create of a tenant with MaxSessions 2 = %v, %v; want ErrTenantTooMany naming the limit", s, err)
	}
	if _, err := m.Create(context.Background(), other, sessionLimits(), 0); err != nil {
		t.Errorf("Create for another tenant while capped is full: %v", err)
	}
	if err := m.Delete("capped", mine[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(context.Background(), capped, sessionLimits(), 0); err != nil {
		t.Errorf("Create after a Delete gave a place back: %v", err)
	}
	if _, err := m.Create(context.Background(), capped, sessionLimits(), 0); !errors.Is(err, ErrTenantTooMany) {
		t.Errorf("Create beyond the cap again: %v, want ErrTenantTooMany", err)
	}
	clock.Advance(time.Minute + time.Second) // mine[1] (ttl 1m) expires
	if n := m.ExpireNow(); n != 1 {
		t.Errorf("ExpireNow ended %d, want 1", n)
	}
	if _, err := m.Create(context.Background(), capped, sessionLimits(), 0); err != nil {
		t.Errorf("Create after an expiry gave a place back: %v", err)
	}

	// Starting sessions hold their place; a failed start gives it back.
	st := &countingStarter{err: errStart, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	m2 := newManager(t, testConfig, st, nil)
	one := &tenant.Tenant{Name: "one", MaxSessions: 1}
	first := make(chan error, 1)
	go func() {
		_, err := m2.Create(context.Background(), one, sessionLimits(), 0)
		first <- err
	}()
	<-st.entered
	if _, err := m2.Create(context.Background(), one, sessionLimits(), 0); !errors.Is(err, ErrTenantTooMany) {
		t.Errorf("Create while the tenant's one session is starting: %v, want ErrTenantTooMany", err)
	}
	close(st.gate)
	if err := <-first; !errors.Is(err, errStart) {
		t.Errorf("first Create: %v, want %v", err, errStart)
	}
	st.entered = nil
	if _, err := m2.Create(context.Background(), one, sessionLimits(), 0); !errors.Is(err, errStart) {
		t.Errorf("Create after the failed start: %v, want %v (the place given back)", err, errStart)
	}
}

// TestDrainRefusesCreate: a draining manager starts no sandbox and says why.
func TestDrainRefusesCreate(t *testing.T) {
	st := &countingStarter{err: errStart}
	m := newManager(t, testConfig, st, nil)
	m.Drain()
	if _, err := m.Create(context.Background(), tenant.Anonymous, sessionLimits(), 0); !errors.Is(err, ErrDraining) {
		t.Errorf("Create while draining: error %v, want ErrDraining", err)
	}
	if n := st.Calls(); n != 0 {
		t.Errorf("the starter was called %d times while draining, want 0", n)
	}
}

func TestIDNamesReplica(t *testing.T) {
	for _, replica := range []string{"codeexec-3", ""} {
		id := newID(replica)
		if got := cluster.Owner(id); got != replica || !strings.HasPrefix(id, "sess_") || len(id) < len("sess_")+32 {
			t.Errorf("newID(%q) = %q, owner %q: want sess_, the replica and 32 random hex digits", replica, id, got)
		}
	}
}
