package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

func newTestSession(t *testing.T, r *Runner, l job.Limits) *Session {
	t.Helper()
	s, err := r.NewSession(context.Background(), l)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func sessionRun(t *testing.T, s *Session, code string) *job.Result {
	t.Helper()
	res, err := s.Run(context.Background(), &job.Request{Code: code}) // zero limits: the session's
	if err != nil {
		t.Fatalf("Run(%q): %v", code, err)
	}
	return res
}

func TestSessionState(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := sharedRunnerFor(t, "warm")
		s := newTestSession(t, r, job.DefaultLimits())
		steps := []struct{ code, want string }{
			{"import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})\nopen('notes.txt', 'w').write('kept')", "4"},
			{"int(df['a'].sum())", "6"},
			{"open('notes.txt').read()", "'kept'"},
			{"result = len(df)", "3"},
			{"'result' in dir()", "False"}, // result is reset for each execution
		}
		for i, st := range steps {
			res := sessionRun(t, s, st.code)
			if res.Status != job.StatusOK || deref(res.Result) != st.want {
				t.Fatalf("step %d %q: got %s %s %q, want %s", i, st.code, res.Status, deref(res.Result), res.Stderr, st.want)
			}
		}
		// Only what an execution changed is reported.
		res := sessionRun(t, s, "open('b.txt', 'w').write('x')")
		if len(res.Files) != 1 || res.Files[0].Path != "b.txt" {
			t.Errorf("files %v, want only b.txt", res.Files)
		}
		if err := s.WriteFile("in/data.txt", []byte("uploaded")); err != nil {
			t.Fatal(err)
		}
		if res := sessionRun(t, s, "open('in/data.txt').read()"); deref(res.Result) != "'uploaded'" {
			t.Errorf("uploaded file read as %s", deref(res.Result))
		}
		data, err := s.ReadFile("notes.txt", 1<<20)
		if err != nil || string(data) != "kept" {
			t.Errorf("ReadFile = %q, %v", data, err)
		}
		sessionRun(t, s, "import os\nos.symlink('/etc/passwd', 'link')")
		if _, err := s.ReadFile("link", 1<<20); err == nil {
			t.Error("ReadFile followed a symlink")
		}
		if _, err := s.ReadFile("notes.txt", 2); err == nil {
			t.Error("ReadFile ignored its size limit")
		}
		files, _, err := s.Files()
		if err != nil || len(files) != 3 {
			t.Errorf("Files() = %v, %v; want 3 regular files", files, err)
		}
	})
}

func TestSessionEndsOnLimit(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := sharedRunnerFor(t, "warm")
		s := newTestSession(t, r, job.DefaultLimits())
		sessionRun(t, s, "x = 1")
		pids := sessionPids(t, s)
		res, err := s.Run(context.Background(), &job.Request{Code: "while True: pass", Limits: job.Limits{Timeout: 500 * time.Millisecond, OutputBytes: 1 << 20}})
		if err != nil || res.Status != job.StatusTimeout {
			t.Fatalf("got %v %v, want timeout", res, err)
		}
		if _, err := s.Run(context.Background(), &job.Request{Code: "x", Limits: job.DefaultLimits()}); !errors.Is(err, ErrSessionEnded) {
			t.Fatalf("run after a timeout: %v, want ErrSessionEnded", err)
		}
		if s.Alive() {
			t.Error("session reports alive after its interpreter was killed")
		}
		assertGone(t, r, pids)
	})
}

func TestSessionsIsolated(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := sharedRunnerFor(t, "warm")
		a := newTestSession(t, r, job.DefaultLimits())
		b := newTestSession(t, r, job.DefaultLimits())
		sessionRun(t, a, "secret = 42\nopen('a.txt', 'w').write('a')\nimport socket\nsrv = socket.socket(socket.AF_UNIX)\nsrv.bind('\\0codeexec-test')\nsrv.listen()")
		res := sessionRun(t, b, `
import os, socket
out = ['secret' in dir(), os.path.exists('a.txt'), sorted(int(p) for p in os.listdir('/proc') if p.isdigit())]
c = socket.socket(socket.AF_UNIX)
try:
    c.connect('\0codeexec-test')
    out.append('connected')
except OSError as e:
    out.append(type(e).__name__)
out`)
		// Its own init (1) and interpreter (2), nothing of a's.
		if deref(res.Result) != "[False, False, [1, 2], 'ConnectionRefusedError']" {
			t.Fatalf("session b saw session a: %s %s", deref(res.Result), res.Stderr)
		}
	})
}

