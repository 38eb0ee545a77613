package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFindBootstrapper(t *testing.T) {
	empty := t.TempDir()
	withDeboot := t.TempDir()
	withBoth := t.TempDir()
	exe := func(dir, name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe(withDeboot, "debootstrap")
	exe(withBoth, "debootstrap")
	exe(withBoth, "mmdebstrap")
	if err := os.WriteFile(filepath.Join(empty, "mmdebstrap"), nil, 0o644); err != nil { // not executable
		t.Fatal(err)
	}
	tests := []struct{ path, ask, want string }{
		{empty, "", ""},
		{withDeboot, "", "debootstrap"},
		{empty + ":" + withDeboot + ":" + withBoth, "", "mmdebstrap"},
		{"relative:" + withBoth, "", "mmdebstrap"},
		{withBoth, "debootstrap", "debootstrap"},
		{withDeboot, "mmdebstrap", ""},
	}
	for _, tt := range tests {
		name, file, err := findBootstrapper(tt.path, tt.ask)
		if tt.want == "" {
			if err == nil || !strings.Contains(err.Error(), "apt-get install mmdebstrap") {
				t.Errorf("findBootstrapper(%q, %q) = %q, %v, want an error saying `apt-get install mmdebstrap`", tt.path, tt.ask, name, err)
			}
			continue
		}
		if err != nil || name != tt.want || filepath.Base(file) != tt.want || !filepath.IsAbs(file) {
			t.Errorf("findBootstrapper(%q, %q) = %q, %q, %v, want %q", tt.path, tt.ask, name, file, err, tt.want)
		}
	}
}

func TestBuildReturnsExistingImage(t *testing.T) {
	store := t.TempDir()
	r := DefaultRecipe()
	dir := fakeImage(t, store, r, testManifest())
	var out bytes.Buffer
	// No bootstrapper is reachable and the context is cancelled: only the idempotent
	// path can succeed.
	t.Setenv("PATH", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	img, err := Build(ctx, store, r, BuildOptions{Progress: &out})
	if err != nil {
		t.Fatalf("Build() of a built image = %v", err)
	}
	if img.Dir != dir {
		t.Errorf("Build() = %q, want %q", img.Dir, dir)
	}
	if !strings.Contains(out.String(), "already built") {
		t.Errorf("Build() printed %q, want it to say the image is already built", out.String())
	}
}

func TestBuildRejectsBadRecipe(t *testing.T) {
	r := DefaultRecipe()
	r.Version = 0
	if _, err := Build(context.Background(), t.TempDir(), r, BuildOptions{}); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("Build() with an old recipe = %v, want a version error", err)
	}
}

func TestBuildNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root")
	}
	_, err := Build(context.Background(), t.TempDir(), DefaultRecipe(), BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("Build() as non-root = %v, want an error saying it needs root", err)
	}
}

// TestRunnerCancelKillsProcessGroup checks that cancelling a build stops the
// bootstrapper's children too, not only the process it started.
func TestRunnerCancelKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	log, err := createBuildLog(filepath.Join(dir, "build.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	run := &runner{log: log}
	pidFile := filepath.Join(dir, "pid")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := run.command(ctx, []string{"PATH=/usr/bin:/bin"}, "/bin/sh", "-c",
		`sleep 300 & echo $! > `+pidFile+`; echo started; wait`)
	done := make(chan error, 1)
	go func() { done <- run.run(ctx, cmd) }()
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if child == 0 {
		t.Fatal("the test command did not start")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run() after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(killGrace + 5*time.Second):
		t.Fatal("run() did not return after cancel")
	}
	// The grandchild is reparented and reaped by init; give it a moment.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if syscall.Kill(child, 0) != nil {
			break
		}
	}
	if err := syscall.Kill(child, 0); err == nil {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); !strings.Contains(string(b), ") Z ") {
			t.Errorf("the command's child %d survived the cancellation", child)
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
	}
	if !strings.Contains(log.lastLine(), "started") {
		t.Errorf("log's last line = %q, want %q", log.lastLine(), "started")
	}
}

