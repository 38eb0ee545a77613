package api

import (
	"encoding/json"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/session"
)

func TestExecuteJavaScript(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	tests := []struct {
		name, body string
		status     job.Status
		exit       int
		stdout     string
		result     string
		errName    string
	}{
		{"console.log", `{"language": "javascript", "code": "console.log(1)"}`, job.StatusOK, 0, "1\n", "", ""},
		{"alias js", `{"language": "js", "code": "[1, 2].length"}`, job.StatusOK, 0, "", "2", ""},
		{"top-level await", `{"language": "javascript", "code": "await Promise.resolve('done')"}`, job.StatusOK, 0, "", "'done'", ""},
		{"throw", `{"language": "javascript", "code": "throw new SyntaxError('bad')"}`, job.StatusError, 1, "", "", "SyntaxError"},
		{"timeout", `{"language": "javascript", "code": "for (;;) {}", "timeout_ms": 1000}`, job.StatusTimeout, 124, "", "", "TimeoutError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := result(t, do(t, "POST", hs.URL+"/v1/execute", tt.body))
			got := ""
			if res.Result != nil {
				got = *res.Result
			}
			if res.Status != tt.status || res.ExitCode != tt.exit || res.Stdout != tt.stdout || got != tt.result {
				t.Fatalf("%s: got %s exit %d stdout %q result %q stderr %q, want %s exit %d stdout %q result %q", tt.body, res.Status, res.ExitCode, res.Stdout, got, res.Stderr, tt.status, tt.exit, tt.stdout, tt.result)
			}
			if (res.Error == nil) != (tt.errName == "") || (res.Error != nil && res.Error.Name != tt.errName) {
				t.Errorf("error = %+v, want %q", res.Error, tt.errName)
			}
		})
	}
}

func TestJavaScriptSession(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	r := do(t, "POST", hs.URL+"/v1/sessions", `{"language": "js"}`)
	var created CreateSessionReply
	if r.status != 201 || json.Unmarshal(r.body, &created) != nil {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	base := hs.URL + "/v1/sessions/" + created.ID
	var info session.Info
	if r := do(t, "GET", base, ""); json.Unmarshal(r.body, &info) != nil || info.Language != job.LangJavaScript {
		t.Errorf("GET %s: %d %s, want language javascript", base, r.status, r.body)
	}
	steps := []struct{ code, result string }{
		{"const xs = [1, 2, 3]", ""},
		{"const total = xs.reduce((a, b) => a + b)", ""},
		{"total * 2", "12"},
	}
	for _, st := range steps {
		body, _ := json.Marshal(map[string]string{"code": st.code})
		res := result(t, do(t, "POST", base+"/execute", string(body)))
		got := ""
		if res.Result != nil {
			got = *res.Result
		}
		if res.Status != job.StatusOK || got != st.result {
			t.Fatalf("%q: got %s result %q stderr %q, want ok %q", st.code, res.Status, got, res.Stderr, st.result)
		}
	}
	apiErr(t, do(t, "POST", base+"/execute", `{"code": "echo 1", "language": "bash"}`), 400, "language_mismatch")
	res := result(t, do(t, "POST", base+"/execute", `{"code": "xs.length", "language": "js"}`))
	if res.Status != job.StatusOK || res.Result == nil || *res.Result != "3" {
		t.Errorf("xs.length with language js: got %s result %v", res.Status, res.Result)
	}
}
