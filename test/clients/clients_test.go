// Package clients_test drives the gateway with the clients people use: Go's
// openai-go, Node's openai package and curl, against the real server and sandbox
// and a scripted fake upstream.
package clients_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/test/testenv"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

// The xAI seed example: the first 20 Fibonacci numbers.
const (
	fibCode   = "def fibonacci(n):\n    fibs = [0, 1]\n    for i in range(2, n):\n        fibs.append(fibs[-1] + fibs[-2])\n    return fibs[:n]\n\nprint(fibonacci(20))"
	fibOutput = "[0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]\n"
	fibAnswer = "Here are the first 20 Fibonacci numbers."
)

// fibTurns scripts the model for n client requests: code, then the answer.
func fibTurns(n int) []llmtest.Turn {
	args, _ := json.Marshal(map[string]string{"code": fibCode})
	var turns []llmtest.Turn
	for i := 0; i < n; i++ {
		turns = append(turns, llmtest.Calls(llmtest.Call{Name: agent.ToolName, Arguments: string(args)}), llmtest.Text(fibAnswer))
	}
	return turns
}

type entry struct {
	Code   string `json:"code"`
	Output string `json:"output"`
}

func checkEntries(t *testing.T, who string, content string, entries []entry) {
	t.Helper()
	if content != fibAnswer || len(entries) != 1 || entries[0].Code != fibCode || entries[0].Output != fibOutput {
		t.Errorf("%s read content %q and code_execution entries %+v, want %q and one entry with the Fibonacci code and output", who, content, entries, fibAnswer)
	}
}

func TestGoOpenAI(t *testing.T) {
	_, gw := testenv.Fake(t, fibTurns(2)...)
	client := openai.NewClient(option.WithBaseURL(gw.URL+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{
		Model:    "fake-model",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Calculate the first 20 Fibonacci numbers")},
	}
	// The SDK has no type for the server-side tool: set it in the body directly.
	tool := option.WithJSONSet("tools", []any{map[string]string{"type": "code_execution"}})

	resp, err := client.Chat.Completions.New(context.Background(), params, tool)
	if err != nil {
		t.Fatal(err)
	}
	// Entries of a type the SDK does not know are read from the raw JSON.
	var msg struct {
		ToolCalls []struct {
			Type          string `json:"type"`
			CodeExecution entry  `json:"code_execution"`
		} `json:"tool_calls"`
	}
	if err := json.Unmarshal([]byte(resp.Choices[0].Message.RawJSON()), &msg); err != nil {
		t.Fatal(err)
	}
	var entries []entry
	for _, c := range msg.ToolCalls {
		if c.Type == "code_execution" {
			entries = append(entries, c.CodeExecution)
		}
	}
	checkEntries(t, "openai-go", resp.Choices[0].Message.Content, entries)

	stream := client.Chat.Completions.NewStreaming(context.Background(), params, tool)
	var content strings.Builder
	var streamed []entry
	for stream.Next() {
		chunk := stream.Current()
		var raw struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Index         int    `json:"index"`
						Type          string `json:"type"`
						CodeExecution entry  `json:"code_execution"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(chunk.RawJSON()), &raw); err != nil {
			t.Fatal(err)
		}
		for i, ch := range chunk.Choices {
			content.WriteString(ch.Delta.Content)
			for _, tc := range raw.Choices[i].Delta.ToolCalls {
				for len(streamed) <= tc.Index {
					streamed = append(streamed, entry{})
				}
				if streamed[tc.Index].Code == "" {
					streamed[tc.Index].Code = tc.CodeExecution.Code
				}
				streamed[tc.Index].Output += tc.CodeExecution.Output
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	checkEntries(t, "openai-go streaming", content.String(), streamed)
}

func TestNodeOpenAI(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Skip(t, "node is not installed")
	}
	dir, _ := filepath.Abs("node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil {
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		npm.Dir = dir
		if out, err := npm.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	_, gw := testenv.Fake(t, fibTurns(2)...)
	cmd := exec.Command("node", "chat.mjs", "Calculate the first 20 Fibonacci numbers")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CODEEXEC_URL="+gw.URL)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node chat.mjs: %v\n%s%s", err, out, stderr)
	}
	var got struct {
		Plain struct {
			Content string  `json:"content"`
			Entries []entry `json:"entries"`
			Finish  string  `json:"finish"`
		} `json:"plain"`
		Stream struct {
			Content string  `json:"content"`
			Entries []entry `json:"entries"`
		} `json:"stream"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node output is not JSON: %v: %s", err, out)
	}
	checkEntries(t, "node openai", got.Plain.Content, got.Plain.Entries)
	checkEntries(t, "node openai streaming", got.Stream.Content, got.Stream.Entries)
	if got.Plain.Finish != "stop" {
		t.Errorf("finish_reason %q", got.Plain.Finish)
	}
}

func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Skip(t, "curl is not installed")
	}
	_, gw := testenv.Fake(t, fibTurns(1)...)
	out, err := exec.Command("curl", "-sS", gw.URL+"/v1/chat/completions", "-d",
		`{"model": "fake-model", "messages": [{"role": "user", "content": "Calculate the first 20 Fibonacci numbers"}], "tools": [{"type": "code_execution"}]}`).Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	var r struct {
		Choices []struct {
			Message struct {
				Content   string `json:"content"`
				ToolCalls []struct {
					CodeExecution entry `json:"code_execution"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Choices) != 1 {
		t.Fatalf("curl got %v: %s", err, out)
	}
	var entries []entry
	for _, c := range r.Choices[0].Message.ToolCalls {
		entries = append(entries, c.CodeExecution)
	}
	checkEntries(t, "curl", r.Choices[0].Message.Content, entries)
}
