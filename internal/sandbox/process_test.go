package sandbox

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// Sessions exist on the warm path only, and so do their contexts and commands.

func newTestContext(t *testing.T, s *Session) *Context {
	t.Helper()
	c, err := s.NewContext(context.Background())
	if err != nil {
		t.Fatalf("NewContext: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func contextRun(t *testing.T, c *Context, code string) *job.Result {
	t.Helper()
	res, err := c.Run(context.Background(), &job.Request{Code: code})
	if err != nil {
		t.Fatalf("Run(%q): %v", code, err)
	}
	return res
}

// startCommand starts args in s with out and errOut (either may be nil) and stdin.
func startCommand(t *testing.T, s *Session, stdin io.Reader, out, errOut io.Writer, args ...string) *Process {
	t.Helper()
	p, err := s.Start(context.Background(), &Command{Args: args, Stdin: stdin, Stdout: out, Stderr: errOut})
	if err != nil {
		t.Fatalf("Start(%q): %v", args, err)
	}
	return p
}

// TestContextsShareFilesNotVariables: two contexts of a session (the default one and
// another) keep their own variables and see the same /work.
func TestContextsShareFilesNotVariables(t *testing.T) {
	s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
	other := newTestContext(t, s)
	sessionRun(t, s, "x = 'main'\nopen('shared.txt', 'w').write('from main')")
	contextRun(t, other, "x = 'other'")
	for _, tt := range []struct {
		name string
		run  func(string) *job.Result
	}{
		{"main", func(code string) *job.Result { return sessionRun(t, s, code) }},
		{"other", func(code string) *job.Result { return contextRun(t, other, code) }},
	} {
		res := tt.run("(x, open('shared.txt').read())")
		if want := "('" + tt.name + "', 'from main')"; res.Status != job.StatusOK || deref(res.Result) != want {
			t.Errorf("%s context: %s %s %q, want its own x and the shared file", tt.name, res.Status, deref(res.Result), res.Stderr)
		}
	}
	ids := map[uint64]bool{}
	for _, p := range s.Processes() {
		if p.Kind != KindContext || !p.Running {
			t.Errorf("process %+v, want two running contexts", p)
		}
		ids[p.ID] = true
	}
	if len(ids) != 2 || !ids[other.ID()] {
		t.Errorf("Processes() = %+v, want the default context and %d", s.Processes(), other.ID())
	}
}

// TestCommandOutputAndExit: a command's output is streamed to its writers and its
// exit code reported.
func TestCommandOutputAndExit(t *testing.T) {
	s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
	out, errOut := newChunkWriter(), newChunkWriter()
	p := startCommand(t, s, nil, out, errOut, "/bin/bash", "-c", "echo hi; echo oops >&2; read -t 30 line; echo after; exit 3")
	// Streamed: the first line arrives while the command still waits (for its empty
	// stdin's EOF, which read gets at once, so at worst the test sees both lines).
	out.waitFor(t, "hi\n")
	st, err := p.Wait()
	if err != nil || st.Code != 3 || st.Signal != 0 {
		t.Fatalf("Wait() = %v, %v; want exit status 3", st, err)
	}
	if out.String() != "hi\nafter\n" || errOut.String() != "oops\n" {
		t.Errorf("stdout %q stderr %q, want %q and %q", out.String(), errOut.String(), "hi\nafter\n", "oops\n")
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, ErrProcessDone) {
		t.Errorf("Signal after the end: %v, want ErrProcessDone", err)
	}
	// The environment is the sandbox's, with the command's own variables.
	env := newChunkWriter()
	p, err = s.Start(context.Background(), &Command{Args: []string{"sh", "-c", "echo $HOME $FOO $CODEEXEC_MAX_RESULT; pwd"}, Env: []string{"FOO=bar"}, Dir: "/tmp", Stdout: env})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(); err != nil || st.Code != 0 || env.String() != "/work bar\n/tmp\n" {
		t.Errorf("env and dir: %v %v %q, want %q", st, err, env.String(), "/work bar\n/tmp\n")
	}
	if _, err := s.Start(context.Background(), &Command{Args: []string{"/no/such/program"}}); err == nil || !strings.Contains(err.Error(), "No such file") {
		t.Errorf("Start of a missing program: %v, want its ENOENT", err)
	}
}

// TestCommandStdin: a command reads what the caller gives it, and CloseStdin ends its
// input though the caller's reader never does.
func TestCommandStdin(t *testing.T) {
	s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
	out := newChunkWriter()
	p := startCommand(t, s, strings.NewReader("one\ntwo\n"), out, nil, "cat")
	if st, err := p.Wait(); err != nil || st.Code != 0 || out.String() != "one\ntwo\n" {
		t.Fatalf("cat: %v %v %q", st, err, out.String())
	}
	r, w := io.Pipe()
	defer w.Close()
	out = newChunkWriter()
	p = startCommand(t, s, r, out, nil, "cat")
	if _, err := w.Write([]byte("streamed\n")); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "streamed\n")
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(); err != nil || st.Code != 0 {
		t.Fatalf("cat after CloseStdin: %v %v", st, err)
	}
}

// TestBackgroundCommand: a command keeps running between the session's runs (the
// session is not frozen while one runs) and ends by the signal it is sent; the
// session is frozen again once it has ended.
func TestBackgroundCommand(t *testing.T) {
	s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
	ticker := startCommand(t, s, nil, nil, nil, "/bin/bash", "-c", "while :; do echo t >> /work/ticks; sleep 0.05; done")
	sleeper := startCommand(t, s, nil, nil, nil, "sleep", "100")
	sessionRun(t, s, "1")
	if s.frozen {
		t.Fatal("the session is frozen while commands run")
	}
	// A frozen session's ticker would never write again; the deadline only bounds
	// a failing test.
	before, _ := s.ReadFile("ticks", 1<<20)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if after, _ := s.ReadFile("ticks", 1<<20); len(after) > len(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background command did not run between runs")
		}
	}
	if err := sleeper.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st, err := sleeper.Wait(); err != nil || st.Signal != syscall.SIGTERM || st.Code != 128+int(syscall.SIGTERM) {
		t.Errorf("sleep after SIGTERM: %v %v, want killed by SIGTERM", st, err)
	}
	if err := ticker.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st, err := ticker.Wait(); err != nil || st.Signal != syscall.SIGKILL {
		t.Errorf("ticker after SIGKILL: %v %v", st, err)
	}
	// The last command's end freezes the session, in the background.
	deadline := time.Now().Add(10 * time.Second)
	for !sessionFrozen(s) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !sessionFrozen(s) {
		t.Error("the session is not frozen once its commands have ended")
	}
	var running int
	for _, p := range s.Processes() {
		if p.Running {
			running++
		}
	}
	if running != 1 {
		t.Errorf("Processes() = %+v, want only the default context running", s.Processes())
	}
}

