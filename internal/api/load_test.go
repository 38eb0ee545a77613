package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
	"github.com/codeexec/codeexec/internal/session"
)

// loadCgroup is the parent cgroup of the load test's own runner.
const loadCgroup = "codeexec-apitest-load"

// loadKind is one kind of request of the load, and what its answer must be.
type loadKind struct {
	name   string
	body   func(i int) string
	status int
	check  func(i int, r response) error
}

var loadKinds = []loadKind{
	{"ok", func(i int) string { return fmt.Sprintf(`{"code": "print(%d)"}`, i) }, 200,
		func(i int, r response) error {
			// Each answer carries its own request's output: no mix-up between
			// concurrent executions.
			return wantResult(r, func(res *job.Result) bool {
				return res.Status == job.StatusOK && res.Stdout == strconv.Itoa(i)+"\n" && res.ExitCode == 0
			}, "status ok, stdout %d", i)
		}},
	{"error", func(i int) string { return `{"code": "1/0"}` }, 200,
		func(i int, r response) error {
			return wantResult(r, func(res *job.Result) bool {
				return res.Status == job.StatusError && res.Error != nil && res.Error.Name == "ZeroDivisionError"
			}, "status error, ZeroDivisionError")
		}},
	{"timeout", func(i int) string { return `{"code": "while True: pass", "timeout_ms": 100}` }, 200,
		func(i int, r response) error {
			return wantResult(r, func(res *job.Result) bool { return res.Status == job.StatusTimeout }, "status timeout")
		}},
	{"bad request", func(i int) string { return `{"code": ` }, 400,
		func(i int, r response) error {
			var e errorBody
			if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code != "invalid_json" || e.Error.Type != "invalid_request_error" || e.Error.Message == "" {
				return fmt.Errorf("want an invalid_json error body (%v)", err)
			}
			return nil
		}},
}

func wantResult(r response, ok func(*job.Result) bool, format string, args ...any) error {
	var res job.Result
	if err := json.Unmarshal(r.body, &res); err != nil {
		return fmt.Errorf("not a Result: %v", err)
	}
	if !ok(&res) {
		return fmt.Errorf("want "+format, args...)
	}
	return nil
}

// loadKindOf spreads the kinds over the requests: 5% timeouts (each holds a sandbox
// for 100 ms), a quarter errors, a quarter bad requests, the rest ok.
func loadKindOf(i int) loadKind {
	switch {
	case i%20 == 0:
		return loadKinds[2]
	case i%4 == 1:
		return loadKinds[1]
	case i%4 == 3:
		return loadKinds[3]
	}
	return loadKinds[0]
}

