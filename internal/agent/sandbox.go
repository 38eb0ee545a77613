package agent

import (
	"context"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// sessionSandbox is a Sandbox backed by a warm sandbox session.
type sessionSandbox struct {
	s       *sandbox.Session
	limits  sandbox.Limits
	network *egress.Policy
}

// Sessions returns a NewSandbox function that gives each completion its own sandbox
// session from r, with limits l, whose code may reach the hosts of network (none if
// it is nil) through the egress proxy.
func Sessions(r *sandbox.Runner, l sandbox.Limits, network *egress.Policy) func(ctx context.Context) (Sandbox, error) {
	return func(ctx context.Context) (Sandbox, error) {
		s, err := r.NewSession(l)
		if err != nil {
			return nil, err
		}
		return &sessionSandbox{s: s, limits: l, network: network}, nil
	}
}

func (s *sessionSandbox) Run(ctx context.Context, code string) (*sandbox.Result, error) {
	return s.s.Run(ctx, &sandbox.Request{Code: code, Limits: s.limits, Network: s.network})
}

func (s *sessionSandbox) WriteFile(path string, data []byte) error { return s.s.WriteFile(path, data) }

func (s *sessionSandbox) Close() { s.s.Close() }
