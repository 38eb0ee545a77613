package sandbox

import (
	"io"
	"os"
	"sync/atomic"
	"time"
)

// StreamDrainTimeout is how long Run waits, once the program has ended, for a
// Request's Stdout and Stderr to take the output they have not yet been given.
const StreamDrainTimeout = 10 * time.Second

// streamDrainTimeout is StreamDrainTimeout; tests shorten it.
var streamDrainTimeout = StreamDrainTimeout

// streamBatch is how long the tee lets output gather before it delivers it: print()
// writes a line and its end apart, and a busy program writes many lines; a moment's
// wait delivers them in fewer, whole chunks (one event each over HTTP, not two).
const streamBatch = 5 * time.Millisecond

// tee gives a Request's Stdout and Stderr the output its capWriters keep, as it
// arrives. It reads the capWriters' buffers, never the pipes, so the pipes drain at
// the program's pace whatever the writers do, and it holds no copy: what it has not
// yet delivered is what the Result keeps anyway, at most the output limit. One
// goroutine writes both streams, so the writers are never called concurrently.
// (Rejected: writing to the caller's writers from the pipe readers, as exec.Cmd
// does: a stalled HTTP client would stall the program's own writes; and dropping
// output when a writer falls behind, since the kept copy is already bounded.)
type tee struct {
	outs    [2]teeOut
	wake    chan struct{}
	drained chan struct{} // closed by finish: the capWriters get no more bytes
	done    chan struct{} // closed when the goroutine has returned
	stop    atomic.Bool   // set by finish when a Write took too long: start no other
}

type teeOut struct {
	src    *capWriter
	dst    io.Writer
	sent   int
	failed bool
}

// newTee starts delivering what w's capWriters keep to stdout and stderr (either may
// be nil). It returns nil when both are nil. The caller must call finish.
func newTee(w *watch, stdout, stderr io.Writer) *tee {
	if stdout == nil && stderr == nil {
		return nil
	}
	t := &tee{wake: make(chan struct{}, 1), drained: make(chan struct{}), done: make(chan struct{})}
	t.outs[0] = teeOut{src: w.stdout, dst: stdout}
	t.outs[1] = teeOut{src: w.stderr, dst: stderr}
	w.stdout.notify(t.wake)
	w.stderr.notify(t.wake)
	t.wake <- struct{}{} // for what was kept before
	go t.run()
	return t
}

func (t *tee) run() {
	defer close(t.done)
	batch := time.NewTimer(streamBatch)
	defer batch.Stop()
	for {
		last := false
		select {
		case <-t.wake:
			batch.Reset(streamBatch)
			select {
			case <-batch.C:
			case <-t.drained:
				last = true
			}
		case <-t.drained:
			last = true
		}
		for i := range t.outs {
			t.deliver(&t.outs[i])
		}
		if last {
			return
		}
	}
}

func (t *tee) deliver(o *teeOut) {
	if o.dst == nil || o.failed || t.stop.Load() {
		return
	}
	p := o.src.kept(o.sent)
	if len(p) == 0 {
		return
	}
	o.sent += len(p)
	if _, err := o.dst.Write(p); err != nil {
		o.failed = true
	}
}

// finish delivers what is left, once the program's output is complete (its pipes
// have reached EOF or been closed), and waits up to StreamDrainTimeout for it. A
// Write that blocks longer is abandoned: no other Write starts. Safe on a nil tee.
func (t *tee) finish() {
	if t == nil {
		return
	}
	close(t.drained)
	timer := time.NewTimer(streamDrainTimeout)
	defer timer.Stop()
	select {
	case <-t.done:
	case <-timer.C:
		t.stop.Store(true)
	}
}

// stdinFeed copies a Request's Stdin into the program's stdin pipe.
type stdinFeed struct {
	r, w *os.File // the program's end, and ours
	src  io.Reader
}

// newStdinFeed makes the pipe for src; nil src needs none (the program reads
// /dev/null) and gives a nil feed. The caller hands f.r to the program, then calls
// start, and calls close when the program has ended.
func newStdinFeed(src io.Reader) (*stdinFeed, error) {
	if src == nil {
		return nil, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, &os.SyscallError{Syscall: "pipe2", Err: err}
	}
	return &stdinFeed{r: r, w: w, src: src}, nil
}

// file is the program's end of the pipe; nil (for /dev/null) on a nil feed.
func (f *stdinFeed) file() *os.File {
	if f == nil {
		return nil
	}
	return f.r
}

// start closes our copy of the program's end and copies src into the pipe until
// src ends (then the program reads EOF) or close is called. Safe on a nil feed.
func (f *stdinFeed) start() {
	if f == nil {
		return
	}
	f.r.Close()
	go func() {
		// The wrappers hide ReadFrom and WriteTo: a plain read and write loop, which
		// close can interrupt, rather than a splice that may block in the kernel.
		_, _ = io.Copy(struct{ io.Writer }{f.w}, struct{ io.Reader }{f.src})
		f.w.Close()
	}()
}

// close closes both ends; a write blocked on a full pipe returns. A Read of src in
// progress is not waited for. Safe on a nil feed.
func (f *stdinFeed) close() {
	if f == nil {
		return
	}
	f.r.Close()
	f.w.Close()
}

// closeWriter closes our end: the program reads EOF once it has read what is in the
// pipe. A Read of src in progress is not waited for. Safe on a nil feed.
func (f *stdinFeed) closeWriter() {
	if f == nil {
		return
	}
	f.w.Close()
}
