package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/job"
)

// allocCode touches mib MiB of memory, page by page, and holds it.
func allocCode(mib int) string {
	return fmt.Sprintf("x = bytearray(%d << 20)\nx[::4096] = b'x' * len(x[::4096])\nlen(x) >> 20", mib)
}

// waitPool waits until r has a preforked child ready, so that the next warm run
// reuses a slot made for the default limits rather than forking one for its own.
func waitPool(t *testing.T, r *Runner) {
	t.Helper()
	if !r.cfg.Warm {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.PoolSize() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no preforked child became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMemoryAboveDefault checks that a memory limit above the default, which the API
// accepts, is applied on every path, including a preforked slot made for the default
// (cgroup v1 refused to raise memory.limit_in_bytes above the slot's memsw limit).
func TestMemoryAboveDefault(t *testing.T) {
	tests := []struct {
		limitMiB, underMiB, overMiB int
	}{
		{600, 560, 700},
		{2000, 1100, 2100},
	}
	check := func(t *testing.T, limit, alloc int, res *job.Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("limit %d MiB, allocating %d MiB: %v", limit, alloc, err)
		}
		over := alloc > limit
		switch {
		case !over && (res.Status != job.StatusOK || deref(res.Result) != fmt.Sprint(alloc)):
			t.Errorf("limit %d MiB, allocating %d MiB: got %s %q %+v, want ok", limit, alloc, res.Status, deref(res.Result), res.Error)
		case over && res.Status != job.StatusMemoryLimit:
			t.Errorf("limit %d MiB, allocating %d MiB: got %s, want memory_limit", limit, alloc, res.Status)
		case over && (res.Usage.MaxMemoryBytes <= int64(limit-64)<<20 || res.Usage.MaxMemoryBytes > int64(limit)<<20):
			// The peak shows which limit the kernel enforced.
			t.Errorf("limit %d MiB: peak %d MiB, want just under the limit", limit, res.Usage.MaxMemoryBytes>>20)
		}
	}
	bothPaths(t, func(t *testing.T, r *Runner) {
		for _, tt := range tests {
			for _, alloc := range []int{tt.underMiB, tt.overMiB} {
				waitPool(t, r)
				l := job.DefaultLimits()
				l.MemoryBytes = int64(tt.limitMiB) << 20
				res, err := r.Run(context.Background(), &job.Request{Code: allocCode(alloc), Limits: l})
				check(t, tt.limitMiB, alloc, res, err)
			}
		}
	})
	t.Run("session", func(t *testing.T) {
		t.Run("warm", func(t *testing.T) {
			r := sharedRunnerFor(t, "warm")
			for _, tt := range tests {
				waitPool(t, r)
				l := job.DefaultLimits()
				l.MemoryBytes = int64(tt.limitMiB) << 20
				s := newTestSession(t, r, l)
				for _, alloc := range []int{tt.underMiB, tt.overMiB} {
					res, err := s.Run(context.Background(), &job.Request{Code: allocCode(alloc), Limits: job.Limits{Timeout: 30 * time.Second, OutputBytes: 1 << 20}})
					check(t, tt.limitMiB, alloc, res, err)
				}
			}
		})
	})
}

// TestOOMScore: sandbox processes are the OOM killer's first choice, and cannot make
// themselves less so.
func TestOOMScore(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, `
import subprocess
own = open('/proc/self/oom_score_adj').read().strip()
child = subprocess.run(['cat', '/proc/self/oom_score_adj'], capture_output=True, text=True).stdout.strip()
try:
    open('/proc/self/oom_score_adj', 'w').write('0')
    lowered = 'lowered'
except OSError as e:
    lowered = type(e).__name__
(own, child, lowered)`, nil)
		if want := "('500', '500', 'PermissionError')"; deref(res.Result) != want {
			t.Errorf("got %s %q %s, want %s", res.Status, deref(res.Result), res.Stderr, want)
		}
	})
}

