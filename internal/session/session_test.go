package session

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	os.Exit(m.Run())
}

func testRunner(t *testing.T) *sandbox.Runner {
	t.Helper()
	reason := ""
	img, err := image.Find("/var/lib/codeexec", image.DefaultRecipe())
	switch {
	case os.Geteuid() != 0:
		reason = "sandboxes need root"
	case err != nil:
		reason = "no sandbox image: " + err.Error()
	}
	if reason != "" {
		if os.Getenv("CODEEXEC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal(reason)
		}
		t.Skip(reason)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o711)
	os.Chmod(filepath.Dir(dir), 0o711)
	r, err := sandbox.New(sandbox.Config{Rootfs: img.Rootfs, StateDir: filepath.Join(dir, "state"), CgroupParent: "codeexec-session-test",
		HostUID: sandbox.DefaultHostUID, Warm: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestManager(t *testing.T) {
	r := testRunner(t)
	m := NewManager(Config{Max: 2, IdleTTL: time.Minute, MaxIdleTTL: 10 * time.Minute, MaxLifetime: time.Hour}, r)
	defer m.Close()
	now := time.Now()
	m.now = func() time.Time { return now }

	if _, err := m.Create(sandbox.DefaultLimits(), time.Hour); !errors.Is(err, ErrBadTTL) {
		t.Errorf("ttl above the maximum: %v, want ErrBadTTL", err)
	}
	a, err := m.Create(sandbox.DefaultLimits(), 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(sandbox.DefaultLimits(), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(sandbox.DefaultLimits(), 0); !errors.Is(err, ErrTooMany) {
		t.Errorf("third session: %v, want ErrTooMany", err)
	}
	if got, err := m.Get(a.ID); err != nil || got != a {
		t.Errorf("Get(%s) = %v, %v", a.ID, got, err)
	}
	if _, err := m.Get("sess_missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing id: %v", err)
	}

	// After 2 idle minutes a (1 minute) has expired, b (5 minutes) has not.
	now = now.Add(2 * time.Minute)
	if n := m.ExpireNow(); n != 1 {
		t.Fatalf("ExpireNow ended %d, want 1", n)
	}
	if _, err := m.Get(a.ID); !errors.Is(err, ErrNotFound) {
		t.Error("expired session still there")
	}
	if a.Sandbox().Alive() {
		t.Error("expired session's interpreter still alive")
	}
	// Use pushes expiry back, but never past the maximum lifetime.
	b.Touch(now, true)
	if e := b.ExpiresAt(); !e.Equal(now.Add(5 * time.Minute)) {
		t.Errorf("expiry after use %v, want %v", e, now.Add(5*time.Minute))
	}
	now = now.Add(time.Hour)
	b.Touch(now, false)
	if e := b.ExpiresAt(); e.After(b.Created.Add(time.Hour)) {
		t.Errorf("expiry %v is past the maximum lifetime", e)
	}

	if err := m.Delete(b.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(b.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
	c, err := m.Create(sandbox.DefaultLimits(), 0)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if c.Sandbox().Alive() || m.Len() != 0 {
		t.Error("Close left a session alive")
	}
	if _, err := m.Create(sandbox.DefaultLimits(), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Create after Close: %v", err)
	}
}
