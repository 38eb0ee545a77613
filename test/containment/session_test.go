package containment_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/session"
)

// Sessions exist on the warm path only (a session is a warm interpreter kept alive),
// so these attacks run there, directly and through the HTTP server.

// idleWorkStart leaves a worker thread behind that counts and allocates forever, and
// prints how far it counts in 0.3 s of the run.
const idleWorkStart = `
import threading, time
work = {"n": 0, "held": []}
def worker():
    while True:
        work["n"] += 1
        if work["n"] % 50000 == 0 and len(work["held"]) < 64:
            work["held"].append(bytearray(1 << 20))
threading.Thread(target=worker, daemon=True).start()
a = work["n"]
time.sleep(0.3)
print("in_run", work["n"] - a)
work["mark"] = work["n"]
`

// idleWorkCheck prints how far the worker counted between the runs.
const idleWorkCheck = `print("idle", work["n"] - work["mark"])`

var countRe = regexp.MustCompile(`(in_run|idle) (\d+)`)

// checkIdleWork asserts that the worker did (almost) nothing in the idle second
// between the runs, against what it did in 0.3 s of a run, and that the second run's
// cpu_ms is its own: at most its duration (one core) and a CFS period of slack,
// where it would hold the idle second's CPU too.
func checkIdleWork(t *testing.T, first, second *job.Result) {
	t.Helper()
	count := func(res *job.Result) int {
		m := countRe.FindStringSubmatch(res.Stdout)
		if res.Status != job.StatusOK || m == nil {
			t.Fatalf("run: %s %q %q", res.Status, res.Stdout, res.Stderr)
		}
		n, _ := strconv.Atoi(m[2])
		return n
	}
	inRun, idle := count(first), count(second)
	if inRun == 0 || idle > inRun/3 {
		t.Errorf("the worker counted %d in an idle second and %d in 0.3 s of a run: it ran between the runs", idle, inRun)
	}
	if second.Usage.CPUMS > second.DurationMS+150 {
		t.Errorf("the second run reports %.1f ms of CPU in %.1f ms: it was charged for the time between the runs", second.Usage.CPUMS, second.DurationMS)
	}
}

// TestSessionIdleWork: a thread a session's run leaves behind gets no CPU between the
// session's runs (the session is frozen) and carries on in the next one.
func TestSessionIdleWork(t *testing.T) {
	r := runnerFor(t, "warm")
	t.Run("direct", func(t *testing.T) {
		s, err := r.NewSession(context.Background(), limits())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		run := func(code string) *job.Result {
			res, err := s.Run(context.Background(), &job.Request{Code: code})
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		first := run(idleWorkStart)
		time.Sleep(time.Second)
		checkIdleWork(t, first, run(idleWorkCheck))
	})
	t.Run("via_http", func(t *testing.T) {
		sessions := session.NewManager(session.Config{Max: 4, IdleTTL: time.Minute, MaxIdleTTL: time.Minute, MaxLifetime: time.Hour}, r)
		defer sessions.Close()
		hs := httptest.NewServer(api.New(api.DefaultConfig(), r, sessions, func() error { return nil }, nil).Handler())
		defer hs.Close()
		post := func(path, body string, reply any) {
			resp, err := http.Post(hs.URL+path, "application/json", bytes.NewReader([]byte(body)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			if resp.StatusCode/100 != 2 {
				t.Fatalf("POST %s: %s %s", path, resp.Status, data)
			}
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(reply); err != nil {
				t.Fatalf("POST %s: %v: %s", path, err, data)
			}
		}
		var created api.CreateSessionReply
		post("/v1/sessions", fmt.Sprintf(`{"memory_mb": %d}`, limits().MemoryBytes>>20), &created)
		run := func(code string) *job.Result {
			body, _ := json.Marshal(api.ExecuteRequest{Code: &code})
			reply := api.SessionExecuteReply{Result: &job.Result{}}
			post("/v1/sessions/"+created.ID+"/execute", string(body), &reply)
			if reply.Session.ID != created.ID || reply.Session.Ended {
				t.Fatalf("session %+v after a run that ends nothing", reply.Session)
			}
			return reply.Result
		}
		first := run(idleWorkStart)
		time.Sleep(time.Second)
		checkIdleWork(t, first, run(idleWorkCheck))
	})
}
