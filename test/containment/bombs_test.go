package containment_test

import (
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// TestBombs exhausts every resource a sandbox has: time, memory, processes, disk,
// inodes, output, descriptors. Each must end in its limit, and the runner must serve
// the next execution (runAttacks checks print(1) after each).
func TestBombs(t *testing.T) {
	short := func(d time.Duration, adjust func(*job.Limits)) func(*job.Limits) {
		return func(l *job.Limits) {
			l.Timeout = d
			if adjust != nil {
				adjust(l)
			}
		}
	}
	runAttacks(t, []attack{
		{
			// Spins the CPU forever.
			name:   "cpu_spin",
			code:   "while True:\n    pass\n",
			limits: short(2*time.Second, nil),
			check:  all(status(job.StatusTimeout), exitCode(124)),
			serial: true,
		},
		{
			// Ignores every signal it can and sleeps: the kill at the timeout is SIGKILL.
			name: "signal_immune_sleeper",
			code: `
import signal, time
for s in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
    try:
        signal.signal(s, signal.SIG_IGN)
    except (OSError, ValueError):
        pass
print("ignoring", flush=True)
while True:
    time.sleep(1)
`,
			limits: short(2*time.Second, nil),
			check:  all(status(job.StatusTimeout), exitCode(124), lines("ignoring")),
		},
		{
			// Allocates memory without end.
			name: "memory",
			code: "l = []\nwhile True:\n    l.append(bytearray(1 << 20))\n",
			limits: short(10*time.Second, func(l *job.Limits) {
				l.MemoryBytes = 128 << 20
			}),
			check: all(status(job.StatusMemoryLimit), exitCode(137), peakMemory(128<<20)),
		},
		{
			// Fills /dev/shm, a tmpfs whose pages are memory: they count against the
			// memory limit, which is below the tmpfs's size.
			name: "tmpfs_memory",
			code: `
with open("/dev/shm/fill", "wb") as f:
    for _ in range(60):
        f.write(b"x" * (1 << 20))
print("wrote 60 MiB")
`,
			limits: short(10*time.Second, func(l *job.Limits) {
				l.MemoryBytes = 32 << 20
				l.TmpBytes = 64 << 20
			}),
			check: all(status(job.StatusMemoryLimit), peakMemory(32<<20)),
		},
		{
			// Forks without end.
			name: "fork_bomb",
			code: `
while True:
    try:
        os.fork()
    except OSError:
        pass
`,
			limits: short(3*time.Second, func(l *job.Limits) { l.Pids = 32 }),
			// A bomb of forked interpreters may run out of memory before time.
			check:  status(job.StatusTimeout, job.StatusMemoryLimit),
			serial: true,
		},
		{
			// Starts threads without end: the pids limit counts them, and then refuses a
			// fork too (EAGAIN).
			name: "thread_bomb",
			code: `
import threading, time
n = 0
try:
    while n < 10000:
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        n += 1
except RuntimeError as e:
    print("refused", e)
print("threads", n, n < 32)
def fork():
    if os.fork() == 0:
        os._exit(0)
print("fork", E(fork))
`,
			limits: func(l *job.Limits) { l.Pids = 32 },
			check:  all(okLines("refused can't start new thread", "fork EAGAIN"), match(`(?m)^threads \d+ True$`)),
		},
		{
			// Fills the work dir past the file size limit and then past its size, and
			// /tmp and /dev/shm past theirs.
			name: "disk_fill",
			code: `
def fill(path):
    n = 0
    try:
        with open(path, "wb") as f:
            while True:
                f.write(b"x" * 65536)
                f.flush()
                n += 65536
    except OSError as e:
        return n >> 20, errno.errorcode[e.errno]
print("/work/a", *fill("/work/a"))
print("/work/b", *fill("/work/b"))
print("/tmp", *fill("/tmp/a"))
print("/dev/shm", *fill("/dev/shm/a"))
`,
			limits: func(l *job.Limits) {
				l.WorkBytes = 8 << 20
				l.TmpBytes = 4 << 20
				l.FileBytes = 6 << 20
			},
			// Sizes are whole MiB written before the error; /tmp holds a font cache.
			check: all(okLines("/work/a 6 EFBIG", "/work/b 2 ENOSPC", "/dev/shm 4 ENOSPC"), oneOf("/tmp", "3 ENOSPC", "4 ENOSPC")),
		},
		{
			// Creates a million empty files: it runs out of inodes, memory (inodes are
			// kernel memory charged to the sandbox) or time.
			name: "inode_bomb",
			code: `
n = 0
try:
    while n < 1000000:
        os.close(os.open("/tmp/%d" % n, os.O_CREAT | os.O_WRONLY, 0o600))
        n += 1
except OSError as e:
    print("stopped", errno.errorcode[e.errno])
print("files", n)
`,
			limits: short(3*time.Second, func(l *job.Limits) { l.MemoryBytes = 128 << 20 }),
			check: func(t *testing.T, res *job.Result) {
				t.Helper()
				if res.Status == job.StatusOK {
					lines("stopped ENOSPC")(t, res)
					return
				}
				status(job.StatusTimeout, job.StatusMemoryLimit)(t, res)
			},
			serial: true,
		},
		{
			// Floods stdout.
			name:   "stdout_flood",
			code:   "while True:\n    sys.stdout.write('x' * 65536)\n",
			limits: func(l *job.Limits) { l.OutputBytes = 64 << 10 },
			check: all(status(job.StatusOutputLimit), func(t *testing.T, res *job.Result) {
				t.Helper()
				if !res.StdoutTruncated || len(res.Stdout) != 64<<10 {
					t.Errorf("stdout truncated=%v with %d bytes, want truncated at %d", res.StdoutTruncated, len(res.Stdout), 64<<10)
				}
			}),
		},
		{
			// Floods stderr from a child process, not the interpreter itself.
			name:   "stderr_flood",
			code:   "import subprocess\nsubprocess.run(['sh', '-c', 'yes error >&2'])\n",
			limits: func(l *job.Limits) { l.OutputBytes = 64 << 10 },
			check: all(status(job.StatusOutputLimit), func(t *testing.T, res *job.Result) {
				t.Helper()
				if !res.StderrTruncated || len(res.Stderr) != 64<<10 {
					t.Errorf("stderr truncated=%v with %d bytes, want truncated at %d", res.StderrTruncated, len(res.Stderr), 64<<10)
				}
			}),
		},
		{
			// Executes a program with 100 MB of arguments, and itself with 100 MB of
			// environment.
			name: "huge_argv_env",
			code: `
import subprocess
big = "x" * 100000
print("argv", E(subprocess.run, ["/bin/true"] + [big] * 1000))
print("env", E(os.execve, "/bin/true", ["/bin/true"], {"K%d" % i: big for i in range(1000)}))
`,
			check: okLines("argv E2BIG", "env E2BIG"),
		},
		{
			// Opens descriptors until it cannot.
			name: "fd_exhaustion",
			code: `
fds = []
try:
    while len(fds) < 100000:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    print("stopped", errno.errorcode[e.errno], len(fds) < 256)
`,
			check: okLines("stopped EMFILE True"),
		},
		{
			// Leaves a daemon behind: double fork, new session, sleep. The run ends
			// with its program, and the daemon with the sandbox (TestMain checks that no
			// process of the sandbox user is left).
			name: "orphan_daemon",
			code: `
import time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
os.wait()
print("parent done")
`,
			check: okLines("parent done"),
		},
	})
}

// exitCode requires the result's exit code.
func exitCode(want int) check {
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		if res.ExitCode != want {
			t.Errorf("exit code %d, want %d", res.ExitCode, want)
		}
	}
}

// peakMemory requires that the measured peak did not exceed limit.
func peakMemory(limit int64) check {
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		if res.Usage.MaxMemoryBytes > limit {
			t.Errorf("peak memory %d bytes, over the %d limit", res.Usage.MaxMemoryBytes, limit)
		}
	}
}
