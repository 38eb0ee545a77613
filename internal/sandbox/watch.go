package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
)

// watch enforces an execution's wall-clock and output limits and cancellation, and
// remembers the first reason it stopped the sandbox.
type watch struct {
	stdout, stderr *capWriter
	tee            *tee // streams the kept output to the Request's writers, if any

	readers sync.WaitGroup
	outputs []*os.File
	report  []byte
	// delivered is closed once the display data streamed mid-run has all been
	// handed to the Request's OnOutput; nil when the run streams none.
	delivered chan struct{}

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
// onOutput, when set, is given the display data the report pipe streams (see
// readStreamedReport).
func (w *watch) readOutput(stdout, stderr, report *os.File, onOutput func(job.Output)) {
	w.outputs = []*os.File{stdout, stderr, report}
	w.readers.Add(3)
	go func() { defer w.readers.Done(); _, _ = io.Copy(w.stdout, stdout) }()
	go func() { defer w.readers.Done(); _, _ = io.Copy(w.stderr, stderr) }()
	if onOutput == nil {
		go func() { defer w.readers.Done(); w.report = readReport(report) }()
		return
	}
	var outs chan<- job.Output
	outs, w.delivered = deliverOutputs(onOutput)
	go func() {
		defer w.readers.Done()
		defer close(outs)
		w.report = readStreamedReport(report, outs)
	}()
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
	waitDelivered(w.delivered)
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

// deliverOutputs hands what is sent on outs to onOutput from a goroutine of its
// own, until outs is closed; delivered is closed then.
func deliverOutputs(onOutput func(job.Output)) (outs chan<- job.Output, delivered chan struct{}) {
	ch := make(chan job.Output, harness.MaxOutputs)
	delivered = make(chan struct{})
	go func() {
		defer close(delivered)
		for o := range ch {
			onOutput(o)
		}
	}()
	return ch, delivered
}

// waitDelivered waits, at most streamDrainTimeout, until the display data a run
// streamed has all been handed on (delivered, nil when it streamed none): it comes
// before the Result, as a notebook shows it.
func waitDelivered(delivered chan struct{}) {
	if delivered == nil {
		return
	}
	select {
	case <-delivered:
	case <-time.After(streamDrainTimeout):
	}
}

// kernelOutputs is req's OnOutput, if it has one.
func kernelOutputs(req *job.Request) func(job.Output) {
	if req.Kernel == nil {
		return nil
	}
	return req.Kernel.OnOutput
}

// streamedOutputBytes bounds the display data lines a report pipe may stream: the
// bundles' bytes a Result may hold, and each line's wrapping.
const streamedOutputBytes = harness.MaxOutputBytes + harness.MaxOutputs*64

// readStreamedReport reads a kernel run's report pipe whose display data streams
// (harness.KernelOptions.Stream): a line {"output": …} for each bundle as the program
// shows it, sent to outs, then the report, the last line, which ends without a
// newline and is returned as readReport returns it. At most MaxOutputs bundles
// within streamedOutputBytes go to outs, which holds that many, so the reader never
// waits for the caller: more lines than that, or lines that are not a bundle, were
// written by the program itself, and are not passed on.
func readStreamedReport(r io.Reader, outs chan<- job.Output) []byte {
	br := bufio.NewReader(io.LimitReader(r, streamedOutputBytes+maxReportBytes+1))
	sent, size := 0, 0
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			// The report: what follows the last newline. A report longer than the
			// limit keeps one byte more, for harness.Parse to refuse.
			_, _ = io.Copy(io.Discard, r)
			return line[:min(len(line), maxReportBytes+1)]
		}
		size += len(line)
		if sent >= harness.MaxOutputs || size > streamedOutputBytes {
			continue
		}
		var m struct {
			Output *harness.Output `json:"output"`
		}
		if json.Unmarshal(line, &m) != nil || m.Output == nil || m.Output.Data == nil {
			continue
		}
		outs <- job.Output{Data: m.Output.Data, Main: m.Output.Main}
		sent++
	}
}
