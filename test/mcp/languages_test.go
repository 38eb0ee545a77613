package mcp_test

import (
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

// execute_javascript and run_command run once or in a session of their language,
// as execute_python does; a session refuses another language's tool.
func TestLanguageTools(t *testing.T) {
	s := newServer(t)
	cs := connect(t, s.url, keyA)
	defer cs.Close()
	var out struct {
		job.Result
		Session *struct {
			ID    string `json:"id"`
			Ended bool   `json:"ended"`
		} `json:"session"`
	}
	once := []struct {
		tool, code, stdout, result string
	}{
		{"execute_javascript", "console.log('js'); [1, 2, 3].reduce((a, b) => a + b)", "js\n", "6"},
		{"execute_javascript", "await Promise.resolve(7)", "", "7"},
		{"run_command", "echo sh; echo $((6 * 7))", "sh\n42\n", ""},
	}
	for _, c := range once {
		res := callTool(t, cs, c.tool, map[string]any{"code": c.code})
		out.Result = job.Result{}
		structured(t, res, &out)
		got := ""
		if out.Result.Result != nil {
			got = *out.Result.Result
		}
		if res.IsError || out.Stdout != c.stdout || got != c.result {
			t.Errorf("%s %q: isError %v stdout %q result %q, want %q %q: %s", c.tool, c.code, res.IsError, out.Stdout, got, c.stdout, c.result, resultText(res))
		}
	}

	var made struct {
		SessionID string `json:"session_id"`
	}
	structured(t, callTool(t, cs, "create_session", map[string]any{"language": "javascript"}), &made)
	id := made.SessionID
	callTool(t, cs, "execute_javascript", map[string]any{"code": "const seen = ['a']", "session_id": id})
	res := callTool(t, cs, "execute_javascript", map[string]any{"code": "seen.push('b'); seen.join('')", "session_id": id})
	out.Result = job.Result{}
	structured(t, res, &out)
	if res.IsError || out.Result.Result == nil || *out.Result.Result != "'ab'" {
		t.Errorf("the JavaScript session did not keep seen: %s", resultText(res))
	}
	for _, tool := range []string{"execute_python", "run_command"} {
		res := callTool(t, cs, tool, map[string]any{"code": "1", "session_id": id})
		if text := resultText(res); !res.IsError || !strings.Contains(text, "(language_mismatch)") {
			t.Errorf("%s in a javascript session: isError %v %q, want language_mismatch", tool, res.IsError, text)
		}
	}
	// The schema's enum refuses it first.
	res = callTool(t, cs, "create_session", map[string]any{"language": "cobol"})
	if text := resultText(res); !res.IsError || !strings.Contains(text, "language") {
		t.Errorf("create_session in cobol: isError %v %q, want an error about the language", res.IsError, text)
	}
}
