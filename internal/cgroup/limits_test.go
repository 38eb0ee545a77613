package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openTest opens a hierarchy under parent for a root-only test, and removes the
// parent's directories when the test ends.
func openTest(t *testing.T, parent string) *Hierarchy {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CODEEXEC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("cgroup tests need root")
		}
		t.Skip("cgroup tests need root")
	}
	h, err := Open(parent)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		for _, d := range h.Paths() {
			_ = rmdirRetry(d)
		}
	})
	return h
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// busy starts a process that spins forever in group g; it is killed when the test ends.
func busy(t *testing.T, g *Group) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = g.Thaw(); _ = cmd.Wait() })
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatalf("Add: %v", err)
	}
	return cmd
}

func cpuTime(t *testing.T, g *Group) time.Duration {
	t.Helper()
	st, err := g.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st.CPUTime
}

// TestSetMemoryBothWays raises and lowers a group's memory limit: on v1 a raise must
// write memsw first, a cut the limit first.
func TestSetMemoryBothWays(t *testing.T) {
	h := openTest(t, "codeexec-cgroup-test-memory")
	g, err := h.New("g", Limits{MemoryBytes: 512 << 20})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer g.Destroy()
	for _, mib := range []int64{600, 2000, 64, 1000, 16, 4096} {
		if err := g.Set(Limits{MemoryBytes: mib << 20}); err != nil {
			t.Fatalf("Set(%d MiB): %v", mib, err)
		}
		want := strconv.FormatInt(mib<<20, 10)
		files := []string{"memory.max"}
		if h.Version() == V1 {
			files = []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}
		}
		for _, f := range files {
			p := filepath.Join(g.dir("memory"), f)
			if _, err := os.Stat(p); err != nil {
				continue // no swap accounting
			}
			if got := readFile(t, p); got != want {
				t.Errorf("after Set(%d MiB): %s = %s, want %s", mib, f, got, want)
			}
		}
	}
}

