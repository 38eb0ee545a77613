// Package containment_test is codeexec's security battery: attack programs, each run
// in a real sandbox on both the cold and the warm path, that print what they could
// reach; every test asserts on that output, never on the mere absence of an error.
package containment_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/proctree"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	cleanupHost, err := plantHost()
	if err != nil {
		fmt.Fprintf(os.Stderr, "containment: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanupHost()
	if n := host.reached.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "containment: the host's listeners were reached %d times from sandboxes\n", n)
		code = 1
	}
	if n := len(battery); n > 0 {
		fmt.Fprintf(os.Stderr, "containment: %d distinct attacks, each on both paths (%d runs)\n", n, attackCount.Load())
		if n < minAttacks && flag.Lookup("test.run").Value.String() == "" {
			fmt.Fprintf(os.Stderr, "containment: the battery has %d attacks, fewer than the %d it must keep\n", n, minAttacks)
			code = 1
		}
	}
	// Every execution has ended: no process may still run as the sandbox user.
	if left := waitNoProcesses(sandbox.DefaultHostUID+sandboxUID, 5*time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "containment: sandbox user processes left behind after the tests: %v\n", left)
		code = 1
	}
	closeRunners()
	// With the runners closed, the zygotes and their preforked children (the sandbox's
	// root uid) must be gone as well.
	if left := waitNoProcesses(sandbox.DefaultHostUID, 5*time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "containment: sandbox processes left behind after Close: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// minAttacks is the least number of attacks the battery may have: a guard against
// attacks silently dropped from the tables.
const minAttacks = 40

// sandboxUID is the sandbox user inside; it maps to sandbox.DefaultHostUID+1000.
const sandboxUID = 1000

// paths are the two ways a runner executes code; every attack runs on both.
var paths = []string{"cold", "warm"}

// runners holds one runner per path for the whole test binary, made on first use.
var runners = map[string]*sharedRunner{"cold": {}, "warm": {}}

type sharedRunner struct {
	once sync.Once
	r    *sandbox.Runner
	dir  string
	err  error
}

// runnerFor returns the test binary's runner for path ("cold" or "warm").
func runnerFor(t testing.TB, path string) *sandbox.Runner {
	t.Helper()
	rootfs := sandboxtest.Rootfs(t)
	sr := runners[path]
	sr.once.Do(func() {
		// The sandbox's unprivileged init must traverse to its state dir.
		if sr.dir, sr.err = os.MkdirTemp("", "codeexec-containment-"); sr.err != nil {
			return
		}
		if sr.err = os.Chmod(sr.dir, 0o711); sr.err != nil {
			return
		}
		cfg := sandboxtest.Config(rootfs, sr.dir)
		cfg.Warm = path == "warm"
		if sr.r, sr.err = sandbox.New(cfg); sr.err != nil {
			return
		}
		if cfg.Warm {
			sr.err = sr.r.Warm()
		}
	})
	if sr.err != nil {
		t.Fatalf("%s runner: %v", path, sr.err)
	}
	return sr.r
}

func closeRunners() {
	for _, sr := range runners {
		if sr.r != nil {
			sr.r.Close()
		}
		if sr.dir != "" {
			os.RemoveAll(sr.dir)
		}
	}
}

// attackCount counts attack runs (one per attack and path) for the summary.
var attackCount atomic.Int64

// limits are the limits of an attack: the defaults, with a short timeout and less
// memory so that bombs end quickly on a small machine.
func limits() job.Limits {
	l := job.DefaultLimits()
	l.Timeout = 20 * time.Second
	l.MemoryBytes = 256 << 20
	return l
}

// run executes code on r with limits() adjusted by adjust (which may be nil).
func run(t testing.TB, r *sandbox.Runner, code string, adjust func(*job.Limits)) *job.Result {
	t.Helper()
	res, err := tryRun(r, code, adjust)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// tryRun is run for goroutines other than the test's.
func tryRun(r *sandbox.Runner, code string, adjust func(*job.Limits)) (*job.Result, error) {
	l := limits()
	if adjust != nil {
		adjust(&l)
	}
	return r.Run(context.Background(), &job.Request{Code: code, Limits: l})
}

// checkHealthy fails the test unless r still runs print(1) correctly: whatever an
// attack did, the next execution on the same runner is unharmed.
func checkHealthy(t testing.TB, r *sandbox.Runner) {
	t.Helper()
	res := run(t, r, "print(1)", nil)
	if res.Status != job.StatusOK || res.Stdout != "1\n" {
		t.Fatalf("print(1) after the attack: status %s stdout %q stderr %q", res.Status, res.Stdout, res.Stderr)
	}
}

// attack is one attack program and the proof that it was contained.
type attack struct {
	name string
	// code is the program, in Python (run after prelude) unless lang says otherwise;
	// it prints what it could reach.
	code string
	// lang is the program's language: "" is Python, job.LangBash a bash script (run
	// without prelude).
	lang string
	// limits, when set, adjusts the attack's limits.
	limits func(*job.Limits)
	// check asserts on the result that the attack was contained; checkOn, when set
	// instead, gives the check for the path the attack runs on.
	check   check
	checkOn func(path string) check
	// serial attacks (CPU-heavy bombs) do not run beside other serial attacks.
	serial bool
}

// prelude is prepended to every attack: helpers that name an outcome by its errno, so
// that the tests can assert exactly how an attempt was refused.
const prelude = `import ctypes, errno, os, socket, stat, sys
def E(f, *args):
    """Calls f and names the outcome: "ok", the errno's name, or the exception's type."""
    try:
        f(*args)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e.errno, int) and e.errno > 0 else type(e).__name__
    except Exception as e:
        return type(e).__name__
libc = ctypes.CDLL(None, use_errno=True)
def sc(nr, *args):
    """A raw system call; returns "ok" or the errno's name."""
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def rd(p, n=-1):
    with open(p, "rb") as f:
        return f.read(n)
def wr(p, data="x"):
    with open(p, "w") as f:
        f.write(data)
def ls(p):
    return sorted(os.listdir(p))
`

// battery holds the names of the distinct attacks that ran, for the summary.
var (
	batteryMu sync.Mutex
	battery   = map[string]bool{}
)

// countAttacks records the attacks of the test named prefix.
func countAttacks(prefix string, list []attack) {
	batteryMu.Lock()
	defer batteryMu.Unlock()
	for _, a := range list {
		battery[prefix+"/"+a.name] = true
	}
}

// heavy serialises the CPU-heavy attacks: with two CPUs, two bombs at once would make
// every other test's timing meaningless.
var heavy sync.Mutex

// runAttacks runs every attack on both paths, each as a subtest, and checks after each
// that the runner is still healthy.
func runAttacks(t *testing.T, attacks []attack) {
	runAttacksVia(t, attacks, direct)
}

// executor runs code, written in lang ("" is Python), on path with limits() adjusted
// by adjust.
type executor func(t *testing.T, path, lang, code string, adjust func(*job.Limits)) *job.Result

// direct runs code on the test binary's runner for path.
func direct(t *testing.T, path, lang, code string, adjust func(*job.Limits)) *job.Result {
	t.Helper()
	l := limits()
	if adjust != nil {
		adjust(&l)
	}
	res, err := runnerFor(t, path).Run(context.Background(), &job.Request{Code: code, Language: lang, Limits: l})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// runAttacksVia is runAttacks with the executions made by exec.
func runAttacksVia(t *testing.T, attacks []attack, exec executor) {
	countAttacks(t.Name(), attacks)
	t.Logf("%d attacks, each on the cold and the warm path", len(attacks))
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			runnerFor(t, p) // fail here, once, if there is no runner
			for _, a := range attacks {
				t.Run(a.name, func(t *testing.T) {
					if !a.serial {
						t.Parallel()
					} else {
						heavy.Lock()
						defer heavy.Unlock()
					}
					attackCount.Add(1)
					code := a.code
					if a.lang == "" {
						code = prelude + code
					}
					res := exec(t, p, a.lang, code, a.limits)
					if a.checkOn != nil {
						a.checkOn(p)(t, res)
					} else {
						a.check(t, res)
					}
					if t.Failed() {
						t.Logf("status %s exit %d\nstdout:\n%s\nstderr:\n%s", res.Status, res.ExitCode, clip(res.Stdout), clip(res.Stderr))
					}
					res = exec(t, p, "", "print(1)", nil)
					if res.Status != job.StatusOK || res.Stdout != "1\n" {
						t.Fatalf("print(1) after the attack: status %s stdout %q stderr %q", res.Status, res.Stdout, res.Stderr)
					}
				})
			}
		})
	}
}

