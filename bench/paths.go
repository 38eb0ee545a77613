package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// runFunc executes w once on one path and returns an error unless it succeeded.
// inside is the time the path itself reports for running the code (the Result's
// duration_ms), 0 for a path that reports none.
type runFunc func(ctx context.Context, w workload) (inside time.Duration, err error)

// path is one way of running Python that the benchmark compares.
type path struct {
	name string
	run  runFunc
	// pace, when set, runs before each timed execution, untimed: it lets the path
	// return to idle (the warm pool full again) so that the execution meets an idle
	// server rather than the aftermath of the one before.
	pace func(ctx context.Context) error
	// n is the path's latency executions per workload.
	n int
	// warmPool is set for paths on the warm Runner: each latency slice starts with a
	// full pool.
	warmPool bool
	// only, when set, is the one workload the path runs.
	only string
}

// workload is one Python program, the same on every path.
type workload struct {
	name string
	code string
	// peerSuffix is appended to code on peer paths so that they do the harness's
	// work too: the sandbox renders every open figure to PNG on its own.
	peerSuffix string
	// wantStdout, when set, is the output every path must print.
	wantStdout string
	// wantImages is the number of figures a sandbox run must return.
	wantImages int
}

// The programs avoid a trailing expression with a large repr, which the harness
// would compute and the peers would not.
var workloads = []workload{
	{name: "print", code: "print(1)", wantStdout: "1\n"},
	{name: "numpy", code: "import numpy as np\na = np.random.rand(200, 200)\n(a @ a).sum()"},
	{name: "pandas", code: "import numpy as np, pandas as pd\n" +
		"df = pd.DataFrame({'k': np.arange(10_000) % 100, 'v': np.random.rand(10_000)})\n" +
		"means = df.groupby('k')['v'].mean()"},
	{name: "plot", code: "import matplotlib.pyplot as plt\n" +
		"line, = plt.plot(range(100), [i * i for i in range(100)])",
		// In memory, as the harness does; a file would land in the image on the
		// chroot path, which has no tmpfs of its own.
		peerSuffix: "\nimport io\nplt.savefig(io.BytesIO(), format='png')",
		wantImages: 1},
	{name: "sympy", code: "from sympy import integrate, sin, symbols\nx = symbols('x')\nF = integrate(x**2 * sin(x), x)"},
}

// peerCode is w's program for a peer path.
func (w workload) peerCode() string { return w.code + w.peerSuffix }

// sandboxRun runs w through r.Run with the default limits; a result other than
// status ok and exit code 0, or output other than w's expectation, is an error.
func sandboxRun(r *sandbox.Runner) runFunc {
	return func(ctx context.Context, w workload) (time.Duration, error) {
		res, err := r.Run(ctx, &job.Request{Code: w.code, Limits: job.DefaultLimits()})
		if err != nil {
			return 0, err
		}
		if err := checkResult(res, w); err != nil {
			return 0, err
		}
		return time.Duration(res.DurationMS * float64(time.Millisecond)), nil
	}
}

// checkResult reports how res falls short of a successful run of w.
func checkResult(res *job.Result, w workload) error {
	switch {
	case res.Status != job.StatusOK || res.ExitCode != 0:
		msg := res.Stderr
		if res.Error != nil {
			msg = res.Error.Name + ": " + res.Error.Message
		}
		return fmt.Errorf("status %s, exit code %d: %s", res.Status, res.ExitCode, strings.TrimSpace(msg))
	case w.wantStdout != "" && res.Stdout != w.wantStdout:
		return fmt.Errorf("stdout %q, want %q", res.Stdout, w.wantStdout)
	case len(res.Images) != w.wantImages:
		return fmt.Errorf("%d figures returned, want %d", len(res.Images), w.wantImages)
	}
	return nil
}

// peerEnv is the environment of both peers, as close to the sandbox's as a plain
// process allows: matplotlib's Agg backend and the image's prebuilt font cache (else
// it rebuilds it at every start), and one BLAS thread as under the sandbox's 1-CPU
// limit.
func peerEnv(mplConfigDir string) []string {
	return []string{
		"PATH=/usr/bin:/bin",
		"HOME=/work",
		"MPLBACKEND=Agg",
		"MPLCONFIGDIR=" + mplConfigDir,
		"OPENBLAS_NUM_THREADS=1",
		"OMP_NUM_THREADS=1",
	}
}

// imageMPLConfig is where the image keeps matplotlib's prebuilt font cache.
const imageMPLConfig = "/usr/share/codeexec/mplconfig"

// bwrapArgs is the bubblewrap command line for code on rootfs. matplotlib ignores a
// read-only config dir, so the font cache is bound into a fresh dir on the /tmp tmpfs,
// as the sandbox's init stage copies it there.
func bwrapArgs(rootfs string, fontCaches []string, code string) []string {
	args := []string{
		"--unshare-all", "--die-with-parent",
		"--ro-bind", rootfs, "/",
		"--proc", "/proc", "--dev", "/dev",
		"--tmpfs", "/tmp", "--tmpfs", "/work", "--chdir", "/work",
		"--dir", "/tmp/.matplotlib",
	}
	for _, f := range fontCaches {
		args = append(args, "--ro-bind", f, "/tmp/.matplotlib/"+filepath.Base(f))
	}
	args = append(args, "--clearenv")
	for _, kv := range peerEnv("/tmp/.matplotlib") {
		k, v, _ := strings.Cut(kv, "=")
		args = append(args, "--setenv", k, v)
	}
	return append(args, "--uid", "1000", "--gid", "1000", "python3", "-c", code)
}

// fontCaches lists the files of matplotlib's prebuilt font cache in the image.
func fontCaches(rootfs string) ([]string, error) {
	return filepath.Glob(filepath.Join(rootfs, imageMPLConfig, "fontlist-*.json"))
}

// bwrapRun runs code with bubblewrap and a fresh python3 on rootfs.
func bwrapRun(bwrap, rootfs string) (runFunc, error) {
	caches, err := fontCaches(rootfs)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, w workload) (time.Duration, error) {
		return 0, runCommand(exec.CommandContext(ctx, bwrap, bwrapArgs(rootfs, caches, w.peerCode())...), w)
	}, nil
}

// chrootEnv is the chroot peer's environment. It runs as root with the image
// writable, so bytecode writing is off to keep the image as it is; the image ships
// its .pyc files, so nothing is compiled either way.
func chrootEnv() []string {
	return append(peerEnv(imageMPLConfig), "PYTHONDONTWRITEBYTECODE=1")
}

// chrootRun runs code with a fresh python3 chrooted into rootfs: no sandbox at all.
func chrootRun(chroot, rootfs string) runFunc {
	env := chrootEnv()
	return func(ctx context.Context, w workload) (time.Duration, error) {
		cmd := exec.CommandContext(ctx, chroot, rootfs, "/usr/bin/python3", "-c", w.peerCode())
		cmd.Env = env
		return 0, runCommand(cmd, w)
	}
}

// runCommand runs cmd for w: a non-zero exit is an error carrying its stderr, and so
// is output other than w's expectation.
func runCommand(cmd *exec.Cmd, w workload) error {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, strings.TrimSpace(stderr.String()))
	}
	if w.wantStdout != "" && stdout.String() != w.wantStdout {
		return fmt.Errorf("%s: stdout %q, want %q", filepath.Base(cmd.Path), stdout.String(), w.wantStdout)
	}
	return nil
}
