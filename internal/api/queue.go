package api

import (
	"context"
	"errors"
	"sync/atomic"
)

var errQueueFull = errors.New("api: execution queue full")

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
		return nil, errQueueFull
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