// TestLoad sends 2,000 mixed requests at concurrency 32 to a server with its own
// runner, and checks that every answer is the well-formed answer of its kind, that
// none is a server error, and that nothing is left behind: no sandbox process, no
// execution dir, no cgroup.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	const total, concurrency = 2000, 32
	rootfs := sandboxtest.Rootfs(t)
	dir, err := os.MkdirTemp("", "codeexec-api-load-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The sandbox's unprivileged init must traverse to its work dir.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	runner, err := sandbox.New(sandbox.Config{Rootfs: rootfs, StateDir: state, CgroupParent: loadCgroup,
		HostUID: sandbox.DefaultHostUID, Warm: true, Prefork: 4})
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	closeRunner := sync.OnceValue(runner.Close)
	t.Cleanup(func() { closeRunner() })
	if err := runner.Warm(); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	// Room for every client: a 429 would be a failure here.
	sessions := session.NewManager(session.Config{Max: 10, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour,
		MaxConcurrent: concurrency, MaxQueued: concurrency}, runner)
	t.Cleanup(sessions.Close)
	cfg := DefaultConfig()
	hs := httptest.NewServer(New(cfg, runner, sessions, func() error { return nil }, nil).Handler())
	t.Cleanup(hs.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	t.Cleanup(client.CloseIdleConnections)

	var (
		next, failures atomic.Int64
		wg             sync.WaitGroup
		mu             sync.Mutex
		latencies      = map[string][]time.Duration{}
		statuses       = map[int]int{}
	)
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				k := loadKindOf(i)
				body := k.body(i)
				t0 := time.Now()
				resp, err := client.Post(hs.URL+"/v1/execute", "application/json", strings.NewReader(body))
				var r response
				if err == nil {
					r, err = readResponse(resp)
				}
				d := time.Since(t0)
				if err == nil && r.status != k.status {
					err = fmt.Errorf("status %d, want %d", r.status, k.status)
				}
				if err == nil {
					err = k.check(i, r)
				}
				mu.Lock()
				latencies[k.name] = append(latencies[k.name], d)
				statuses[r.status]++
				mu.Unlock()
				if err != nil && failures.Add(1) <= 5 {
					t.Errorf("request %d (%s) POST /v1/execute %s: %v; got %d %.300s", i, k.name, body, err, r.status, r.body)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d requests at concurrency %d in %v: %.0f requests/s; statuses %v", total, concurrency,
		elapsed.Round(time.Millisecond), total/elapsed.Seconds(), statuses)
	var all []time.Duration
	for _, k := range loadKinds {
		all = append(all, latencies[k.name]...)
		t.Logf("%-11s %s", k.name, latencySummary(latencies[k.name]))
	}
	t.Logf("%-11s %s", "all", latencySummary(all))
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d requests failed", n, total)
	}
	for status, n := range statuses {
		if status >= 500 || status == http.StatusTooManyRequests {
			t.Errorf("%d answers with status %d", n, status)
		}
	}

	// Executions tear down in the background: give them a few seconds.
	var left map[string][]int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if left = sandboxUserProcs(loadCgroup); len(left) == 0 {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("sandbox processes left 10s after the load: %v", left)
	}
	// The checks below must be able to see what they look for: before Close, the
	// zygote and the preforked children are there.
	if len(ourSandboxProcs()) == 0 || len(cgroupDirs(t)) == 0 {
		t.Errorf("before Close: sandbox processes %v, cgroups %v; the leak checks cannot see the runner's", ourSandboxProcs(), cgroupDirs(t))
	}
	hs.Close()
	sessions.Close()
	if err := closeRunner(); err != nil {
		t.Errorf("runner.Close: %v", err)
	}
	if ours := ourSandboxProcs(); len(ours) > 0 {
		t.Errorf("processes of this test still run as sandbox uids after Close: %v", ours)
	}
	if entries, err := os.ReadDir(state); err != nil || len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("state dir %s after Close: %v (%v), want it empty", state, names, err)
	}
	if left := cgroupDirs(t); len(left) > 0 {
		t.Errorf("cgroups left after Close: %v", left)
	}
}

// cgroupDirs lists the cgroups under loadCgroup, in every controller's hierarchy.
func cgroupDirs(t testing.TB) []string {
	t.Helper()
	h, err := cgroup.Open(loadCgroup)
	if err != nil {
		t.Errorf("cgroup.Open(%q): %v", loadCgroup, err)
		return nil
	}
	var dirs []string
	for _, p := range h.Paths() {
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(p, e.Name()))
			}
		}
	}
	return dirs
}

// ourSandboxProcs lists the processes descended from this test binary that run as a
// sandbox host uid (sandbox root or the sandbox user), but for those of the other
// tests' shared runner (in apiTestCgroup), which lives until TestMain ends.
func ourSandboxProcs() []string {
	uids := regexp.MustCompile(`(?m)^Uid:\s+(` + strconv.Itoa(sandbox.DefaultHostUID) + `|` +
		strconv.Itoa(sandbox.DefaultHostUID+image.SandboxUID) + `)\s`)
	self := os.Getpid()
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil || !uids.Match(status) {
			continue
		}
		if cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); strings.Contains(string(cg), ":/"+apiTestCgroup+"/") {
			continue
		}
		for p := pid; p > 1; p = parentPid(p) {
			if p == self {
				found = append(found, e.Name())
				break
			}
		}
	}
	return found
}

func parentPid(pid int) int {
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(`(?m)^PPid:\s+(\d+)`).FindSubmatch(status)
	if m == nil {
		return 0
	}
	p, _ := strconv.Atoi(string(m[1]))
	return p
}

// readResponse reads a whole reply.
func readResponse(resp *http.Response) (response, error) {
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, data}, err
}

// latencySummary formats the count and percentiles of ds.
func latencySummary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration {
		return s[min(len(s)-1, int(p*float64(len(s))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("n=%4d  p50 %-8v p90 %-8v p99 %-8v max %v", len(s), q(0.50), q(0.90), q(0.99), s[len(s)-1].Round(100*time.Microsecond))
}
