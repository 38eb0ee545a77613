package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/spf13/cobra"
)

// exitError carries a process exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError marks a mistake in the command line (exit code 2).
type usageError struct{ error }

func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

type runFlags struct {
	store   string
	image   string
	lang    string
	timeout time.Duration
	memory  string
	net     string
	files   []string
	out     string
	json    bool
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] [FILE|-] [-- ARGS...]",
		Short: "Run code once in a fresh sandbox",
		Long: `Run a Python program in a fresh sandbox and print its output.

The program comes from FILE, or from standard input with - (the default). ARGS after
-- are its sys.argv[1:]. A program from FILE reads codeexec's standard input.

Without --json, the program's stdout and stderr are printed as it writes them, then
the value of its last expression (or of its variable result), as a REPL would, and
codeexec exits with the program's exit code (124 on timeout, 137 when killed or out of
memory). With --json, the Result is printed as JSON and the exit code is 0.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var progArgs []string
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				args, progArgs = args[:dash], args[dash:]
			}
			if len(args) > 1 {
				return usageError{fmt.Errorf("the program's arguments go after --: codeexec run [flags] %s -- %s", args[0], strings.Join(args[1:], " "))}
			}
			src := "-"
			if len(args) == 1 {
				src = args[0]
			}
			return runOnce(cmd.Context(), f, src, progArgs, osStdio())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.store, "store", "", "image and state directory (default $CODEEXEC_STORE or "+defaultStore+")")
	fl.StringVar(&f.image, "image", image.DefaultName, "image to run in: a name, or an ID from `codeexec image list`")
	fl.StringVar(&f.lang, "lang", job.LangPython, "language of the program: "+strings.Join(job.Languages, ", ")+` ("js" for short)`)
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "wall-clock limit")
	fl.StringVar(&f.memory, "memory", "512MiB", "memory limit (RAM; sandboxes have no swap)")
	fl.StringVar(&f.net, "net", "none", "network access: none, or allow=HOST[,HOST…] (through the egress proxy; *.example.com allows subdomains)")
	fl.StringArrayVar(&f.files, "file", nil, "copy a local file into the work dir as SRC[:DEST] (repeatable)")
	fl.StringVar(&f.out, "out", "", "save produced files and figures in this directory, never replacing a file (a taken name gets \"NAME (2).EXT\")")
	fl.BoolVar(&f.json, "json", false, "print the Result as JSON")
	return cmd
}

func (f runFlags) request(code string) (*job.Request, error) {
	f.lang = job.CanonicalLanguage(f.lang)
	if f.lang == "" || !job.KnownLanguage(f.lang) {
		return nil, usageError{fmt.Errorf("--lang %q: use one of %s", f.lang, strings.Join(job.Languages, ", "))}
	}
	network, err := egress.ParseSpec(f.net)
	if err != nil {
		return nil, usageError{fmt.Errorf("--net: %w", err)}
	}
	mem, err := parseSize(f.memory)
	if err != nil {
		return nil, usageError{fmt.Errorf("--memory: %w", err)}
	}
	l := job.DefaultLimits()
	l.Timeout, l.MemoryBytes = f.timeout, mem
	req := &job.Request{Code: code, Language: f.lang, Limits: l, OutputDir: f.out, Network: network}
	for _, spec := range f.files {
		src, dest, ok := strings.Cut(spec, ":")
		if !ok {
			dest = filepath.Base(src)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, usageError{fmt.Errorf("--file: %w", err)}
		}
		req.Files = append(req.Files, job.InputFile{Path: dest, Data: data})
	}
	if err := req.Validate(); err != nil {
		return nil, usageError{err}
	}
	return req, nil
}

// stdinNoteDelay is how long a program that reads a terminal may stay silent
// before codeexec says where its input comes from.
const stdinNoteDelay = time.Second

func readProgram(src string, std stdio) (string, error) {
	var data []byte
	var err error
	if src == "-" {
		if std.inTerminal {
			fmt.Fprintln(std.err, "codeexec: reading the program from the terminal; end it with Ctrl-D")
		}
		data, err = io.ReadAll(std.in)
	} else {
		data, err = os.ReadFile(src)
	}
	if err != nil {
		return "", usageError{fmt.Errorf("read program: %w", err)}
	}
	return string(data), nil
}

// runOnce runs the program src (a file, or - for std.in) with arguments args.
func runOnce(ctx context.Context, f runFlags, src string, args []string, std stdio) error {
	code, err := readProgram(src, std)
	if err != nil {
		return err
	}
	req, err := f.request(code)
	if err != nil {
		return err
	}
	if f.out != "" {
		// Before the program runs: its files would have nowhere to go.
		if err := checkOutDir(f.out); err != nil {
			return usageError{err}
		}
	}
	// sys.argv[0] as Python shows it: the script's path as given, or - for stdin.
	req.Name, req.Args = src, args
	if err := req.Validate(); err != nil {
		return usageError{err}
	}
	if src != "-" {
		// Through the sandbox's pipe, never as our own fd: a terminal's would hand
		// the program the terminal itself (its modes; TIOCSTI where permitted).
		req.Stdin = std.in
		if std.inTerminal {
			// Reading the terminal in the background must not stop codeexec (a
			// program run with & that never reads): the read fails, the program
			// sees the end of its input.
			signal.Ignore(syscall.SIGTTIN)
		}
	}
	runner, _, err := openRunner(storeDir(f.store), f.image, nil)
	if err != nil {
		return err
	}
	defer runner.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	con := newConsole(std.out, std.err)
	if !f.json {
		req.Stdout, req.Stderr = con.stdout(), con.stderr()
	}
	note := time.AfterFunc(stdinNoteDelay, func() {
		if req.Stdin != nil && std.inTerminal {
			con.noteIfSilent("codeexec: (the program is running; its standard input is this terminal, Ctrl-D ends it)\n")
		}
	})
	res, err := runner.Run(ctx, req)
	note.Stop()
	lineEnded := con.close()
	if err != nil {
		return fmt.Errorf("running program: %w", err)
	}
	noteSaved(res, f.out)
	if f.json {
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printResult(std, res, f.out, lineEnded)
	if res.ExitCode != 0 {
		return exitError{res.ExitCode}
	}
	return nil
}

// printResult follows the program's output, which was printed as it came: the value
// of its last expression on stdout, as a REPL shows it (on a line of its own), then
// notes on stderr of what the output alone does not show.
func printResult(std stdio, res *job.Result, out string, lineEnded bool) {
	if res.Result != nil {
		if !lineEnded {
			fmt.Fprintln(std.out)
		}
		fmt.Fprintln(std.out, *res.Result)
	}
	note := func(format string, args ...any) { fmt.Fprintf(std.err, "codeexec: "+format+"\n", args...) }
	if res.ResultTruncated {
		note("the value's repr was longer than the limit and was cut")
	}
	if res.StdoutTruncated {
		note("stdout was truncated")
	}
	if res.StderrTruncated {
		note("stderr was truncated")
	}
	switch res.Status {
	case job.StatusTimeout, job.StatusMemoryLimit, job.StatusOutputLimit, job.StatusKilled:
		note("%s: %s", res.Status, res.Error.Message)
	}
	if out == "" && (len(res.Images) > 0 || len(res.Files) > 0) {
		note("%d figure(s) and %d file(s) produced; use --out DIR to save them", len(res.Images), len(res.Files))
	}
}

// checkOutDir makes sure dir is, or can be made, a directory this process can write
// in: it creates it if need be and a file in it.
func checkOutDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("--out %q: cannot create the directory: %w", dir, err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("--out %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--out %q is not a directory", dir)
	}
	probe, err := os.CreateTemp(dir, ".codeexec-probe-*")
	if err != nil {
		return fmt.Errorf("--out %q is not writable: %w", dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// noteSaved says on stderr which produced files and figures --out could not save, and
// which it saved under another name because theirs was taken.
func noteSaved(res *job.Result, out string) {
	if out == "" {
		return
	}
	note := func(what, name string, s job.Saved) {
		switch {
		case s.SaveError != "":
			fmt.Fprintf(os.Stderr, "codeexec: %s %s was not saved: %s\n", what, name, s.SaveError)
		case s.SavedAs != filepath.Join(out, filepath.FromSlash(name)):
			fmt.Fprintf(os.Stderr, "codeexec: %s %s saved as %s (the name was taken)\n", what, name, s.SavedAs)
		}
	}
	for _, f := range res.Files {
		note("file", f.Path, f.Saved)
	}
	for _, im := range res.Images {
		note("figure", im.Name, im.Saved)
	}
	if res.FilesTruncated {
		fmt.Fprintf(os.Stderr, "codeexec: files_truncated: the work dir held more files than the %d listed and saved\n", len(res.Files))
	}
}
