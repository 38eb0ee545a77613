package session

import (
	"context"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// Starter makes sandbox sessions. The caller of NewSession must Close the session;
// a start that ctx cancels returns ctx's error and leaves nothing behind.
type Starter interface {
	NewSession(ctx context.Context, l job.Limits) (*sandbox.Session, error)
}

// RunnerStarter is a *sandbox.Runner as a Starter (and, through the embedded
// Runner, an executor of one-shot runs). The Runner's NewSession takes no context,
// so a start cannot be cancelled once begun: ctx is checked before it, and Create
// ends a session whose ctx ended while it started.
type RunnerStarter struct{ *sandbox.Runner }

// NewSession starts a session with limits l unless ctx has ended.
func (r RunnerStarter) NewSession(ctx context.Context, l job.Limits) (*sandbox.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.Runner.NewSession(l)
}