func TestCommandErrorQuotesLog(t *testing.T) {
	dir := t.TempDir()
	log, err := createBuildLog(filepath.Join(dir, "build.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	run := &runner{log: log}
	ctx := context.Background()
	err = run.run(ctx, run.command(ctx, []string{"PATH=/usr/bin:/bin"}, "/bin/sh", "-c",
		`for i in $(seq 1 30); do echo line $i; done; echo "E: boom" >&2; exit 3`))
	if !isCommandError(err) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("run() = %v, want a command error with exit status 3", err)
	}
	tail := log.tail(logTailLines)
	lines := strings.Split(tail, "\n")
	if len(lines) != logTailLines || lines[len(lines)-1] != "E: boom" || lines[0] != "line 12" {
		t.Errorf("tail(%d) = %q, want lines 12…30 and the error", logTailLines, tail)
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0 MiB"}, {783_286_272, "747 MiB"}, {1 << 30, "1024 MiB"}, {12 << 30, "12.0 GiB"}} {
		if got := formatSize(tt.n); got != tt.want {
			t.Errorf("formatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	if got := formatDuration(92*time.Second + 400*time.Millisecond); got != "1m32s" {
		t.Errorf("formatDuration(1m32.4s) = %q, want %q", got, "1m32s")
	}
}

func TestProgressStage(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, 5, func() string { return "" })
	if err := p.stage(2, "removing compilers and docs", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "[2/5] removing compilers and docs…\n"; got != want {
		t.Errorf("stage() printed %q, want %q", got, want)
	}
}

// TestBuildReal builds the real image from a Debian mirror into a temporary store. It
// takes about a minute and a half, needs root and network, and runs only when asked
// (CODEEXEC_TEST_IMAGE_BUILD=1): CI builds the image through `codeexec image build`
// anyway. CODEEXEC_TEST_IMAGE_STORE names a store to keep the image in.
func TestBuildReal(t *testing.T) {
	if os.Getenv("CODEEXEC_TEST_IMAGE_BUILD") != "1" {
		t.Skip("set CODEEXEC_TEST_IMAGE_BUILD=1 to bootstrap a real image (root, network, ~90 s, ~750 MiB)")
	}
	if os.Geteuid() != 0 {
		t.Skip("building an image needs root")
	}
	store := os.Getenv("CODEEXEC_TEST_IMAGE_STORE")
	if store == "" {
		store = t.TempDir()
	}
	r := DefaultRecipe()
	var out bytes.Buffer
	start := time.Now()
	// CODEEXEC_TEST_IMAGE_BOOTSTRAPPER=debootstrap tests the fallback bootstrapper.
	opts := BuildOptions{Progress: &out, Bootstrapper: os.Getenv("CODEEXEC_TEST_IMAGE_BOOTSTRAPPER")}
	img, err := Build(context.Background(), store, r, opts)
	t.Logf("progress:\n%s", out.String())
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}
	t.Logf("built %s in %s: %s, versions %v", img.Dir, time.Since(start).Round(time.Second), formatSize(img.Manifest.SizeBytes), img.Manifest.Versions)

	found, err := Find(store, r)
	if err != nil || found.Dir != img.Dir {
		t.Fatalf("Find() after Build = %v, %v", found, err)
	}
	root := img.Rootfs
	if fi, err := os.Lstat(filepath.Join(root, "etc/resolv.conf")); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("/etc/resolv.conf is not an empty regular file: %v", err)
	}
	if got := readFile(t, filepath.Join(root, "etc/hostname")); got != "sandbox\n" {
		t.Errorf("/etc/hostname = %q", got)
	}
	if !strings.Contains(readFile(t, filepath.Join(root, "etc/passwd")), "sandbox:x:1000:1000:") {
		t.Error("/etc/passwd has no sandbox user")
	}
	if changed, err := stripPrivileges(root); err != nil || len(changed) != 0 {
		t.Errorf("setuid files left in the image: %v, %v", changed, err)
	}
	for _, gone := range []string{"usr/bin/gcc*", "usr/bin/x86_64-linux-gnu-ld*", "usr/include/boost"} {
		if m, _ := filepath.Glob(filepath.Join(root, gone)); len(m) > 0 {
			t.Errorf("%s is still in the image", m)
		}
	}
	if fl, _ := filepath.Glob(filepath.Join(root, MPLConfigDir, "fontlist-*.json")); len(fl) == 0 {
		t.Error("no prebuilt matplotlib font cache")
	}
	if n, _, err := missingBytecode(root); err != nil || n != 0 {
		t.Errorf("%d modules without bytecode (%v)", n, err)
	}
	entries, _ := os.ReadDir(filepath.Join(store, imagesDir))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), buildPrefix) {
			t.Errorf("build dir %q left behind", e.Name())
		}
	}
	// A second build is a no-op.
	t0 := time.Now()
	if _, err := Build(context.Background(), store, r, BuildOptions{}); err != nil || time.Since(t0) > 5*time.Second {
		t.Errorf("second Build() = %v after %s, want an immediate return", err, time.Since(t0))
	}
}

func TestDescribeCommand(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"/usr/bin/mmdebstrap", "--mode=root", "bookworm"}, "mmdebstrap"},
		{[]string{"/usr/sbin/chroot", "/x/rootfs", "dpkg", "--purge", "--force-depends", "gcc"}, "chroot: dpkg --purge"},
		{[]string{"/usr/sbin/chroot", "--userspec=1000:1000", "/x/rootfs", "python3", "-c", "print(1)"}, "chroot: python3 -c"},
		{[]string{"/usr/sbin/chroot", "/x/rootfs"}, "chroot"},
	} {
		if got := describeCommand(tt.args); got != tt.want {
			t.Errorf("describeCommand(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestMakeStore(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o077))
	parent := t.TempDir()
	store := filepath.Join(parent, "a", "store")
	images := filepath.Join(store, imagesDir)
	if err := makeStore(images); err != nil {
		t.Fatalf("makeStore() = %v", err)
	}
	for _, d := range []string{filepath.Dir(store), store, images} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v (%v), want 0755 whatever the umask", d, fi.Mode(), err)
		}
	}
	// An existing store keeps its mode.
	if err := os.Chmod(store, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := makeStore(images); err != nil {
		t.Fatalf("makeStore() again = %v", err)
	}
	if fi, _ := os.Stat(store); fi.Mode().Perm() != 0o711 {
		t.Errorf("makeStore changed an existing store's mode to %v", fi.Mode())
	}
}

func TestFindBootstrapperUnknown(t *testing.T) {
	if _, _, err := findBootstrapper(sbinDirs, "docker"); err == nil || !strings.Contains(err.Error(), `"docker"`) {
		t.Errorf("findBootstrapper(_, %q) = %v, want an error quoting it", "docker", err)
	}
}
