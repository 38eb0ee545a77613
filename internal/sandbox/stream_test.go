package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
	"golang.org/x/sys/unix"
)

// chunkWriter records what a Request's Stdout or Stderr is given.
type chunkWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	wrote  chan struct{}
}

func newChunkWriter() *chunkWriter { return &chunkWriter{wrote: make(chan struct{}, 1)} }

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.writes++
	w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *chunkWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until the writer has been given want; the deadline only bounds a
// failing test.
func (w *chunkWriter) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(w.String(), want) {
		select {
		case <-w.wrote:
		case <-deadline:
			t.Fatalf("the writer got %q, never %q", w.String(), want)
		}
	}
}

// runAsync starts run (a Runner's or a Session's) and returns the channel its
// Result arrives on; an error fails the test.
func runAsync(t *testing.T, run func(context.Context, *job.Request) (*job.Result, error), req *job.Request) <-chan *job.Result {
	ch := make(chan *job.Result, 1)
	go func() {
		res, err := run(context.Background(), req)
		if err != nil {
			t.Errorf("Run(%q): %v", req.Code, err)
			res = &job.Result{}
		}
		ch <- res
	}()
	return ch
}

// TestStreamsWhileRunning checks that output reaches the writers while the program
// still runs: it waits for input that the test gives only once it has seen the
// program's first line.
func TestStreamsWhileRunning(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		stdinR, stdinW := io.Pipe()
		defer stdinW.Close()
		stdout, stderr := newChunkWriter(), newChunkWriter()
		req := &job.Request{Code: "import sys\nprint('ready')\nprint('warn', file=sys.stderr)\nline = input()\nprint('got', line)\nline",
			Limits: job.DefaultLimits(), Stdin: stdinR, Stdout: stdout, Stderr: stderr}
		done := runAsync(t, r.Run, req)
		stdout.waitFor(t, "ready\n")
		stderr.waitFor(t, "warn\n")
		select {
		case res := <-done:
			t.Fatalf("the run ended before its input came: %+v", res)
		default:
		}
		io.WriteString(stdinW, "hello\n")
		stdinW.Close()
		res := <-done
		if res.Status != job.StatusOK || res.Stdout != "ready\ngot hello\n" || deref(res.Result) != "'hello'" {
			t.Fatalf("got %s stdout %q result %s stderr %q", res.Status, res.Stdout, deref(res.Result), res.Stderr)
		}
		if stdout.String() != res.Stdout || stderr.String() != res.Stderr {
			t.Errorf("streamed %q and %q, the Result holds %q and %q", stdout.String(), stderr.String(), res.Stdout, res.Stderr)
		}
	})
}

// blockedReader never returns from Read until released.
type blockedReader struct{ release chan struct{} }

func (r blockedReader) Read([]byte) (int, error) {
	<-r.release
	return 0, io.EOF
}

func TestStdin(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		release := make(chan struct{})
		defer close(release)
		big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: more than a pipe holds
		tests := []struct {
			name  string
			stdin io.Reader
			code  string
			want  string
		}{
			{"none is empty", nil, "import sys, os, stat\n(sys.stdin.read(), stat.S_ISCHR(os.fstat(0).st_mode))", "('', True)"},
			{"lines", strings.NewReader("a\nb\n"), "[input(), input()]", "['a', 'b']"},
			{"utf-8", strings.NewReader("grüße\n"), "input()", "'grüße'"},
			{"more than a pipe holds", strings.NewReader(big), "import sys\nlen(sys.stdin.read())", "1048576"},
			{"left unread", strings.NewReader(big), "'unread'", "'unread'"},
			{"never ends, unread", blockedReader{release}, "'done'", "'done'"},
			{"closed early", strings.NewReader(big), "import os\nos.close(0)\n'closed'", "'closed'"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := run(t, r, tt.code, func(r *job.Request) { r.Stdin = tt.stdin })
				if res.Status != job.StatusOK || deref(res.Result) != tt.want {
					t.Fatalf("got %s %s stderr %q, want %s", res.Status, deref(res.Result), res.Stderr, tt.want)
				}
			})
		}
	})
}

func TestArgs(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		tests := []struct {
			name       string
			progName   string
			args       []string
			want       string
			wantResult string
		}{
			{"none", "", nil, "['<code>']", ""},
			{"named", "prog.py", nil, "['prog.py']", ""},
			{"arguments", "scripts/prog.py", []string{"a", "b c", "-x", "--", "", "ünï"}, "['scripts/prog.py', 'a', 'b c', '-x', '--', '', 'ünï']", ""},
			{"arguments without a name", "", []string{"-c", "1"}, "['<code>', '-c', '1']", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := run(t, r, "import sys\nsys.argv", func(r *job.Request) { r.Name, r.Args = tt.progName, tt.args })
				if res.Status != job.StatusOK || deref(res.Result) != tt.want {
					t.Fatalf("got %s %s stderr %q, want %s", res.Status, deref(res.Result), res.Stderr, tt.want)
				}
			})
		}
	})
}

