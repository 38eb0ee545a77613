package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/job"
)

// TestStorageLimitAnswers checks that files or sandboxes that do not fit are a 507
// storage_limit wherever the error surfaces, with the sandbox's explanation.
func TestStorageLimitAnswers(t *testing.T) {
	full := fmt.Errorf("%w: input files need 30 MiB, and the sandbox has 11 MiB of its 16 MiB memory limit free", job.ErrStorageLimit)
	cases := []struct {
		name  string
		write func(w http.ResponseWriter)
	}{
		{"upload", func(w http.ResponseWriter) { writeFileError(w, "big.bin", full) }},
		{"session create", func(w http.ResponseWriter) { writeSessionError(w, "", full) }},
		{"gateway attachment", func(w http.ResponseWriter) {
			writeAgentError(w, fmt.Errorf("%w: file %q: %w", agent.ErrBadRequest, "data.csv", full))
		}},
		{"execute", func(w http.ResponseWriter) { writeRequestError(w, storageLimitError(full)) }},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		c.write(rec)
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if rec.Code != http.StatusInsufficientStorage || body.Error.Code != "storage_limit" || !strings.Contains(body.Error.Message, "16 MiB memory limit") {
			t.Errorf("%s: %d %+v, want 507 storage_limit with the sandbox's explanation", c.name, rec.Code, body.Error)
		}
	}
}

// TestInternalErrorHidesDetails checks that a failure of the server's own answers
// what failed but not the error, which goes to the log.
func TestInternalErrorHidesDetails(t *testing.T) {
	var log bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&log, nil))}
	secret := errors.New("open /proc/4242/root/work: cgroup /sys/fs/cgroup/memory/codeexec/x: boom")
	h := s.logRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		internalError(w, "sandbox_error", "the sandbox failed", secret)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/execute", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "sandbox_error") {
		t.Errorf("answer %d %s, want 500 sandbox_error", rec.Code, rec.Body)
	}
	for _, p := range []string{"/proc/", "/sys/fs/cgroup", "boom"} {
		if strings.Contains(rec.Body.String(), p) {
			t.Errorf("the answer shows %q: %s", p, rec.Body)
		}
	}
	if !strings.Contains(log.String(), "boom") {
		t.Errorf("the request log lacks the error: %s", log.String())
	}
}
