package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/session"
)

// TestGatewayAdmissionErrors: the session manager's refusals of a gateway code run
// reach the client with the codes /v1/execute gives them.
func TestGatewayAdmissionErrors(t *testing.T) {
	for _, tt := range []struct {
		err     error
		status  int
		code    string
		message string // a part of it
	}{
		{session.ErrQueueFull, http.StatusTooManyRequests, "queue_full", "retry shortly"},
		{fmt.Errorf("%w: its limit is 2 running or waiting", session.ErrTenantBusy), http.StatusTooManyRequests, "tenant_concurrency_limit", "its limit is 2"},
		{fmt.Errorf("%w: %w", session.ErrWaitCancelled, context.Canceled), 499, "client_closed", "cancelled"},
	} {
		status, code, message := classifyError(fmt.Errorf("agent: run the code: %w", tt.err))
		if status != tt.status || code != tt.code || !strings.Contains(message, tt.message) {
			t.Errorf("classifyError(%v) = %d %s %q; want %d %s with %q", tt.err, status, code, message, tt.status, tt.code, tt.message)
		}
	}
}