// stuckWriter blocks every Write until released; failWriter fails every one.
type stuckWriter struct {
	calls   chan struct{}
	release chan struct{}
}

func (w stuckWriter) Write(p []byte) (int, error) {
	w.calls <- struct{}{}
	<-w.release
	return len(p), nil
}

type failWriter struct{ calls *int }

func (w failWriter) Write(p []byte) (int, error) {
	*w.calls++
	return 0, errors.New("client gone")
}

// TestStreamWriterFaults checks that a writer that blocks or fails costs neither
// the program's output nor the Result.
func TestStreamWriterFaults(t *testing.T) {
	defer func(d time.Duration) { streamDrainTimeout = d }(streamDrainTimeout)
	streamDrainTimeout = 100 * time.Millisecond
	code := "for i in range(20000): print(i)\nprint('end')"
	bothPaths(t, func(t *testing.T, r *Runner) {
		t.Run("stuck", func(t *testing.T) {
			w := stuckWriter{calls: make(chan struct{}, 100), release: make(chan struct{})}
			res := run(t, r, code, func(r *job.Request) { r.Stdout = w })
			close(w.release)
			if res.Status != job.StatusOK || !strings.HasSuffix(res.Stdout, "19999\nend\n") {
				t.Fatalf("got %s, stdout ending %q", res.Status, res.Stdout[max(0, len(res.Stdout)-20):])
			}
			time.Sleep(50 * time.Millisecond) // a second Write would come now, if any
			if n := len(w.calls); n != 1 {
				t.Errorf("the stuck writer got %d Writes after it was abandoned, want 1 in all", n)
			}
		})
		t.Run("failing", func(t *testing.T) {
			var calls int
			res := run(t, r, code, func(r *job.Request) { r.Stdout = failWriter{&calls} })
			if res.Status != job.StatusOK || !strings.HasSuffix(res.Stdout, "19999\nend\n") {
				t.Fatalf("got %s, stdout ending %q", res.Status, res.Stdout[max(0, len(res.Stdout)-20):])
			}
			if calls != 1 {
				t.Errorf("a failing writer got %d Writes, want 1", calls)
			}
		})
		t.Run("output limit", func(t *testing.T) {
			w := newChunkWriter()
			res := run(t, r, "print('x' * 5000)", func(r *job.Request) { r.Stdout = w; r.Limits.OutputBytes = 1000 })
			if res.Status != job.StatusOutputLimit || w.String() != res.Stdout || len(res.Stdout) != 1000 {
				t.Errorf("got %s, streamed %d bytes, the Result keeps %d, want both 1000", res.Status, len(w.String()), len(res.Stdout))
			}
		})
	})
}

func TestSessionStdin(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
		steps := []struct {
			stdin io.Reader
			code  string
			want  string
		}{
			// input() reads ahead; what it read ahead belongs to this run only.
			{strings.NewReader("one\ntwo\n"), "input()", "'one'"},
			{strings.NewReader("three\n"), "import sys\nsys.stdin.read()", "'three\\n'"},
			{nil, "import sys\nsys.stdin.read()", "''"},
			{strings.NewReader("four\n"), "import sys\nsys.argv, input()", "(['<code>'], 'four')"},
		}
		for i, st := range steps {
			res, err := s.Run(context.Background(), &job.Request{Code: st.code, Limits: job.DefaultLimits(), Stdin: st.stdin})
			if err != nil || res.Status != job.StatusOK || deref(res.Result) != st.want {
				t.Fatalf("step %d: %v %+v, want %s", i, err, res, st.want)
			}
		}
		res, err := s.Run(context.Background(), &job.Request{Code: "import sys\nsys.argv", Limits: job.DefaultLimits(), Name: "n", Args: []string{"a"}})
		if err != nil || deref(res.Result) != "['n', 'a']" {
			t.Fatalf("argv in a session: %v %s", err, deref(res.Result))
		}
	})
}

