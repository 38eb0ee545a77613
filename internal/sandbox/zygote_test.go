package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

func TestZygoteRestartsAfterDeath(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := newTestRunnerFor(t, "warm")
		first, err := r.zygote(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		// Let the prefork loop fill the pool with children of the first zygote.
		deadline := time.Now().Add(10 * time.Second)
		for r.PoolSize() < r.cfg.Prefork && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		_ = first.cmd.Process.Kill()
		<-first.dead
		for i := 0; i < 3; i++ {
			res, err := r.Run(context.Background(), &job.Request{Code: "import numpy\nprint('ok')", Limits: job.DefaultLimits()})
			if err != nil || res.Status != job.StatusOK || res.Stdout != "ok\n" {
				t.Fatalf("run %d after the zygote died: %v %+v", i, err, res)
			}
		}
		second, err := r.zygote(context.Background(), true)
		if err != nil || second == first || !second.alive() {
			t.Fatalf("zygote was not restarted: %v", err)
		}
		assertNoSandboxProcesses(t)
	})
}

func TestColdFallbackWhenZygoteCannotStart(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := newTestRunnerFor(t, "warm")
		r.zmu.Lock()
		r.zyg.close()
		r.zyg = nil
		// A start that failed a moment ago is not retried before zygoteRetry.
		r.zygErr, r.zygFailed = errTestZygote, time.Now()
		r.zmu.Unlock()
		res, err := r.Run(context.Background(), &job.Request{Code: "import sys\nprint(len(sys.modules) < 200)", Limits: job.DefaultLimits()})
		if err != nil || res.Status != job.StatusOK {
			t.Fatalf("run without a zygote: %v %+v", err, res)
		}
		// A fresh interpreter has imported little; a zygote child has the whole stack.
		if res.Stdout != "True\n" {
			t.Errorf("run was not cold: %q", res.Stdout)
		}
		if _, err := r.NewSession(context.Background(), job.DefaultLimits()); err == nil {
			t.Error("a session started without a zygote")
		}
	})
}

var errTestZygote = errors.New("test: zygote start disabled")

// Two runners with separate state dirs share the cgroup parent (two servers, or
// parallel test binaries): starting one must not sweep the other's cgroups.
func TestRunnersDoNotSweepEachOther(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		first := newTestRunnerFor(t, "warm")
		z, err := first.zygote(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		second := newTestRunnerFor(t, "warm")
		if _, err := second.Run(context.Background(), &job.Request{Code: "1", Limits: job.DefaultLimits()}); err != nil {
			t.Fatal(err)
		}
		res, err := first.Run(context.Background(), &job.Request{Code: "print('still here')", Limits: job.DefaultLimits()})
		if err != nil || res.Stdout != "still here\n" {
			t.Fatalf("first runner after the second started: %v %+v", err, res)
		}
		if again, _ := first.zygote(context.Background(), true); again != z || !z.alive() {
			t.Error("the second runner's start killed the first one's zygote")
		}
	})
}

// Writing input files switches a thread's file system ids; that thread must live on,
// or the parent-death signal of whatever it forked (the zygote) fires.
func TestInputFilesDoNotKillTheZygote(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := newTestRunnerFor(t, "warm")
		z, err := r.zygote(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		s, err := r.NewSession(context.Background(), job.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.WriteFile(fmt.Sprintf("f%d.txt", i), []byte("x")); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		time.Sleep(100 * time.Millisecond)
		if !z.alive() || !s.Alive() {
			t.Fatalf("zygote alive %v, session alive %v after writing files", z.alive(), s.Alive())
		}
	})
}

// The zygote keeps only the capabilities its children need for their setup.
func TestZygoteCapabilities(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		z, err := sharedRunnerFor(t, "warm").zygote(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", z.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		var want uint64
		for _, c := range zygoteCaps {
			want |= 1 << c
		}
		for _, field := range []string{"CapEff", "CapPrm", "CapBnd"} {
			wantLine := fmt.Sprintf("%s:\t%016x", field, want)
			if !strings.Contains(string(status), wantLine) {
				t.Errorf("zygote status lacks %q:\n%s", wantLine, status)
			}
		}
	})
}

// TestZygotePreload: the zygote imports the modules of Config.Preload that the image
// has, in order, and skips those it lacks instead of failing to start.
func TestZygotePreload(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		rootfs := testRootfs(t)
		dir, err := os.MkdirTemp("", "codeexec-sandbox-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o711); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(rootfs, dir+"/state", "warm")
		cfg.Preload = []string{"codeexec_not_installed", "colorsys", "codeexec_missing.sub", "json"}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if err := r.Warm(); err != nil {
			t.Fatalf("a zygote with modules the image lacks did not start: %v", err)
		}
		res, err := r.Run(context.Background(), &job.Request{Code: `import sys
print("colorsys" in sys.modules, "numpy" in sys.modules, "pandas" in sys.modules)`, Limits: job.DefaultLimits()})
		if err != nil || res.Status != job.StatusOK || res.Stdout != "True False False\n" {
			t.Fatalf("run: %v %+v, want colorsys preloaded and not the default stack", err, res)
		}
	})
}

