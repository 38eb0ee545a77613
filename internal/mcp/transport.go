package mcp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/codeexec/codeexec/internal/tenant"
	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// sessionIdle is how long an MCP session over HTTP lives without a request from its
// client. Hosts keep one open for as long as they run, and come back after a night;
// one that went away without closing its session costs only memory until then. The
// codeexec sessions it made expire on their own, sooner.
const sessionIdle = 24 * time.Hour

// Handler serves MCP over streamable HTTP, an MCP session per client session
// (Mcp-Session-Id). Every request must come through the API's authentication, which
// puts the caller's tenant in its context; with API keys, an MCP session then serves
// only the tenant whose key opened it (another gets 403), as its sessions do.
func (s *Server) Handler() http.Handler {
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s.srv }, &sdk.StreamableHTTPOptions{
		Logger:              quiet(s.log),
		MaxRequestBodyBytes: s.policy.MaxBodyBytes,
		SessionTimeout:      sessionIdle,
	})
	// The key was checked by the API already; the SDK's middleware only records its
	// tenant as the session's user, which the SDK then holds every request to.
	bound := auth.RequireBearerToken(func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
		return tokenInfo(ctx)
	}, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := tenant.FromContext(r.Context()); !ok {
			// Mounted without authentication: a bug of the server, never served.
			s.log.Error("mcp: a request without a tenant", "path", r.URL.Path)
			http.Error(w, "MCP is served without authentication", http.StatusInternalServerError)
			return
		}
		if s.stopped() {
			http.Error(w, "the server is shutting down", http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" && s.isDraining() {
			// A new MCP session would end with this replica in a moment.
			w.Header().Set("Retry-After", "2")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"draining: this replica is shutting down and opens no new MCP sessions; retry, and another replica will serve it","data":{"code":"draining"}}}`+"\n")
			return
		}
		if r.Header.Get("Authorization") == "" {
			// A server without API keys: every caller is the one tenant.
			h.ServeHTTP(w, r)
			return
		}
		bound.ServeHTTP(w, r)
	})
}

// Shutdown refuses new calls and closes every MCP session once its calls in progress
// have answered, which ends the streams its client holds open. It does not wait.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	for ss := range s.srv.Sessions() {
		go ss.Close()
	}
}

// ServeStdio serves one MCP session for owner over in and out (a host's pipes), until
// the client closes in or ctx is done; then the executions still running stop. The
// sessions it made are closed as it ends.
func (s *Server) ServeStdio(ctx context.Context, in io.ReadCloser, out io.WriteCloser, owner *tenant.Tenant) error {
	ss, err := s.srv.Connect(tenant.NewContext(ctx, owner),
		&sdk.IOTransport{Reader: in, Writer: out, MaxLineLength: int(s.policy.MaxBodyBytes)}, nil)
	if err != nil {
		return fmt.Errorf("mcp: connect over stdio: %w", err)
	}
	ended := make(chan error, 1)
	go func() { ended <- ss.Wait() }()
	select {
	case err = <-ended:
	case <-ctx.Done():
		s.Stop()
		_ = ss.Close()
		err = <-ended
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("mcp: stdio session: %w", err)
	}
	return nil
}