func sessionFrozen(s *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frozen
}

// TestInterruptOneContext: interrupting a context's program leaves another context's
// running program and state alone.
func TestInterruptOneContext(t *testing.T) {
	s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
	other := newTestContext(t, s)
	contextRun(t, other, "kept = 42")
	outA, outB := newChunkWriter(), newChunkWriter()
	a := runAsync(t, s.Run, &job.Request{Code: "print('a started', flush=True)\nwhile True: pass", Stdout: outA})
	b := runAsync(t, other.Run, &job.Request{Code: "import time\nprint('b started', flush=True)\ntime.sleep(1.5)\nkept + 1", Stdout: outB})
	outA.waitFor(t, "a started")
	outB.waitFor(t, "b started")
	if err := s.Interrupt(); err != nil {
		t.Fatal(err)
	}
	if res := <-a; res.Status != job.StatusError || res.Error == nil || res.Error.Name != "KeyboardInterrupt" {
		t.Errorf("interrupted run: %s %+v", res.Status, res.Error)
	}
	if res := <-b; res.Status != job.StatusOK || deref(res.Result) != "43" {
		t.Errorf("the other context's run: %s %s %q", res.Status, deref(res.Result), res.Stderr)
	}
	if err := other.Interrupt(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Interrupt of an idle context: %v, want ErrNotRunning", err)
	}
}

// TestContextLimitEndsOnlyIt: a limit met in a context other than the default one
// ends that context, not the session.
func TestContextLimitEndsOnlyIt(t *testing.T) {
	s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
	sessionRun(t, s, "y = 5")
	other := newTestContext(t, s)
	res, err := other.Run(context.Background(), &job.Request{Code: "while True: pass", Limits: job.Limits{Timeout: 500 * time.Millisecond}})
	if err != nil || res.Status != job.StatusTimeout || !strings.Contains(res.Error.Message, "context has ended") {
		t.Fatalf("timeout in a context: %v %+v", err, res)
	}
	if _, err := other.Run(context.Background(), &job.Request{Code: "1"}); !errors.Is(err, ErrContextEnded) {
		t.Errorf("run in an ended context: %v, want ErrContextEnded", err)
	}
	if res := sessionRun(t, s, "y"); deref(res.Result) != "5" || !s.Alive() {
		t.Errorf("the session after its other context's timeout: %s %q, alive %v", deref(res.Result), res.Stderr, s.Alive())
	}
}

