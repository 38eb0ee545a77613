package sandbox

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// watch enforces an execution's wall-clock and output limits and cancellation, and
// remembers the first reason it stopped the sandbox.
type watch struct {
	stdout, stderr *capWriter
	tee            *tee // streams the kept output to the Request's writers, if any

	readers sync.WaitGroup
	outputs []*os.File
	report  []byte

	mu      sync.Mutex
	stopped job.Status
	kill    func()
	timer   *time.Timer
	done    chan struct{}
}

func newWatch(l job.Limits) *watch {
	w := &watch{done: make(chan struct{})}
	w.stdout = &capWriter{limit: l.OutputBytes, onLimit: func() { w.stop(job.StatusOutputLimit) }}
	w.stderr = &capWriter{limit: l.OutputBytes, onLimit: func() { w.stop(job.StatusOutputLimit) }}
	w.timer = time.AfterFunc(l.Timeout, func() { w.stop(job.StatusTimeout) })
	return w
}

// start arms the watch with the function that kills the sandbox. The wall-clock
// limit runs from newWatch; a reason that came before start kills at once.
func (w *watch) start(ctx context.Context, kill func()) {
	w.mu.Lock()
	w.kill = kill
	if w.stopped != "" {
		kill()
	}
	w.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			w.stop(job.StatusKilled)
		case <-w.done:
		}
	}()
}

// readOutput copies the program's stdout and stderr into the watch's writers and
// reads its report, until EOF or waitOutput.
func (w *watch) readOutput(stdout, stderr, report *os.File) {
	w.outputs = []*os.File{stdout, stderr, report}
	w.readers.Add(3)
	go func() { defer w.readers.Done(); _, _ = io.Copy(w.stdout, stdout) }()
	go func() { defer w.readers.Done(); _, _ = io.Copy(w.stderr, stderr) }()
	go func() { defer w.readers.Done(); w.report = readReport(report) }()
}

// waitOutput waits up to grace for the readers to reach EOF, then stops them; a
// process the program left running may hold the pipes open. It then lets the tee
// deliver the rest (see tee.finish) and returns the report.
func (w *watch) waitOutput(grace time.Duration) []byte {
	done := make(chan struct{})
	go func() { w.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		for _, f := range w.outputs {
			f.Close() // unblocks the pending reads
		}
		<-done
	}
	for _, f := range w.outputs {
		f.Close()
	}
	w.tee.finish()
	return w.report
}

// disarm ends the watch once the sandbox is gone.
func (w *watch) disarm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer.Stop()
	select {
	case <-w.done:
	default:
		close(w.done)
	}
}

// stop kills the sandbox for reason s, unless it was already stopped or the watch
// is disarmed: a cancellation that comes after the program finished (net/http
// cancels a request's context when the handler returns) must not kill a session's
// interpreter, nor signal a pidfd its owner has closed.
func (w *watch) stop(s job.Status) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.done:
		return
	default:
	}
	if w.stopped != "" {
		return
	}
	w.stopped = s
	if w.kill != nil {
		w.kill()
	}
}

func (w *watch) reason() job.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopped
}

// capWriter keeps the first limit bytes written to it and reports when more arrive.
// It never fails a write, so the copy from the pipe drains until the process is gone.
type capWriter struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	limit     int64
	n         int64
	truncated bool
	onLimit   func()
	wake      chan struct{} // when set, signalled (without blocking) after bytes are kept
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	room := w.limit - int64(w.buf.Len())
	if room > 0 {
		w.buf.Write(p[:min(int64(len(p)), room)])
		if w.wake != nil {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
	w.n += int64(len(p))
	over := w.n > w.limit && !w.truncated
	if over {
		w.truncated = true
	}
	w.mu.Unlock()
	if over {
		w.onLimit()
	}
	return len(p), nil
}

// notify makes w signal wake, without blocking, whenever it keeps bytes.
func (w *capWriter) notify(wake chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wake = wake
}

// kept returns the bytes kept from offset from on. The buffer only ever grows, so the
// slice stays valid and unchanged after the lock is released.
func (w *capWriter) kept(from int) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Bytes()[from:]
}

// String returns the kept output as valid UTF-8.
func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.ToValidUTF8(w.buf.String(), "\uFFFD")
}