func TestSessionInterrupt(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		r := sharedRunnerFor(t, "warm")
		tests := []struct {
			name string
			code string
		}{
			{"busy loop", "print('started')\nwhile True: pass"},
			{"sleep", "import time\nprint('started')\ntime.sleep(600)"},
			{"in a function", "def f():\n    while True: pass\nprint('started')\nf()"},
			{"in a library", "import numpy as np\nprint('started')\nwhile True: np.linalg.svd(np.ones((50, 50)))"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newTestSession(t, r, job.DefaultLimits())
				sessionRun(t, s, "x = 41")
				if err := s.Interrupt(); !errors.Is(err, ErrNotRunning) {
					t.Fatalf("Interrupt with nothing running: %v, want ErrNotRunning", err)
				}
				out := newChunkWriter()
				done := runAsync(t, s.Run, &job.Request{Code: tt.code, Limits: job.DefaultLimits(), Stdout: out})
				out.waitFor(t, "started")
				if err := s.Interrupt(); err != nil {
					t.Fatalf("Interrupt: %v", err)
				}
				res := <-done
				if res.Status != job.StatusError || res.Error == nil || res.Error.Name != "KeyboardInterrupt" {
					t.Fatalf("interrupted run: %s %+v", res.Status, res.Error)
				}
				if strings.Contains(res.Error.Traceback, "_on_interrupt") || !strings.Contains(res.Error.Traceback, `File "<code>"`) {
					t.Errorf("traceback shows the harness, or not the program: %q", res.Error.Traceback)
				}
				if res := sessionRun(t, s, "x + 1"); res.Status != job.StatusOK || deref(res.Result) != "42" {
					t.Fatalf("after the interrupt: %s %s %q, want 42", res.Status, deref(res.Result), res.Stderr)
				}
			})
		}
	})
}

// TestSessionInterruptIgnored checks that code that catches the interrupt still
// ends at its time limit. The program prints inside its try: the interrupt may come
// while print still writes.
func TestSessionInterruptIgnored(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
		out := newChunkWriter()
		l := job.DefaultLimits()
		l.Timeout = 3 * time.Second
		done := runAsync(t, s.Run, &job.Request{Code: "while True:\n    try:\n        print('started')\n        while True: pass\n    except KeyboardInterrupt:\n        print('caught')",
			Limits: l, Stdout: out})
		out.waitFor(t, "started")
		if err := s.Interrupt(); err != nil {
			t.Fatal(err)
		}
		out.waitFor(t, "caught")
		if res := <-done; res.Status != job.StatusTimeout {
			t.Fatalf("got %s, want timeout", res.Status)
		}
		if err := s.Interrupt(); !errors.Is(err, ErrSessionEnded) {
			t.Errorf("Interrupt of an ended session: %v, want ErrSessionEnded", err)
		}
	})
}

// TestSessionStraySIGINT checks that a SIGINT between runs (an interrupt that
// raced the end of its run) leaves the session's interpreter and state alone.
func TestSessionStraySIGINT(t *testing.T) {
	t.Run("warm", func(t *testing.T) {
		s := newTestSession(t, sharedRunnerFor(t, "warm"), job.DefaultLimits())
		sessionRun(t, s, "y = 7")
		// To the interpreter, and to the init that forked it.
		for range 3 {
			if err := s.main.p.signal(unix.SIGINT); err != nil {
				t.Fatal(err)
			}
			if err := unix.PidfdSendSignal(s.s.c.pidfd, unix.SIGINT, nil, 0); err != nil {
				t.Fatal(err)
			}
		}
		if res := sessionRun(t, s, "y"); res.Status != job.StatusOK || deref(res.Result) != "7" {
			t.Fatalf("after SIGINTs between runs: %s %s %q", res.Status, deref(res.Result), res.Stderr)
		}
	})
}

// TestReadStreamedReport: bundle lines go to outs, at most MaxOutputs of them and
// nothing that is not one; the last line, without its newline, is the report.
func TestReadStreamedReport(t *testing.T) {
	line := `{"output": {"data": {"text/plain": "\"x\""}, "main": false}}` + "\n"
	for _, tt := range []struct {
		name, in   string
		sent       int
		wantReport string
	}{
		{"bundles then the report", line + line + `{"ok": true}`, 2, `{"ok": true}`},
		{"no bundles", `{"ok": true}`, 0, `{"ok": true}`},
		{"lines that are no bundle", "garbage\n" + `{"output": null}` + "\n" + `{"other": 1}` + "\n" + line + `{"ok": true}`, 1, `{"ok": true}`},
		{"more bundles than a Result holds", strings.Repeat(line, harness.MaxOutputs+5) + `{"ok": true}`, harness.MaxOutputs, `{"ok": true}`},
		{"no report", line, 1, ""},
	} {
		outs := make(chan job.Output, harness.MaxOutputs)
		report := readStreamedReport(strings.NewReader(tt.in), outs)
		close(outs)
		if len(outs) != tt.sent || string(report) != tt.wantReport {
			t.Errorf("%s: sent %d, report %q; want %d, %q", tt.name, len(outs), report, tt.sent, tt.wantReport)
		}
	}
}
