// Package testenv starts what the end-to-end tests drive: the real sandbox runner and
// a codeexec API server whose upstream model is a scripted fake. Test binaries that
// use it must call sandbox.MaybeInit first in TestMain.
package testenv

import (
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/llm/llmtest"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
	"github.com/codeexec/codeexec/internal/session"
)

// Close releases the shared runner; call it from TestMain after m.Run.
func Close() { sandboxtest.Close() }

// Skip skips the test for reason, or fails it under CODEEXEC_REQUIRE_INTEGRATION=1.
func Skip(t testing.TB, reason string) { sandboxtest.Skip(t, reason) }

// Runner returns the process's warm sandbox runner, made on first use.
func Runner(t testing.TB) *sandbox.Runner { return sandboxtest.Shared(t) }

// Gateway starts a codeexec API server whose only upstream is p (usually a fake's
// Provider), with judge j (nil: none). It is closed when the test ends.
func Gateway(t testing.TB, p llm.Provider, j agent.Judge) *httptest.Server {
	t.Helper()
	r := Runner(t)
	router, err := llm.NewRouter(p.Name, p)
	if err != nil {
		t.Fatal(err)
	}
	sessions := session.NewManager(session.Config{Max: 10, IdleTTL: time.Minute, MaxIdleTTL: time.Hour, MaxLifetime: time.Hour}, r)
	t.Cleanup(sessions.Close)
	srv := api.New(api.DefaultConfig(), r, sessions, func() error { return nil }, slog.New(slog.DiscardHandler))
	srv.SetGateway(&api.Gateway{Upstreams: router, Agent: &agent.Agent{Judge: j, MaxSteps: 5}})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

// Fake is a fake upstream scripted with turns, and a gateway in front of it.
func Fake(t testing.TB, turns ...llmtest.Turn) (*llmtest.Server, *httptest.Server) {
	t.Helper()
	up := llmtest.NewServer(t, turns...)
	return up, Gateway(t, up.Provider(), nil)
}
