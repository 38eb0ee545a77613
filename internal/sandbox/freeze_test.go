package sandbox

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// spinCode starts a daemon thread that counts forever, as a program might leave a
// worker behind.
const spinCode = `
import threading
counter = [0]
def spin():
    while True:
        counter[0] += 1
threading.Thread(target=spin, daemon=True).start()
`

func groupCPU(t *testing.T, s *Session) time.Duration {
	t.Helper()
	st, err := s.s.g.Stats()
	if err != nil {
		t.Fatalf("session stats: %v", err)
	}
	return st.CPUTime
}

// TestSessionFrozenBetweenRuns: a thread a run leaves spinning uses no CPU between
// runs, the next run's cpu_ms is its own, and the thread carries on during the runs.
func TestSessionFrozenBetweenRuns(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
		if res := sessionRun(t, s, spinCode); res.Status != job.StatusOK {
			t.Fatalf("start the thread: %s %s", res.Status, res.Stderr)
		}
		idle := groupCPU(t, s)
		time.Sleep(time.Second)
		if grew := groupCPU(t, s) - idle; grew > 10*time.Millisecond {
			t.Errorf("the session used %v of CPU in an idle second, want none", grew)
		}
		start := groupCPU(t, s)
		res := sessionRun(t, s, "counter[0]")
		used := groupCPU(t, s) - start
		if res.Status != job.StatusOK {
			t.Fatalf("read the counter: %s %s", res.Status, res.Stderr)
		}
		// The run's cpu_ms is what the group used during the run, not since the last.
		if ms := time.Duration(res.Usage.CPUMS * float64(time.Millisecond)); ms > used+time.Millisecond {
			t.Errorf("cpu_ms %v is more than the %v the group used during the run", ms, used)
		}
		res = sessionRun(t, s, "import time\na = counter[0]\ntime.sleep(0.3)\ncounter[0] > a")
		if deref(res.Result) != "True" {
			t.Errorf("the thread did not run during a run: %s %q %s", res.Status, deref(res.Result), res.Stderr)
		}
	})
}

// TestFrozenSession: a frozen session's files can be written and read from outside,
// and closing it, or its runner, ends its processes.
func TestFrozenSession(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := newTestRunnerFor(t, "warm")
		s := newTestSession(t, r, job.DefaultLimits())
		sessionRun(t, s, spinCode+"import os, time\nif os.fork() == 0:\n    time.sleep(1000)")
		if !s.frozen {
			t.Fatal("the session is not frozen after a run")
		}
		if err := s.WriteFile("in.txt", []byte("while frozen")); err != nil {
			t.Fatalf("WriteFile into a frozen session: %v", err)
		}
		if data, err := s.ReadFile("in.txt", 100); err != nil || string(data) != "while frozen" {
			t.Fatalf("ReadFile from a frozen session: %q %v", data, err)
		}
		if files, _, err := s.Files(); err != nil || len(files) != 1 {
			t.Fatalf("Files of a frozen session: %v %v", files, err)
		}
		if res := sessionRun(t, s, "open('in.txt').read()"); deref(res.Result) != "'while frozen'" {
			t.Fatalf("the next run read %q", deref(res.Result))
		}
		pids := sessionPids(t, s)
		dirs := s.s.g.Paths()
		s.Close()
		assertGone(t, r, pids)
		for _, d := range dirs {
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("cgroup %s of the closed session is left", d)
			}
		}

		// The runner's Close ends a frozen session it was not told about.
		other := newTestSession(t, r, job.DefaultLimits())
		sessionRun(t, other, spinCode)
		pids = sessionPids(t, other)
		closed := make(chan error, 1)
		go func() { closed <- r.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("runner Close: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("runner Close hangs on a frozen session")
		}
		assertGone(t, r, pids)
		if _, err := other.Run(context.Background(), &job.Request{Code: "1"}); !errors.Is(err, ErrSessionEnded) {
			t.Errorf("run in a session of a closed runner: %v, want ErrSessionEnded", err)
		}
	})
}

// TestSessionEndReason: a limit that ends a session says so in the same Result.
func TestSessionEndReason(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := sharedRunnerFor(t, "warm")
		l := job.DefaultLimits()
		l.MemoryBytes = 64 << 20
		for _, tt := range []struct {
			code string
			want job.Status
		}{
			{"while True: pass", job.StatusTimeout},
			{allocCode(200), job.StatusMemoryLimit},
		} {
			s := newTestSession(t, r, l)
			if res, err := s.Run(context.Background(), &job.Request{Code: "x = 1"}); err != nil || res.Status != job.StatusOK {
				t.Fatalf("x = 1: %v %v", res, err)
			}
			res, err := s.Run(context.Background(), &job.Request{Code: tt.code, Limits: job.Limits{Timeout: time.Second}})
			if err != nil || res.Status != tt.want {
				t.Fatalf("%q: %v %v, want %s", tt.code, res, err, tt.want)
			}
			if got := s.EndReason(); got != string(tt.want) {
				t.Errorf("%q: EndReason() = %q, want %q", tt.code, got, tt.want)
			}
			if res.Error == nil || !strings.Contains(res.Error.Message, "session has ended") {
				t.Errorf("%q: the error does not say the session ended: %+v", tt.code, res.Error)
			}
		}
		s := newTestSession(t, r, l)
		if res, err := s.Run(context.Background(), &job.Request{Code: "x = 1"}); err != nil || s.EndReason() != "" || res.Error != nil {
			t.Errorf("a run that ends nothing: %v, EndReason %q, error %+v", err, s.EndReason(), res.Error)
		}
	})
}

// TestSessionRunLimits: a run may lower the session's time and output limits, and
// repeat its others; it may not raise any or change the fixed ones.
func TestSessionRunLimits(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		l := job.DefaultLimits()
		l.MemoryBytes, l.Timeout = 64<<20, 10*time.Second
		s := newTestSession(t, sharedRunnerFor(t, "warm"), l)
		tests := []struct {
			name string
			ask  job.Limits
			ok   bool
		}{
			{"none", job.Limits{}, true},
			{"the session's own", l, true},
			{"less time", job.Limits{Timeout: time.Second}, true},
			{"less output", job.Limits{OutputBytes: 100}, true},
			{"more time", job.Limits{Timeout: time.Minute}, false},
			{"more output", job.Limits{OutputBytes: 2 * l.OutputBytes}, false},
			{"more memory", job.Limits{MemoryBytes: 100 << 20}, false},
			{"less memory", job.Limits{MemoryBytes: 32 << 20}, false},
			{"other pids", job.Limits{Pids: 8}, false},
			{"other cpus", job.Limits{CPUs: 0.5}, false},
		}
		for _, tt := range tests {
			res, err := s.Run(context.Background(), &job.Request{Code: "1", Limits: tt.ask})
			switch {
			case tt.ok && (err != nil || res.Status != job.StatusOK):
				t.Errorf("%s: %v %v, want ok", tt.name, res, err)
			case !tt.ok && !errors.Is(err, ErrSessionLimits):
				t.Errorf("%s: %v, want ErrSessionLimits", tt.name, err)
			}
		}
		// A 100 MiB allocation in the 64 MiB session still ends at 64.
		res, err := s.Run(context.Background(), &job.Request{Code: allocCode(100)})
		if err != nil || res.Status != job.StatusMemoryLimit {
			t.Errorf("100 MiB in a 64 MiB session: %v %v, want memory_limit", res, err)
		}
	})
}
