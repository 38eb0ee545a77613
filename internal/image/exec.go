package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// killGrace is how long a cancelled command's process group has between SIGTERM (which
// lets mmdebstrap unmount what it mounted in the chroot) and SIGKILL.
const killGrace = 15 * time.Second

// runner runs the build's commands with their output appended to the build log.
type runner struct {
	log        *buildLog
	chrootPath string // absolute path of the host's chroot(8)
}

// command returns a command in its own process group, so that cancelling ctx stops the
// whole tree (mmdebstrap → apt → dpkg → maintainer scripts), not only its first process.
// env nil means chrootEnv.
func (r *runner) command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	if env == nil {
		env = chrootEnv
	}
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdin = nil
	cmd.Stdout = r.log
	cmd.Stderr = r.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = killGrace
	return cmd
}

// run runs cmd and, if ctx was cancelled, kills what is left of its process group.
func (r *runner) run(ctx context.Context, cmd *exec.Cmd) error {
	r.log.notef("$ %s\n", strings.Join(cmd.Args, " "))
	err := cmd.Run()
	if ctx.Err() != nil && cmd.Process != nil {
		// The group leader is gone; stragglers that ignored SIGTERM are not. The group id
		// cannot be reused while any of them lives.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return fmt.Errorf("%s: %w", cmd.Args[0], ctx.Err())
	}
	if err != nil {
		return &commandError{args: cmd.Args, err: err}
	}
	return nil
}

// chroot runs args inside root with the environment env (nil: chrootEnv).
func (r *runner) chroot(ctx context.Context, root string, env []string, args ...string) error {
	return r.run(ctx, r.command(ctx, env, r.chrootPath, append([]string{root}, args...)...))
}

// chrootOutput is like chroot but returns the standard output instead of logging it.
func (r *runner) chrootOutput(ctx context.Context, root string, env []string, args ...string) ([]byte, error) {
	cmd := r.command(ctx, env, r.chrootPath, append([]string{root}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := r.run(ctx, cmd)
	return out.Bytes(), err
}

// commandError is a command that ran and failed; its output is in the build log.
type commandError struct {
	args []string
	err  error
}

func (e *commandError) Error() string {
	return fmt.Sprintf("%s: %v", describeCommand(e.args), e.err)
}

// describeCommand names a command briefly for an error message: "mmdebstrap", or for a
// command run in the image "chroot: dpkg --purge" (the full command line is in the log).
func describeCommand(args []string) string {
	name := filepath.Base(args[0])
	if name != "chroot" {
		return name
	}
	rest := args[1:]
	for len(rest) > 0 && strings.HasPrefix(rest[0], "-") { // chroot's own options
		rest = rest[1:]
	}
	if len(rest) < 2 { // no command after the root
		return name
	}
	inner := rest[1:]
	if len(inner) > 2 {
		inner = inner[:2]
	}
	return name + ": " + strings.Join(inner, " ")
}

func (e *commandError) Unwrap() error { return e.err }

// buildLog is the build's log file. It is safe for concurrent writes (a command's stdout
// and stderr are copied by two goroutines) and remembers the last line written, which
// the progress display shows.
type buildLog struct {
	path string

	mu      sync.Mutex
	f       *os.File
	partial []byte // the unfinished last line
	last    string // the last complete non-empty line
}

func createBuildLog(path string) (*buildLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &buildLog{path: path, f: f}, nil
}

func (l *buildLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		// Progress bars end lines with \r: treat it as a line end too.
		i := bytes.IndexAny(l.partial, "\r\n")
		if i < 0 {
			break
		}
		if s := strings.TrimSpace(string(l.partial[:i])); s != "" {
			l.last = s
		}
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) > 4096 { // a line that never ends: keep memory bounded
		l.partial = l.partial[len(l.partial)-4096:]
	}
	return l.f.Write(p)
}

// notef writes a line of the build's own (not a command's output) to the log. Unlike
// Write it does not change lastLine, which shows what the running command is doing.
func (l *buildLog) notef(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.f, format, args...)
}

// resetLast forgets the last line, at the start of a stage.
func (l *buildLog) resetLast() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = ""
	l.partial = l.partial[:0]
}

// lastLine returns the last complete non-empty line written.
func (l *buildLog) lastLine() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

func (l *buildLog) Close() error { return l.f.Close() }

// tail returns the last n lines of the log file.
func (l *buildLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fileTail(l.path, n)
}

// fileTail returns the last n lines of the file at path (reading at most its last 64 KiB).
func fileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		if _, err := f.Seek(-max, io.SeekEnd); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	b = bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var kept []string
	for _, s := range lines {
		if strings.TrimSpace(s) != "" {
			kept = append(kept, s)
		}
	}
	if len(kept) > n {
		kept = kept[len(kept)-n:]
	}
	return strings.Join(kept, "\n")
}

// isCommandError reports whether err comes from a command that ran and failed, so that
// its output in the build log explains it.
func isCommandError(err error) bool {
	var ce *commandError
	return errors.As(err, &ce)
}
