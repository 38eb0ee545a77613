// Package soak_test runs codeexec's HTTP API under a long, mixed, concurrent load —
// 10,000 executions by default — through the real server and a real warm sandbox
// runner, then checks that the run left nothing behind: no process, cgroup, mount,
// file descriptor, state or temp dir, goroutine, or memory held by the server.
package soak_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/mountinfo"
	"github.com/codeexec/codeexec/internal/proctree"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
	"github.com/codeexec/codeexec/internal/session"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	os.Exit(m.Run())
}

const (
	// soakCgroup is the parent cgroup of this test's runner alone, so that every
	// cgroup below it is this run's to account for.
	soakCgroup = "codeexec-soak"
	// clients send requests at once; the server admits them all, so a 429 is a failure.
	clients = 8
	// defaultN executions, unless CODEEXEC_SOAK_N says otherwise.
	defaultN = 10_000
	// warmupN executions run before the first RSS sample: caches, pools and the
	// runtime's heap have reached their working size by then.
	warmupN = 1_000
	// maxRSSGrowth bounds the growth of the test process's RSS (server, runner and
	// client) from the warm-up to the end. A leak of a few KiB per execution
	// exceeds it over 9,000 executions; noise in the heap's size does not.
	maxRSSGrowth = 64 << 20
	// fdSlack allows for a connection or two whose closing is still under way.
	fdSlack = 2
	// goroutineSlack allows for the runtime's and net/http's own goroutines that
	// come and go.
	goroutineSlack = 4
	// requestTimeout bounds one request: a hung server fails the step, not the
	// whole test binary's timeout.
	requestTimeout = 2 * time.Minute
)

// soakN is the number of executions: CODEEXEC_SOAK_N, or defaultN.
func soakN(t *testing.T) int {
	v := os.Getenv("CODEEXEC_SOAK_N")
	if v == "" {
		return defaultN
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("CODEEXEC_SOAK_N=%q: want a positive number of executions", v)
	}
	return n
}

