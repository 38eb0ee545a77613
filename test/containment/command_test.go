package containment_test

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// Commands (Session.Start) are processes a session's init forks and executes, beside
// its interpreter contexts: each must be as confined as a program run as code, and
// none may reach the init, which forks everything else. Sessions exist on the warm
// path only, and so do these attacks.
var commandAttacks = []struct {
	name  string
	args  []string
	check check
	// home runs the attack in a session made with SessionOptions.Home, as E2B's
	// sandboxes are: the work dir at /home/user and the uid named user.
	home bool
}{
	{
		// The same identity as code: the sandbox user, no capability in any set, no
		// way to gain one, and the seccomp filter.
		name: "command_identity",
		args: []string{"/bin/bash", "-c", `id -u; id -g; id -G
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t' ' '`},
		check: okLines("1000", "1000", "1000", "CapInh: 0000000000000000", "CapPrm: 0000000000000000",
			"CapEff: 0000000000000000", "CapBnd: 0000000000000000", "CapAmb: 0000000000000000",
			"NoNewPrivs: 1", "Seccomp: 2"),
	},
	{
		// Writes only where code may write: the mounts refuse the image, Landlock what
		// the mounts would allow (a process's own /proc entries).
		name: "command_writes",
		args: []string{"/bin/bash", "-c", `for p in /etc/codeexec /usr/bin/codeexec /codeexec /dev/codeexec /proc/self/comm /work/ok /tmp/ok /dev/shm/ok; do
  if (printf x > "$p") 2>/dev/null; then echo "$p written"; else echo "$p refused"; fi
done`},
		check: okLines("/etc/codeexec refused", "/usr/bin/codeexec refused", "/codeexec refused", "/dev/codeexec refused",
			"/proc/self/comm refused", "/work/ok written", "/tmp/ok written", "/dev/shm/ok written"),
	},
	{
		// The kernel surface a command reaches is code's: vsock (which no network
		// namespace confines) and namespace creation refused by the filter.
		name: "command_syscalls",
		args: []string{"/usr/bin/python3", "-c", prelude + `
print("vsock", E(socket.socket, 40, socket.SOCK_STREAM))
print("unshare", sc(272, 0x10000000))
print("ptrace", sc(101, 16, 1, 0, 0))
`},
		check: okLines("vsock EAFNOSUPPORT", "unshare EPERM", "ptrace EPERM"),
	},
	{
		// The init, pid 1 of the session, forks every context and command and reports
		// their ends: a command may neither write its memory, read its environment
		// nor signal it, and the session carries on.
		name: "command_init",
		args: []string{"/usr/bin/python3", "-c", prelude + `
import signal
print("mem", E(open, "/proc/1/mem", "r+b"))
print("environ", E(rd, "/proc/1/environ"))
print("fds", E(ls, "/proc/1/fd"))
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGSTOP, signal.SIGKILL):
    os.kill(1, s)
print("signalled")
`},
		check: okLines("mem EACCES", "environ EACCES", "fds EACCES", "signalled"),
	},
	{
		// E2B's user is a name only: the account views cannot be written, replaced,
		// unmounted or found, the uid has no capability, and there is no sudo or su
		// to climb with.
		name: "command_e2b_user",
		home: true,
		args: []string{"/usr/bin/python3", "-c", prelude + `
import pwd, shutil
print("name", pwd.getpwuid(os.getuid()).pw_name, os.getuid())
print("append", E(open, "/etc/passwd", "a"))
wr("/home/user/x", "root::0:0::/root:/bin/bash\n")
print("replace", E(os.rename, "/home/user/x", "/etc/passwd"))
print("umount", sc(166, b"/etc/passwd", 0))
print("unlink", E(os.unlink, "/etc/group"))
print("home", ls("/home"))
print("sudo", shutil.which("sudo"))
import subprocess
su = subprocess.run(["su", "-c", "id -u", "root"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
print("su", su.returncode != 0, su.stdout.strip() != "0", os.stat("/usr/bin/su").st_mode & stat.S_ISUID)
print("caps", [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")])
`},
		check: okLines("name user 1000", "append EACCES", "replace EXDEV", "umount EPERM", "unlink EROFS",
			"home ['user']", "sudo None", "su True True 0", "caps ['0000000000000000']"),
	},
}

// TestCommandsConfined runs each attack as a command in a session, then checks that
// the session still runs code and commands.
func TestCommandsConfined(t *testing.T) {
	names := make([]attack, len(commandAttacks))
	for i, a := range commandAttacks {
		names[i] = attack{name: a.name}
	}
	countAttacks(t.Name(), names)
	r := runnerFor(t, "warm")
	for _, a := range commandAttacks {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			attackCount.Add(1)
			s, err := r.NewSessionWith(context.Background(), limits(), sandbox.SessionOptions{Home: a.home})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			res := runCommand(t, s, a.args...)
			a.check(t, res)
			if t.Failed() {
				t.Logf("status %s exit %d\nstdout:\n%s\nstderr:\n%s", res.Status, res.ExitCode, clip(res.Stdout), clip(res.Stderr))
			}
			if res := runCommand(t, s, "/bin/echo", "1"); res.Status != job.StatusOK || res.Stdout != "1\n" {
				t.Fatalf("echo 1 after the attack: %s %q %q", res.Status, res.Stdout, res.Stderr)
			}
			code := "print(1)"
			if res, err := s.Run(context.Background(), &job.Request{Code: code}); err != nil || res.Status != job.StatusOK || res.Stdout != "1\n" {
				t.Fatalf("print(1) after the attack: %v %+v", err, res)
			}
		})
	}
}

// runCommand runs args in s to its end and gives its outcome as a Result: ok for
// exit status 0, error otherwise.
func runCommand(t *testing.T, s *sandbox.Session, args ...string) *job.Result {
	t.Helper()
	var out, errOut lockedBuffer
	p, err := s.Start(context.Background(), &sandbox.Command{Args: args, Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatalf("Start(%q): %v", args[0], err)
	}
	st, err := p.Wait()
	if err != nil {
		t.Fatalf("Wait(%q): %v", args[0], err)
	}
	res := &job.Result{Status: job.StatusOK, Stdout: out.String(), Stderr: errOut.String(), ExitCode: st.Code}
	if st.Code != 0 {
		res.Status = job.StatusError
	}
	return res
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader in two goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
