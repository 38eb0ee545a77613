package api

// Tests of the HTTP niceties that need no sandbox: 405 with Allow, JSON errors in
// the document's terms, and per-tenant caps on executions.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/tenant"
)

// TestMethodNotAllowed: a known path with the wrong method is 405 with Allow,
// in the API's error shape; HEAD is served wherever GET is.
func TestMethodNotAllowed(t *testing.T) {
	hs := contractServer(t, nil, nil, nil)
	tests := []struct{ method, path, allow string }{
		{"GET", "/v1/execute", "POST"},
		{"PUT", "/v1/execute", "POST"},
		{"DELETE", "/v1/execute", "POST"},
		{"PATCH", "/v1/sessions", "GET, HEAD, POST"},
		{"PUT", "/v1/sessions/sess_a", "DELETE, GET, HEAD"},
		{"POST", "/v1/sessions/sess_a", "DELETE, GET, HEAD"},
		{"GET", "/v1/sessions/sess_a/execute", "POST"},
		// As the mux itself would: PUT and DELETE are redirected to ".../files/".
		{"POST", "/v1/sessions/sess_a/files", "DELETE, GET, HEAD, PUT"},
		{"POST", "/v1/sessions/sess_a/files/a/b.txt", "DELETE, GET, HEAD, PUT"},
		{"GET", "/v1/chat/completions", "POST"},
		{"POST", "/v1/models", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
		{"DELETE", "/metrics", "GET, HEAD"},
		{"OPTIONS", "/readyz", "GET, HEAD"},
	}
	for _, tt := range tests {
		req := tt.method + " " + tt.path
		r := do(t, tt.method, hs.URL+tt.path, "")
		wantError(t, req, r, http.StatusMethodNotAllowed, "method_not_allowed")
		if got := r.header.Get("Allow"); got != tt.allow {
			t.Errorf("%s: Allow %q, want %q", req, got, tt.allow)
		}
	}
	// Keys do not change the answer: the route's methods are no secret.
	hs = contractServer(t, nil, nil, func(c *Config) { c.APIKeys = []string{"k"} })
	r := do(t, "GET", hs.URL+"/v1/execute", "")
	wantError(t, "GET /v1/execute with keys and none sent", r, http.StatusMethodNotAllowed, "method_not_allowed")
	if r := do(t, "HEAD", hs.URL+"/healthz", ""); r.status != http.StatusOK {
		t.Errorf("HEAD /healthz: %d, want 200", r.status)
	}
}

// TestJSONErrorMessages: a body that does not decode is described in JSON's terms,
// with the field's JSON name.
func TestJSONErrorMessages(t *testing.T) {
	hs := contractServer(t, nil, nil, nil)
	tests := []struct{ path, body, want string }{
		{"/v1/execute", `{"code": "1", "timeout_ms": "5"}`, "request body: timeout_ms: expected an integer, got a string"},
		{"/v1/execute", `{"code": "1", "timeout_ms": 1.5}`, "request body: timeout_ms: expected an integer within -9223372036854775808..9223372036854775807, got 1.5"},
		{"/v1/execute", `{"code": "1", "memory_mb": true}`, "request body: memory_mb: expected an integer, got a boolean"},
		{"/v1/execute", `{"code": 1}`, "request body: code: expected a string, got a number"},
		{"/v1/execute", `{"code": "1", "files": {}}`, "request body: files: expected an array, got an object"},
		{"/v1/execute", `{"code": "1", "files": [{"path": 3}]}`, "request body: files.path: expected a string, got a number"},
		{"/v1/execute", `[1]`, "request body: expected an object, got an array"},
		{"/v1/execute", `"print(1)"`, "request body: expected an object, got a string"},
		{"/v1/execute", `{"code": "1", "cod": 2}`, `request body: unknown field "cod"; the fields are code, language, session_id, timeout_ms, memory_mb, network, files (path, content_base64), stream, image`},
		{"/v1/execute", `{"code": `, "request body: not valid JSON: it ends before its last value does"},
		{"/v1/execute", `{"code": "1"}x`, "request body has data after the JSON object"},
		{"/v1/execute", `{"code" "1"}`, "request body: not valid JSON: invalid character '\"' after object key (at byte 9)"},
		{"/v1/sessions", `{"ttl": 5}`, `request body: unknown field "ttl"; the fields are language, image, ttl_s, memory_mb, timeout_ms`},
		{"/v1/sessions", `{"ttl_s": "60"}`, "request body: ttl_s: expected an integer, got a string"},
	}
	for _, tt := range tests {
		r := do(t, "POST", hs.URL+tt.path, tt.body)
		req := fmt.Sprintf("POST %s %s", tt.path, tt.body)
		wantError(t, req, r, http.StatusBadRequest, "invalid_json")
		if msg := errorMessage(t, r); msg != tt.want {
			t.Errorf("%s: message\n  %q\nwant\n  %q", req, msg, tt.want)
		}
	}
}

// errorMessage returns the message of an error reply.
func errorMessage(t testing.TB, r response) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	return e.Error.Message
}

// TestTenantConcurrency: a tenant with max_concurrent 1 gets 429
// tenant_concurrency_limit for a second execution while its first runs, and other
// tenants are not held back by it.
func TestTenantConcurrency(t *testing.T) {
	g := &gatedExecutor{started: make(chan string, 4), release: make(chan struct{})}
	one := &tenant.Tenant{Name: "one", MaxConcurrent: 1}
	hs := contractServer(t, g, nil, func(c *Config) {
		c.Keys = []tenant.Key{{Secret: "key-one", Tenant: one}, {Secret: "key-one-b", Tenant: one}, {Secret: "key-two", Tenant: &tenant.Tenant{Name: "two"}}}
	})
	url := hs.URL + "/v1/execute"
	results := make(chan response, 4)
	post := func(key, code string) {
		results <- do(t, "POST", url, `{"code": "`+code+`"}`, "Authorization", "Bearer "+key)
	}
	go post("key-one", "a")
	<-g.started
	// The tenant's other key shares its cap.
	for _, key := range []string{"key-one", "key-one-b"} {
		r := do(t, "POST", url, `{"code": "b"}`, "Authorization", "Bearer "+key)
		wantError(t, "a second execution of tenant one with "+key, r, http.StatusTooManyRequests, "tenant_concurrency_limit")
		if r.header.Get("Retry-After") == "" {
			t.Errorf("429 tenant_concurrency_limit without Retry-After")
		}
		if msg := errorMessage(t, r); !strings.Contains(msg, "limit of 1 executions") {
			t.Errorf("message %q does not name the limit", msg)
		}
	}
	go post("key-two", "c")
	if got := <-g.started; got != "c" {
		t.Fatalf("tenant two's execution: started %q", got)
	}
	g.release <- struct{}{}
	g.release <- struct{}{}
	for range 2 {
		if r := <-results; r.status != http.StatusOK {
			t.Errorf("execution: %d %s", r.status, r.body)
		}
	}
	// Its execution over, the tenant may run again.
	go post("key-one-b", "d")
	if got := <-g.started; got != "d" {
		t.Fatalf("tenant one after its first ended: started %q", got)
	}
	g.release <- struct{}{}
	if r := <-results; r.status != http.StatusOK {
		t.Errorf("tenant one's second execution: %d %s", r.status, r.body)
	}
}
