package safety

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
)

// TestCombinedStaticUnsafe: code the static check refuses never reaches the model.
func TestCombinedStaticUnsafe(t *testing.T) {
	r := testRunner(t)
	srv := llmtest.NewServer(t) // no turns: any request fails the test
	j, err := New("llm", r, llm.New(srv.Provider()), "judge-model")
	if err != nil {
		t.Fatal(err)
	}
	code := "import os\nos.system('cat ~/.ssh/id_rsa')"
	v, err := j.Check(context.Background(), code, nil)
	if err != nil || v.Safe || !strings.Contains(v.Reason, "process spawning: os.system") {
		t.Errorf("Check(%q) = %+v, %v; want unsafe naming os.system", code, v, err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("upstream got %d requests, want 0", n)
	}
}

// TestCombinedStaticSafe: code the static check passes is judged by the model.
func TestCombinedStaticSafe(t *testing.T) {
	r := testRunner(t)
	srv := llmtest.NewServer(t, llmtest.Text(`{"safe": false, "reason": "lists the user's directory"}`))
	j, err := New("llm", r, llm.New(srv.Provider()), "judge-model")
	if err != nil {
		t.Fatal(err)
	}
	code := "import os\nprint(os.listdir('.'))"
	v, err := j.Check(context.Background(), code, nil)
	want := Verdict{Safe: false, Reason: "lists the user's directory"}
	if err != nil || v != want {
		t.Errorf("Check(%q) = %+v, %v; want the model's %+v", code, v, err, want)
	}
	if n := len(srv.ChatRequests()); n != 1 {
		t.Errorf("upstream got %d requests, want 1", n)
	}
}

// fakeJudge answers with v and err and counts its calls.
type fakeJudge struct {
	v     Verdict
	err   error
	calls int
}

func (f *fakeJudge) Check(ctx context.Context, code string, network *egress.Policy) (Verdict, error) {
	f.calls++
	return f.v, f.err
}

func TestCombinedOrder(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name     string
		static   fakeJudge
		model    fakeJudge
		want     Verdict
		wantErr  error
		llmCalls int
	}{
		{"static error fails closed", fakeJudge{err: boom}, fakeJudge{v: Verdict{Safe: true}}, Verdict{}, boom, 0},
		{"static unsafe is final", fakeJudge{v: Verdict{Reason: "network access"}}, fakeJudge{v: Verdict{Safe: true}}, Verdict{Reason: "network access"}, nil, 0},
		{"static safe asks the model", fakeJudge{v: Verdict{Safe: true, Reason: "no findings"}}, fakeJudge{v: Verdict{Reason: "probing"}}, Verdict{Reason: "probing"}, nil, 1},
		{"model error fails closed", fakeJudge{v: Verdict{Safe: true}}, fakeJudge{err: boom}, Verdict{}, boom, 1},
	}
	for _, tc := range cases {
		c := &Combined{Static: &tc.static, LLM: &tc.model}
		v, err := c.Check(context.Background(), "x", nil)
		if !errors.Is(err, tc.wantErr) || v != tc.want || tc.model.calls != tc.llmCalls {
			t.Errorf("%s: Check = %+v, %v with %d model calls; want %+v, %v with %d",
				tc.name, v, err, tc.model.calls, tc.want, tc.wantErr, tc.llmCalls)
		}
	}
}

func TestNew(t *testing.T) {
	srv := llmtest.NewServer(t)
	up := llm.New(srv.Provider())
	r := &fakeRunner{}
	cases := []struct {
		mode     string
		r        Runner
		upstream *llm.Client
		model    string
		want     string // the judge's type, or "<nil>"
		wantErr  string
	}{
		{"off", nil, nil, "", "<nil>", ""},
		{"static", r, nil, "", "*safety.Static", ""},
		{"llm", r, up, "judge-model", "*safety.Combined", ""},
		{"static", nil, nil, "", "", "needs a sandbox runner"},
		{"llm", nil, up, "judge-model", "", "needs a sandbox runner"},
		{"llm", r, nil, "judge-model", "", "needs an upstream"},
		{"llm", r, up, "", "", "needs a judge model"},
		{"bogus", r, up, "judge-model", "", `mode "bogus" is not one of off, static, llm`},
		{"", r, up, "judge-model", "", `mode "" is not one of off, static, llm`},
	}
	for _, tc := range cases {
		j, err := New(tc.mode, tc.r, tc.upstream, tc.model)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New(%q) = %T, %v; want error containing %q", tc.mode, j, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%q): %v", tc.mode, err)
			continue
		}
		if got := fmt.Sprintf("%T", j); got != tc.want {
			t.Errorf("New(%q) = %s, want %s", tc.mode, got, tc.want)
		}
	}
}
