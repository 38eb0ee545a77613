package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	os.Exit(m.Run())
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
	err := runChat(context.Background(), chatFlags{model: "fake-model", baseURL: up.URL + "/v1", safety: "off"}, in, &out)
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
