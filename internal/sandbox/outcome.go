package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/codeexec/codeexec/internal/job"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
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

// outcome is what the runner and the kernel observed of one execution.
type outcome struct {
	stopped  job.Status // why the runner stopped it, if it did
	signaled bool
	signal   syscall.Signal
	exitCode int
	stats    cgroup.Stats
	statsErr error
	report   []byte
	duration time.Duration
	network  *job.NetworkUsage // with limited network only
}

// result builds the Result. Limits come from what the runner and the kernel saw;
// the harness report only describes the program's own output, and only within the
// report's caps: a report that breaks one (harness.Parse) was written by the program,
// so the run is an error and nothing of the report is used.
func (o *outcome) result(l job.Limits, w *watch) *job.Result {
	res := &job.Result{
		Stdout:          w.stdout.String(),
		Stderr:          w.stderr.String(),
		StdoutTruncated: w.stdout.truncated,
		StderrTruncated: w.stderr.truncated,
		DurationMS:      float64(o.duration.Microseconds()) / 1000,
		Images:          []job.Image{},
		Files:           []job.FileInfo{},
	}
	if o.statsErr == nil {
		res.Usage = job.Usage{CPUMS: float64(o.stats.CPUTime.Microseconds()) / 1000, MaxMemoryBytes: o.stats.MaxMemoryBytes}
	}
	res.Usage.Network = o.network
	rep, repErr := harness.Parse(o.report)
	if rep != nil {
		res.Result, res.ResultTruncated = rep.Result, rep.ResultTruncated
		res.ImagesTruncated = rep.ImagesTruncated
		for i, im := range rep.Images {
			// Named here: the report's names are the program's to choose.
			res.Images = append(res.Images, job.Image{Name: "figure-" + strconv.Itoa(i+1) + ".png", MimeType: im.MimeType, Data: im.Data})
		}
	}
	switch {
	case o.stopped == job.StatusTimeout:
		res.Status, res.ExitCode = job.StatusTimeout, 124
		res.Error = &job.Error{Name: "TimeoutError", Message: fmt.Sprintf("execution exceeded the %v time limit and was stopped", l.Timeout)}
	case o.stopped == job.StatusOutputLimit:
		res.Status, res.ExitCode = job.StatusOutputLimit, 137
		res.Error = &job.Error{Name: "OutputLimitError", Message: fmt.Sprintf("output exceeded the %d-byte limit and the program was stopped", l.OutputBytes)}
	case o.stopped == job.StatusKilled:
		res.Status, res.ExitCode = job.StatusKilled, 137
		res.Error = &job.Error{Name: "Killed", Message: "execution was cancelled"}
	case o.stats.OOMKills > 0 && (o.signaled || rep == nil):
		res.Status, res.ExitCode = job.StatusMemoryLimit, 137
		msg := fmt.Sprintf("execution exceeded the %d MiB memory limit and was killed", l.MemoryBytes>>20)
		if o.stats.MemoryLimitHits == 0 {
			// Killed without reaching its own limit: all sandboxes together reached
			// the server's total (Config.Total).
			msg = fmt.Sprintf("the server's memory for all sandboxes together ran out and this execution was killed to free some (it had used at most %d MiB of its %d MiB limit)", o.stats.MaxMemoryBytes>>20, l.MemoryBytes>>20)
		}
		res.Error = &job.Error{Name: "MemoryError", Message: msg}
	case o.signaled:
		res.Status, res.ExitCode = job.StatusKilled, 128+int(o.signal)
		res.Error = &job.Error{Name: "Killed", Message: "the program was killed by signal " + o.signal.String()}
	case rep != nil:
		res.ExitCode = o.exitCode
		res.Status = job.StatusOK
		if !rep.OK {
			res.Status = job.StatusError
			e := rep.Error // Parse makes sure a failed run has one
			res.Error = &job.Error{Name: e.Name, Message: e.Message, Traceback: e.Traceback, Truncated: e.Truncated}
		}
	case !errors.Is(repErr, harness.ErrEmpty):
		// Only the program can have written this: the harness keeps to the caps.
		res.Status, res.ExitCode = job.StatusError, o.exitCode
		if res.ExitCode == 0 {
			res.ExitCode = 1
		}
		res.Error = &job.Error{Name: ReportErrorName, Message: fmt.Sprintf("the run's report was refused (%v): the program wrote to the harness's report pipe, so its result, error and figures are not trusted", repErr)}
	default:
		res.ExitCode = o.exitCode
		res.Status = job.StatusOK
		if res.ExitCode != 0 {
			res.Status = job.StatusError
			res.Error = &job.Error{Name: "ProcessExit", Message: fmt.Sprintf("the interpreter exited with status %d before reporting", res.ExitCode)}
		}
	}
	return res
}

// ReportErrorName is the Error.Name of a run whose report was refused: it broke the
// protocol or one of its caps (harness.Parse), which only the program can have done.
const ReportErrorName = "ReportError"

func waitStatus(err error) *syscall.WaitStatus {
	if err == nil {
		ws := syscall.WaitStatus(0)
		return &ws
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return nil
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok {
		return nil
	}
	return &ws
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