// TestSessionCloseKillsEveryProcess: closing a session kills its contexts, their
// children and its commands, and leaves no process of the sandbox user behind.
func TestSessionCloseKillsEveryProcess(t *testing.T) {
	r := newTestRunnerFor(t, "warm")
	s, err := r.NewSession(context.Background(), job.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	sessionRun(t, s, "import subprocess\nchild = subprocess.Popen(['sleep', '1000'])")
	other, err := s.NewContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	contextRun(t, other, "import os, time\nif os.fork() == 0:\n    time.sleep(1000)")
	cmd := startCommand(t, s, nil, nil, nil, "/bin/bash", "-c", "sleep 1000 & sleep 1000")
	// The init, two contexts and their children, bash and its two sleeps.
	for deadline := time.Now().Add(10 * time.Second); len(sandboxProcesses(t)) < 8; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the session has processes %v of the sandbox user, want 8", sandboxProcesses(t))
		}
	}
	s.Close()
	if st, err := cmd.Wait(); err != nil || st.Signal != syscall.SIGKILL {
		t.Errorf("the command after Close: %v %v, want killed by SIGKILL", st, err)
	}
	if _, err := other.Run(context.Background(), &job.Request{Code: "1"}); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("run in a context of a closed session: %v, want ErrSessionEnded", err)
	}
	assertNoSandboxProcesses(t)
}

// TestSessionCloseDuringRun: Close kills a running program at once instead of
// waiting for it, and the run reports that it was killed. A Close that waited would
// return only at the run's timeout, which the run would report.
func TestSessionCloseDuringRun(t *testing.T) {
	s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
	out := newChunkWriter()
	done := runAsync(t, s.Run, &job.Request{Code: "import time\nprint('sleeping', flush=True)\ntime.sleep(3600)",
		Limits: job.Limits{Timeout: 20 * time.Second}, Stdout: out})
	out.waitFor(t, "sleeping")
	s.Close()
	if res := <-done; res.Status != job.StatusKilled {
		t.Errorf("the run Close interrupted: %s %+v, want killed", res.Status, res.Error)
	}
	if got := s.EndReason(); got != EndClosed {
		t.Errorf("EndReason() = %q, want %q", got, EndClosed)
	}
}

// TestCommandValidate: a command the init could not run as asked is refused before
// anything starts.
func TestCommandValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cmd  Command
		ok   bool
	}{
		{"plain", Command{Args: []string{"/bin/echo", "hi"}, Env: []string{"A=b", "EMPTY="}, Dir: "/tmp"}, true},
		{"no program", Command{}, false},
		{"empty program", Command{Args: []string{""}}, false},
		{"relative dir", Command{Args: []string{"ls"}, Dir: "work"}, false},
		{"NUL in an argument", Command{Args: []string{"echo", "a\x00b"}}, false},
		{"invalid UTF-8", Command{Args: []string{"echo", "\xff"}}, false},
		{"environment without =", Command{Args: []string{"env"}, Env: []string{"NOVALUE"}}, false},
		{"environment without a name", Command{Args: []string{"env"}, Env: []string{"=x"}}, false},
		{"too long", Command{Args: []string{"echo", strings.Repeat("x", maxCommandBytes)}}, false},
	} {
		if err := tt.cmd.validate(); (err == nil) != tt.ok {
			t.Errorf("%s: validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

// TestCommandPid: a command's Pid is the one its programs see ($$, kill -0), a
// small number of the session's pid namespace, not the host's.
func TestCommandPid(t *testing.T) {
	s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
	out := newChunkWriter()
	p := startCommand(t, s, nil, out, nil, "/bin/sh", "-c", "echo $$; exec sleep 600")
	out.waitFor(t, "\n")
	if got, want := strings.TrimSpace(out.String()), strconv.Itoa(p.Pid()); got != want {
		t.Errorf("the command printed $$ = %s, Pid() = %s", got, want)
	}
	check := func(code int) {
		t.Helper()
		q := startCommand(t, s, nil, nil, nil, "/bin/sh", "-c", "kill -0 "+strconv.Itoa(p.Pid()))
		if st, err := q.Wait(); err != nil || st.Code != code {
			t.Errorf("kill -0 %d in the sandbox: %v %v, want exit %d", p.Pid(), st, err, code)
		}
	}
	check(0)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	check(1)
}

func TestParseNSpid(t *testing.T) {
	for _, tt := range []struct {
		status string
		want   int // 0: an error
	}{
		{"Name:\tsleep\nNSpid:\t48211\t12\t7\nNSpgid:\t1\n", 7},
		{"NSpid:\t48211\n", 48211},
		{"Name:\tsleep\nPid:\t3\n", 0},
		{"NSpid:\t\n", 0},
		{"NSpid:\t12\tx\n", 0},
	} {
		got, err := parseNSpid([]byte(tt.status))
		if got != tt.want || (err == nil) != (tt.want != 0) {
			t.Errorf("parseNSpid(%q) = %d, %v; want %d", tt.status, got, err, tt.want)
		}
	}
}
