package sandbox

import (
	"context"
	"errors"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// The Node pool: a Node process cannot be forked from the zygote, and starting one
// costs tens of milliseconds more than the program `console.log(1)`. So the runner
// keeps Config.NodePool sandboxes whose Node has started and waits for a program:
// sessions (fresh sandboxes from the zygote, with the default limits) whose main
// context has run an empty JavaScript program. A one-shot JavaScript execution takes
// one, runs in it as its only run (ctlMsg.Drain: it ends as a one-shot run ends)
// and destroys it, so no state crosses executions. A background loop refills the
// pool.

// nodePoolLimits are the limits pooled sandboxes are made with: the defaults, whose
// fixed limits (memory, processes, CPUs, disk, rlimits) an execution must have to
// take one, and long enough a timeout and output limit for any execution's, which a
// run lowers to its own (Session.runLimits).
func nodePoolLimits() job.Limits {
	l := job.DefaultLimits()
	l.Timeout = 24 * time.Hour
	l.OutputBytes = 1 << 40
	return l
}

// nodePoolable reports whether req can run in a pooled sandbox: JavaScript, with the
// pool's fixed limits, and without stdin, which a session's Node does not read.
func nodePoolable(req *job.Request) bool {
	if req.Language != job.LangJavaScript || req.Stdin != nil {
		return false
	}
	a, p := req.Limits, nodePoolLimits()
	a.Timeout, a.OutputBytes = p.Timeout, p.OutputBytes
	return a == p
}

// runPooledNode runs req in a pooled Node sandbox if req can and one is ready; ok is
// false otherwise, and req runs elsewhere. The sandbox is torn down in the
// background once the run is over.
func (r *Runner) runPooledNode(ctx context.Context, req *job.Request) (res *job.Result, ok bool, err error) {
	if r.nodes == nil || !nodePoolable(req) {
		return nil, false, nil
	}
	var s *Session
	select {
	case s = <-r.nodes:
	default:
		return nil, false, nil
	}
	defer r.cleanupLater(s.Close)
	// Held from here to its end: the run's end does not freeze a sandbox that is
	// destroyed next (a freeze costs milliseconds, while the Node exits).
	s.mu.Lock()
	err = s.hold()
	s.mu.Unlock()
	if err == nil {
		res, err = s.Run(ctx, req)
	}
	if errors.Is(err, ErrSessionEnded) {
		// It died while it waited (the host's OOM killer, say), before the program
		// was sent: the execution runs elsewhere.
		r.log.Warn("a pooled Node sandbox had ended; running the execution without it", "err", err)
		return nil, false, nil
	}
	return res, true, err
}

// fillNodePool keeps r.nodes full until ctx ends. A sandbox that cannot be made (no
// zygote, storage budget exhausted) is tried again a second later; executions
// meanwhile start their own Node.
func (r *Runner) fillNodePool(ctx context.Context) {
	defer r.bg.Done()
	defer func() {
		// Nothing takes from the pool any more once the runner closes.
		for {
			select {
			case s := <-r.nodes:
				s.Close()
			default:
				return
			}
		}
	}()
	for {
		s, err := r.newNodeSandbox(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Debug("could not start a pooled Node sandbox", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		select {
		case r.nodes <- s:
		case <-ctx.Done():
			s.Close()
			return
		}
	}
}

// newNodeSandbox makes a session whose main context's Node has started and waits.
func (r *Runner) newNodeSandbox(ctx context.Context) (*Session, error) {
	s, err := r.NewSession(ctx, nodePoolLimits())
	if err != nil {
		return nil, err
	}
	res, err := s.Run(ctx, &job.Request{Language: job.LangJavaScript})
	if err == nil && res.Status != job.StatusOK {
		err = &nodeStartError{res: res}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	s.oneRun = true // before any execution can see the session
	return s, nil
}

// nodeStartError is an empty program that failed in a new Node sandbox (no Node in
// the image, say).
type nodeStartError struct{ res *job.Result }

func (e *nodeStartError) Error() string {
	return "sandbox: Node did not start: " + string(e.res.Status) + ": " + clipText(e.res.Stderr, 512)
}

// NewNodeSession is NewSession for a JavaScript session: with limits l whose fixed
// limits are the pool's, it takes a pooled Node sandbox, whose Node has started, so
// that the session's first run does not wait for it; else, or when the pool is
// empty, it makes a new session. The caller must call Close.
func (r *Runner) NewNodeSession(ctx context.Context, l job.Limits) (*Session, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if r.nodes != nil && nodePoolable(&job.Request{Language: job.LangJavaScript, Limits: l}) {
		select {
		case s := <-r.nodes:
			// Not shared yet: the pool's sandboxes are reached only through r.nodes.
			s.limits, s.oneRun = l, false
			return s, nil
		default:
		}
	}
	return r.NewSession(ctx, l)
}

// NodePoolSize is the number of started Node sandboxes ready for an execution.
func (r *Runner) NodePoolSize() int { return len(r.nodes) }
