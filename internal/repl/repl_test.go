package repl

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/llm"
)

func TestRun(t *testing.T) {
	var seen [][]llm.Message
	turn := func(ctx context.Context, history []llm.Message, p *Printer) (llm.Message, error) {
		seen = append(seen, history)
		q := history[len(history)-1].Text()
		if q == "fail" {
			return llm.Message{}, errors.New("upstream down")
		}
		p.Content("thinking")
		p.CodeStarted(0, "c1", "print(1)\nprint(2)")
		p.CodeFinished(0, "c1", &llm.CodeExecution{Code: "print(1)", Output: "1\n2\n", Status: "ok"})
		p.Content("answer to " + q)
		return llm.Message{Role: "assistant", Content: llm.TextContent("answer to " + q)}, nil
	}
	var out bytes.Buffer
	if err := Run(context.Background(), strings.NewReader("one\n\nfail\ntwo\nexit\nnever\n"), &out, turn); err != nil {
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
