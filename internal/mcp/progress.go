package mcp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// While an execution runs, a call that carries a progress token gets progress
// notifications: the lines the program prints, gathered for progressEvery, and a
// heartbeat when it prints nothing for heartbeatEvery, so that a client that resets
// its request timeout on progress waits for a long computation. The output comes
// whole in the result; a notification shows at most progressMax bytes of what came
// since the last one, the newest.
const (
	progressEvery  = 250 * time.Millisecond
	heartbeatEvery = 5 * time.Second
	progressMax    = 2048
	// pendingMax bounds the output held between notifications.
	pendingMax = 64 << 10
)

// progress sends one call's progress notifications. Its methods are safe on nil: a
// call without a progress token has none.
type progress struct {
	ctx   context.Context
	ss    *sdk.ServerSession
	token any
	start time.Time

	mu      sync.Mutex
	pending []byte
	skipped int // bytes dropped from pending since the last notification

	count float64 // notifications sent; progress must increase
	last  time.Time
	stop  chan struct{}
	done  chan struct{}
}

// startProgress starts reporting for req, or returns nil when its caller asked for
// no progress. The caller must call finish.
func startProgress(ctx context.Context, req *sdk.CallToolRequest) *progress {
	token := req.Params.GetProgressToken()
	if token == nil || req.Session == nil {
		return nil
	}
	now := time.Now()
	p := &progress{ctx: ctx, ss: req.Session, token: token, start: now, last: now,
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// writer is where the program's output goes: nil without progress.
func (p *progress) writer() io.Writer {
	if p == nil {
		return nil
	}
	return p
}

// Write keeps output for the next notification. It never blocks on the client: a
// slow one must not hold up the program.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = append(p.pending, b...)
	if over := len(p.pending) - pendingMax; over > 0 {
		p.pending = p.pending[over:]
		p.skipped += over
	}
	return len(b), nil
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.flush(true)
			return
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			if !p.flush(false) && now.Sub(p.last) >= heartbeatEvery {
				p.send(fmt.Sprintf("running for %s", now.Sub(p.start).Round(time.Second)))
			}
		}
	}
}

// flush sends the complete lines pending (all of them with final), and reports
// whether it sent anything.
func (p *progress) flush(final bool) bool {
	p.mu.Lock()
	n := len(p.pending)
	if !final && n < progressMax {
		// A line still being written waits for its end, unless it is long.
		n = bytes.LastIndexByte(p.pending, '\n') + 1
	}
	if n == 0 {
		p.mu.Unlock()
		return false
	}
	chunk, skipped := p.pending[:n], p.skipped
	p.pending, p.skipped = append([]byte(nil), p.pending[n:]...), 0
	p.mu.Unlock()
	if len(chunk) > progressMax {
		skipped += len(chunk) - progressMax
		chunk = chunk[len(chunk)-progressMax:]
	}
	msg := strings.ToValidUTF8(string(chunk), "")
	if skipped > 0 {
		msg = fmt.Sprintf("[… %d bytes not shown …]\n", skipped) + msg
	}
	p.send(strings.TrimSuffix(msg, "\n"))
	return true
}

func (p *progress) send(msg string) {
	p.count++
	p.last = time.Now()
	// A client that is gone or does not read costs the notification, not the run.
	_ = p.ss.NotifyProgress(p.ctx, &sdk.ProgressNotificationParams{ProgressToken: p.token, Progress: p.count, Message: msg})
}

// finish sends what output is left, before the call's result, and stops.
func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
}
