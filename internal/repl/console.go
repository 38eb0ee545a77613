package repl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"sync"

	"github.com/codeexec/codeexec/internal/llm"
)

// maxReshown bounds the partial line shown again after a log line: a prompt or a
// header, not a paragraph of the answer.
const maxReshown = 40

// Console is the terminal of a chat: its output, and the log lines that arrive
// from other goroutines (an upstream retry, a sandbox restart). A log line never
// lands inside a line of output: it gets a line of its own, and the prompt or the
// header it interrupted is shown again after it. It is safe for concurrent use.
type Console struct {
	mu   sync.Mutex
	out  io.Writer
	log  io.Writer
	line []byte // output since the last newline, up to maxReshown+1 bytes
}

// NewConsole writes output to out and log lines to log (usually stdout and stderr
// of one terminal).
func NewConsole(out, log io.Writer) *Console { return &Console{out: out, log: log} }

// Write writes output.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.track(p)
	return c.out.Write(p)
}

// Prompt writes a prompt, which a log line shows again after itself.
func (c *Console) Prompt(s string) { c.Write([]byte(s)) }

func (c *Console) track(p []byte) {
	if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
		c.line = c.line[:0]
		p = p[i+1:]
	}
	if room := maxReshown + 1 - len(c.line); room > 0 {
		c.line = append(c.line, p[:min(len(p), room)]...)
	}
}

// LogWriter returns a writer for a logger (slog's handlers write a record per
// Write): each write is shown as whole lines of their own.
func (c *Console) LogWriter() io.Writer { return logWriter{c} }

type logWriter struct{ c *Console }

func (w logWriter) Write(p []byte) (int, error) {
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	partial := len(c.line) > 0
	if partial {
		c.out.Write([]byte("\n"))
	}
	msg := p
	if !bytes.HasSuffix(msg, []byte("\n")) {
		msg = append(bytes.Clone(msg), '\n')
	}
	if _, err := c.log.Write(msg); err != nil {
		return 0, err
	}
	if partial {
		if len(c.line) <= maxReshown {
			c.out.Write(c.line)
		} else {
			c.line = c.line[:0] // the rest of a long line goes on from the start of one
		}
	}
	return len(p), nil
}

// Figures saves a chat's figures as files in one directory, never overwriting a
// file: figure-1.png, figure-2.png, … in the order they were drawn.
type Figures struct {
	// Dir is where figures go; "" means a new directory under the system's
	// temporary directory, made at the first figure.
	Dir string
	n   int
}

// Save writes im and returns its path.
func (f *Figures) Save(im llm.CodeImage) (string, error) {
	if f.Dir == "" {
		dir, err := os.MkdirTemp("", "codeexec-chat-")
		if err != nil {
			return "", fmt.Errorf("figure directory: %w", err)
		}
		f.Dir = dir
	} else if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return "", fmt.Errorf("figure directory: %w", err)
	}
	ext := path.Ext(im.Name)
	if exts, err := mime.ExtensionsByType(im.MimeType); ext == "" && err == nil && len(exts) > 0 {
		ext = exts[0]
	}
	for {
		f.n++
		p := filepath.Join(f.Dir, fmt.Sprintf("figure-%d%s", f.n, ext))
		file, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue // a file of an earlier chat, or the user's: keep it
		}
		if err != nil {
			return "", err
		}
		_, werr := file.Write(im.Data)
		if cerr := file.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(p)
			return "", fmt.Errorf("write %s: %w", p, werr)
		}
		return p, nil
	}
}
