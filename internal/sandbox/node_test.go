package sandbox

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// jsPaths runs f on the cold and warm paths and on a warm runner with a Node pool;
// before each run there, wait for the pool (waitNodePool). The pool's runner is the
// subtest's own, closed with it: its waiting Node sandboxes are processes of the
// sandbox user, which other tests count.
func jsPaths(t *testing.T, f func(t *testing.T, r *Runner)) {
	for _, p := range []string{"cold", "warm", "node-pool"} {
		t.Run(p, func(t *testing.T) {
			if p == "node-pool" {
				f(t, newTestRunnerFor(t, p))
				return
			}
			f(t, sharedRunnerFor(t, p))
		})
	}
}

// waitNodePool waits until r's Node pool is full, so that the next execution that
// can takes a pooled sandbox.
func waitNodePool(t *testing.T, r *Runner) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for r.NodePoolSize() < r.cfg.NodePool {
		if time.Now().After(deadline) {
			t.Fatalf("the Node pool holds %d sandboxes after a minute, want %d", r.NodePoolSize(), r.cfg.NodePool)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runJS(t *testing.T, r *Runner, code string, l job.Limits) *job.Result {
	t.Helper()
	waitNodePool(t, r)
	res, err := r.Run(context.Background(), &job.Request{Code: code, Language: job.LangJavaScript, Name: "prog.js", Args: []string{"a"}, Limits: l})
	if err != nil {
		t.Fatalf("Run(%q): %v", code, err)
	}
	return res
}

// TestJavaScript runs JavaScript programs on both paths: the Result is the one a
// Python program gets, the last expression's value as result and a thrown error as
// error.
func TestJavaScript(t *testing.T) {
	short := job.DefaultLimits()
	short.Timeout = time.Second
	small := job.DefaultLimits()
	small.MemoryBytes = 128 << 20
	flood := job.DefaultLimits()
	flood.OutputBytes = 1 << 16
	jsPaths(t, func(t *testing.T, r *Runner) {
		// Node's parent: none on the cold path (Node is the sandbox's init), the warm
		// child that spawned it (pid 1), or in a pooled sandbox the context process.
		parent := map[string]string{"cold": "0", "warm": "1", "node-pool": "true"}[t.Name()[len("TestJavaScript/"):]]
		tests := []struct {
			name, code     string
			limits         job.Limits
			status         job.Status
			exit           int
			result         string // "" for none
			errName        string
			stdout, stderr string
			file           string
		}{
			{name: "console.log", code: "console.log(1)", status: job.StatusOK, stdout: "1\n"},
			{name: "where", code: "process.ppid > 1 ? 'true' : String(process.ppid)", status: job.StatusOK, result: "'" + parent + "'"},
			{name: "no stdin", code: "require('fs').readFileSync(0, 'utf8').length", status: job.StatusOK, result: "0"},
			{name: "env", code: "process.env.NODE_OPTIONS + ' ' + ('CODEEXEC_MAX_RESULT' in process.env)", status: job.StatusOK, result: "'--max-old-space-size=384 false'"},
			{name: "last expression", code: "const a = [1, 2]\na.map(x => x * 2)", status: job.StatusOK, result: "[ 2, 4 ]"},
			{name: "no result after a declaration", code: "1 + 1\nlet b = 3", status: job.StatusOK},
			{name: "string result", code: "'hi'", status: job.StatusOK, result: "'hi'"},
			{name: "top-level await", code: "const v = await new Promise(r => setTimeout(() => r(41), 10))\nv + 1", status: job.StatusOK, result: "42"},
			{name: "static import", code: "import os from 'os'\nimport { join as j } from 'node:path'\nj('a', typeof os.cpus)", status: job.StatusOK, result: "'a/function'"},
			{name: "argv", code: "process.argv.slice(1)", status: job.StatusOK, result: "[ 'prog.js', 'a' ]"},
			{name: "throw", code: "function f() { throw new RangeError('too far') }\nf()", status: job.StatusError, exit: 1, errName: "RangeError", stderr: "<code>:1"},
			{name: "syntax error", code: "let = ;", status: job.StatusError, exit: 1, errName: "SyntaxError"},
			{name: "rejection", code: "await Promise.reject(new TypeError('no'))", status: job.StatusError, exit: 1, errName: "TypeError"},
			{name: "process.exit", code: "console.log('x'); process.exit(3)", status: job.StatusError, exit: 3, errName: "Exit", stdout: "x\n"},
			{name: "timers run before the end", code: "void setTimeout(() => console.log('later'), 20)", status: job.StatusOK, stdout: "later\n"},
			{name: "file", code: "require('fs').writeFileSync('out.txt', 'hi')", status: job.StatusOK, file: "out.txt"},
			{name: "timeout", code: "while (true) {}", limits: short, status: job.StatusTimeout, exit: 124},
			{name: "memory", code: "const a = []; while (true) a.push(new Array(1e6).fill(1.5))", limits: small, status: job.StatusMemoryLimit, exit: 137},
			{name: "output flood", code: "const s = 'x'.repeat(1 << 16); while (true) process.stdout.write(s)", limits: flood, status: job.StatusOutputLimit, exit: 137},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				l := tt.limits
				if l == (job.Limits{}) {
					l = job.DefaultLimits()
				}
				res := runJS(t, r, tt.code, l)
				if res.Status != tt.status || res.ExitCode != tt.exit {
					t.Fatalf("got %s exit %d (stdout %q stderr %q, error %+v), want %s exit %d", res.Status, res.ExitCode, res.Stdout, res.Stderr, res.Error, tt.status, tt.exit)
				}
				got := ""
				if res.Result != nil {
					got = *res.Result
				}
				if got != tt.result {
					t.Errorf("result = %q, want %q", got, tt.result)
				}
				if tt.errName != "" && (res.Error == nil || res.Error.Name != tt.errName) {
					t.Errorf("error = %+v, want %s", res.Error, tt.errName)
				}
				if tt.status == job.StatusOK && res.Error != nil {
					t.Errorf("error = %+v, want none", res.Error)
				}
				if tt.stdout != "" && res.Stdout != tt.stdout {
					t.Errorf("stdout = %q, want %q", res.Stdout, tt.stdout)
				}
				if !strings.Contains(res.Stderr, tt.stderr) {
					t.Errorf("stderr = %q, want it to contain %q", res.Stderr, tt.stderr)
				}
				if tt.file != "" && (len(res.Files) != 1 || res.Files[0].Path != tt.file) {
					t.Errorf("files = %+v, want %s", res.Files, tt.file)
				}
			})
		}
	})
}

