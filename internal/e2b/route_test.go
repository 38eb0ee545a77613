package e2b

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/session"
)

// TestLostAndDrainingReplies: a sandbox whose replica is gone is E2B's 404 (the
// SDKs' "not found"), in Connect's shape for envd's RPCs; a create while draining
// is 503 with Retry-After.
func TestLostAndDrainingReplies(t *testing.T) {
	tests := []struct {
		name, port, path string
		code             any // E2B's is the status, Connect's a name
	}{
		{"control plane", "", "/sandboxes/sess_r2_ab", 404.0},
		{"interpreter", portInterpreter, "/execute", 404.0},
		{"envd files", portEnvd, "/files", 404.0},
		{"envd rpc", portEnvd, "/process.Process/Start", "not_found"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", tt.path, nil)
		if tt.port != "" {
			r.Header.Set("E2b-Sandbox-Port", tt.port)
		}
		w := httptest.NewRecorder()
		writeLost(w, r, "gone")
		var body struct {
			Code    any    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 404 || body.Code != tt.code || body.Message != "session_lost: gone" {
			t.Errorf("%s: %d %s, want 404 with code %v and message %q", tt.name, w.Code, w.Body, tt.code, "session_lost: gone")
		}
	}
	w := httptest.NewRecorder()
	writeSessionError(w, session.ErrDraining)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"message":"draining: `) {
		t.Errorf("a create while draining: %d %v %s, want 503 draining with Retry-After", w.Code, w.Header(), w.Body)
	}
}
