package session

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/codeexec/codeexec/internal/tenant"
)

// queue admits at most running executions at once and lets at most waiting more wait;
// beyond that callers are refused at once rather than piling up.
type queue struct {
	slots   chan struct{}
	limit   int64 // running + waiting
	current atomic.Int64
}

func newQueue(running, waiting int) *queue {
	return &queue{slots: make(chan struct{}, running), limit: int64(running + waiting)}
}

// acquire waits for a turn. The caller must call release once done.
func (q *queue) acquire(ctx context.Context) (release func(), err error) {
	if q.current.Add(1) > q.limit {
		q.current.Add(-1)
		return nil, ErrQueueFull
	}
	select {
	case q.slots <- struct{}{}:
		return func() {
			<-q.slots
			q.current.Add(-1)
		}, nil
	case <-ctx.Done():
		q.current.Add(-1)
		return nil, ctx.Err()
	}
}

// depth is the number of executions running or waiting.
func (q *queue) depth() int64 { return q.current.Load() }

// tenantGate holds each tenant to its MaxConcurrent executions in flight (running or
// waiting in the queue), so that one tenant cannot fill the queue for all.
type tenantGate struct {
	mu       sync.Mutex
	inFlight map[string]int
}

func newTenantGate() *tenantGate { return &tenantGate{inFlight: map[string]int{}} }

// enter admits one more execution of t, or returns false when t is at its cap. The
// caller must call leave once the execution is over.
func (g *tenantGate) enter(t *tenant.Tenant) (leave func(), ok bool) {
	if t.MaxConcurrent <= 0 {
		return func() {}, true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.inFlight[t.Name] >= t.MaxConcurrent {
		return nil, false
	}
	g.inFlight[t.Name]++
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.inFlight[t.Name]--; g.inFlight[t.Name] <= 0 {
			delete(g.inFlight, t.Name)
		}
	}, true
}
