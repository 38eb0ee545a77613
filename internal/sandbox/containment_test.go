package sandbox

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/proctree"
)

// The containment tests run attacks and assert on their outcome, never on the
// absence of an error alone: each program prints what it could reach.

func TestHostFilesInvisible(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		dir := t.TempDir()
		marker := filepath.Join(dir, "marker.txt")
		if err := os.WriteFile(marker, []byte("host secret"), 0o644); err != nil {
			t.Fatal(err)
		}
		hostname, _ := os.Hostname()
		code := fmt.Sprintf(`
import os, socket
found = []
for p in [%q, %q, "/root", "/var/lib/codeexec", "/proc/1/root/etc/shadow"]:
    try:
        open(p).read() if os.path.isfile(p) else os.listdir(p)
        found.append(p)
    except OSError:
        pass
print("found", found)
print("hostname", open("/etc/hostname").read().strip(), socket.gethostname())
`, marker, dir)
		res := run(t, r, code, nil)
		if res.Status != job.StatusOK {
			t.Fatalf("status %s stderr %q", res.Status, res.Stderr)
		}
		if !strings.Contains(res.Stdout, "found []") {
			t.Errorf("sandbox reached host paths: %s", res.Stdout)
		}
		if !strings.Contains(res.Stdout, "hostname sandbox sandbox") || (hostname != "sandbox" && strings.Contains(res.Stdout, hostname)) {
			t.Errorf("hostname leaked or wrong: %s (host is %q)", res.Stdout, hostname)
		}
	})
}

func TestNoEnvironmentLeak(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		t.Setenv("CODEEXEC_TEST_SECRET", "sk-do-not-leak-1234")
		res := run(t, r, `
import os
data = open("/proc/1/environ", "rb").read() + open("/proc/self/environ", "rb").read()
print(repr(data))
print(dict(os.environ))`, nil)
		if res.Status != job.StatusOK {
			t.Fatalf("status %s stderr %q", res.Status, res.Stderr)
		}
		if strings.Contains(res.Stdout, "sk-do-not-leak") || strings.Contains(res.Stdout, "CODEEXEC_TEST_SECRET") {
			t.Fatalf("host environment leaked into the sandbox: %s", res.Stdout)
		}
	})
}

func TestImageReadOnly(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, `
import os
wrote = []
for p in ["/usr/lib/python3/dist-packages/evil.py", "/etc/passwd", "/bin/sh", "/evil", "/dev/evil", "/proc/sys/kernel/core_pattern"]:
    try:
        with open(p, "a") as f:
            f.write("x")
        wrote.append(p)
    except OSError as e:
        pass
print("wrote", wrote)
print("uid", os.getuid(), os.geteuid(), os.getgid())
print("caps", [l for l in open("/proc/self/status") if l.startswith(("CapEff", "CapPrm", "CapBnd", "NoNewPrivs"))])
`, nil)
		if !strings.Contains(res.Stdout, "wrote []") {
			t.Errorf("sandbox wrote into the image: %s %s", res.Stdout, res.Stderr)
		}
		if !strings.Contains(res.Stdout, "uid 1000 1000 1000") {
			t.Errorf("program does not run as the unprivileged sandbox user: %s", res.Stdout)
		}
		for _, want := range []string{`CapEff:\t0000000000000000`, `CapPrm:\t0000000000000000`, `CapBnd:\t0000000000000000`, `NoNewPrivs:\t1`} {
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("status lacks %s: %s", want, res.Stdout)
			}
		}
	})
}

func TestNetworkIsolated(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		accepted := make(chan bool, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Close()
			}
			accepted <- err == nil
		}()
		res := run(t, r, fmt.Sprintf(`
import socket
try:
    socket.create_connection(("127.0.0.1", %d), timeout=3)
    print("tcp connected")
except OSError as e:
    print("tcp failed", type(e).__name__)
try:
    socket.getaddrinfo("codeexec-test.invalid", 80)
    print("dns resolved")
except OSError as e:
    print("dns failed", type(e).__name__)
print("ifaces", socket.if_nameindex())
`, port), nil)
		if !strings.Contains(res.Stdout, "tcp failed") || !strings.Contains(res.Stdout, "dns failed") {
			t.Errorf("network reachable from the sandbox: %s %s", res.Stdout, res.Stderr)
		}
		if !strings.Contains(res.Stdout, "ifaces [(1, 'lo')]") {
			t.Errorf("sandbox sees interfaces other than its own loopback: %s", res.Stdout)
		}
		ln.Close()
		if <-accepted {
			t.Error("the host listener accepted a connection from the sandbox")
		}
	})
}

