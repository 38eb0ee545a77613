package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/codeexec/codeexec/internal/image"
)

func TestMain(m *testing.M) {
	MaybeInit()
	code := m.Run()
	if shared.r != nil {
		shared.r.Close()
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// shared is one Runner for the package's tests, made on first use.
var shared struct {
	once sync.Once
	r    *Runner
	dir  string
	err  error
}

// testStore is where tests find the image: $CODEEXEC_STORE or the default store.
func testStore() string {
	if s := os.Getenv("CODEEXEC_STORE"); s != "" {
		return s
	}
	return "/var/lib/codeexec"
}

// requireIntegration reports whether missing root or image must fail the tests rather
// than skip them; CI sets it so that nothing is silently skipped there.
func requireIntegration() bool { return os.Getenv("CODEEXEC_REQUIRE_INTEGRATION") == "1" }

func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if requireIntegration() {
		t.Fatalf("integration test cannot run: %s", reason)
	}
	t.Skip(reason)
}

// testRootfs finds the sandbox image for tests, skipping when there is none.
func testRootfs(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "sandboxes need root")
	}
	if p := os.Getenv("CODEEXEC_TEST_ROOTFS"); p != "" {
		return p
	}
	img, err := image.Find(testStore(), image.DefaultRecipe())
	if err != nil {
		skipOrFail(t, "no sandbox image ("+err.Error()+"); build it with `codeexec image build`")
	}
	return img.Rootfs
}

// newTestRunner makes a Runner with its own state dir, closed when the test ends.
func newTestRunner(t testing.TB) *Runner {
	t.Helper()
	rootfs := testRootfs(t)
	dir := t.TempDir()
	// The sandbox's unprivileged init must be able to traverse to its work dir.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if d == os.TempDir() {
			break
		}
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Config{Rootfs: rootfs, StateDir: filepath.Join(dir, "state"), CgroupParent: "codeexec-test", HostUID: DefaultHostUID})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// sharedRunner returns the package's shared Runner.
func sharedRunner(t testing.TB) *Runner {
	t.Helper()
	rootfs := testRootfs(t)
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "codeexec-sandbox-test-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		os.Chmod(dir, 0o711)
		shared.r, shared.err = New(Config{Rootfs: rootfs, StateDir: filepath.Join(dir, "state"), CgroupParent: "codeexec-test", HostUID: DefaultHostUID})
	})
	if shared.err != nil {
		t.Fatalf("New: %v", shared.err)
	}
	return shared.r
}

// run executes code with the default limits adjusted by adjust.
func run(t testing.TB, code string, adjust func(*Request)) *Result {
	t.Helper()
	req := &Request{Code: code, Limits: DefaultLimits()}
	req.Limits.Timeout = 20e9
	if adjust != nil {
		adjust(req)
	}
	res, err := sharedRunner(t).Run(context.Background(), req)
	if err != nil {
		t.Fatalf("Run(%q): %v", code, err)
	}
	return res
}