// TestJavaScriptSession: a session's Node keeps its globals between runs, top-level
// let, const, class, function and import included, which a later run may declare again.
func TestJavaScriptSession(t *testing.T) {
	r := sharedRunnerFor(t, "warm")
	s := newTestSession(t, r, job.DefaultLimits())
	steps := []struct {
		code, stdout, result, errName string
		exit                          int
	}{
		{code: "let x = 1; const y = 2; var z = 3; function f() { return x + y + z }; class K { get v() { return 7 } }", result: ""},
		{code: "console.log(f()); new K().v", stdout: "6\n", result: "7"},
		{code: "let x = await Promise.resolve(10); x + y", result: "12"},
		{code: "x", result: "10"},
		{code: "async function g() { return 5 }\nconst w = await g()\nw", result: "5"},
		{code: "g.name + w", result: "'g5'"},
		{code: "null.boom", errName: "TypeError", exit: 1},
		{code: "process.exit(2)", errName: "Exit", exit: 2},
		{code: "console.error('still'); x", result: "10"},
		{code: "import * as path from 'node:path'", result: ""},
		{code: "path.basename('/q/r')", result: "'r'"},
	}
	for i, st := range steps {
		res, err := s.Run(context.Background(), &job.Request{Code: st.code, Language: job.LangJavaScript})
		if err != nil {
			t.Fatalf("step %d %q: %v", i, st.code, err)
		}
		got := ""
		if res.Result != nil {
			got = *res.Result
		}
		if res.Stdout != st.stdout || got != st.result || res.ExitCode != st.exit {
			t.Fatalf("step %d %q: got %s exit %d result %q stdout %q stderr %q error %+v, want exit %d result %q stdout %q", i, st.code, res.Status, res.ExitCode, got, res.Stdout, res.Stderr, res.Error, st.exit, st.result, st.stdout)
		}
		if st.errName != "" && (res.Error == nil || res.Error.Name != st.errName) {
			t.Fatalf("step %d %q: error = %+v, want %s", i, st.code, res.Error, st.errName)
		}
	}
}