func TestHostProcessesInvisible(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, fmt.Sprintf(`
import os, signal
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("pids", pids)
try:
    os.kill(%d, signal.SIGTERM)
    print("signalled host")
except OSError as e:
    print("kill failed", type(e).__name__)
`, os.Getpid()), nil)
		if !strings.Contains(res.Stdout, "pids [1]") {
			t.Errorf("sandbox sees other processes: %s", res.Stdout)
		}
		if !strings.Contains(res.Stdout, "kill failed ProcessLookupError") {
			t.Errorf("sandbox could signal a host pid: %s", res.Stdout)
		}
	})
}

func TestTimeoutKillsTree(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		tests := []struct{ name, code string }{
			{"busy loop", "while True: pass"},
			{"forked sleeper", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1000)\nos.wait()"},
			{"sleeper that outlives its parent", "import os, time\nif os.fork() == 0:\n    time.sleep(1000)\nwhile True: pass"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				start := time.Now()
				res := run(t, r, tt.code, func(r *job.Request) { r.Limits.Timeout = time.Second })
				if res.Status != job.StatusTimeout || res.ExitCode != 124 {
					t.Fatalf("got %s exit %d, want timeout 124", res.Status, res.ExitCode)
				}
				if d := time.Since(start); d > 15*time.Second {
					t.Errorf("run took %v after a 1s timeout", d)
				}
				assertNoSandboxProcesses(t)
			})
		}
	})
}

func TestForkBombContained(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, `
import os
n = 0
while True:
    try:
        os.fork()
        n += 1
    except OSError:
        pass`, func(r *job.Request) { r.Limits.Timeout = 3 * time.Second; r.Limits.Pids = 32 })
		if res.Status != job.StatusTimeout {
			t.Fatalf("fork bomb ended with %s, want timeout", res.Status)
		}
		assertNoSandboxProcesses(t)
	})
}

func TestMemoryLimit(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		tests := []struct{ name, code string }{
			{"one allocation", "x = bytearray(1 << 30)\nx[::4096] = b'x' * len(x[::4096])"},
			{"growing list", "l = []\nwhile True:\n    l.append(bytearray(1 << 20))"},
			{"numpy", "import numpy as np\na = np.ones((1 << 27,))"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := run(t, r, tt.code, func(r *job.Request) { r.Limits.MemoryBytes = 256 << 20 })
				if res.Status != job.StatusMemoryLimit || res.ExitCode != 137 {
					t.Fatalf("got %s exit %d (%+v), want memory_limit 137", res.Status, res.ExitCode, res.Error)
				}
				if res.Usage.MaxMemoryBytes < 200<<20 || res.Usage.MaxMemoryBytes > 256<<20 {
					t.Errorf("peak memory %d, want close to the 256 MiB limit", res.Usage.MaxMemoryBytes)
				}
			})
		}
	})
}

func TestOutputLimit(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, "import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * (1 << 20))", func(r *job.Request) {
			r.Limits.OutputBytes = 64 << 10
		})
		if res.Status != job.StatusOutputLimit || !res.StdoutTruncated || len(res.Stdout) != 64<<10 {
			t.Fatalf("got %s truncated=%v len=%d, want output_limit, truncated, %d bytes", res.Status, res.StdoutTruncated, len(res.Stdout), 64<<10)
		}
		res = run(t, r, "import sys\nsys.stderr.write('e' * 100)\nprint('x' * 100)", func(r *job.Request) { r.Limits.OutputBytes = 1000 })
		if res.Status != job.StatusOK || res.StdoutTruncated || res.StderrTruncated || len(res.Stderr) != 100 {
			t.Fatalf("output under the limit: got %s %v %v %d", res.Status, res.StdoutTruncated, res.StderrTruncated, len(res.Stderr))
		}
	})
}

