package doctor

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/container"
)

func readMountsFixture(t *testing.T, name string) cgroupMounts {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := parseCgroupMounts(f)
	if err != nil {
		t.Fatalf("parseCgroupMounts(%s): %v", name, err)
	}
	return m
}

func TestParseCgroupMounts(t *testing.T) {
	hybrid := readMountsFixture(t, "mountinfo-hybrid")
	wantV1 := map[string]string{
		"cpu":          "/sys/fs/cgroup/cpu,cpuacct",
		"cpuacct":      "/sys/fs/cgroup/cpu,cpuacct",
		"memory":       "/sys/fs/cgroup/memory",
		"devices":      "/sys/fs/cgroup/devices",
		"pids":         "/sys/fs/cgroup/pids",
		"name=systemd": "/sys/fs/cgroup/systemd",
	}
	if !reflect.DeepEqual(hybrid.v1, wantV1) {
		t.Errorf("parseCgroupMounts(mountinfo-hybrid).v1 = %v, want %v", hybrid.v1, wantV1)
	}
	if want := []string{"/sys/fs/cgroup/unified"}; !slices.Equal(hybrid.v2, want) {
		t.Errorf("parseCgroupMounts(mountinfo-hybrid).v2 = %v, want %v", hybrid.v2, want)
	}
	pts := hybrid.mountPoints()
	slices.Sort(pts)
	wantPts := []string{"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/devices", "/sys/fs/cgroup/memory",
		"/sys/fs/cgroup/pids", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}
	if !slices.Equal(pts, wantPts) {
		t.Errorf("mountPoints() of mountinfo-hybrid = %v, want %v (each once)", pts, wantPts)
	}

	v2 := readMountsFixture(t, "mountinfo-v2")
	if len(v2.v1) != 0 || !slices.Equal(v2.v2, []string{"/sys/fs/cgroup"}) {
		t.Errorf("parseCgroupMounts(mountinfo-v2) = %+v, want only cgroup2 at /sys/fs/cgroup", v2)
	}
}

func TestDiagnoseCgroups(t *testing.T) {
	openErr := errors.New("open failed")
	tests := []struct {
		name        string
		mounts      cgroupMounts
		v2Have      []string
		detail, fix string
	}{
		{
			name:   "nothing mounted",
			mounts: cgroupMounts{v1: map[string]string{}},
			detail: "no cgroup file system is mounted",
			fix:    "mount -t cgroup2 none /sys/fs/cgroup",
		},
		{
			name:   "v1 without pids",
			mounts: cgroupMounts{v1: map[string]string{"memory": "/m", "cpu": "/c", "cpuacct": "/c"}, v2: []string{"/u"}},
			detail: "not mounted: pids",
			fix:    "mount -t cgroup -o pids cgroup /sys/fs/cgroup/pids",
		},
		{
			name:   "v1 with only systemd, no cgroup2",
			mounts: cgroupMounts{v1: map[string]string{"name=systemd": "/s"}},
			detail: "not mounted: memory, pids, cpu, cpuacct",
			fix:    "systemd.unified_cgroup_hierarchy=1",
		},
		{
			name:   "v1 complete but unusable",
			mounts: cgroupMounts{v1: map[string]string{"memory": "/m", "pids": "/p", "cpu": "/c", "cpuacct": "/c", "freezer": "/f"}},
			detail: "unusable: open failed",
			fix:    "--privileged",
		},
		{
			name:   "v1 without the freezer",
			mounts: cgroupMounts{v1: map[string]string{"memory": "/m", "pids": "/p", "cpu": "/c", "cpuacct": "/c"}},
			detail: "not mounted: freezer",
			fix:    "mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer",
		},
		{
			name:   "v2 without memory",
			mounts: cgroupMounts{v1: map[string]string{}, v2: []string{"/sys/fs/cgroup"}},
			v2Have: []string{"cpuset", "cpu", "io", "pids"},
			detail: `cgroup v2 at "/sys/fs/cgroup" lacks memory in cgroup.controllers`,
			fix:    "cgroup_disable=",
		},
		{
			name:   "v2 not delegated",
			mounts: cgroupMounts{v1: map[string]string{}, v2: []string{"/sys/fs/cgroup"}},
			v2Have: []string{"cpu", "memory", "pids"},
			detail: "cannot delegate them, or lacks the freezer",
			fix:    "`echo +memory +pids +cpu > /sys/fs/cgroup/cgroup.subtree_control`",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			detail, fix := diagnoseCgroups(tt.mounts, tt.v2Have, openErr)
			if !strings.Contains(detail, tt.detail) || !strings.Contains(fix, tt.fix) {
				t.Errorf("diagnoseCgroups(%+v, %v) = %q, %q; want detail containing %q and fix containing %q",
					tt.mounts, tt.v2Have, detail, fix, tt.detail, tt.fix)
			}
		})
	}
}

const swapsHeader = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"

