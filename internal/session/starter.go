package session

import (
	"context"
	"fmt"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// Starter makes sandbox sessions; *sandbox.Runner is one. The caller of NewSession
// must Close the session; a start that ctx cancels returns ctx's error and leaves
// nothing behind.
type Starter interface {
	NewSession(ctx context.Context, l job.Limits) (*sandbox.Session, error)
}

// OptionsStarter is a Starter that takes a session's options (*sandbox.Runner is
// one), for CreateWith.
type OptionsStarter interface {
	NewSessionWith(ctx context.Context, l job.Limits, o sandbox.SessionOptions) (*sandbox.Session, error)
}

// withOptions starts st's sessions with o.
type withOptions struct {
	st Starter
	o  sandbox.SessionOptions
}

func (w withOptions) NewSession(ctx context.Context, l job.Limits) (*sandbox.Session, error) {
	os, ok := w.st.(OptionsStarter)
	if !ok {
		return nil, fmt.Errorf("session: %T starts no sessions with options", w.st)
	}
	return os.NewSessionWith(ctx, l, w.o)
}