func TestDiskCapped(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, `
import errno
for path in ["/work/fill", "/tmp/fill", "/dev/shm/fill"]:
    n = 0
    try:
        with open(path, "wb") as f:
            while True:
                f.write(b"x" * 65536)
                f.flush()
                n += 65536
    except OSError as e:
        print(path, n, errno.errorcode[e.errno])`, func(r *job.Request) {
			r.Limits.WorkBytes = 8 << 20
			r.Limits.TmpBytes = 4 << 20
			r.Limits.FileBytes = 6 << 20
		})
		if res.Status != job.StatusOK {
			t.Fatalf("got %s %q", res.Status, res.Stderr)
		}
		tests := []struct {
			path  string
			limit int64
			errno string
		}{
			{"/work/fill", 6 << 20, "EFBIG"}, // the file size limit is below the work dir's
			{"/tmp/fill", 4 << 20, "ENOSPC"},
			{"/dev/shm/fill", 4 << 20, "ENOSPC"},
		}
		for _, tt := range tests {
			var n int64
			var errno string
			for _, line := range strings.Split(res.Stdout, "\n") {
				if strings.HasPrefix(line, tt.path+" ") {
					fmt.Sscanf(line[len(tt.path)+1:], "%d %s", &n, &errno)
				}
			}
			// Whatever else lives there (a font cache in /tmp) takes its share.
			if errno != tt.errno || n > tt.limit || n < tt.limit-(1<<20) {
				t.Errorf("%s: wrote %d bytes then %q, want %s within 1 MiB under %d", tt.path, n, errno, tt.errno, tt.limit)
			}
		}
	})
}

func TestNothingPersists(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		run(t, r, "open('/work/persist.txt', 'w').write('x')\nopen('/tmp/persist.txt', 'w').write('x')", nil)
		res := run(t, r, "import os\n[os.path.exists(p) for p in ['/work/persist.txt', '/tmp/persist.txt']]", nil)
		if deref(res.Result) != "[False, False]" {
			t.Fatalf("files persisted between runs: %s", deref(res.Result))
		}
	})
}

func TestNoLeaksAfterManyRuns(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		if testing.Short() {
			t.Skip("200 runs are skipped in -short mode")
		}
		r = newTestRunnerFor(t, pathName(r))
		for i := 0; i < 200; i++ {
			code := "print(1)"
			switch i % 4 {
			case 1:
				code = "1/0"
			case 2:
				code = "import os\nif os.fork() == 0:\n    import time; time.sleep(60)\nopen('f', 'w').write('x')"
			}
			res, err := r.Run(t.Context(), &job.Request{Code: code, Limits: job.DefaultLimits()})
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
			if res.Status == job.StatusTimeout || res.Status == job.StatusKilled {
				t.Fatalf("run %d: %s", i, res.Status)
			}
		}
		// While the runner lives, only its preforked children may hold resources, and
		// its pool the emptied groups it keeps for the next ones (removed by Close,
		// checked below).
		r.cleanups.Wait()
		if n, most := len(cgroupsOf(r))-r.groups.Kept(), r.cfg.Prefork+min(r.cfg.Prefork, 2); n > most {
			t.Errorf("%d execution cgroups exist between runs besides the pool's %d, want at most %d (preforked, and one in hand per refill loop)",
				n, r.groups.Kept(), most)
		}
		instDir, cgDirs := r.inst.dir, r.cg.Paths()
		if err := r.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		assertNoSandboxProcesses(t)
		if _, err := os.Stat(instDir); !os.IsNotExist(err) {
			t.Errorf("state dir %s left behind (%v)", instDir, err)
		}
		if m := mountsUnder(t, instDir); len(m) > 0 {
			t.Errorf("mounts left behind: %v", m)
		}
		for _, dir := range cgDirs {
			if left, _ := filepath.Glob(filepath.Join(dir, r.inst.id+"-*")); len(left) > 0 {
				t.Errorf("cgroups left behind: %v", left)
			}
		}
	})
}

// cgroupsOf lists the execution cgroups of r in its first hierarchy.
func cgroupsOf(r *Runner) []string {
	left, _ := filepath.Glob(filepath.Join(r.cg.Paths()[0], r.inst.id+"-[0-9]*"))
	return left
}

