package cgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// testPool opens a pool on the host's hierarchy for a root-only test; the test's
// end closes it and removes the parent.
func testPool(t *testing.T, max int) (*Hierarchy, *Pool) {
	t.Helper()
	h := openTest(t, "codeexec-pool-test")
	var seq atomic.Int64
	p := h.NewPool(func() string { return t.Name() + "-" + strconv.FormatInt(seq.Add(1), 10) }, max)
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h, p
}

// runIn runs a shell script in g and waits for it: it is moved into g before it reads
// the line that lets it go on.
func runIn(t *testing.T, g *Group, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read x; "+script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("Add: %v", err)
	}
	_, _ = in.Write([]byte("go\n"))
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%q: %v", script, err)
	}
}

func TestPoolReusesAnEmptyGroup(t *testing.T) {
	h, p := testPool(t, 4)
	g, err := p.Get(Limits{MemoryBytes: 128 << 20, Pids: 10, CPUs: 0.5})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	t.Cleanup(func() { _ = g.Destroy() })
	// CPU time and a peak of memory (32 MiB in a tmpfs file, removed) for the next
	// user not to see.
	shm := filepath.Join("/dev/shm", "codeexec-pool-test-"+strconv.Itoa(os.Getpid()))
	runIn(t, g, `i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; dd if=/dev/zero of=`+shm+` bs=1M count=32 2>/dev/null; rm -f `+shm)
	used, err := g.Stats()
	if err != nil || used.CPUTime == 0 || used.MaxMemoryBytes < 32<<20 {
		t.Fatalf("Stats after a run = %+v, %v: want CPU time and a peak above 32 MiB", used, err)
	}
	if err := p.Put(g); err != nil || p.Kept() != 1 {
		t.Fatalf("Put of an empty group: %v, kept %d, want it kept", err, p.Kept())
	}
	// The old handle reaches nothing of the next user's: a late Kill kills nobody.
	if paths := g.Paths(); len(paths) != 0 {
		t.Errorf("the handle given back still has %v", paths)
	}
	again, err := p.Get(Limits{MemoryBytes: 96 << 20, Pids: 20, CPUs: 0.25})
	if err != nil {
		t.Fatalf("second Get: %v", err)
	}
	defer again.Destroy()
	if again.name != g.name || p.Kept() != 0 {
		t.Fatalf("second Get made %q (kept %d), want %q from the pool", again.name, p.Kept(), g.name)
	}
	st, err := again.Stats()
	if err != nil {
		t.Fatalf("Stats of the reused group: %v", err)
	}
	if st.CPUTime != 0 || st.OOMKills != 0 || st.MemoryLimitHits != 0 || st.MaxMemoryBytes >= 32<<20 {
		t.Errorf("Stats of the reused group = %+v, want the counters at zero and the peak restarted", st)
	}
	if c, err := again.Counters(); err != nil || c != (Stats{}) {
		t.Errorf("Counters of the reused group = %+v, %v; want zero", c, err)
	}
	limitFile, pidsWant := "memory.limit_in_bytes", "20"
	if h.Version() == V2 {
		limitFile = "memory.max"
	}
	if got := readFile(t, filepath.Join(again.dir("memory"), limitFile)); got != strconv.Itoa(96<<20) {
		t.Errorf("%s of the reused group = %s, want the new limit %d", limitFile, got, 96<<20)
	}
	if got := readFile(t, filepath.Join(again.dir("pids"), "pids.max")); got != pidsWant {
		t.Errorf("pids.max of the reused group = %s, want %s", got, pidsWant)
	}
}

func TestPoolRemovesAGroupWithTasks(t *testing.T) {
	_, p := testPool(t, 4)
	g, err := p.Get(Limits{Pids: 10})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	t.Cleanup(func() { _ = g.Destroy() })
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatalf("Add: %v", err)
	}
	dir := g.anyDir()
	// Put kills what is left and removes the group: a group with a task is never kept.
	_ = p.Put(g)
	if p.Kept() != 0 {
		t.Fatalf("Put kept a group with a task in it")
	}
	if dirExists(dir) {
		t.Errorf("%s still exists after Put of a group with a task", dir)
	}
}

