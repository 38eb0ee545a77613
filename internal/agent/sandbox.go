package agent

import (
	"context"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// RunnerSandbox is a Sandbox on warm sessions of a Runner, for a caller that has no
// session manager (codeexec chat, tests): it starts a session at first use, and a
// new one after a limit stopped the last. The server's gateway uses its session
// manager instead, so that its sandboxes count against the session cap. The zero
// value is not usable: set Runner and Limits. It serves one completion at a time.
// The caller must call Close.
type RunnerSandbox struct {
	Runner *sandbox.Runner
	// Limits bound the session; every run of the code has them.
	Limits job.Limits
	// Network is what the code may reach through the egress proxy; nil: nothing.
	Network *egress.Policy

	s *sandbox.Session
}

// Start starts a session unless one is alive.
func (r *RunnerSandbox) Start(ctx context.Context) error {
	if r.Started() {
		return nil
	}
	r.Close()
	s, err := r.Runner.NewSession(ctx, r.Limits)
	if err != nil {
		return err
	}
	r.s = s
	return nil
}

// Started reports whether a session is alive.
func (r *RunnerSandbox) Started() bool { return r.s != nil && r.s.Alive() }

// ID is "": a runner's sessions have no name a client could come back with.
func (r *RunnerSandbox) ID() string { return "" }

// Run runs code in the session, starting one if needed.
func (r *RunnerSandbox) Run(ctx context.Context, code string) (*job.Result, error) {
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r.s.Run(ctx, &job.Request{Code: code, Limits: r.Limits, Network: r.Network})
}

// WriteFile puts a file in the session's work dir, starting one if needed.
func (r *RunnerSandbox) WriteFile(path string, data []byte) error {
	if err := r.Start(context.Background()); err != nil {
		return err
	}
	return r.s.WriteFile(path, data)
}

// Close ends the session, if any; the next use starts another.
func (r *RunnerSandbox) Close() {
	if r.s != nil {
		r.s.Close()
		r.s = nil
	}
}