// TestZygoteObjectsImmortal: on CPython 3.12 and 3.13 the objects the zygote holds
// when it freezes its heap are immortal in a child (a module, a function, the
// module's dict, a float only a module dict refers to), so that using them writes
// no reference count to the pages the child shares with the zygote; what the child
// makes itself stays mortal.
func TestZygoteObjectsImmortal(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		res := run(t, sharedRunnerFor(t, "warm"), `import sys, json, numpy
imm = sys.getrefcount(None)
if sys.version_info[:2] not in ((3, 12), (3, 13)):
    print("no immortal heap objects on", sys.version_info[:2])
else:
    print([sys.getrefcount(o) == imm for o in (json, json.dumps, json.__dict__, numpy.pi, object())])`, nil)
		if strings.HasPrefix(res.Stdout, "no immortal") {
			t.Skip(strings.TrimSpace(res.Stdout))
		}
		if res.Status != job.StatusOK || res.Stdout != "[True, True, True, True, False]\n" {
			t.Fatalf("want the zygote's objects immortal and a new one not: %+v", res)
		}
	})
}

func TestPreloadNames(t *testing.T) {
	for _, bad := range []string{"", "-c", "os; import x", "a..b", "1abc"} {
		cfg := Config{Rootfs: "/nonexistent", HostUID: DefaultHostUID, Preload: []string{"numpy", bad}}
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "not a Python module name") {
			t.Errorf("New() with preload %q = %v, want a module name error", bad, err)
		}
	}
}

// TestZygoteFailedImport: a zygote whose imports fail reports their traceback as soon
// as it dies; the runner does not wait for the start timeout. dbm.gnu is in the
// standard library but needs _gdbm, which Debian ships apart (python3-gdbm).
func TestZygoteFailedImport(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		rootfs := testRootfs(t)
		if m, _ := filepath.Glob(filepath.Join(rootfs, "usr/lib/python3*/lib-dynload/_gdbm*")); len(m) > 0 {
			t.Skip("the image has _gdbm: dbm.gnu imports")
		}
		dir, err := os.MkdirTemp("", "codeexec-sandbox-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o711); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(rootfs, dir+"/state", "warm")
		cfg.Preload, cfg.Prefork = []string{"json", "dbm.gnu"}, 0
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		err = r.Warm()
		var zse *ZygoteStartError
		if !errors.As(err, &zse) || !strings.Contains(zse.Stderr, "_gdbm") || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("Warm() = %v, want the zygote's ImportError of _gdbm, not a timeout", err)
		}
		// The traceback is the operator's, for the log: it names the image's paths.
		if strings.Contains(err.Error(), "_gdbm") || strings.Contains(err.Error(), "Traceback") {
			t.Errorf("Warm()'s message holds the zygote's stderr: %v", err)
		}
	})
}

// TestRunsDoNotWaitForARestart: no execution waits behind a zygote's restart. The run
// that finds the zygote dead starts the restart and runs cold meanwhile; a session,
// which needs the zygote, waits for it as long as its context allows.
func TestRunsDoNotWaitForARestart(t *testing.T) {
	r := newTestRunnerFor(t, "warm")
	first, err := r.zygote(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Process.Kill()
	<-first.dead
	res, err := r.Run(context.Background(), &job.Request{Code: "import sys\nprint(len(sys.modules) < 200)", Limits: job.DefaultLimits()})
	if err != nil || res.Status != job.StatusOK || res.Stdout != "True\n" {
		t.Fatalf("run during the restart: %v %+v, want a cold run", err, res)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if s, err := r.NewSession(cancelled, job.DefaultLimits()); !errors.Is(err, context.Canceled) {
		if s != nil {
			s.Close()
		}
		t.Errorf("NewSession with a cancelled context: %v, want context.Canceled", err)
	}
	s := newTestSession(t, r, job.DefaultLimits())
	if res := sessionRun(t, s, "import sys\nlen(sys.modules) > 200"); deref(res.Result) != "True" {
		t.Errorf("a session after the restart: %s %q, want the zygote's modules", deref(res.Result), res.Stderr)
	}
	second, err := r.zygote(context.Background(), false)
	if err != nil || second == first {
		t.Errorf("zygote after the restart: %v", err)
	}
}

// TestCloseKillsRunningExecutions: a runner's Close kills the executions still
// running, on both paths. One it did not kill would run to its timeout, which its
// Result would report.
func TestCloseKillsRunningExecutions(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			r := newTestRunnerFor(t, path)
			out := newChunkWriter()
			done := runAsync(t, r.Run, &job.Request{Code: "import time\nprint('sleeping', flush=True)\ntime.sleep(3600)",
				Limits: func() job.Limits { l := job.DefaultLimits(); l.Timeout = 20 * time.Second; return l }(), Stdout: out})
			out.waitFor(t, "sleeping")
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if res := <-done; res.Status != job.StatusKilled {
				t.Errorf("the run Close ended: %s %+v, want killed", res.Status, res.Error)
			}
		})
	}
}