// assertNoSandboxProcesses fails if a process runs as the sandbox user's host uid
// (the zygote, which never runs user code, keeps the sandbox's root uid).
func assertNoSandboxProcesses(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := sandboxProcesses(t)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox processes left behind: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sandboxProcesses lists the processes running as the sandbox user that descend
// from this test process. Other test binaries (go test runs packages in parallel)
// have sandboxes of their own at the same host uid; those are not ours to judge.
func sandboxProcesses(t *testing.T) []string {
	var left []string
	for _, p := range proctree.Descendants(os.Getpid()) {
		if p.UID == DefaultHostUID+sandboxUID {
			left = append(left, strconv.Itoa(p.Pid))
		}
	}
	return left
}

func mountsUnder(t *testing.T, dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

func TestKernelSurfaceDenied(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, `
import ctypes, ctypes.util, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    r = getattr(libc, name)(*args)
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
out = {
    "mount": call("mount", b"tmpfs", b"/tmp", b"tmpfs", 0, None),
    "unshare_user": call("unshare", 0x10000000),
    "unshare_net": call("unshare", 0x40000000),
    "ptrace": call("ptrace", 16, 1, 0, 0),
    "bpf": call("syscall", 321, 0, 0, 0),
    "keyctl": call("syscall", 250, 0, 0, 0),
    "userfaultfd": call("syscall", 323, 0),
    "io_uring_setup": call("syscall", 425, 1, 0),
    "clone_newuser": call("syscall", 56, 0x10000000 | 17, 0, 0, 0, 0),
    "chroot": call("chroot", b"/tmp"),
    "mknod": call("mknod", b"/tmp/x", 0o20666, 0x0103),
}
print(sorted(out.items()))
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print([l.strip() for l in open("/proc/self/status") if l.startswith("Seccomp:")])
`, nil)
		if res.Status != job.StatusOK {
			t.Fatalf("status %s stderr %q", res.Status, res.Stderr)
		}
		for _, name := range []string{"mount", "unshare_user", "unshare_net", "ptrace", "bpf", "keyctl", "userfaultfd", "io_uring_setup", "clone_newuser", "chroot", "mknod"} {
			if !strings.Contains(res.Stdout, fmt.Sprintf("('%s', 'EPERM')", name)) {
				t.Errorf("%s was not refused with EPERM: %s", name, res.Stdout)
			}
		}
		if !strings.Contains(res.Stdout, `['Seccomp:\t2']`) {
			t.Errorf("no seccomp filter installed: %s", res.Stdout)
		}
		if !strings.Contains(res.Stdout, "fork 7") {
			t.Errorf("ordinary fork broken by the filter: %s", res.Stdout)
		}
	})
}

// While a fork bomb and a memory bomb run in two sandboxes, a third still answers:
// each bomb is held by its own cgroup.
func TestNeighboursStayResponsive(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		bombs := []string{
			"import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
			"l = []\nwhile True:\n    l.append(bytearray(1 << 20))",
		}
		var wg sync.WaitGroup
		statuses := make([]job.Status, len(bombs))
		for i, code := range bombs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := run(t, r, code, func(r *job.Request) { r.Limits.Timeout = 4 * time.Second; r.Limits.MemoryBytes = 128 << 20 })
				statuses[i] = res.Status
			}()
		}
		time.Sleep(500 * time.Millisecond) // let the bombs get going
		var worst time.Duration
		for i := 0; i < 5; i++ {
			start := time.Now()
			res := run(t, r, "print(1)", nil)
			if d := time.Since(start); d > worst {
				worst = d
			}
			if res.Status != job.StatusOK || res.Stdout != "1\n" {
				t.Fatalf("neighbour run %d: %s %q", i, res.Status, res.Stdout)
			}
		}
		t.Logf("print(1) beside a fork bomb and a memory bomb: slowest of 5 took %v", worst)
		wg.Wait()
		// A fork bomb of forked interpreters may run out of memory before time.
		if (statuses[0] != job.StatusTimeout && statuses[0] != job.StatusMemoryLimit) || statuses[1] != job.StatusMemoryLimit {
			t.Errorf("bombs ended %v, want timeout or memory_limit (fork bomb) and memory_limit", statuses)
		}
		assertNoSandboxProcesses(t)
	})
}

// Landlock is a second wall behind the mounts: a file that the mount namespace leaves
// writable (the process's own /proc entries) cannot be written, and the writable
// dirs still work.
func TestLandlockConfinesWrites(t *testing.T) {
	if landlockABI() < 1 {
		skipOrFail(t, "the kernel has no Landlock")
	}
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, `
import errno, os, subprocess
def attempt(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
out = {p: attempt(p) for p in ["/proc/self/comm", "/proc/self/attr/current", "/work/a", "/tmp/a", "/dev/shm/a", "/dev/null"]}
print(sorted(out.items()))
# A subprocess inherits the domain.
print("child", subprocess.run(["python3", "-c", "open('/proc/self/comm', 'w').write('x')"], capture_output=True).returncode)
`, nil)
		if res.Status != job.StatusOK {
			t.Fatalf("status %s stderr %q", res.Status, res.Stderr)
		}
		for _, want := range []string{"('/proc/self/comm', 'EACCES')", "('/work/a', 'ok')", "('/tmp/a', 'ok')", "('/dev/shm/a', 'ok')", "('/dev/null', 'ok')", "child 1"} {
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("want %s in %s", want, res.Stdout)
			}
		}
		if strings.Contains(res.Stdout, "('/proc/self/attr/current', 'ok')") {
			t.Errorf("wrote /proc/self/attr/current: %s", res.Stdout)
		}
	})
}