// TestSoak sends N mixed executions (ok, error, timeout, memory_limit, and a session's
// life every 200 steps) from 8 clients to an API server with its own warm runner,
// and checks that every answer has exactly the expected status and content, that
// the server's memory stays flat after a warm-up, and that the idle runner, and
// then the closed one, left nothing behind.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skipf("soak test skipped in -short mode: it runs %d executions (about 3 minutes); set CODEEXEC_SOAK_N=500 for a shorter run", defaultN)
	}
	n := soakN(t)
	rootfs := sandboxtest.Rootfs(t)

	// Everything of the run lives under root: the runner's state dir and the
	// process's temp dir. Other test binaries (go test runs packages in parallel)
	// make and remove temp dirs in /tmp all the while; a private TMPDIR makes "no
	// temp dir left" exact.
	root, err := os.MkdirTemp("", "codeexec-soak-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = mountinfo.UnmountUnder(root)
		os.RemoveAll(root)
	})
	// The sandbox's unprivileged init must traverse to its work dir.
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)

	cfg := sandboxtest.Config(rootfs, root)
	cfg.CgroupParent = soakCgroup
	// Groups that exist before the runner (an earlier run killed before its
	// cleanup) are not this run's.
	staleCgroups := cgroupsUnder(cgroupParents(t, soakCgroup))
	if len(staleCgroups) > 0 {
		t.Logf("cgroups under %s from before this run, ignored: %v", soakCgroup, staleCgroups)
	}
	t.Cleanup(func() {
		for _, dir := range cgroupParents(t, soakCgroup) {
			_ = syscall.Rmdir(dir) // only if empty; tidy, not checked
		}
	})

	initPoller(t)
	baseFDs := openFDs(t)
	baseGoroutines := runtime.NumGoroutine()

	runner, err := sandbox.New(cfg)
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	closeRunner := sync.OnceValue(runner.Close)
	t.Cleanup(func() { closeRunner() })
	if err := runner.Warm(); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	sessions := session.NewManager(session.Config{Max: clients, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour,
		MaxConcurrent: clients, MaxQueued: clients}, runner)
	t.Cleanup(sessions.Close)
	apiCfg := api.DefaultConfig()
	hs := httptest.NewServer(api.New(apiCfg, runner, sessions, func() error { return nil }, nil).Handler())
	t.Cleanup(hs.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	t.Cleanup(client.CloseIdleConnections)

	s := newSoak(t, hs.URL, client, n)
	stopSampling := s.sampleGoroutines()
	defer stopSampling()
	idle := idleCheck{t: t, runner: runner, cfg: cfg, root: root, stale: staleCgroups}

	// The warm-up, then a sample of the memory and fds the server holds at rest.
	warm := min(warmupN, n/2)
	s.start = time.Now()
	s.run(0, warm)
	warmElapsed := time.Since(s.start)
	client.CloseIdleConnections()
	if err := idle.wait(); err != nil {
		t.Errorf("after the warm-up of %d executions: %v", warm, err)
	}
	rssWarm := rss(t)
	fdsWarm := openFDs(t)
	zygoteWarm := vmRSS(idle.zygote)

	rest := time.Now()
	s.run(warm, n)
	// The time of the executions, without the pause to sample at the warm-up.
	elapsed := warmElapsed + time.Since(rest)
	s.report(elapsed)

	// The open runner at rest: nothing but its zygote and preforked children.
	client.CloseIdleConnections()
	if err := idle.wait(); err != nil {
		t.Errorf("runner idle after %d executions: %v", s.executions, err)
	}
	rssEnd := rss(t)
	zygoteEnd := vmRSS(idle.zygote)
	var fdsEnd map[int]string
	err = eventually(10*time.Second, func() error {
		if fdsEnd = openFDs(t); len(fdsEnd) > len(fdsWarm)+fdSlack {
			return fmt.Errorf("the open runner holds %d fds at rest after the run, %d after the warm-up; new: %v",
				len(fdsEnd), len(fdsWarm), newFDs(fdsWarm, fdsEnd))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("test process RSS: %s after the warm-up (%d executions, %v), %s at the end: %+.1f MiB",
		mib(rssWarm), warm, warmElapsed.Round(time.Millisecond), mib(rssEnd), float64(rssEnd-rssWarm)/(1<<20))
	if rssEnd-rssWarm > maxRSSGrowth {
		t.Errorf("the test process's RSS grew by %s from the warm-up to the end (%s → %s), more than %s: memory held per execution",
			mib(rssEnd-rssWarm), mib(rssWarm), mib(rssEnd), mib(maxRSSGrowth))
	}
	// The zygote forks every execution; what it holds, each child starts with.
	// Logged for the record: its size follows Python's allocator, not a bound.
	t.Logf("zygote (pid %d) RSS: %s after the warm-up, %s at the end", idle.zygote, mib(zygoteWarm), mib(zygoteEnd))

	// Closed: the server, its sessions, the runner. Nothing may remain.
	hs.Close()
	client.CloseIdleConnections()
	sessions.Close()
	if err := closeRunner(); err != nil {
		t.Errorf("runner.Close: %v", err)
	}
	stopSampling()
	var fdsClosed map[int]string
	err = eventually(10*time.Second, func() error {
		if fdsClosed = openFDs(t); len(fdsClosed) > len(baseFDs)+fdSlack {
			return fmt.Errorf("%d open fds after Close, %d before the runner; new: %v", len(fdsClosed), len(baseFDs), newFDs(baseFDs, fdsClosed))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("open fds: %d before the runner, %d after the warm-up and %d at the end (open, at rest), %d after Close",
		len(baseFDs), len(fdsWarm), len(fdsEnd), len(fdsClosed))
	idle.closed(baseGoroutines)
}

// soak sends the steps and tallies the answers.
type soak struct {
	t      *testing.T
	url    string
	client *http.Client
	n      int
	start  time.Time

	maxGoroutines atomic.Int64

	mu         sync.Mutex
	executions int
	requests   int
	sessions   int
	expected   map[job.Status]int // executions by the status they must have
	got        map[job.Status]int // executions by the status they had
	mismatched map[string]int     // "want → got" for a status other than the expected
	httpStatus map[int]int
	latency    map[job.Status][]time.Duration
	failures   int
	examples   []string
}

// maxExamples is how many failed requests are described in full.
const maxExamples = 10

func newSoak(t *testing.T, url string, client *http.Client, n int) *soak {
	return &soak{t: t, url: url, client: client, n: n,
		expected: map[job.Status]int{}, got: map[job.Status]int{}, mismatched: map[string]int{},
		httpStatus: map[int]int{}, latency: map[job.Status][]time.Duration{}}
}

// run sends steps [from, to) from the clients and returns when all are answered.
func (s *soak) run(from, to int) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				if isSessionStep(i) {
					s.session(i)
				} else {
					s.execute(i, "/v1/execute", planStep(i))
				}
			}
		})
	}
	wg.Wait()
}

// do sends one request and reads the whole reply.
func (s *soak) do(method, path, body string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	s.mu.Lock()
	s.requests++
	s.httpStatus[resp.StatusCode]++
	s.mu.Unlock()
	return resp.StatusCode, resp.Header, data, err
}

// execute sends execution e of step i to path and checks its answer.
func (s *soak) execute(i int, path string, e execution) {
	t0 := time.Now()
	status, header, body, err := s.do("POST", path, e.body)
	d := time.Since(t0)
	var res *job.Result
	switch {
	case err != nil:
	case status != http.StatusOK:
		err = fmt.Errorf("HTTP %d, want 200", status)
	case !strings.HasPrefix(header.Get("Content-Type"), "application/json"):
		err = fmt.Errorf("Content-Type %q, want JSON", header.Get("Content-Type"))
	default:
		res, err = decodeResult(body)
	}
	if err == nil && res.Status != e.want {
		err = fmt.Errorf("status %q, want %q", res.Status, e.want)
	}
	if err == nil && e.check != nil {
		err = e.check(res)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.executions++
	s.expected[e.want]++
	if res != nil {
		s.got[res.Status]++
		s.latency[res.Status] = append(s.latency[res.Status], d)
		if res.Status != e.want {
			s.mismatched[fmt.Sprintf("%s → %s", e.want, res.Status)]++
		}
	}
	if err != nil {
		s.failLocked(i, e.kind, "POST "+path+" "+e.body, status, body, err)
	}
	if s.executions%1000 == 0 {
		s.t.Logf("%6d executions, %d requests in %v; %d goroutines", s.executions, s.requests,
			time.Since(s.start).Round(time.Millisecond), runtime.NumGoroutine())
	}
}

// session runs the life of step i's session: created, used, deleted.
func (s *soak) session(i int) {
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	const create = `{"ttl_s": 300}`
	status, _, body, err := s.do("POST", "/v1/sessions", create)
	var reply api.CreateSessionReply
	if err == nil && status != http.StatusCreated {
		err = fmt.Errorf("HTTP %d, want 201", status)
	}
	if err == nil {
		if err = json.Unmarshal(body, &reply); err == nil && !strings.HasPrefix(reply.ID, "sess_") {
			err = fmt.Errorf("session id %q, want sess_…", reply.ID)
		}
	}
	if err != nil {
		s.fail(i, "session/create", "POST /v1/sessions "+create, status, body, err)
		return
	}
	// Every call is made even after one failed, the DELETE above all: a session
	// left behind would be reported as a leak by the idle checks.
	base := "/v1/sessions/" + reply.ID
	for _, c := range planSession(i) {
		if c.exec != nil {
			s.execute(i, base+c.path, *c.exec)
			continue
		}
		status, _, body, err := s.do(c.method, base+c.path, c.body)
		if err == nil && status != c.status {
			err = fmt.Errorf("HTTP %d, want %d", status, c.status)
		}
		if err == nil && c.check != nil {
			err = c.check(body)
		}
		if err != nil {
			s.fail(i, "session/"+c.what, c.method+" "+base+c.path+" "+c.body, status, body, err)
		}
	}
}

func (s *soak) fail(i int, kind, request string, status int, body []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(i, kind, request, status, body, err)
}

func (s *soak) failLocked(i int, kind, request string, status int, body []byte, err error) {
	s.failures++
	if len(s.examples) < maxExamples {
		s.examples = append(s.examples, fmt.Sprintf("step %d (%s) %.200s: %v; got HTTP %d %s", i, kind, request, err, status, abbrev(body)))
	}
}

// sampleGoroutines records the most goroutines seen until the returned function is
// called.
func (s *soak) sampleGoroutines() (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if n := int64(runtime.NumGoroutine()); n > s.maxGoroutines.Load() {
				s.maxGoroutines.Store(n)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return sync.OnceFunc(func() {
		close(done)
		<-stopped
	})
}

// report logs the run's numbers and fails the test for every wrong answer.
func (s *soak) report(elapsed time.Duration) {
	t := s.t
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("%d executions (%d steps, %d sessions, %d HTTP requests) from %d clients in %v: %.1f executions/s",
		s.executions, s.n, s.sessions, s.requests, clients, elapsed.Round(time.Millisecond), float64(s.executions)/elapsed.Seconds())
	t.Logf("statuses expected %v", s.expected)
	t.Logf("statuses returned %v", s.got)
	t.Logf("HTTP statuses %v; at most %d goroutines", s.httpStatus, s.maxGoroutines.Load())
	for _, st := range slices.Sorted(maps.Keys(s.latency)) {
		t.Logf("latency %-12s %s", st, percentiles(s.latency[st]))
	}
	for code, count := range s.httpStatus {
		if code >= 500 || code == http.StatusTooManyRequests {
			t.Errorf("%d answers with HTTP %d", count, code)
		}
	}
	if len(s.mismatched) > 0 {
		t.Errorf("executions with another status than expected: %v", s.mismatched)
	}
	if s.failures > 0 {
		t.Errorf("%d of %d requests failed; the first %d:\n%s", s.failures, s.requests, len(s.examples), strings.Join(s.examples, "\n"))
	}
}

// percentiles summarizes latencies as count, p50, p99 and max.
func percentiles(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Millisecond) }
	return fmt.Sprintf("n=%-5d p50 %-7v p99 %-7v max %v", len(s), at(0.5), at(0.99), s[len(s)-1].Round(time.Millisecond))
}

// idleCheck is what the runner may hold: at rest while open, nothing once closed.
type idleCheck struct {
	t      *testing.T
	runner *sandbox.Runner
	cfg    sandbox.Config
	root   string
	stale  []string // cgroups from before the run
	zygote int      // the zygote's pid, once wait has seen it
}

// wait waits for the open runner to come to rest — the pool full, every finished
// execution and session torn down — and returns what is still wrong then. At rest
// the test process's descendants are exactly the zygote (a child, as sandbox root)
// and its preforked children (the pool, and one in hand per refill loop, none of
// which has run code as the sandbox user); each is alone in a cgroup of its own
// under the parent; nothing is mounted under the run's dir; the state dir holds
// only the instance dir and its lock.
func (c *idleCheck) wait() error {
	prefork := c.cfg.Prefork
	children := prefork + min(prefork, 2)
	return eventually(20*time.Second, func() error {
		if n := c.runner.PoolSize(); n != prefork {
			return fmt.Errorf("%d preforked children ready, want %d", n, prefork)
		}
		procs := proctree.Descendants(os.Getpid())
		var zygotes, forked, other []proctree.Proc
		for _, p := range procs {
			switch {
			case p.Depth == 1 && p.UID == c.cfg.HostUID:
				zygotes = append(zygotes, p)
			case p.Depth == 2 && p.UID == c.cfg.HostUID:
				forked = append(forked, p)
			default:
				other = append(other, p)
			}
		}
		if len(zygotes) != 1 || len(forked) != children || len(other) > 0 {
			return fmt.Errorf("processes of this test: zygotes %v (want 1), preforked %v (want %d), others %v (want none; uid %d is the sandbox user)",
				zygotes, forked, children, other, c.cfg.HostUID+image.SandboxUID)
		}
		c.zygote = zygotes[0].Pid
		ours := map[int]bool{c.zygote: true}
		for _, p := range forked {
			ours[p.Pid] = true
		}
		for _, parent := range cgroupParents(c.t, soakCgroup) {
			// An empty group the runner keeps frozen on cgroup v1 (cgroup.HoldFreezer)
			// is not a sandbox.
			// Nor is an empty one the runner keeps for its next children (its cgroup
			// pool): there are as many of those as it says.
			kept := 0
			groups := slices.DeleteFunc(c.fresh(cgroupsUnder([]string{parent})), func(g string) bool {
				if len(cgroupProcs(g)) > 0 {
					return false
				}
				if !strings.HasSuffix(g, "-freeze") {
					kept++
				}
				return true
			})
			if want := c.runner.KeptCgroups(); kept != want {
				return fmt.Errorf("%d empty cgroups in %s, want the %d the runner keeps for reuse", kept, parent, want)
			}
			if len(groups) != 1+children {
				return fmt.Errorf("%d cgroups in %s, want %d (zygote and preforked children): %v", len(groups), parent, 1+children, groups)
			}
			for _, g := range groups {
				pids := cgroupProcs(g)
				if len(pids) != 1 || !ours[pids[0]] {
					return fmt.Errorf("cgroup %s holds processes %v, want one of the zygote and its preforked children", g, pids)
				}
			}
		}
		if m := mountsUnder(c.t, c.root); len(m) > 0 {
			return fmt.Errorf("mounts under %s: %q", c.root, m)
		}
		state, err := dirNames(c.cfg.StateDir)
		if err != nil || len(state) != 1 {
			return fmt.Errorf("state dir %s holds %v (%v), want the instance dir alone", c.cfg.StateDir, state, err)
		}
		if inst, err := dirNames(filepath.Join(c.cfg.StateDir, state[0])); err != nil || !slices.Equal(inst, []string{"lock"}) {
			return fmt.Errorf("instance dir %s holds %v (%v), want its lock alone", state[0], inst, err)
		}
		return nil
	})
}

// closed checks, once the server, its sessions and the runner are closed, that
// nothing of the run remains: process, cgroup, mount, state, temp dir, goroutine.
func (c *idleCheck) closed(baseGoroutines int) {
	t := c.t
	if err := eventually(10*time.Second, func() error {
		if left := proctree.Descendants(os.Getpid()); len(left) > 0 {
			return fmt.Errorf("processes of this test after Close: %v", left)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if left := c.fresh(cgroupsUnder(cgroupParents(t, soakCgroup))); len(left) > 0 {
		t.Errorf("cgroups left after Close: %v", left)
	}
	if m := mountsUnder(t, c.root); len(m) > 0 {
		t.Errorf("mounts left under %s after Close: %q", c.root, m)
	}
	if names, err := dirNames(c.cfg.StateDir); err != nil || len(names) > 0 {
		t.Errorf("state dir %s after Close: %v (%v), want it empty", c.cfg.StateDir, names, err)
	}
	if names, err := dirNames(os.TempDir()); err != nil || len(names) > 0 {
		t.Errorf("temp dir %s after Close: %v (%v), want it empty", os.TempDir(), names, err)
	}
	var n int
	if err := eventually(10*time.Second, func() error {
		if n = runtime.NumGoroutine(); n > baseGoroutines+goroutineSlack {
			return fmt.Errorf("%d goroutines after Close, %d before the runner", n, baseGoroutines)
		}
		return nil
	}); err != nil {
		buf := make([]byte, 1<<20)
		t.Errorf("%v:\n%s", err, buf[:runtime.Stack(buf, true)])
	}
	t.Logf("goroutines: %d before the runner, %d after Close", baseGoroutines, n)
}

// fresh drops the cgroups that existed before the run.
func (c *idleCheck) fresh(groups []string) []string {
	return slices.DeleteFunc(groups, func(g string) bool { return slices.Contains(c.stale, g) })
}

// dirNames lists the names in dir.
func dirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}
