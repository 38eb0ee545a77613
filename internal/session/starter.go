package session

import (
	"context"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// Starter makes sandbox sessions; *sandbox.Runner is one. The caller of NewSession
// must Close the session; a start that ctx cancels returns ctx's error and leaves
// nothing behind.
type Starter interface {
	NewSession(ctx context.Context, l job.Limits) (*sandbox.Session, error)
}
