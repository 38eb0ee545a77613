package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/repl"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/test/testenv"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

func requireSandbox(t *testing.T) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "sandboxes need root"
	} else if _, err := image.Find(storeDir(""), image.DefaultRecipe()); err != nil {
		reason = "no sandbox image: " + err.Error()
	}
	if reason == "" {
		return
	}
	if os.Getenv("CODEEXEC_REQUIRE_INTEGRATION") == "1" {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

func codeCall(src string) llmtest.Call {
	args, _ := json.Marshal(map[string]string{"code": src})
	return llmtest.Call{Name: agent.ToolName, Arguments: string(args)}
}

func TestChatInProcess(t *testing.T) {
	requireSandbox(t)
	up := llmtest.NewServer(t,
		llmtest.Calls(codeCall("fibs = [0, 1]\nwhile len(fibs) < 20:\n    fibs.append(fibs[-1] + fibs[-2])\nprint(fibs)")),
		llmtest.Text("Here are the first 20 Fibonacci numbers."),
		llmtest.Calls(codeCall("print(sum(fibs))")), // the variable survives between questions
		llmtest.Text("Their sum is 10945."),
	)
	t.Setenv("OPENAI_API_KEY", "sk-test")
	in := strings.NewReader("Calculate the first 20 Fibonacci numbers\nWhat is their sum?\nexit\n")
	var out bytes.Buffer
	err := runChat(context.Background(), chatFlags{model: "fake-model", baseURL: up.URL + "/v1", safety: "off", net: "none"}, in, repl.NewConsole(&out, &out), nil)
	if err != nil {
		t.Fatalf("runChat: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"(User): [running code]\n    fibs = [0, 1]",
		"[output]\n    [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]\n",
		"(Assistant): Here are the first 20 Fibonacci numbers.\n(User): ",
		"[output]\n    10945\n",
		"(Assistant): Their sum is 10945.\n(User): ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q:\n%s", want, got)
		}
	}
	// The second question reached the model with the first exchange as history.
	reqs := up.ChatRequests()
	if n := len(reqs[2].Messages); n < 5 {
		t.Errorf("second question sent with %d messages of history", n)
	}
}

// TestChatServer: with --server, the variables of one question are there for the
// next (the chat names the server's container in each request), and a figure is
// saved as a file whose path is shown.
func TestChatServer(t *testing.T) {
	requireSandbox(t)
	up, gw := testenv.Fake(t,
		llmtest.Calls(codeCall("import matplotlib.pyplot as plt\nfibs = [0, 1]\nwhile len(fibs) < 20:\n    fibs.append(fibs[-1] + fibs[-2])\nplt.plot(fibs)\nprint(fibs[-1])")),
		llmtest.Text("The 20th is 4181."),
		llmtest.Calls(codeCall("print(sum(fibs))")),
		llmtest.Text("Their sum is 10945."),
	)
	figures := t.TempDir()
	in := strings.NewReader("Calculate the first 20 Fibonacci numbers\nWhat is their sum?\nexit\n")
	var out bytes.Buffer
	f := chatFlags{model: "fake-model", server: gw.URL, safety: "off", net: "none", figures: figures}
	if err := runChat(context.Background(), f, in, repl.NewConsole(&out, &out), nil); err != nil {
		t.Fatalf("runChat: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"[output]\n    4181\n",
		"[figure saved to " + filepath.Join(figures, "figure-1.png") + "]\n",
		"[output]\n    10945\n",
		"(Assistant): Their sum is 10945.\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q:\n%s", want, got)
		}
	}
	if png, err := os.ReadFile(filepath.Join(figures, "figure-1.png")); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("figure file: %v, %.8q", err, png)
	}
	if hint := up.ChatRequests()[2].Messages[1].Text(); !strings.Contains(hint, "still there") {
		t.Errorf("the second question's sandbox was not the first's: the model was told %q", hint)
	}
}

// TestChatServerExpired: when the conversation's container has expired, the chat
// says so and asks again in a new one.
func TestChatServerExpired(t *testing.T) {
	requireSandbox(t)
	_, gw := testenv.Fake(t, llmtest.Calls(codeCall("x = 1\nprint(x)")), llmtest.Text("done"))
	var out bytes.Buffer
	con := repl.NewConsole(&out, &out)
	c := &serverChat{client: llm.New(llm.Provider{Name: "codeexec", BaseURL: gw.URL + "/v1", APIKey: "k", MaxRetries: -1}), model: "fake-model",
		container: "sess_00000000000000000000000000000000"}
	history := []llm.Message{{Role: "user", Content: llm.TextContent("x?")}}
	msg, err := c.turn(context.Background(), history, repl.NewPrinter(con, nil))
	if err != nil {
		t.Fatalf("turn: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "[the sandbox of this conversation expired") || msg.Text() != "done" {
		t.Errorf("transcript %q, answer %q", out.String(), msg.Text())
	}
	if !strings.HasPrefix(c.container, "sess_") || c.container == "sess_00000000000000000000000000000000" {
		t.Errorf("container after the turn %q, want the new one", c.container)
	}
}

// TestChatInterrupt: Ctrl-C stops the running code, not the chat: the next
// question is answered.
func TestChatInterrupt(t *testing.T) {
	requireSandbox(t)
	up := llmtest.NewServer(t,
		llmtest.Calls(codeCall("import time\nprint('sleeping', flush=True)\ntime.sleep(600)")),
		llmtest.Calls(codeCall("print(6 * 7)")),
		llmtest.Text("42"),
	)
	t.Setenv("OPENAI_API_KEY", "sk-test")
	in, typed := io.Pipe()
	defer typed.Close()
	out := &syncBuffer{}
	interrupts := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() {
		done <- runChat(context.Background(), chatFlags{model: "fake-model", baseURL: up.URL + "/v1", safety: "off", net: "none"},
			in, repl.NewConsole(out, out), interrupts)
	}()
	io.WriteString(typed, "sleep\n")
	out.waitFor(t, "[running code]")
	interrupts <- os.Interrupt
	out.waitFor(t, "[interrupted")
	io.WriteString(typed, "6*7?\n")
	out.waitFor(t, "(Assistant): 42")
	typed.Close()
	if err := <-done; err != nil {
		t.Fatalf("runChat: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "[output]\n    42\n") {
		t.Errorf("transcript:\n%s", out.String())
	}
}

// syncBuffer is output that codeexec writes from its goroutines while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the transcript holds s; a minute without it fails the test.
func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(b.String(), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the transcript never held %q:\n%s", s, b.String())
		}
	}
}
