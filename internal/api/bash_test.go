package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/session"
)

func TestExecuteBash(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	tests := []struct {
		name, body string
		status     job.Status
		exit       int
		stdout     string
		file       string
	}{
		{"echo", `{"language": "bash", "code": "echo 1"}`, job.StatusOK, 0, "1\n", ""},
		{"exit 3", `{"language": "bash", "code": "exit 3"}`, job.StatusError, 3, "", ""},
		{"timeout", `{"language": "bash", "code": "sleep 100", "timeout_ms": 1000}`, job.StatusTimeout, 124, "", ""},
		{"file", `{"language": "bash", "code": "echo hi > out.txt"}`, job.StatusOK, 0, "", "out.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := result(t, do(t, "POST", hs.URL+"/v1/execute", tt.body))
			if res.Status != tt.status || res.ExitCode != tt.exit || res.Stdout != tt.stdout || res.Result != nil {
				t.Fatalf("%s: got %s exit %d stdout %q result %v stderr %q, want %s exit %d stdout %q", tt.body, res.Status, res.ExitCode, res.Stdout, res.Result, res.Stderr, tt.status, tt.exit, tt.stdout)
			}
			if tt.status != job.StatusTimeout && res.Error != nil {
				t.Errorf("error = %+v, want null", res.Error)
			}
			if tt.file != "" && (len(res.Files) != 1 || res.Files[0].Path != tt.file) {
				t.Errorf("files = %+v, want %s", res.Files, tt.file)
			}
		})
	}
}

func TestUnsupportedLanguageNamesValid(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	for _, path := range []string{"/v1/execute", "/v1/sessions"} {
		r := do(t, "POST", hs.URL+path, `{"code": "1", "language": "cobol"}`)
		if path == "/v1/sessions" {
			r = do(t, "POST", hs.URL+path, `{"language": "cobol"}`)
		}
		apiErr(t, r, 400, "unsupported_language")
		if !strings.Contains(string(r.body), `python`) || !strings.Contains(string(r.body), `bash`) {
			t.Errorf("%s: %s does not name python and bash", path, r.body)
		}
	}
}

func TestBashSession(t *testing.T) {
	hs, _ := testServer(t, nil, session.Config{})
	r := do(t, "POST", hs.URL+"/v1/sessions", `{"language": "bash"}`)
	var created CreateSessionReply
	if r.status != 201 || json.Unmarshal(r.body, &created) != nil {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	base := hs.URL + "/v1/sessions/" + created.ID
	var info session.Info
	if r := do(t, "GET", base, ""); json.Unmarshal(r.body, &info) != nil || info.Language != "bash" {
		t.Errorf("GET %s: %d %s, want language bash", base, r.status, r.body)
	}
	steps := []struct{ code, stdout string }{
		{"cd /tmp", ""},
		{"export X=1", ""},
		{`echo "$PWD $X"`, "/tmp 1\n"},
	}
	for _, st := range steps {
		body, _ := json.Marshal(map[string]string{"code": st.code})
		res := result(t, do(t, "POST", base+"/execute", string(body)))
		if res.Status != job.StatusOK || res.Stdout != st.stdout {
			t.Fatalf("%q: got %s stdout %q stderr %q, want ok %q", st.code, res.Status, res.Stdout, res.Stderr, st.stdout)
		}
	}
	apiErr(t, do(t, "POST", base+"/execute", `{"code": "1", "language": "python"}`), 400, "language_mismatch")
	res := result(t, do(t, "POST", base+"/execute", `{"code": "exit 3", "language": "bash"}`))
	if res.Status != job.StatusError || res.ExitCode != 3 {
		t.Errorf("exit 3: got %s exit %d", res.Status, res.ExitCode)
	}
}
