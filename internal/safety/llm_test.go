package safety

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
)

// newTestLLM returns a judge on a fake upstream scripted with turns.
func newTestLLM(t *testing.T, turns ...llmtest.Turn) (*LLM, *llmtest.Server) {
	t.Helper()
	srv := llmtest.NewServer(t, turns...)
	return NewLLM(llm.New(srv.Provider()), "judge-model"), srv
}

// formatType returns the "type" of a request's response_format, or "" when absent.
func formatType(t *testing.T, req *llm.ChatRequest) string {
	t.Helper()
	if len(req.ResponseFormat) == 0 {
		return ""
	}
	var f struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(req.ResponseFormat, &f); err != nil {
		t.Fatalf("response_format %s: %v", req.ResponseFormat, err)
	}
	return f.Type
}

func TestLLMVerdicts(t *testing.T) {
	cases := []struct {
		name    string
		answer  llmtest.Turn
		want    Verdict
		wantErr string // substring of the error; "" means no error
		wantIs  error  // when set, the error must wrap it
	}{
		{"safe", llmtest.Text(`{"reason": "pure arithmetic", "safe": true}`), Verdict{Safe: true, Reason: "pure arithmetic"}, "", nil},
		{"unsafe with reason", llmtest.Text(`{"safe": false, "reason": "reads the user's SSH keys"}`), Verdict{Safe: false, Reason: "reads the user's SSH keys"}, "", nil},
		{"unsafe without reason", llmtest.Text(`{"safe": false}`), Verdict{Safe: false, Reason: genericUnsafe}, "", nil},
		{"unsafe with empty reason", llmtest.Text(`{"safe": false, "reason": "  "}`), Verdict{Safe: false, Reason: genericUnsafe}, "", nil},
		{"fenced json", llmtest.Text("Here is my verdict:\n```json\n{\"safe\": false, \"reason\": \"network access\"}\n```"), Verdict{Safe: false, Reason: "network access"}, "", nil},
		{"json after other braces", llmtest.Text(`The set {1, 2} is fine. {"safe": true, "reason": "math"}`), Verdict{Safe: true, Reason: "math"}, "", nil},
		{"upstream 500", llmtest.Error(500, "overloaded"), Verdict{}, "overloaded", nil},
		{"upstream 400 other", llmtest.Error(400, "context length exceeded"), Verdict{}, "context length", nil},
		{"invalid json content", llmtest.Text(`{"safe": tru`), Verdict{}, "no JSON verdict", nil},
		{"prose only", llmtest.Text("The code looks safe to me."), Verdict{}, "no JSON verdict", nil},
		{"safe as string", llmtest.Text(`{"safe": "yes", "reason": "ok"}`), Verdict{}, "not a boolean", nil},
		{"reason as number", llmtest.Text(`{"safe": false, "reason": 3}`), Verdict{}, "not a string", nil},
		{"empty answer", llmtest.Text(""), Verdict{}, "empty", nil},
		{"broken body", llmtest.InvalidJSON(), Verdict{}, "safety: llm judge", llm.ErrInvalidResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j, srv := newTestLLM(t, tc.answer)
			code := "print(1 + 1)"
			got, err := j.Check(context.Background(), code, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Check(%q) error %v, want %+v", code, err, tc.want)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Check(%q) = %+v, %v; want an error containing %q", code, got, err, tc.wantErr)
			case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
				t.Fatalf("Check(%q) error %v, want one wrapping %v", code, err, tc.wantIs)
			case got != tc.want:
				t.Errorf("Check(%q) = %+v, want %+v", code, got, tc.want)
			}
			reqs := srv.ChatRequests()
			if len(reqs) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(reqs))
			}
			checkJudgeRequest(t, reqs[0], code)
		})
	}
}

