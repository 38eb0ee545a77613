package image

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// tickInterval is how often a long stage reports that it is still running when the
// progress writer is not a terminal.
const tickInterval = 10 * time.Second

// progress prints the build's numbered stages, and while a stage runs either a spinner
// (terminal) or an elapsed-time line every tickInterval (log file, CI).
type progress struct {
	w     io.Writer
	tty   bool
	total int
	last  func() string // the build log's latest line, shown while waiting
}

func newProgress(w io.Writer, total int, last func() string) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w, tty: isTerminal(w), total: total, last: last}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *progress) printf(format string, args ...any) {
	fmt.Fprintf(p.w, format, args...)
}

// stage prints "[n/total] msg…" and runs fn, reporting progress until it returns.
func (p *progress) stage(n int, msg string, fn func() error) error {
	p.printf("[%d/%d] %s…\n", n, p.total, msg)
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.tick(start, done)
	}()
	err := fn()
	close(done)
	wg.Wait()
	return err
}

func (p *progress) tick(start time.Time, done <-chan struct{}) {
	interval := tickInterval
	if p.tty {
		interval = 200 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	spin := `|/-\`
	for i := 0; ; i++ {
		select {
		case <-done:
			if p.tty && i > 0 {
				p.printf("\r\033[K") // clear the spinner line
			}
			return
		case <-t.C:
		}
		elapsed := formatDuration(time.Since(start))
		line := shorten(p.last(), 60)
		if p.tty {
			p.printf("\r\033[K  %c %s  %s", spin[i%len(spin)], elapsed, line)
		} else {
			p.printf("      %s elapsed  %s\n", elapsed, line)
		}
	}
}

func shorten(s string, n int) string {
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// formatDuration rounds d to whole seconds: "1m32s".
func formatDuration(d time.Duration) string {
	return d.Round(time.Second).String()
}

// formatSize prints a byte count in MiB (GiB from 10 GiB up): "747 MiB".
func formatSize(n int64) string {
	const mib = 1 << 20
	if n >= 10<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%d MiB", (n+mib/2)/mib)
}