func TestCountSwaps(t *testing.T) {
	tests := []struct {
		data string
		want int
	}{
		{swapsHeader, 0},
		{"", 0},
		{swapsHeader + "/swapfile                               file\t\t2097148\t\t0\t\t-2\n", 1},
		{swapsHeader + "/dev/sda2 partition 8388604 1024 -2\n/swapfile file 2097148 0 -3\n", 2},
	}
	for _, tt := range tests {
		if got := countSwaps(tt.data); got != tt.want {
			t.Errorf("countSwaps(%q) = %d, want %d", tt.data, got, tt.want)
		}
	}
}

func TestSwapCheck(t *testing.T) {
	v1 := cgroupProbe{version: cgroup.V1, swapFile: "memory.memsw.limit_in_bytes"}
	v1Limited := v1
	v1Limited.swapLimited = true
	broken := cgroupProbe{err: errors.New("no cgroups")}
	tests := []struct {
		name   string
		probe  cgroupProbe
		swaps  int
		want   Status
		detail string
	}{
		{"accounted", v1Limited, 1, OK, "memory.memsw.limit_in_bytes present"},
		{"no accounting, no swap", v1, 0, OK, "the host has no swap"},
		{"no accounting, swap", v1, 2, Warn, "the host has 2 swap area(s)"},
		{"no accounting, swap unknown", v1, -1, Warn, "swap is not limited"},
		{"cgroups broken", broken, 0, Warn, "not checked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := swapCheck(tt.probe, tt.swaps)
			if c.Status != tt.want || !strings.Contains(c.Detail, tt.detail) {
				t.Errorf("swapCheck(%+v, %d) = %+v, want status %q and detail containing %q", tt.probe, tt.swaps, c, tt.want, tt.detail)
			}
			if (c.Status == OK) != (c.Fix == "") {
				t.Errorf("swapCheck(%+v, %d): status %q with fix %q", tt.probe, tt.swaps, c.Status, c.Fix)
			}
		})
	}
}

func TestCheckSwapReadsProcSwaps(t *testing.T) {
	v2 := cgroupProbe{version: cgroup.V2, swapFile: "memory.swap.max"}
	proc := writeProc(t, map[string]string{"swaps": swapsHeader})
	if c := checkSwap(v2, proc); c.Status != OK {
		t.Errorf("checkSwap(no memory.swap.max, empty /proc/swaps) = %+v, want ok", c)
	}
	proc = writeProc(t, map[string]string{"swaps": swapsHeader + "/swapfile file 2097148 0 -2\n"})
	if c := checkSwap(v2, proc); c.Status != Warn || !strings.Contains(c.Fix, "swapaccount=1") {
		t.Errorf("checkSwap(no memory.swap.max, one swap file) = %+v, want warn with swapaccount=1 fix", c)
	}
}

func TestCheckCgroups(t *testing.T) {
	ok := cgroupProbe{version: cgroup.V2, paths: []string{"/sys/fs/cgroup/codeexec-doctor"}}
	if c := checkCgroups(ok, container.None); c.Status != OK || c.Detail != "cgroup v2: /sys/fs/cgroup" {
		t.Errorf("checkCgroups(%+v) = %+v, want ok naming the version and hierarchy", ok, c)
	}
	withTotals := ok
	withTotals.totals = cgroup.Limits{MemoryBytes: 17 << 30, Pids: 8192, CPUs: 1.5}
	if c := checkCgroups(withTotals, container.None); c.Status != OK || !strings.Contains(c.Detail, "17.0 GiB, 8192 processes and 1.5 CPUs") {
		t.Errorf("checkCgroups(%+v) = %+v, want the default totals named", withTotals, c)
	}
	leaked := ok
	leaked.cleanupErr = errors.New("rmdir /sys/fs/cgroup/codeexec-doctor: device or resource busy")
	if c := checkCgroups(leaked, container.None); c.Status != Warn || !strings.Contains(c.Detail, "busy") {
		t.Errorf("checkCgroups(%+v) = %+v, want warn reporting the leftover", leaked, c)
	}
	broken := cgroupProbe{err: errors.New("x"), diagnosis: "why", fix: "how"}
	if c := checkCgroups(broken, container.None); c.Status != Fail || c.Detail != "why" || c.Fix != "how" {
		t.Errorf("checkCgroups(%+v) = %+v, want fail with the diagnosis and fix", broken, c)
	}
	// In a container the fix is the container's: its entrypoint and security context.
	readOnly := cgroupProbe{err: errors.New("cgroup: no usable hierarchy: mkdir /sys/fs/cgroup/memory/codeexec-doctor: read-only file system"), diagnosis: "why", fix: "how"}
	for _, tt := range []struct {
		rt   container.Runtime
		want []string
	}{
		{container.Kubernetes, []string{"the cgroups are mounted read-only", "codeexec container-init", "capabilities.add: [SYS_ADMIN"}},
		{container.Podman, []string{"the cgroups are mounted read-only", "codeexec container-init", "--cap-add SYS_ADMIN", "--cgroupns=private"}},
	} {
		c := checkCgroups(readOnly, tt.rt)
		for _, w := range tt.want {
			if c.Status != Fail || c.Detail != "why" || !strings.Contains(c.Fix, w) {
				t.Errorf("checkCgroups(read-only, %q) = %+v, want fail with the diagnosis and a fix containing %q", tt.rt, c, w)
			}
		}
	}
}