// checkJudgeRequest checks the first request the judge makes about code.
func checkJudgeRequest(t *testing.T, req *llm.ChatRequest, code string) {
	t.Helper()
	if req.Model != "judge-model" {
		t.Errorf("model %q, want judge-model", req.Model)
	}
	if req.Temperature == nil || *req.Temperature != 0 {
		t.Errorf("temperature %v, want 0", req.Temperature)
	}
	if len(req.Messages) != 2 || req.Messages[0].Role != "system" || req.Messages[1].Role != "user" {
		t.Fatalf("messages %+v, want system and user", req.Messages)
	}
	if !strings.Contains(req.Messages[0].Text(), "network access") {
		t.Errorf("system prompt does not state the policy: %q", req.Messages[0].Text())
	}
	if u := req.Messages[1].Text(); !strings.Contains(u, "```python\n"+code+"\n```") {
		t.Errorf("user message %q does not hold the code in a fence", u)
	}
	var f struct {
		Type       string `json:"type"`
		JSONSchema struct {
			Name   string `json:"name"`
			Strict bool   `json:"strict"`
			Schema struct {
				Required []string `json:"required"`
			} `json:"schema"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(req.ResponseFormat, &f); err != nil {
		t.Fatalf("response_format %s: %v", req.ResponseFormat, err)
	}
	if f.Type != "json_schema" || f.JSONSchema.Name != "verdict" || !f.JSONSchema.Strict || strings.Join(f.JSONSchema.Schema.Required, ",") != "reason,safe" {
		t.Errorf("response_format %s, want the strict verdict schema", req.ResponseFormat)
	}
}

// TestLLMNetwork: with network, the policy the model gets allows HTTP(S) to the
// allowed hosts instead of refusing all network access, and verdicts are cached
// apart from those without network.
func TestLLMNetwork(t *testing.T) {
	j, srv := newTestLLM(t, llmtest.Text(`{"safe": false, "reason": "network"}`), llmtest.Text(`{"safe": true, "reason": "allowed host"}`))
	ctx := context.Background()
	code := "import requests\nprint(requests.get('https://api.example.com/v1').status_code)"
	policy := &egress.Policy{Allow: []string{"api.example.com"}}
	if v, err := j.Check(ctx, code, nil); err != nil || v.Safe {
		t.Fatalf("without network: Check = %+v, %v; want the model's unsafe verdict", v, err)
	}
	if v, err := j.Check(ctx, code, policy); err != nil || !v.Safe {
		t.Fatalf("with network: Check = %+v, %v; want the model's safe verdict, not the cached one", v, err)
	}
	reqs := srv.ChatRequests()
	if len(reqs) != 2 {
		t.Fatalf("upstream got %d requests, want 2", len(reqs))
	}
	none, some := reqs[0].Messages[0].Text(), reqs[1].Messages[0].Text()
	if !strings.Contains(none, "network access of any kind") || strings.Contains(none, "api.example.com") {
		t.Errorf("policy without network: %q", none)
	}
	if strings.Contains(some, "network access of any kind") || !strings.Contains(some, "HTTP(S) requests to these hosts: api.example.com") {
		t.Errorf("policy with network: %q", some)
	}
}

func TestLLMFenceLongerThanCode(t *testing.T) {
	j, srv := newTestLLM(t, llmtest.Text(`{"safe": true, "reason": "ok"}`))
	code := "s = '````'\nprint(s)"
	if _, err := j.Check(context.Background(), code, nil); err != nil {
		t.Fatal(err)
	}
	u := srv.ChatRequests()[0].Messages[1].Text()
	if !strings.Contains(u, "`````python\n"+code+"\n`````") {
		t.Errorf("user message %q: the fence must be longer than the code's backtick runs", u)
	}
}

func TestLLMFormatFallback(t *testing.T) {
	j, srv := newTestLLM(t,
		llmtest.Error(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."),
		llmtest.Text(`{"safe": true, "reason": "math"}`),
		// A later check starts with json_object, which is then rejected too.
		llmtest.Error(400, "response_format json_object is not supported"),
		llmtest.Text("```json\n{\"safe\": false, \"reason\": \"spawns a shell\"}\n```"),
		// And the one after asks without response_format at once.
		llmtest.Text(`{"safe": true, "reason": "plot"}`),
	)
	v, err := j.Check(context.Background(), "print(1)", nil)
	if err != nil || v != (Verdict{Safe: true, Reason: "math"}) {
		t.Fatalf("Check after a json_schema 400 = %+v, %v; want safe \"math\"", v, err)
	}
	v, err = j.Check(context.Background(), "import os; os.system('sh')", nil)
	if err != nil || v != (Verdict{Safe: false, Reason: "spawns a shell"}) {
		t.Fatalf("Check after a json_object 400 = %+v, %v; want unsafe \"spawns a shell\"", v, err)
	}
	if _, err := j.Check(context.Background(), "import matplotlib", nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range srv.ChatRequests() {
		got = append(got, formatType(t, r))
	}
	want := []string{"json_schema", "json_object", "json_object", "", ""}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("response_format types %q, want %q", got, want)
	}
}

func TestLLMCache(t *testing.T) {
	j, srv := newTestLLM(t,
		llmtest.Text(`{"safe": false, "reason": "network"}`),
		llmtest.Error(500, "down"),
		llmtest.Text(`{"safe": true, "reason": "math"}`),
	)
	ctx := context.Background()
	first, err := j.Check(ctx, "import socket", nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := j.Check(ctx, "import socket", nil)
	if err != nil || again != first {
		t.Errorf("second Check = %+v, %v; want the cached %+v", again, err, first)
	}
	if n := len(srv.ChatRequests()); n != 1 {
		t.Errorf("upstream got %d requests for the same code twice, want 1", n)
	}
	// An error is not cached: the same code is asked again.
	if v, err := j.Check(ctx, "x = 1", nil); err == nil {
		t.Fatalf("Check with upstream 500 = %+v, nil; want an error", v)
	}
	if v, err := j.Check(ctx, "x = 1", nil); err != nil || !v.Safe {
		t.Fatalf("Check after an error = %+v, %v; want a fresh safe verdict", v, err)
	}
	if n := len(srv.ChatRequests()); n != 3 {
		t.Errorf("upstream got %d requests, want 3", n)
	}
	// The key includes the model: another model's judge is not answered from it.
	other := &LLM{client: j.client, model: "other-model", cache: j.cache}
	srv.Add(llmtest.Text(`{"safe": true, "reason": "fine"}`))
	if _, err := other.Check(ctx, "import socket", nil); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.ChatRequests()); n != 4 {
		t.Errorf("upstream got %d requests, want 4 (a different model must be asked)", n)
	}
}

func TestLLMTimeout(t *testing.T) {
	j, _ := newTestLLM(t, llmtest.Text(`{"safe": true, "reason": "late"}`).After(5*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	v, err := j.Check(ctx, "print(1)", nil)
	if err == nil {
		t.Fatalf("Check past its deadline = %+v, nil; want an error", v)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Check returned after %v; the deadline was 50ms", d)
	}
	if j.cache.len() != 0 {
		t.Errorf("a failed check was cached")
	}
}

func TestVerdictCacheEvicts(t *testing.T) {
	c := newVerdictCache(2)
	a, b, d := cacheKey("m", "", "a"), cacheKey("m", "", "b"), cacheKey("m", "", "d")
	c.put(a, Verdict{Safe: true})
	c.put(b, Verdict{Safe: true})
	c.get(a) // a is now more recent than b
	c.put(d, Verdict{Safe: true})
	if _, ok := c.get(b); ok {
		t.Errorf("least recently used entry b was kept")
	}
	for name, k := range map[string][32]byte{"a": a, "d": d} {
		if _, ok := c.get(k); !ok {
			t.Errorf("entry %s was evicted", name)
		}
	}
	if c.len() != 2 {
		t.Errorf("cache holds %d entries, want 2", c.len())
	}
	if cacheKey("ab", "", "c") == cacheKey("a", "", "bc") || cacheKey("m", "ab", "c") == cacheKey("m", "a", "bc") {
		t.Errorf("cacheKey: two different triples share a key")
	}
}
