// Package sandboxtest gives tests a real sandbox runner, or skips them when root or
// the image is missing (fails them instead under CODEEXEC_REQUIRE_INTEGRATION=1, as
// scripts/test.sh sets, so that CI never skips them). Test binaries that use it must
// call sandbox.MaybeInit first in TestMain, and Close after m.Run.
package sandboxtest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// Skip skips the test for reason, or fails it when integration tests are required.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CODEEXEC_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("integration test cannot run: %s", reason)
	}
	t.Skip(reason)
}

// Rootfs returns the built image's root file system, or skips the test.
func Rootfs(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "sandboxes need root")
	}
	store := os.Getenv("CODEEXEC_STORE")
	if store == "" {
		store = "/var/lib/codeexec"
	}
	img, err := image.Find(store, image.DefaultRecipe())
	if err != nil {
		Skip(t, "no sandbox image ("+err.Error()+"); build it with `codeexec image build`")
	}
	return img.Rootfs
}

// CgroupParent is the parent cgroup of the runners made here. A test binary that
// finds its sandboxes by cgroup sets its own in TestMain, before any runner exists.
var CgroupParent = "codeexec-test"

// Config is a warm runner's configuration for tests, with its state under dir.
func Config(rootfs, dir string) sandbox.Config {
	return sandbox.Config{Rootfs: rootfs, StateDir: filepath.Join(dir, "state"), CgroupParent: CgroupParent,
		HostUID: sandbox.DefaultHostUID, Warm: true, Prefork: 2}
}

var shared struct {
	once sync.Once
	r    *sandbox.Runner
	dir  string
	err  error
}

// Shared returns the test binary's warm runner, made on first use.
func Shared(t testing.TB) *sandbox.Runner {
	t.Helper()
	rootfs := Rootfs(t)
	shared.once.Do(func() {
		if shared.dir, shared.err = stateDir(""); shared.err != nil {
			return
		}
		shared.r, shared.err = sandbox.New(Config(rootfs, shared.dir))
		if shared.err == nil {
			shared.err = shared.r.Warm()
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.r
}

// New makes a runner of the test's own from cfg (Config's defaults adjusted by
// adjust, which may be nil); it is closed when the test ends.
func New(t testing.TB, adjust func(*sandbox.Config)) *sandbox.Runner {
	t.Helper()
	rootfs := Rootfs(t)
	dir, err := stateDir("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := Config(rootfs, dir)
	if adjust != nil {
		adjust(&cfg)
	}
	r, err := sandbox.New(cfg)
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if cfg.Warm {
		if err := r.Warm(); err != nil {
			t.Fatalf("zygote: %v", err)
		}
	}
	return r
}

// stateDir makes a temporary state dir the unprivileged sandbox init can traverse.
func stateDir(parent string) (string, error) {
	dir, err := os.MkdirTemp(parent, "codeexec-test-")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o711)
}

// Close releases the shared runner; call it from TestMain after m.Run.
func Close() {
	if shared.r != nil {
		shared.r.Close()
		os.RemoveAll(shared.dir)
	}
}