// TestFreeze checks that a frozen group uses no CPU, runs again when thawed, and can
// be killed and removed while frozen, directly or by a sweep.
func TestFreeze(t *testing.T) {
	h := openTest(t, "codeexec-cgroup-test-freeze")
	t.Run("stops and resumes", func(t *testing.T) {
		g, err := h.New("spin", Limits{CPUs: 0.5})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer g.Destroy()
		busy(t, g)
		if err := g.Freeze(); err != nil {
			t.Fatalf("Freeze: %v", err)
		}
		frozen := cpuTime(t, g)
		time.Sleep(300 * time.Millisecond)
		if grew := cpuTime(t, g) - frozen; grew != 0 {
			t.Errorf("a frozen group used %v of CPU", grew)
		}
		if err := g.Thaw(); err != nil {
			t.Fatalf("Thaw: %v", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for cpuTime(t, g) == frozen {
			if time.Now().After(deadline) {
				t.Fatal("the thawed group does not run")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	ends := func(t *testing.T, cmd *exec.Cmd) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a killed frozen process did not end")
		}
	}
	t.Run("killed frozen", func(t *testing.T) {
		g, err := h.New("kill", Limits{})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		cmd := exec.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := g.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if err := g.Freeze(); err != nil {
			t.Fatalf("Freeze: %v", err)
		}
		if err := g.Destroy(); err != nil {
			t.Fatalf("Destroy of a frozen group: %v", err)
		}
		ends(t, cmd)
	})
	t.Run("KillFrozen", func(t *testing.T) {
		g, err := h.New("killfrozen", Limits{})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer g.Destroy()
		var cmds []*exec.Cmd
		for range 2 {
			cmd := exec.Command("sleep", "1000")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if err := g.Add(cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		if err := g.Freeze(); err != nil {
			t.Fatalf("Freeze: %v", err)
		}
		// The one skipped is the caller's to kill: it must survive, thawed.
		if err := g.KillFrozen(cmds[1].Process.Pid); err != nil {
			t.Fatalf("KillFrozen: %v", err)
		}
		ends(t, cmds[0])
		if err := cmds[1].Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("the skipped process is gone: %v", err)
		}
		if h.Version() == V1 {
			if got := readFile(t, filepath.Join(g.dir("freezer"), "freezer.state")); got != "THAWED" {
				t.Errorf("after KillFrozen the group is %s, want THAWED", got)
			}
		}
		cmds[1].Process.Kill()
		ends(t, cmds[1])
	})
	t.Run("held frozen", func(t *testing.T) {
		g, err := h.HoldFreezer("held")
		if err != nil {
			t.Fatalf("HoldFreezer: %v", err)
		}
		if h.Version() == V2 {
			if g != nil {
				t.Error("HoldFreezer made a group on v2")
			}
			return
		}
		if got := readFile(t, filepath.Join(g.dir("freezer"), "freezer.state")); got != "FROZEN" {
			t.Errorf("held group is %s", got)
		}
		if err := g.Destroy(); err != nil {
			t.Errorf("Destroy of the held group: %v", err)
		}
	})
	t.Run("swept frozen", func(t *testing.T) {
		g, err := h.New("swept", Limits{})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		cmd := exec.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := g.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if err := g.Freeze(); err != nil {
			t.Fatalf("Freeze: %v", err)
		}
		if err := h.Sweep(func(string) bool { return false }); err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		ends(t, cmd)
		for _, d := range h.Paths() {
			if dirExists(filepath.Join(d, "swept")) {
				t.Errorf("swept group left in %s", d)
			}
		}
	})
}

// TestParentLimits sets limits on the parent group, checks they are in its files,
// read back, and that a child may ask for more than the parent has.
func TestParentLimits(t *testing.T) {
	h := openTest(t, "codeexec-cgroup-test-total")
	total := Limits{MemoryBytes: 300 << 20, Pids: 100, CPUs: 1.5}
	if err := h.SetLimits(total); err != nil {
		t.Fatalf("SetLimits: %v", err)
	}
	got, err := h.Limits()
	if err != nil || got != total {
		t.Fatalf("Limits() = %+v, %v; want %+v", got, err, total)
	}
	p := h.parentGroup()
	files := map[string]string{"memory.max": "314572800", "pids.max": "100", "cpu.max": "150000 100000"}
	if h.Version() == V1 {
		files = map[string]string{"memory.limit_in_bytes": "314572800", "memory.use_hierarchy": "1",
			"pids.max": "100", "cpu.cfs_quota_us": "150000", "cpu.cfs_period_us": "100000"}
	}
	for f, want := range files {
		c := strings.Split(f, ".")[0]
		if c == "memory" || c == "pids" || c == "cpu" {
			if got := readFile(t, filepath.Join(p.dir(c), f)); got != want {
				t.Errorf("parent %s = %s, want %s", f, got, want)
			}
		}
	}
	// A child above the parent: memory and pids are allowed (the parent's bound
	// holds), CPU is lowered to the parent's (v1 refuses more).
	g, err := h.New("big", Limits{MemoryBytes: 1 << 30, Pids: 1000, CPUs: 2})
	if err != nil {
		t.Fatalf("a child above the parent's limits: %v", err)
	}
	defer g.Destroy()
	if h.Version() == V1 {
		if got := readFile(t, filepath.Join(g.dir("cpu"), "cpu.cfs_quota_us")); got != "150000" {
			t.Errorf("child quota %s, want the parent's 150000", got)
		}
	}
	// Raise the parent again (v1: memsw before the limit).
	if err := h.SetLimits(Limits{MemoryBytes: 1 << 30, Pids: 200, CPUs: 2}); err != nil {
		t.Fatalf("raising the parent: %v", err)
	}
}

// TestParentMemoryBoundsChildren fills two groups, each below its own limit but
// together above the parent's: the kernel kills one, and the kill shows no hit of
// that group's own limit.
func TestParentMemoryBoundsChildren(t *testing.T) {
	h := openTest(t, "codeexec-cgroup-test-oom")
	if err := h.SetLimits(Limits{MemoryBytes: 96 << 20}); err != nil {
		t.Fatalf("SetLimits: %v", err)
	}
	var cmds []*exec.Cmd
	var groups []*Group
	for i := range 2 {
		g, err := h.New("fill"+strconv.Itoa(i), Limits{MemoryBytes: 256 << 20})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer g.Destroy()
		groups = append(groups, g)
		// 64 MiB each of memory that cannot be reclaimed (no swap), then wait.
		cmd := exec.Command("sh", "-c", `read x; exec python3 -c 'import time; b = bytearray(64 << 20); b[::4096] = b"x" * len(b[::4096]); print("full", flush=True); time.sleep(60)'`)
		in, _ := cmd.StdinPipe()
		cmd.Stdout = &strings.Builder{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if err := g.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		in.Close()
		cmds = append(cmds, cmd)
	}
	killed := 0
	for i, cmd := range cmds {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
				killed++
				st, _ := groups[i].Stats()
				if st.OOMKills == 0 || st.MemoryLimitHits != 0 {
					t.Errorf("group %d: %+v, want an OOM kill without a hit of its own limit", i, st)
				}
			} else {
				t.Errorf("group %d ended with %v, want SIGKILL", i, err)
			}
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	if killed != 1 {
		t.Errorf("%d of the two groups were killed, want 1", killed)
	}
}

func TestTotalsFor(t *testing.T) {
	tests := []struct {
		ram                int64
		cpus               int
		pidMax, threadsMax int64
		want               Limits
	}{
		{24 << 30, 2, 32768, 192729, Limits{MemoryBytes: 18<<30 - 512<<20, Pids: 8192, CPUs: 1.5}},
		{1 << 30, 1, 32768, 7000, Limits{MemoryBytes: 512 << 20, Pids: 3500, CPUs: 0.5}},
		{256 << 30, 64, 4194304, 2000000, Limits{MemoryBytes: 192<<30 - 512<<20, Pids: 8192, CPUs: 62}},
		{8 << 30, 8, 32768, 60000, Limits{MemoryBytes: 6<<30 - 512<<20, Pids: 8192, CPUs: 7.2}},
	}
	for _, tt := range tests {
		if got := totalsFor(tt.ram, tt.cpus, tt.pidMax, tt.threadsMax); got != tt.want {
			t.Errorf("totalsFor(%d, %d, %d, %d) = %+v, want %+v", tt.ram, tt.cpus, tt.pidMax, tt.threadsMax, got, tt.want)
		}
	}
}