func clip(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "…"
	}
	return s
}

// check asserts on an attack's result that it was contained.
type check func(t *testing.T, res *job.Result)

// all combines checks.
func all(cs ...check) check {
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		for _, c := range cs {
			c(t, res)
		}
	}
}

// status requires one of the statuses.
func status(want ...job.Status) check {
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		if !slices.Contains(want, res.Status) {
			t.Errorf("status %s (%+v), want one of %v", res.Status, res.Error, want)
		}
	}
}

// lines requires each of want as a whole line of stdout.
func lines(want ...string) check {
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		got := strings.Split(res.Stdout, "\n")
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("stdout lacks the line %q", w)
			}
		}
	}
}

// okLines requires a normal end and each of want as a line of stdout.
func okLines(want ...string) check {
	return all(status(job.StatusOK), lines(want...))
}

// oneOf requires a line "label X" of stdout with X one of outcomes: where two layers
// may refuse an attempt first, either refusal is containment.
func oneOf(label string, outcomes ...string) check {
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		got := strings.Split(res.Stdout, "\n")
		for _, o := range outcomes {
			if slices.Contains(got, label+" "+o) {
				return
			}
		}
		t.Errorf("stdout lacks a line %q followed by one of %v", label, outcomes)
	}
}

// match requires stdout to match the regular expression re.
func match(re string) check {
	rx := regexp.MustCompile(re)
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		if !rx.MatchString(res.Stdout) {
			t.Errorf("stdout does not match %s", re)
		}
	}
}

