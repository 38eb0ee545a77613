package main

import (
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// stdio is what `codeexec run` reads and writes: the process's own, or a test's.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	// inTerminal says that in is a terminal: the user may not know that the program
	// is waiting on it.
	inTerminal bool
}

func osStdio() stdio {
	_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr, inTerminal: err == nil}
}

// console passes a program's output to stdout and stderr as it comes, in the order
// it came. Its writers never block the sandbox: they queue for one goroutine that
// writes, so a terminal that blocks (a pager not yet scrolled) holds up nothing but
// itself, and no output is lost to the sandbox's StreamDrainTimeout. The queue holds
// at most the output limits: the sandbox enforces them before anything gets here.
// The caller must call close.
type console struct {
	out, err io.Writer

	mu      sync.Mutex
	queue   []consoleChunk
	closed  bool
	printed bool // the program has written something
	lastOut byte // the last byte of the program's stdout, 0 before any
	wake    chan struct{}
	done    chan struct{}
}

type consoleChunk struct {
	w io.Writer
	p []byte
}

func newConsole(out, err io.Writer) *console {
	c := &console{out: out, err: err, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go c.run()
	return c
}

// stdout and stderr are the writers for job.Request.
func (c *console) stdout() io.Writer { return consoleWriter{c, c.out} }
func (c *console) stderr() io.Writer { return consoleWriter{c, c.err} }

type consoleWriter struct {
	c *console
	w io.Writer
}

func (cw consoleWriter) Write(p []byte) (int, error) {
	cw.c.enqueue(cw.w, p, true)
	return len(p), nil
}

func (c *console) enqueue(w io.Writer, p []byte, program bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(p) == 0 {
		return
	}
	c.queue = append(c.queue, consoleChunk{w, append([]byte(nil), p...)})
	if program {
		c.printed = true
		if w == c.out {
			c.lastOut = p[len(p)-1]
		}
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// noteIfSilent queues msg for stderr unless the program has written anything.
func (c *console) noteIfSilent(msg string) {
	c.mu.Lock()
	printed := c.printed
	c.mu.Unlock()
	if !printed {
		c.enqueue(c.err, []byte(msg), false)
	}
}

func (c *console) run() {
	defer close(c.done)
	for {
		<-c.wake
		c.mu.Lock()
		q, closed := c.queue, c.closed
		c.queue = nil
		c.mu.Unlock()
		for _, ch := range q {
			_, _ = ch.w.Write(ch.p)
		}
		if closed {
			return
		}
	}
}

// close writes what is queued and returns once it is written. It reports whether the
// program's stdout, if any, ended with a newline.
func (c *console) close() (lineEnded bool) {
	c.mu.Lock()
	c.closed = true
	lineEnded = c.lastOut == 0 || c.lastOut == '\n'
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
	return lineEnded
}
