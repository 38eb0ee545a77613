package cgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestChargeAndPauseOOMKiller places a process in a group for its memory alone and
// pauses the group's OOM killer, then checks both in the cgroup files.
func TestChargeAndPauseOOMKiller(t *testing.T) {
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
	g, err := h.New("charge", Limits{MemoryBytes: 64 << 20, Pids: 10})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer g.Destroy()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := g.Charge(pid); err != nil {
		t.Fatalf("Charge: %v", err)
	}
	procsOf := func(controller string) []string {
		data, _ := os.ReadFile(filepath.Join(g.dir(controller), "cgroup.procs"))
		return strings.Fields(string(data))
	}
	if !slices.Contains(procsOf("memory"), strconv.Itoa(pid)) {
		t.Errorf("pid %d is not in the group's memory controller", pid)
	}
	if h.Version() == V1 && slices.Contains(procsOf("pids"), strconv.Itoa(pid)) {
		t.Errorf("pid %d joined the group's pids controller too; Charge is for memory alone on v1", pid)
	}

	file, key, paused, normal := "memory.oom_control", "oom_kill_disable", "1", "0"
	if h.Version() == V2 {
		file, key, paused, normal = "memory.oom.group", "", "0", "1"
	}
	read := func() string {
		data, err := os.ReadFile(filepath.Join(g.dir("memory"), file))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); key == "" && len(f) == 1 {
				return f[0]
			} else if len(f) == 2 && f[0] == key {
				return f[1]
			}
		}
		t.Fatalf("%s: no %q in %q", file, key, data)
		return ""
	}
	if got := read(); got != normal {
		t.Fatalf("%s before the pause: %s, want %s", file, got, normal)
	}
	restore, err := g.PauseOOMKiller()
	if err != nil {
		t.Fatalf("PauseOOMKiller: %v", err)
	}
	if got := read(); got != paused {
		t.Errorf("%s while paused: %s, want %s", file, got, paused)
	}
	if err := restore(); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if got := read(); got != normal {
		t.Errorf("%s after restore: %s, want %s", file, got, normal)
	}
}