// absent requires that none of secrets appears in stdout or stderr.
func absent(secrets ...string) check {
	return func(t *testing.T, res *job.Result) {
		t.Helper()
		for _, s := range secrets {
			if s == "" {
				t.Fatal("absent: empty secret")
			}
			if strings.Contains(res.Stdout, s) || strings.Contains(res.Stderr, s) {
				t.Errorf("the sandbox's output contains %q", s)
			}
		}
	}
}

// waitNoProcesses waits up to d for every process that runs as host uid and descends
// from this test process to be gone, and returns those left.
func waitNoProcesses(uid int, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := processesOf(uid)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processesOf lists the processes with real uid uid that descend from this test
// process. Other test binaries (go test runs packages in parallel) have sandboxes of
// their own at the same host uids; those are not ours to judge.
func processesOf(uid int) []int {
	var pids []int
	for _, p := range proctree.Descendants(os.Getpid()) {
		if p.UID == uid {
			pids = append(pids, p.Pid)
		}
	}
	return pids
}

// host is what the test process plants on the host for the attacks to look for. None
// of it may be reachable from a sandbox.
var host struct {
	dir    string // world-readable: only the sandbox's own root keeps it out of reach
	marker string // a world-readable file in dir that holds secret
	secret string // random; in marker and in the test's environment (secretEnv)
	// sock is a unix listener in dir, abstract an abstract unix listener's name (no
	// leading "@"), tcpPort and udpPort listeners on the host's 127.0.0.1.
	sock             string
	abstract         string
	tcpPort, udpPort int
	// leakedIno is the inode of a unix listener whose descriptor has FD_CLOEXEC
	// cleared, like one a service manager passes to the server (systemd's socket
	// activation does, at fd 3 and up): a sandbox must not inherit it.
	leakedIno uint64
	// reached counts connections and datagrams the listeners received.
	reached atomic.Int64
}

// secretEnv are variables set in the test process, as a server has its upstream keys.
var secretEnv = []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CODEEXEC_BATTERY_SECRET"}

// plantHost sets up host; the returned function removes it.
func plantHost() (func(), error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	host.secret = "battery-" + hex.EncodeToString(b[:])
	for _, k := range secretEnv {
		os.Setenv(k, "sk-"+host.secret)
	}
	dir, err := os.MkdirTemp("", "codeexec-battery-host-")
	if err != nil {
		return nil, err
	}
	var closers []func()
	undo := func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
		os.RemoveAll(dir)
	}
	fail := func(err error) (func(), error) {
		undo()
		return nil, err
	}
	host.dir = dir
	host.marker = filepath.Join(dir, "marker.txt")
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(host.marker, []byte(host.secret+"\n"), 0o644); err != nil {
		return fail(err)
	}
	listen := func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				host.reached.Add(1)
				c.Close()
			}
		}()
		return ln, nil
	}
	host.sock = filepath.Join(dir, "server.sock")
	if _, err := listen("unix", host.sock); err != nil {
		return fail(err)
	}
	if err := os.Chmod(host.sock, 0o777); err != nil {
		return fail(err)
	}
	host.abstract = "codeexec-battery-" + hex.EncodeToString(b[:6])
	if _, err := listen("unix", "@"+host.abstract); err != nil {
		return fail(err)
	}
	ln, err := listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	host.tcpPort = ln.Addr().(*net.TCPAddr).Port
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { pc.Close() })
	host.udpPort = pc.LocalAddr().(*net.UDPAddr).Port
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			host.reached.Add(1)
		}
	}()
	leaked, err := listen("unix", filepath.Join(dir, "inherited.sock"))
	if err != nil {
		return fail(err)
	}
	raw, err := leaked.(*net.UnixListener).SyscallConn()
	if err != nil {
		return fail(err)
	}
	var ctlErr error
	if err := raw.Control(func(fd uintptr) {
		var st unix.Stat_t
		if ctlErr = unix.Fstat(int(fd), &st); ctlErr != nil {
			return
		}
		host.leakedIno = st.Ino
		_, ctlErr = unix.FcntlInt(fd, unix.F_SETFD, 0)
	}); err != nil || ctlErr != nil {
		return fail(fmt.Errorf("clear FD_CLOEXEC: %v %v", err, ctlErr))
	}
	return undo, nil
}
