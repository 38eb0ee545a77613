package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeV2 makes a directory tree shaped like a cgroup2 mount with a parent group and
// one child, with the files the package writes, for testing the v2 code paths on a
// host without a usable cgroup2 (this project's CI machine is v1).
func fakeV2(t *testing.T) (*Hierarchy, *Group) {
	t.Helper()
	root := t.TempDir()
	put := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put(filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n")
	groupFiles := map[string]string{
		"cgroup.subtree_control": "", "cgroup.freeze": "0\n", "cgroup.kill": "",
		"cgroup.events": "populated 1\nfrozen 0\n", "memory.max": "max\n", "memory.swap.max": "max\n",
		"memory.oom.group": "0\n", "pids.max": "max\n", "cpu.max": "max 100000\n",
	}
	put(filepath.Join(root, "cgroup.subtree_control"), "")
	for _, dir := range []string{"codeexec", "codeexec/g"} {
		for f, c := range groupFiles {
			put(filepath.Join(root, dir, f), c)
		}
	}
	h, err := openV2(root, "codeexec")
	if err != nil {
		t.Fatalf("openV2: %v", err)
	}
	return h, &Group{h: h, name: "g", dirs: map[string]string{"": filepath.Join(root, "codeexec", "g")}}
}

func TestV2Files(t *testing.T) {
	h, g := fakeV2(t)
	parent := h.dirs[""]
	if got := readFile(t, filepath.Join(parent, "cgroup.subtree_control")); got != "+memory +pids +cpu" {
		t.Errorf("parent's subtree_control = %q", got)
	}
	if err := h.SetLimits(Limits{MemoryBytes: 3 << 30, Pids: 4000, CPUs: 1.5}); err != nil {
		t.Fatalf("SetLimits: %v", err)
	}
	if err := g.Set(Limits{MemoryBytes: 600 << 20, Pids: 64, CPUs: 2}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	tests := []struct{ dir, file, want string }{
		{parent, "memory.max", "3221225472"},
		{parent, "memory.swap.max", "0"},
		{parent, "memory.oom.group", "0"}, // a parent OOM takes one sandbox, not all
		{parent, "pids.max", "4000"},
		{parent, "cpu.max", "150000 100000"},
		{g.dirs[""], "memory.max", "629145600"},
		{g.dirs[""], "memory.swap.max", "0"},
		{g.dirs[""], "memory.oom.group", "1"},
		{g.dirs[""], "pids.max", "64"},
		{g.dirs[""], "cpu.max", "200000 100000"}, // v2 enforces the parent's lower bound itself
	}
	for _, tt := range tests {
		if got := readFile(t, filepath.Join(tt.dir, tt.file)); got != tt.want {
			t.Errorf("%s/%s = %q, want %q", filepath.Base(tt.dir), tt.file, got, tt.want)
		}
	}
	if l, err := h.Limits(); err != nil || l != (Limits{MemoryBytes: 3 << 30, Pids: 4000, CPUs: 1.5}) {
		t.Errorf("Limits() = %+v, %v", l, err)
	}
	if err := g.Kill(); err != nil || readFile(t, filepath.Join(g.dirs[""], "cgroup.kill")) != "1" {
		t.Errorf("Kill did not write cgroup.kill: %v", err)
	}
}

func TestV2Freeze(t *testing.T) {
	_, g := fakeV2(t)
	dir := g.dirs[""]
	// The kernel reports the group frozen in cgroup.events some time after the write.
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 1\n"), 0o644)
	}()
	if err := g.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "cgroup.freeze")); got != "1" {
		t.Errorf("cgroup.freeze = %q after Freeze", got)
	}
	if err := g.Thaw(); err != nil || readFile(t, filepath.Join(dir, "cgroup.freeze")) != "0" {
		t.Errorf("Thaw: %v, cgroup.freeze = %q", err, readFile(t, filepath.Join(dir, "cgroup.freeze")))
	}
	// A group that never reports frozen is thawed again and the error says so.
	_ = os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644)
	defer func(d time.Duration) { freezeTimeout = d }(freezeTimeout)
	freezeTimeout = 50 * time.Millisecond
	if err := g.Freeze(); !errors.Is(err, ErrFreeze) {
		t.Errorf("Freeze of a group that never freezes: %v, want ErrFreeze", err)
	}
	if got := readFile(t, filepath.Join(dir, "cgroup.freeze")); got != "0" {
		t.Errorf("cgroup.freeze = %q after a failed Freeze, want 0", got)
	}
}

func TestV2NeedsFreezer(t *testing.T) {
	h, _ := fakeV2(t)
	root := filepath.Dir(h.dirs[""])
	if err := os.MkdirAll(filepath.Join(root, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(root, "old", "cgroup.subtree_control"), nil, 0o644)
	if _, err := openV2(root, "old"); err == nil {
		t.Error("openV2 accepted a hierarchy without cgroup.freeze")
	}
}

// TestV1Comounted: controllers mounted together (cpu,cpuacct) share a directory, which
// a group makes and removes once.
func TestV1Comounted(t *testing.T) {
	root := t.TempDir()
	cpu, mem := filepath.Join(root, "cpu,cpuacct", "codeexec"), filepath.Join(root, "memory", "codeexec")
	for _, d := range []string{cpu, mem} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := &Hierarchy{version: V1, dirs: map[string]string{"cpu": cpu, "cpuacct": cpu, "memory": mem}}
	g, err := h.New("g", Limits{})
	if err != nil {
		t.Fatalf("New with co-mounted controllers: %v", err)
	}
	if !dirExists(filepath.Join(cpu, "g")) || !dirExists(filepath.Join(mem, "g")) {
		t.Fatal("group directories not made")
	}
	if err := g.Destroy(); err != nil || dirExists(filepath.Join(cpu, "g")) {
		t.Errorf("Destroy: %v", err)
	}
}