// TestTotalMemory: two executions, each within its own memory limit but together
// above the total of all sandboxes, cannot both finish; one is killed with a message
// that says why, the zygote and the runner carry on, and an execution that asks for
// more than the total is refused.
func TestTotalMemory(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := newTestRunnerIn(t, "codeexec-test-total")
		// What the zygote holds and cannot give back (no swap), plus room for one
		// 250 MiB execution but not two.
		used := unreclaimable(t, r)
		total := used + 300<<20
		if err := r.cg.SetLimits(cgroup.Limits{MemoryBytes: total}); err != nil {
			t.Fatalf("SetLimits: %v", err)
		}
		r.cfg.Total.MemoryBytes = total
		each := job.DefaultLimits()
		each.MemoryBytes = 300 << 20
		results := make(chan *job.Result, 2)
		for range 2 {
			go func() {
				res, err := r.Run(context.Background(), &job.Request{Code: allocCode(250) + "\nimport time\ntime.sleep(3)", Limits: each})
				if err != nil {
					t.Errorf("Run: %v", err)
				}
				results <- res
			}()
		}
		var statuses []job.Status
		for range 2 {
			res := <-results
			if res == nil {
				continue
			}
			statuses = append(statuses, res.Status)
			if res.Status == job.StatusMemoryLimit && (res.Error == nil || !strings.Contains(res.Error.Message, "all sandboxes together")) {
				t.Errorf("the kill does not say the total ran out: %+v", res.Error)
			}
		}
		// One is killed; the other usually finishes, but on a loaded machine the first
		// one's memory may not be free yet when the second needs it, and the kernel
		// may then take both: each is a memory_limit, never another failure.
		slices.Sort(statuses)
		if len(statuses) != 2 || statuses[0] != job.StatusMemoryLimit || (statuses[1] != job.StatusOK && statuses[1] != job.StatusMemoryLimit) {
			t.Errorf("statuses %v, want [memory_limit ok] (or two memory_limit)", statuses)
		}
		if z, err := r.zygote(context.Background(), true); err != nil || z != r.zyg {
			t.Errorf("the zygote did not survive: %v", err)
		}
		if res, err := r.Run(context.Background(), &job.Request{Code: "1", Limits: each}); err != nil || res.Status != job.StatusOK {
			t.Errorf("a run afterwards: %v %v", res, err)
		}
		l := job.DefaultLimits()
		l.MemoryBytes = total + 1<<20
		if _, err := r.Run(context.Background(), &job.Request{Code: "1", Limits: l}); !errors.Is(err, ErrAboveTotal) {
			t.Errorf("a run above the total: %v, want ErrAboveTotal", err)
		}
		if _, err := r.NewSession(context.Background(), l); !errors.Is(err, ErrAboveTotal) {
			t.Errorf("a session above the total: %v, want ErrAboveTotal", err)
		}
	})
}

// newTestRunnerIn makes a warm runner of the test's own under cgroup parent, so that
// the test may change the parent's limits.
func newTestRunnerIn(t *testing.T, parent string) *Runner {
	t.Helper()
	rootfs := testRootfs(t)
	dir := t.TempDir()
	for d := dir; d != "/" && d != "." && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(rootfs, filepath.Join(dir, "state"), "warm")
	cfg.CgroupParent, cfg.Prefork = parent, 0
	var r *Runner
	t.Cleanup(func() {
		// After the runner's Close: the parent, and the limits the test gave it, go.
		if r != nil {
			for _, d := range r.cg.Paths() {
				_ = syscall.Rmdir(d)
			}
		}
	})
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Warm(); err != nil {
		t.Fatalf("zygote: %v", err)
	}
	return r
}

// unreclaimable is the memory r's cgroup parent holds that the kernel cannot reclaim
// without swap: anonymous memory and tmpfs.
func unreclaimable(t *testing.T, r *Runner) int64 {
	t.Helper()
	file, keys := "memory.stat", []string{"anon", "shmem"}
	if r.cg.Version() == cgroup.V1 {
		keys = []string{"total_rss", "total_shmem"}
	}
	for _, d := range r.cg.Paths() {
		data, err := os.ReadFile(filepath.Join(d, file))
		if err != nil {
			continue
		}
		var sum int64
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && slices.Contains(keys, f[0]) {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				sum += n
			}
		}
		return sum
	}
	t.Fatal("no memory.stat in the runner's cgroup parent")
	return 0
}
