package repl

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/llm"
)

// transcript is a console's output, which a test can wait on.
type transcript struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced at each write
}

func newTranscript() *transcript { return &transcript{changed: make(chan struct{})} }

func (t *transcript) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	close(t.changed)
	t.changed = make(chan struct{})
	return t.buf.Write(p)
}

func (t *transcript) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// waitFor waits until the transcript holds s n times.
func (t *transcript) waitFor(tb testing.TB, s string, n int) {
	tb.Helper()
	for {
		t.mu.Lock()
		got, changed := strings.Count(t.buf.String(), s), t.changed
		t.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-time.After(time.Minute):
			tb.Fatalf("transcript never held %q %d times:\n%s", s, n, t.String())
		}
	}
}

func TestRun(t *testing.T) {
	var seen [][]llm.Message
	turn := func(ctx context.Context, history []llm.Message, p *Printer) (llm.Message, error) {
		seen = append(seen, history)
		q := history[len(history)-1].Text()
		if q == "fail" {
			return llm.Message{}, errors.New("upstream down")
		}
		p.Content("thinking")
		p.CodeStarted(0, "c1", &llm.CodeExecution{Code: "print(1)\nprint(2)", Status: llm.StatusRunning})
		p.CodeFinished(0, "c1", &llm.CodeExecution{Code: "print(1)", Output: "1\n2\n", Status: "ok"})
		p.Content("answer to " + q)
		return llm.Message{Role: "assistant", Content: llm.TextContent("answer to " + q)}, nil
	}
	out := newTranscript()
	c := &Chat{In: strings.NewReader("one\n\nfail\ntwo\nexit\nnever\n"), Console: NewConsole(out, out), Turn: turn}
	if err := c.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "(User): (Assistant): thinking\n[running code]\n    print(1)\n    print(2)\n[output]\n    1\n    2\nanswer to one\n" +
		"(User): (User): (Assistant): \nerror: upstream down\n" +
		"(User): (Assistant): thinking\n[running code]\n    print(1)\n    print(2)\n[output]\n    1\n    2\nanswer to two\n(User): "
	if out.String() != want {
		t.Errorf("transcript:\n%q\nwant:\n%q", out.String(), want)
	}
	// system + one, then system + one + reply + fail, then the failed turn is dropped.
	if len(seen) != 3 || len(seen[2]) != 4 || seen[2][3].Text() != "two" || seen[2][2].Text() != "answer to one" {
		t.Errorf("histories %v", seen)
	}
}

// TestInterrupt: Ctrl-C during a turn stops that turn (its context is cancelled)
// and the chat goes on; at the prompt it says how to leave.
func TestInterrupt(t *testing.T) {
	started := make(chan struct{}, 1)
	var stopped error
	var seen [][]llm.Message
	turn := func(ctx context.Context, history []llm.Message, p *Printer) (llm.Message, error) {
		seen = append(seen, history)
		q := history[len(history)-1].Text()
		if q == "slow" {
			p.CodeStarted(0, "c1", &llm.CodeExecution{Code: "import time; time.sleep(600)", Status: llm.StatusRunning})
			started <- struct{}{}
			<-ctx.Done() // a running cell, until it is stopped
			stopped = ctx.Err()
			return llm.Message{}, ctx.Err()
		}
		p.Content("answer to " + q)
		return llm.Message{Role: "assistant", Content: llm.TextContent("answer to " + q)}, nil
	}
	in, typed := io.Pipe()
	defer typed.Close()
	interrupts := make(chan os.Signal, 1)
	out := newTranscript()
	c := &Chat{In: in, Console: NewConsole(out, out), Turn: turn, Interrupts: interrupts}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()

	io.WriteString(typed, "slow\n")
	<-started
	interrupts <- syscall.SIGINT
	out.waitFor(t, "[interrupted", 1)
	out.waitFor(t, "(User): ", 2)
	interrupts <- syscall.SIGINT // at the prompt
	out.waitFor(t, `(to leave, type "exit" or press Ctrl-D)`, 1)
	io.WriteString(typed, "fast\n")
	out.waitFor(t, "answer to fast", 1)
	typed.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !errors.Is(stopped, context.Canceled) {
		t.Errorf("the slow turn's context ended with %v, want context.Canceled", stopped)
	}
	want := "(User): [running code]\n    import time; time.sleep(600)\n[interrupted: the question is left out of the conversation]\n" +
		"(User): \n(to leave, type \"exit\" or press Ctrl-D)\n(User): (Assistant): answer to fast\n(User): \n"
	if out.String() != want {
		t.Errorf("transcript:\n%q\nwant:\n%q", out.String(), want)
	}
	if len(seen) != 2 || len(seen[1]) != 2 || seen[1][1].Text() != "fast" {
		t.Errorf("the interrupted question stayed in the history: %v", seen)
	}
}

// TestConsoleLog: a log line never lands inside a prompt or an answer's line; a
// short line (a prompt) is shown again after it, a long one goes on below it.
func TestConsoleLog(t *testing.T) {
	for _, tc := range []struct {
		name, before, after, want string
	}{
		{"at the prompt", "(User): ", "question", "(User): \nlevel=WARN msg=retrying\n(User): question"},
		{"mid-answer", "(Assistant): The answer", " is 42.\n", "(Assistant): The answer\nlevel=WARN msg=retrying\n(Assistant): The answer is 42.\n"},
		{"at a line's start", "[output]\n", "(User): ", "[output]\nlevel=WARN msg=retrying\n(User): "},
		{"long line", "(Assistant): " + strings.Repeat("word ", 20), "end\n", "(Assistant): " + strings.Repeat("word ", 20) + "\nlevel=WARN msg=retrying\nend\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			c := NewConsole(&out, &out)
			log := slog.New(slog.NewTextHandler(c.LogWriter(), &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				}}))
			c.Write([]byte(tc.before))
			log.Warn("retrying")
			c.Write([]byte(tc.after))
			if out.String() != tc.want {
				t.Errorf("got %q, want %q", out.String(), tc.want)
			}
		})
	}
}

// TestFigures: figures are saved in order, never over an existing file, and the
// printer shows where.
func TestFigures(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "figure-1.png")
	if err := os.WriteFile(mine, []byte("the user's own"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p := NewPrinter(NewConsole(&out, &out), &Figures{Dir: dir})
	png := []byte("\x89PNG fake")
	p.CodeFinished(0, "c1", &llm.CodeExecution{Code: "plot()", Status: "ok", Images: []llm.CodeImage{
		{Name: "figure-1.png", MimeType: "image/png", Data: png},
		{Name: "figure-2.png", MimeType: "image/png", Data: png},
	}})
	want := "[output]\n    (no output)\n[figure saved to " + filepath.Join(dir, "figure-2.png") + "]\n[figure saved to " + filepath.Join(dir, "figure-3.png") + "]\n"
	if out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	for name, data := range map[string]string{"figure-1.png": "the user's own", "figure-2.png": string(png), "figure-3.png": string(png)} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != data {
			t.Errorf("%s holds %q (%v), want %q", name, got, err, data)
		}
	}
}
