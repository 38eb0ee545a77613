package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestZygoteRestartsAfterDeath(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := newTestRunner(t)
		first, err := r.zygote()
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
			res, err := r.Run(context.Background(), &Request{Code: "import numpy\nprint('ok')", Limits: DefaultLimits()})
			if err != nil || res.Status != StatusOK || res.Stdout != "ok\n" {
				t.Fatalf("run %d after the zygote died: %v %+v", i, err, res)
			}
		}
		second, err := r.zygote()
		if err != nil || second == first || !second.alive() {
			t.Fatalf("zygote was not restarted: %v", err)
		}
		assertNoSandboxProcesses(t)
	})
}

func TestColdFallbackWhenZygoteCannotStart(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := newTestRunner(t)
		r.zmu.Lock()
		r.zyg.close()
		r.zyg = nil
		// A start that failed a moment ago is not retried before zygoteRetry.
		r.zygErr, r.zygFailed = errTestZygote, time.Now()
		r.zmu.Unlock()
		res, err := r.Run(context.Background(), &Request{Code: "import sys\nprint(len(sys.modules) < 200)", Limits: DefaultLimits()})
		if err != nil || res.Status != StatusOK {
			t.Fatalf("run without a zygote: %v %+v", err, res)
		}
		// A fresh interpreter has imported little; a zygote child has the whole stack.
		if res.Stdout != "True\n" {
			t.Errorf("run was not cold: %q", res.Stdout)
		}
		if _, err := r.NewSession(DefaultLimits()); err == nil {
			t.Error("a session started without a zygote")
		}
	})
}

var errTestZygote = errors.New("test: zygote start disabled")

// Two runners with separate state dirs share the cgroup parent (two servers, or
// parallel test binaries): starting one must not sweep the other's cgroups.
func TestRunnersDoNotSweepEachOther(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		first := newTestRunner(t)
		z, err := first.zygote()
		if err != nil {
			t.Fatal(err)
		}
		second := newTestRunner(t)
		if _, err := second.Run(context.Background(), &Request{Code: "1", Limits: DefaultLimits()}); err != nil {
			t.Fatal(err)
		}
		res, err := first.Run(context.Background(), &Request{Code: "print('still here')", Limits: DefaultLimits()})
		if err != nil || res.Stdout != "still here\n" {
			t.Fatalf("first runner after the second started: %v %+v", err, res)
		}
		if again, _ := first.zygote(); again != z || !z.alive() {
			t.Error("the second runner's start killed the first one's zygote")
		}
	})
}

// Writing input files switches a thread's file system ids; that thread must live on,
// or the parent-death signal of whatever it forked (the zygote) fires.
func TestInputFilesDoNotKillTheZygote(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := newTestRunner(t)
		z, err := r.zygote()
		if err != nil {
			t.Fatal(err)
		}
		s, err := r.NewSession(DefaultLimits())
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
		z, err := sharedRunner(t).zygote()
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
