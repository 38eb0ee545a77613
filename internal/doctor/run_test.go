package doctor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRunOnThisHost runs every check against the real host. The sandbox's own tests need
// the same things, so a host that runs them must pass these.
func TestRunOnThisHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the namespace and cgroup checks map uids and create cgroups")
	}
	store := t.TempDir()
	checks := Run(context.Background(), Options{Store: store})

	var names []string
	byName := map[string]Check{}
	for _, c := range checks {
		names = append(names, c.Name)
		byName[c.Name] = c
		if c.Status != OK && c.Status != Warn && c.Status != Fail {
			t.Errorf("check %q has status %q", c.Name, c.Status)
		}
		if c.Detail == "" {
			t.Errorf("check %q has no detail", c.Name)
		}
		if (c.Status == OK) != (c.Fix == "") {
			t.Errorf("check %q: status %q with fix %q; a problem needs a fix and ok needs none", c.Name, c.Status, c.Fix)
		}
	}
	want := []string{"root", "kernel", "container", "namespaces", "user namespaces", "cgroups", "swap limit",
		"seccomp", "landlock", "no_new_privs", "filesystems", "image", "image builder"}
	if !slices.Equal(names, want) {
		t.Fatalf("Run returned checks %q, want %q", names, want)
	}

	for _, name := range []string{"root", "container", "namespaces", "cgroups", "seccomp", "no_new_privs", "filesystems"} {
		if c := byName[name]; c.Status != OK {
			t.Errorf("check %q = %+v, want ok on a host that runs sandboxes", name, c)
		}
	}
	if c := byName["landlock"]; c.Status == Fail {
		t.Errorf("check landlock = %+v: Landlock is optional, it must not fail", c)
	}
	if c := byName["image"]; c.Status != Fail {
		t.Errorf("check image with empty store %q = %+v, want fail", store, c)
	}
}

// TestProbeCgroupsCleansUp checks that doctor leaves no cgroup behind.
func TestProbeCgroupsCleansUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
	const parent = "codeexec-doctor-test"
	p := probeCgroups(parent, os.Geteuid())
	if p.err != nil {
		t.Fatalf("probeCgroups(%q): %v", parent, p.err)
	}
	if p.cleanupErr != nil {
		t.Errorf("probeCgroups(%q) cleanup: %v", parent, p.cleanupErr)
	}
	if len(p.paths) == 0 {
		t.Fatalf("probeCgroups(%q) reported no paths", parent)
	}
	for _, dir := range p.paths {
		if filepath.Base(dir) != parent {
			t.Errorf("probeCgroups(%q) reported path %q, want one ending in %q", parent, dir, parent)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after probeCgroups(%q), %q still exists (stat: %v)", parent, dir, err)
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mounts, err := parseCgroupMounts(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, mp := range mounts.mountPoints() {
		if _, err := os.Stat(filepath.Join(mp, parent)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after probeCgroups(%q), %q exists", parent, filepath.Join(mp, parent))
		}
	}
}
