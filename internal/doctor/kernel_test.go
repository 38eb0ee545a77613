package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// writeProc makes a fake proc directory holding files (path relative to it → content).
func writeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCheckRoot(t *testing.T) {
	tests := []struct {
		euid int
		want Status
	}{
		{0, OK},
		{1000, Fail},
	}
	for _, tt := range tests {
		c := checkRoot(tt.euid)
		if c.Status != tt.want {
			t.Errorf("checkRoot(%d).Status = %q, want %q", tt.euid, c.Status, tt.want)
		}
		if tt.want == Fail && !strings.Contains(c.Fix, "sudo") {
			t.Errorf("checkRoot(%d).Fix = %q, want it to mention sudo", tt.euid, c.Fix)
		}
	}
}

const (
	filesystemsFull = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n\text4\nnodev\toverlay\n"
	filesystemsBare = "nodev\tsysfs\nnodev\tproc\n\text4\n"
)

func TestParseFilesystems(t *testing.T) {
	fs := parseFilesystems(filesystemsFull)
	for _, name := range []string{"sysfs", "tmpfs", "proc", "ext4", "overlay"} {
		if !fs[name] {
			t.Errorf("parseFilesystems(%q) lacks %q", filesystemsFull, name)
		}
	}
	if fs["nodev"] {
		t.Errorf("parseFilesystems(%q) took the nodev flag for a file system", filesystemsFull)
	}
	if len(fs) != 5 {
		t.Errorf("parseFilesystems(%q) = %v, want 5 names", filesystemsFull, fs)
	}
}

func TestCheckFilesystems(t *testing.T) {
	tests := []struct {
		name, content string
		want          Status
		detail        string
	}{
		{"tmpfs and overlay", filesystemsFull, OK, "overlay available"},
		{"no tmpfs, no overlay", filesystemsBare, Fail, "no tmpfs"},
		{"tmpfs only", "nodev\ttmpfs\n", OK, "no overlay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := writeProc(t, map[string]string{"filesystems": tt.content})
			c := checkFilesystems(proc)
			if c.Status != tt.want || !strings.Contains(c.Detail, tt.detail) {
				t.Errorf("checkFilesystems(%q) = %+v, want status %q and detail containing %q", tt.content, c, tt.want, tt.detail)
			}
			if (c.Status == Fail) != (c.Fix != "") {
				t.Errorf("checkFilesystems(%q): status %q with fix %q", tt.content, c.Status, c.Fix)
			}
		})
	}
	if c := checkFilesystems(t.TempDir()); c.Status != Fail {
		t.Errorf("checkFilesystems(dir without filesystems) = %+v, want fail", c)
	}
}

func TestLandlockDetail(t *testing.T) {
	if d := landlockDetail(7); !strings.HasPrefix(d, "ABI 7:") || !strings.Contains(d, "signal and abstract-socket scoping") || strings.Contains(d, "need") {
		t.Errorf("landlockDetail(7) = %q, want ABI 7 with scoping", d)
	}
	if d := landlockDetail(4); !strings.HasPrefix(d, "ABI 4:") || !strings.Contains(d, "need ABI 6") {
		t.Errorf("landlockDetail(4) = %q, want ABI 4 saying scoping needs ABI 6", d)
	}
}

func TestLandlockMissing(t *testing.T) {
	tests := []struct {
		errno       unix.Errno
		lsm         string
		detail, fix string
	}{
		{unix.EOPNOTSUPP, "lockdown,capability,yama,apparmor", "not enabled at boot", "lsm=landlock,lockdown,capability,yama,apparmor"},
		{unix.EOPNOTSUPP, "", "not enabled at boot", "lsm=landlock "},
		{unix.ENOSYS, "capability,yama", "no Landlock", "5.13"},
	}
	for _, tt := range tests {
		detail, fix := landlockMissing(tt.errno, tt.lsm)
		if !strings.Contains(detail, tt.detail) || !strings.Contains(fix, tt.fix) {
			t.Errorf("landlockMissing(%v, %q) = %q, %q; want detail containing %q and fix containing %q",
				tt.errno, tt.lsm, detail, fix, tt.detail, tt.fix)
		}
	}
}

func TestCheckLandlockOnThisHost(t *testing.T) {
	c := checkLandlock()
	switch c.Status {
	case OK:
		var abi int
		if _, err := fmt.Sscanf(c.Detail, "ABI %d:", &abi); err != nil || abi < 1 {
			t.Errorf("checkLandlock().Detail = %q, want \"ABI n: …\" with n ≥ 1", c.Detail)
		}
	case Warn:
		if c.Fix == "" {
			t.Errorf("checkLandlock() = %+v: a warning without a fix", c)
		}
	default:
		t.Errorf("checkLandlock().Status = %q, want ok or warn: Landlock is optional", c.Status)
	}
}

func TestCheckNoNewPrivs(t *testing.T) {
	with := writeProc(t, map[string]string{"self/status": "Name:\tx\nNoNewPrivs:\t0\nSeccomp:\t0\n"})
	if c := checkNoNewPrivs(with); c.Status != OK || c.Detail != "supported" {
		t.Errorf("checkNoNewPrivs(status with NoNewPrivs) = %+v, want ok \"supported\"", c)
	}
	// Without the field doctor falls back to the prctl, which every kernel this test
	// can run on has.
	without := writeProc(t, map[string]string{"self/status": "Name:\tx\n"})
	if c := checkNoNewPrivs(without); c.Status != OK || !strings.Contains(c.Detail, "PR_GET_NO_NEW_PRIVS") {
		t.Errorf("checkNoNewPrivs(status without NoNewPrivs) = %+v, want ok through the prctl", c)
	}
}

func TestCheckSeccomp(t *testing.T) {
	with := writeProc(t, map[string]string{"self/status": "Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n"})
	if c := checkSeccomp(with); c.Status != OK || !strings.HasPrefix(c.Detail, "filter mode available") {
		t.Errorf("checkSeccomp(status with Seccomp) = %+v, want ok, filter mode available", c)
	}
	without := writeProc(t, map[string]string{"self/status": "Name:\tx\n"})
	if c := checkSeccomp(without); c.Status != Fail || !strings.Contains(c.Detail, "no Seccomp: line") || c.Fix == "" {
		t.Errorf("checkSeccomp(status without Seccomp) = %+v, want fail naming the missing line, with a fix", c)
	}
}
