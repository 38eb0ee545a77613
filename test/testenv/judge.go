package testenv

import (
	"context"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/safety"
)

// GatedJudge approves code only when the test says so, reporting each program it
// holds on Held: while it holds one, the code has not run. Closing Release approves
// every program from then on.
type GatedJudge struct {
	Held    chan string
	Release chan struct{}
}

// NewGatedJudge returns a GatedJudge that holds one program before the test reads it.
func NewGatedJudge() GatedJudge {
	return GatedJudge{Held: make(chan string, 1), Release: make(chan struct{})}
}

// Check holds code until Release is closed or ctx ends.
func (g GatedJudge) Check(ctx context.Context, code string, _ *egress.Policy) (safety.Verdict, error) {
	g.Held <- code
	select {
	case <-g.Release:
		return safety.Verdict{Safe: true, Reason: "released by the test"}, nil
	case <-ctx.Done():
		return safety.Verdict{}, ctx.Err()
	}
}