func TestSessionCloseKills(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := sharedRunnerFor(t, "warm")
		s, err := r.NewSession(context.Background(), job.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		sessionRun(t, s, "import os, time\nif os.fork() == 0:\n    time.sleep(1000)")
		pids := sessionPids(t, s)
		if len(pids) != 3 {
			t.Fatalf("session has processes %v, want its init, the interpreter and the interpreter's child", pids)
		}
		s.Close()
		if _, err := s.Run(context.Background(), &job.Request{Code: "1", Limits: job.DefaultLimits()}); !errors.Is(err, ErrSessionEnded) {
			t.Fatalf("run after Close: %v", err)
		}
		assertGone(t, r, pids)
	})
}

// sessionPids lists the host pids of a session's processes.
func sessionPids(t *testing.T, s *Session) []int {
	t.Helper()
	pids, err := s.s.g.Procs()
	if err != nil || len(pids) == 0 {
		t.Fatalf("session processes: %v %v", pids, err)
	}
	return pids
}

// assertGone fails if any of pids still exists once the runner's cleanups are done.
func assertGone(t *testing.T, r *Runner, pids []int) {
	t.Helper()
	r.cleanups.Wait()
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("process %d of an ended session still exists", pid)
		}
	}
}

// TestSessionHome: a session with SessionOptions.Home shows its work dir at
// /home/user too and starts there, and names its user "user"; /home itself and the
// account files stay unwritable; a session without it has no /home/user and its
// user is "sandbox".
func TestSessionHome(t *testing.T) {
	r := sharedRunnerFor(t, "warm")
	s, err := r.NewSessionWith(context.Background(), job.DefaultLimits(), SessionOptions{Home: true})
	if err != nil {
		t.Fatalf("NewSessionWith: %v", err)
	}
	t.Cleanup(s.Close)
	for _, c := range []struct{ code, want string }{
		{"import os\nos.getcwd()", "'/home/user'"},
		{"open('/home/user/a.txt', 'w').write('x')\nopen('/work/a.txt').read()", "'x'"},
		{"os.path.samefile('/home/user', '/work')", "True"},
		{"try:\n    open('/home/b.txt', 'w')\n    r = 'written'\nexcept OSError as e:\n    r = type(e).__name__\nr", "'PermissionError'"},
		// The same uid, named user as in E2B's sandboxes, through views of the
		// account files that no one can write and nothing else in /home shows.
		{"import pwd, grp\np = pwd.getpwuid(os.getuid())\np.pw_name, p.pw_dir, grp.getgrgid(os.getgid()).gr_name, os.getuid()", "('user', '/home/user', 'user', 1000)"},
		{"import subprocess\nsubprocess.run(['whoami'], capture_output=True, text=True).stdout", "'user\\n'"},
		{"[l for l in open('/etc/passwd') if l.startswith('sandbox:') or ':1000:' in l]", "['user:x:1000:1000::/home/user:/bin/bash\\n']"},
		{"pwd.getpwnam('root').pw_uid, 'root:' in open('/etc/group').read()", "(0, True)"},
		{"import errno\nr = []\nfor f in ('/etc/passwd', '/etc/group'):\n    try:\n        open(f, 'a').write('x')\n    except OSError as e:\n        r.append(e.errno in (errno.EACCES, errno.EROFS))\nr", "[True, True]"},
		{"os.listdir('/home')", "['user']"},
	} {
		res := sessionRun(t, s, c.code)
		if res.Status != job.StatusOK || deref(res.Result) != c.want {
			t.Errorf("%q: %s %s %q, want %s", c.code, res.Status, deref(res.Result), res.Stderr, c.want)
		}
	}
	plain := newTestSession(t, r, job.DefaultLimits())
	if res := sessionRun(t, plain, "import os, pwd\nos.path.exists('/home/user'), os.getcwd(), pwd.getpwuid(os.getuid()).pw_name"); deref(res.Result) != "(False, '/work', 'sandbox')" {
		t.Errorf("a session without Home: %s %q", deref(res.Result), res.Stderr)
	}
}
