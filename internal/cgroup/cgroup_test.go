package cgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGroupLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CODEEXEC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("cgroup tests need root")
		}
		t.Skip("cgroup tests need root")
	}
	h, err := Open("codeexec-cgroup-test")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	g, err := h.New("lifecycle", Limits{MemoryBytes: 64 << 20, Pids: 10, CPUs: 0.5})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer g.Destroy()
	limitFile, want := "memory.limit_in_bytes", "67108864"
	if h.Version() == V2 {
		limitFile = "memory.max"
	}
	if got, _ := os.ReadFile(filepath.Join(g.dir("memory"), limitFile)); strings.TrimSpace(string(got)) != want {
		t.Errorf("%s = %q, want %s", limitFile, got, want)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatalf("Add: %v", err)
	}
	procs, err := g.Procs()
	if err != nil || !slices.Contains(procs, cmd.Process.Pid) {
		t.Fatalf("Procs() = %v, %v; want %d in it", procs, err, cmd.Process.Pid)
	}
	// Memory charged before the move stays with the old group (v1), so only check
	// that the group's counters can be read.
	if _, err := g.Stats(); err != nil {
		t.Errorf("Stats(): %v", err)
	}
	if err := g.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Kill did not end the process")
	}
	dirs := h.Paths()
	if err := g.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "lifecycle")); !os.IsNotExist(err) {
			t.Errorf("group dir left in %s", d)
		}
	}
}
