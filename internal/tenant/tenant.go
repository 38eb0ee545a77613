// Package tenant names who owns the server's stateful resources — the holder of an
// API key — and carries that owner in a request's context.
package tenant

import "context"

// Tenant is the owner of sessions and whatever else outlives one request: every key
// of a tenant sees the same resources, and no other key sees them at all.
type Tenant struct {
	// Name identifies the tenant in the server's logs; it is never a key.
	Name string
	// MaxSessions caps the tenant's live sessions; 0: only the server's cap.
	MaxSessions int
	// MaxConcurrent caps the tenant's executions in flight (running or waiting their
	// turn); 0: only the server's queue.
	MaxConcurrent int
}

// Anonymous is the one tenant of a server without API keys: every caller is it.
var Anonymous = &Tenant{Name: AnonymousName}

// AnonymousName is Anonymous's name, reserved: no keys file may name a tenant so.
const AnonymousName = "anonymous"

type ctxKey struct{}

// NewContext returns ctx carrying t, the tenant a request acts for.
func NewContext(ctx context.Context, t *Tenant) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the tenant NewContext put in ctx, and false when there is
// none — a request that did not pass through authentication, which must own nothing.
func FromContext(ctx context.Context) (*Tenant, bool) {
	t, ok := ctx.Value(ctxKey{}).(*Tenant)
	return t, ok && t != nil
}
