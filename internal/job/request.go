package job

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/codeexec/codeexec/internal/egress"
)

// InputFile is a file placed in the work dir before the code runs.
type InputFile struct {
	Path string // relative to the work dir, slash-separated
	Data []byte
}

// The languages a Request may be in.
const (
	LangPython     = "python"
	LangBash       = "bash"
	LangJavaScript = "javascript"
)

// Languages are the languages served, in the order error messages name them.
var Languages = []string{LangPython, LangBash, LangJavaScript}

// KnownLanguage reports whether lang is one of Languages; "" means Python.
func KnownLanguage(lang string) bool {
	return lang == "" || lang == LangPython || lang == LangBash || lang == LangJavaScript
}

// CanonicalLanguage maps the aliases a caller may write ("js") to the language's
// name; any other value is returned as it is, for KnownLanguage to judge.
func CanonicalLanguage(lang string) string {
	if lang == "js" {
		return LangJavaScript
	}
	return lang
}

// Request is one execution.
type Request struct {
	Code string
	// Language is what Code is written in: LangPython (also ""), LangBash, which
	// runs Code with /bin/bash, Name as $0 and Args as $1..., or LangJavaScript,
	// which runs Code with Node as a script (process.argv is [node, Name, Args...]).
	Language string
	Limits   Limits
	Files    []InputFile
	// OutputDir, when set, receives a copy of every file the program created or
	// changed in its work dir and of every figure.
	OutputDir string
	// Network, when set, lets the program reach the hosts it allows through the
	// egress proxy; nil means no network beyond the sandbox's own loopback.
	Network *egress.Policy

	// Name is the program's sys.argv[0], e.g. the file it came from as the caller
	// named it (Python shows a script's path as given); empty means "<code>".
	Name string
	// Args are the program's arguments, sys.argv[1:]: valid UTF-8 without NUL bytes,
	// at most MaxArgsBytes together with Name.
	Args []string
	// Stdin, when set, is the program's standard input, fed through a pipe as the
	// program reads it; nil gives it an empty one (/dev/null). When the program ends,
	// the pipe is closed and a Read of Stdin still in progress is abandoned: Run does
	// not wait for it, and what it returns is dropped.
	Stdin io.Reader
	// Stdout and Stderr, when set, receive the program's output as it arrives: the
	// bytes the Result keeps, in order, at most Limits.OutputBytes of each. They are
	// fed from the kept copy by one goroutine, never concurrently, so a slow or failing
	// writer never holds up the program, its limits or the Result. After an error from
	// a writer it gets nothing more. Run returns once both are up to date, or after
	// StreamDrainTimeout if a Write blocks: that Write may then return after Run, but
	// no other starts.
	Stdout, Stderr io.Writer

	// Kernel, when set, runs a Python program as a cell of a Jupyter kernel: IPython's
	// syntax (!cmd, %magic, %%cell magic), display() and rich display data in
	// Result.Outputs (the last expression's value and figures included there). E2B's
	// code interpreter sets it; /v1/execute, sessions and the gateway do not.
	Kernel *Kernel
}

// Kernel is the setting of a kernel run (Request.Kernel).
type Kernel struct {
	// Env is set in the interpreter's environment for this run only: afterwards each
	// variable is back to its value before the run, as E2B's per-run env_vars.
	Env map[string]string
	// BaseEnv is set for good: a sandbox's envVars, given with its first run.
	BaseEnv map[string]string
	// OnOutput, when set, is given each display data bundle as the program shows it
	// (display(), a figure's plt.show()), mid-run, from one goroutine, at most as
	// many and as large as the Result's Outputs may be; the Result's Outputs still
	// hold them all. Run returns only after the last call has returned (or
	// sandbox.StreamDrainTimeout has passed). What the program writes to the
	// harness's report pipe itself may reach it too: it is that run's data.
	OnOutput func(Output)
}

// MaxArgsBytes bounds a Request's Name and Args together (each counted with a
// terminating byte, as execve does).
const MaxArgsBytes = 16 << 10

// MaxInputPathLen bounds the length of an input file's path.
const MaxInputPathLen = 255

// ErrBadPath is returned for an input file path that is absolute, escapes the work dir
// or is otherwise unusable.
var ErrBadPath = errors.New("sandbox: bad file path")

// CleanInputPath checks that p names a file inside the work dir and returns it cleaned.
func CleanInputPath(p string) (string, error) {
	if p == "" || len(p) > MaxInputPathLen || strings.ContainsRune(p, 0) || strings.Contains(p, `\`) {
		return "", fmt.Errorf("%w: %q", ErrBadPath, p)
	}
	c := path.Clean(p)
	if path.IsAbs(c) || c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q is outside the work dir", ErrBadPath, p)
	}
	return c, nil
}

// Validate checks a request before any sandbox is made.
func (r *Request) Validate() error {
	if !KnownLanguage(r.Language) {
		return fmt.Errorf("sandbox: language %q is not supported; use one of %s", r.Language, strings.Join(Languages, ", "))
	}
	if err := r.Limits.Validate(); err != nil {
		return err
	}
	if r.Kernel != nil && r.Language == LangBash {
		return errors.New("sandbox: a kernel run is Python; language bash has none")
	}
	var total int64
	for i, f := range r.Files {
		c, err := CleanInputPath(f.Path)
		if err != nil {
			return err
		}
		r.Files[i].Path = c
		total += int64(len(f.Data))
	}
	// Their pages count against the memory limit, so they must fit in both.
	if total > r.Limits.WorkBytes {
		return storageLimit("input files total %s, more than the %s work dir", FormatBytes(total), FormatBytes(r.Limits.WorkBytes))
	}
	if total > r.Limits.MemoryBytes {
		return storageLimit("input files total %s, more than the %s memory limit they count against", FormatBytes(total), FormatBytes(r.Limits.MemoryBytes))
	}
	return r.validateArgs()
}

// validateArgs checks Name and Args: execve refuses NUL bytes on the cold path, and
// the warm path carries them as JSON, which would alter invalid UTF-8.
func (r *Request) validateArgs() error {
	size := 0
	for i, a := range append([]string{r.Name}, r.Args...) {
		what := "program name"
		if i > 0 {
			what = fmt.Sprintf("argument %d", i)
		}
		if strings.ContainsRune(a, 0) || !utf8.ValidString(a) {
			return fmt.Errorf("sandbox: %s %q is not UTF-8 text without NUL bytes", what, a)
		}
		size += len(a) + 1
	}
	if size > MaxArgsBytes {
		return fmt.Errorf("sandbox: the program's arguments take %d bytes; the limit is %d", size, MaxArgsBytes)
	}
	return nil
}