// TestBashLargeProgram: a program over the kernel's 128 KiB limit of one argument
// runs on both paths, in a session too.
func TestBashLargeProgram(t *testing.T) {
	code := "x=1\n" + strings.Repeat("# "+strings.Repeat("pad ", 30)+"\n", 2000) + `echo "big $x $0 $1"`
	if len(code) <= 128<<10 {
		t.Fatalf("program is %d bytes, want more than 128 KiB", len(code))
	}
	bothPaths(t, func(t *testing.T, r *Runner) {
		res, err := r.Run(context.Background(), &job.Request{Code: code, Language: job.LangBash, Name: "big.sh", Args: []string{"one"}, Limits: job.DefaultLimits()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != job.StatusOK || res.Stdout != "big 1 big.sh one\n" {
			t.Fatalf("got %s exit %d stdout %q stderr %q", res.Status, res.ExitCode, res.Stdout, res.Stderr)
		}
	})
	r := sharedRunnerFor(t, "warm")
	s := newTestSession(t, r, job.DefaultLimits())
	for i, want := range []string{"big 1 bash \n", "big 1 bash \n"} {
		res, err := s.Run(context.Background(), &job.Request{Code: code + "; export x=2", Language: job.LangBash})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != job.StatusOK || res.Stdout != want {
			t.Fatalf("session run %d: got %s exit %d stdout %q stderr %q", i, res.Status, res.ExitCode, res.Stdout, res.Stderr)
		}
	}
}

// TestJavaScriptSessionInterrupt: an interrupt stops a JavaScript session's busy
// program as Ctrl-C would, and the session's Node, with its globals, lives on.
func TestJavaScriptSessionInterrupt(t *testing.T) {
	r := sharedRunnerFor(t, "warm")
	s := newTestSession(t, r, job.DefaultLimits())
	if res, err := s.Run(context.Background(), &job.Request{Code: "const kept = 41", Language: job.LangJavaScript}); err != nil || res.Status != job.StatusOK {
		t.Fatalf("first run: %v %+v", err, res)
	}
	done := make(chan *job.Result, 1)
	go func() {
		res, err := s.Run(context.Background(), &job.Request{Code: "console.log('busy'); for (;;) {}", Language: job.LangJavaScript})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	var res *job.Result
	deadline := time.After(20 * time.Second)
	for res == nil {
		select {
		case res = <-done:
		case <-deadline:
			t.Fatal("the interrupt did not stop the program")
		case <-time.After(200 * time.Millisecond):
			_ = s.Interrupt() // until the program runs
		}
	}
	if res.Status != job.StatusError || res.Error == nil || !strings.Contains(res.Error.Message, "SIGINT") || res.Stdout != "busy\n" {
		t.Fatalf("interrupted run: %s %+v stdout %q", res.Status, res.Error, res.Stdout)
	}
	res, err := s.Run(context.Background(), &job.Request{Code: "kept + 1", Language: job.LangJavaScript})
	if err != nil || res.Status != job.StatusOK || res.Result == nil || *res.Result != "42" {
		t.Fatalf("after the interrupt: %v %+v", err, res)
	}
}

// TestNodeSessionFromPool: a JavaScript session with the pool's limits starts in a
// pooled sandbox, its context and Node already there, and behaves as any session:
// its runs keep their globals (none of them drains the sandbox as a one-shot run).
func TestNodeSessionFromPool(t *testing.T) {
	r := newTestRunnerFor(t, "node-pool")
	waitNodePool(t, r)
	s, err := r.NewNodeSession(context.Background(), job.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if procs := s.Processes(); len(procs) != 1 || procs[0].Kind != KindContext || !procs[0].Running {
		t.Fatalf("a session from the pool has processes %+v, want its running context", procs)
	}
	if s.Limits() != job.DefaultLimits() {
		t.Errorf("limits %+v, want the asked %+v", s.Limits(), job.DefaultLimits())
	}
	for i, st := range []struct{ code, result string }{
		{"let n = 1; setTimeout(() => n++, 0); n", "1"},
		{"await new Promise((r) => setTimeout(r, 10)); n", "2"},
	} {
		res, err := s.Run(context.Background(), &job.Request{Code: st.code, Language: job.LangJavaScript})
		if err != nil || res.Status != job.StatusOK || res.Result == nil || *res.Result != st.result {
			t.Fatalf("run %d %q: %v %+v", i, st.code, err, res)
		}
	}
	other := job.DefaultLimits()
	other.MemoryBytes = 256 << 20
	s2, err := r.NewNodeSession(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if procs := s2.Processes(); len(procs) != 0 {
		t.Errorf("a session with other limits has processes %+v, want a new session's none", procs)
	}
}
