package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/job"
)

func TestMain(m *testing.M) {
	MaybeInit()
	if os.Getenv(landlockHelperEnv) != "" {
		landlockHelper()
	}
	code := m.Run()
	for _, sr := range shared {
		if sr.r != nil {
			sr.r.Close()
			os.RemoveAll(sr.dir)
		}
	}
	os.Exit(code)
}

// sharedRunnerState is one Runner for the package's tests, made on first use.
type sharedRunnerState struct {
	once sync.Once
	r    *Runner
	dir  string
	err  error
}

// shared holds a Runner per path.
var shared = map[string]*sharedRunnerState{"cold": {}, "warm": {}}

// paths are the two ways a Runner executes code; every functional and containment
// test runs on both.
var paths = []string{"cold", "warm"}

// bothPaths runs f as a subtest per path, with the package's shared runner for that
// path (as net/http's tests pass their mode: run(t, func(t, mode))).
func bothPaths(t *testing.T, f func(t *testing.T, r *Runner)) {
	for _, p := range paths {
		t.Run(p, func(t *testing.T) { f(t, sharedRunnerFor(t, p)) })
	}
}

// pathName is the path r runs on: "warm" or "cold".
func pathName(r *Runner) string {
	if r.cfg.Warm {
		return "warm"
	}
	return "cold"
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

// newTestRunnerFor makes a Runner for path ("cold" or "warm") with its own state
// dir, closed when the test ends.
func newTestRunnerFor(t testing.TB, path string) *Runner {
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
	r, err := New(testConfig(rootfs, filepath.Join(dir, "state"), path))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	if r.cfg.Warm {
		if err := r.Warm(); err != nil {
			t.Fatalf("zygote: %v", err)
		}
	}
	return r
}

func testConfig(rootfs, state, path string) Config {
	c := Config{Rootfs: rootfs, StateDir: state, CgroupParent: "codeexec-test", HostUID: DefaultHostUID, Warm: path == "warm", Prefork: 2}
	if path == "node-pool" { // warm, with started Node sandboxes (nodepool.go)
		c.Warm, c.NodePool = true, 1
	}
	return c
}

// sharedRunnerFor returns the package's shared Runner for path ("cold" or "warm").
func sharedRunnerFor(t testing.TB, path string) *Runner {
	t.Helper()
	rootfs := testRootfs(t)
	sr := shared[path]
	sr.once.Do(func() {
		dir, err := os.MkdirTemp("", "codeexec-sandbox-test-")
		if err != nil {
			sr.err = err
			return
		}
		sr.dir = dir
		os.Chmod(dir, 0o711)
		sr.r, sr.err = New(testConfig(rootfs, filepath.Join(dir, "state"), path))
		if sr.err == nil && sr.r.cfg.Warm {
			sr.err = sr.r.Warm()
		}
	})
	if sr.err != nil {
		t.Fatalf("New: %v", sr.err)
	}
	return sr.r
}

// run executes code on r with the default limits adjusted by adjust.
func run(t testing.TB, r *Runner, code string, adjust func(*job.Request)) *job.Result {
	t.Helper()
	req := &job.Request{Code: code, Limits: job.DefaultLimits()}
	req.Limits.Timeout = 20e9
	if adjust != nil {
		adjust(req)
	}
	res, err := r.Run(context.Background(), req)
	if err != nil {
		t.Fatalf("Run(%q): %v", code, err)
	}
	return res
}
