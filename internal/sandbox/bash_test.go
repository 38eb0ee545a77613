package sandbox

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

func runBash(t *testing.T, r *Runner, code string, l job.Limits) *job.Result {
	t.Helper()
	res, err := r.Run(context.Background(), &job.Request{Code: code, Language: job.LangBash, Limits: l})
	if err != nil {
		t.Fatalf("Run(%q): %v", code, err)
	}
	return res
}

func TestBash(t *testing.T) {
	short := job.DefaultLimits()
	short.Timeout = time.Second
	small := job.DefaultLimits()
	small.OutputBytes = 1000
	bothPaths(t, func(t *testing.T, r *Runner) {
		tests := []struct {
			name, code     string
			limits         job.Limits
			stdin          string
			status         job.Status
			exit           int
			stdout, stderr string
			file           string
		}{
			{name: "echo", code: "echo 1", status: job.StatusOK, stdout: "1\n"},
			{name: "exit 3", code: "echo bad >&2\nexit 3", status: job.StatusError, exit: 3, stderr: "bad\n"},
			{name: "argv0", code: `echo "$0"`, status: job.StatusOK, stdout: "bash\n"},
			{name: "line numbers", code: "true\nnosuchcommand", status: job.StatusError, exit: 127, stderr: "line 2: nosuchcommand: command not found"},
			{name: "timeout", code: "sleep 100", limits: short, status: job.StatusTimeout, exit: 124},
			{name: "file", code: "echo hi > out.txt", status: job.StatusOK, file: "out.txt"},
			{name: "sigpipe default", code: "yes | head -1", status: job.StatusOK, stdout: "y\n"},
			{name: "background job killed", code: "sleep 100 & echo started", status: job.StatusOK, stdout: "started\n"},
			{name: "stdin", code: "read -r x; echo \"got $x\"", stdin: "hi\n", status: job.StatusOK, stdout: "got hi\n"},
			{name: "output limit", code: "yes", limits: small, status: job.StatusOutputLimit, exit: 137},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				l := tt.limits
				if l == (job.Limits{}) {
					l = job.DefaultLimits()
				}
				req := &job.Request{Code: tt.code, Language: job.LangBash, Limits: l}
				if tt.stdin != "" {
					req.Stdin = strings.NewReader(tt.stdin)
				}
				res, err := r.Run(context.Background(), req)
				if err != nil {
					t.Fatalf("Run(%q): %v", tt.name, err)
				}
				if res.Status != tt.status || res.ExitCode != tt.exit {
					t.Fatalf("got %s exit %d (stderr %q, error %+v), want %s exit %d", res.Status, res.ExitCode, res.Stderr, res.Error, tt.status, tt.exit)
				}
				if (tt.status == job.StatusOK || tt.status == job.StatusError) && res.Error != nil {
					t.Errorf("error = %+v, want none: a shell's status is its answer", res.Error)
				}
				if res.Result != nil {
					t.Errorf("result = %q, want null", *res.Result)
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

// TestBashOneShotStatus: a warm one-shot run's exit status is bash's wait status, as
// the child reports it. The program has no descriptor to the server: a "done"
// message it writes on fd 3 (the channel's number) goes nowhere, and /proc/1 does
// not give it the child's (not dumpable).
func TestBashOneShotStatus(t *testing.T) {
	r := sharedRunnerFor(t, "warm")
	tests := []struct {
		name, code string
		exit       int
	}{
		{"forged done", `printf '{"op": "done", "exit_code": 0}' >&3; exit 7`, 7},
		{"no descriptor beyond stdio", `ls /proc/self/fd | wc -l; exit 5`, 5},
		{"pid 1's descriptors", `ls /proc/1/fd 2>/dev/null | wc -l; exit 6`, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runBash(t, r, tt.code, job.DefaultLimits())
			if res.Status != job.StatusError || res.ExitCode != tt.exit {
				t.Fatalf("got %s exit %d (stdout %q, stderr %q), want error exit %d", res.Status, res.ExitCode, res.Stdout, res.Stderr, tt.exit)
			}
			// ls's own descriptor for /proc/self/fd is the fourth.
			want := map[string]string{"no descriptor beyond stdio": "4", "pid 1's descriptors": "0"}[tt.name]
			if want != "" && strings.TrimSpace(res.Stdout) != want {
				t.Errorf("descriptors = %q, want %s", res.Stdout, want)
			}
		})
	}
}

func TestBashSessionState(t *testing.T) {
	r := sharedRunnerFor(t, "warm")
	s := newTestSession(t, r, job.DefaultLimits())
	steps := []struct {
		code, stdout string
		exit         int
	}{
		{"cd /tmp && export X=1 && Y=2", "", 0},
		{`echo "$PWD $X"`, "/tmp 1\n", 0},
		{"mkdir -p /tmp/d && cd /tmp/d; export X=two; exit 4", "", 4}, // a failed run's state is kept too
		{`pwd; echo "$X"; unset X`, "/tmp/d\ntwo\n", 0},
		{`echo "${X-unset}"`, "unset\n", 0},
	}
	for i, st := range steps {
		res, err := s.Run(context.Background(), &job.Request{Code: st.code, Language: job.LangBash})
		if err != nil {
			t.Fatalf("step %d %q: %v", i, st.code, err)
		}
		if res.Stdout != st.stdout || res.ExitCode != st.exit {
			t.Fatalf("step %d %q: got %s exit %d stdout %q stderr %q, want exit %d stdout %q", i, st.code, res.Status, res.ExitCode, res.Stdout, res.Stderr, st.exit, st.stdout)
		}
	}
}

func TestUnknownLanguage(t *testing.T) {
	req := &job.Request{Code: "1", Language: "cobol", Limits: job.DefaultLimits()}
	err := req.Validate()
	if err == nil || !strings.Contains(err.Error(), "python, bash") {
		t.Fatalf("Validate() = %v, want an error naming python, bash", err)
	}
}