func TestPoolCloseRemovesKeptGroups(t *testing.T) {
	_, p := testPool(t, 2)
	var dirs []string
	var groups []*Group
	for range 3 {
		g, err := p.Get(Limits{Pids: 10})
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		t.Cleanup(func() { _ = g.Destroy() })
		groups = append(groups, g)
		dirs = append(dirs, g.Paths()...)
	}
	for _, g := range groups {
		if err := p.Put(g); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	if p.Kept() != 2 {
		t.Fatalf("kept %d groups, want the pool's max of 2 (the third removed)", p.Kept())
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, d := range dirs {
		if dirExists(d) {
			t.Errorf("%s still exists after Close", d)
		}
	}
	// A group given back after Close is removed, not kept.
	g, err := p.Get(Limits{Pids: 10})
	if err != nil {
		t.Fatalf("Get after Close: %v", err)
	}
	dir := g.anyDir()
	if err := p.Put(g); err != nil || p.Kept() != 0 || dirExists(dir) {
		t.Errorf("Put after Close: %v, kept %d, %s exists %v; want it removed", err, p.Kept(), dir, dirExists(dir))
	}
}

// TestPoolV2 runs the pool's v2 paths on a fake cgroup2 tree: a populated group is not
// kept; an empty one is, and comes back with memory.peak reset through the file it
// keeps open, the counters read from zero and the limits written anew.
func TestPoolV2(t *testing.T) {
	h, g := fakeV2(t)
	dir := g.dirs[""]
	put := func(file, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("memory.current", "4096\n")
	put("memory.peak", "73400320\n")
	put("cpu.stat", "usage_usec 250000\nuser_usec 200000\n")
	put("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
	p := h.NewPool(func() string { return "unused" }, 4)

	put("cgroup.events", "populated 1\nfrozen 0\n")
	if ok, err := g.reusable(); err != nil || ok {
		t.Fatalf("reusable with populated 1 = %v, %v; want false", ok, err)
	}
	put("cgroup.events", "populated 0\nfrozen 0\n")
	if err := p.Put(g); err != nil || p.Kept() != 1 {
		t.Fatalf("Put of an empty group: %v, kept %d", err, p.Kept())
	}
	got, err := p.Get(Limits{MemoryBytes: 200 << 20, Pids: 30, CPUs: 1})
	if err != nil || got.dir("") != dir {
		t.Fatalf("Get = %v, %v; want the kept group", got, err)
	}
	g = got
	// (A regular file keeps the old value's tail after the write; the kernel's does not.)
	if peak := readFile(t, filepath.Join(dir, "memory.peak")); !strings.HasPrefix(peak, "reset\n") {
		t.Errorf("memory.peak = %q after the reuse, want the reset written", peak)
	}
	// The kernel answers through the same file with the peak since the reset.
	put("memory.peak", "8192\n")
	st, err := g.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if want := (Stats{MemoryBytes: 4096, MaxMemoryBytes: 8192}); st != want {
		t.Errorf("Stats of the reused group = %+v, want %+v", st, want)
	}
	for file, want := range map[string]string{"memory.max": strconv.Itoa(200 << 20), "pids.max": "30", "cpu.max": "100000 100000", "cgroup.freeze": "0"} {
		if got := readFile(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q after the reuse, want %q", file, got, want)
		}
	}
	put("memory.current", strconv.Itoa(poolMaxLeftover+1))
	if ok, err := g.reusable(); err != nil || ok {
		t.Errorf("reusable with more than poolMaxLeftover charged = %v, %v; want false", ok, err)
	}
	g.mu.Lock()
	if g.peak != nil {
		g.peak.Close()
		g.peak = nil
	}
	g.mu.Unlock()
}
