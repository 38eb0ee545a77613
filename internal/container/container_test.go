package container

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/mountinfo"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		env   map[string]string
		want  Runtime
	}{
		{"host", nil, nil, None},
		{"podman", []string{"run/.containerenv"}, nil, Podman},
		{"docker", []string{".dockerenv"}, nil, Docker},
		// A pod's runtime may be anything; Kubernetes is what decides its security context.
		{"pod under podman", []string{"run/.containerenv"}, map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, Kubernetes},
		{"empty variable", nil, map[string]string{"KUBERNETES_SERVICE_HOST": ""}, None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := Detect(root, func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("Detect(%v, %v) = %q, want %q", tt.files, tt.env, got, tt.want)
			}
		})
	}
}

// podmanMounts is the mount table of a container podman started with its defaults
// (cgroup v1, abridged).
const podmanMounts = `488 487 0:87 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
499 490 0:92 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
504 499 0:32 /libpod_parent/libpod-bc72 /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
373 488 0:87 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw
376 488 0:87 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
377 488 0:94 / /proc/acpi ro,relatime - tmpfs tmpfs ro
378 488 0:88 /null /proc/keys rw,nosuid,noexec - tmpfs tmpfs rw,size=65536k,mode=755
379 488 0:88 /null /proc/keys rw,nosuid,noexec - tmpfs tmpfs rw,size=65536k,mode=755
380 376 0:88 /null /proc/sys/kernel/x rw,nosuid,noexec - tmpfs tmpfs rw
381 487 0:90 / /procfoo rw - tmpfs tmpfs rw
`

func TestProcMasks(t *testing.T) {
	mounts, err := mountinfo.Parse(strings.NewReader(podmanMounts))
	if err != nil {
		t.Fatal(err)
	}
	// Deepest first (a mask on a mask goes before it), each once, /proc itself and
	// its look-alikes never.
	want := []string{"/proc/sys/kernel/x", "/proc/sys", "/proc/keys", "/proc/bus", "/proc/acpi"}
	if got := ProcMasks(mounts); !slices.Equal(got, want) {
		t.Errorf("ProcMasks(podman's table) = %q, want %q", got, want)
	}
}

// fakeV2 makes a directory shaped like a cgroup2 group: the control files Delegate
// reads and writes, with an init child whose cgroup.procs exists (the kernel makes
// it with the directory).
func fakeV2(t *testing.T, controllers, subtree, procs string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"cgroup.controllers": controllers, "cgroup.subtree_control": subtree, "cgroup.procs": procs, "init/cgroup.procs": ""}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDelegate(t *testing.T) {
	tests := []struct {
		name                            string
		controllers, subtree, procs     string
		wantSubtree, wantMoved, wantErr string
		steps                           int
	}{
		{name: "pod's group with processes", controllers: "cpuset cpu io memory hugetlb pids rdma misc\n", subtree: "\n", procs: "1\n7\n",
			wantSubtree: "+memory +pids +cpu", wantMoved: "7", steps: 2},
		{name: "already delegated", controllers: "cpu memory pids\n", subtree: "cpu memory pids\n", procs: "1\n",
			wantSubtree: "cpu memory pids\n", steps: 0},
		{name: "partly delegated, no processes", controllers: "cpu memory pids\n", subtree: "memory\n",
			wantSubtree: "+pids +cpu", steps: 1},
		{name: "memory not offered", controllers: "cpu pids\n", subtree: "\n", procs: "1\n",
			wantSubtree: "\n", wantErr: "does not offer the memory controller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fakeV2(t, tt.controllers, tt.subtree, tt.procs)
			steps, err := Delegate(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Delegate = %v, %v; want an error containing %q", steps, err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Delegate: %v", err)
			}
			if len(steps) != tt.steps {
				t.Errorf("Delegate steps = %q, want %d", steps, tt.steps)
			}
			got, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
			if string(got) != tt.wantSubtree {
				t.Errorf("cgroup.subtree_control = %q, want %q", got, tt.wantSubtree)
			}
			// The fake file keeps the last pid written; the kernel's would list them all.
			moved, _ := os.ReadFile(filepath.Join(dir, "init", "cgroup.procs"))
			if string(moved) != tt.wantMoved {
				t.Errorf("init/cgroup.procs = %q, want %q", moved, tt.wantMoved)
			}
		})
	}
}
