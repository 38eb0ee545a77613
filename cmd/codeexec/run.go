package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/sandbox"
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
		Use:   "run [flags] [FILE|-]",
		Short: "Run code once in a fresh sandbox",
		Long: `Run a Python program in a fresh sandbox and print its output.

Without --json, the program's stdout and stderr are printed as they are and codeexec
exits with the program's exit code (124 on timeout, 137 when killed or out of memory).
With --json, the Result is printed as JSON and the exit code is 0.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src := "-"
			if len(args) == 1 {
				src = args[0]
			}
			return runOnce(cmd.Context(), f, src)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.store, "store", "", "image and state directory (default $CODEEXEC_STORE or "+defaultStore+")")
	fl.StringVar(&f.image, "image", image.DefaultName, "image to run in: a name, or an ID from `codeexec image list`")
	fl.StringVar(&f.lang, "lang", "python", "language of the program")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "wall-clock limit")
	fl.StringVar(&f.memory, "memory", "512MiB", "memory limit (RAM and swap)")
	fl.StringVar(&f.net, "net", "none", "network access: none, or allow=HOST[,HOST…] (through the egress proxy; *.example.com allows subdomains)")
	fl.StringArrayVar(&f.files, "file", nil, "copy a local file into the work dir as SRC[:DEST] (repeatable)")
	fl.StringVar(&f.out, "out", "", "save produced files and figures in this directory")
	fl.BoolVar(&f.json, "json", false, "print the Result as JSON")
	return cmd
}

func (f runFlags) request(code string) (*sandbox.Request, error) {
	if f.lang != "python" {
		return nil, usageError{fmt.Errorf("--lang %q: only python is supported", f.lang)}
	}
	network, err := egress.ParseSpec(f.net)
	if err != nil {
		return nil, usageError{fmt.Errorf("--net: %w", err)}
	}
	mem, err := parseSize(f.memory)
	if err != nil {
		return nil, usageError{fmt.Errorf("--memory: %w", err)}
	}
	l := sandbox.DefaultLimits()
	l.Timeout, l.MemoryBytes = f.timeout, mem
	req := &sandbox.Request{Code: code, Limits: l, OutputDir: f.out, Network: network}
	for _, spec := range f.files {
		src, dest, ok := strings.Cut(spec, ":")
		if !ok {
			dest = filepath.Base(src)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, usageError{fmt.Errorf("--file: %w", err)}
		}
		req.Files = append(req.Files, sandbox.InputFile{Path: dest, Data: data})
	}
	if err := req.Validate(); err != nil {
		return nil, usageError{err}
	}
	return req, nil
}

func readProgram(src string) (string, error) {
	var data []byte
	var err error
	if src == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(src)
	}
	if err != nil {
		return "", usageError{fmt.Errorf("read program: %w", err)}
	}
	return string(data), nil
}

func runOnce(ctx context.Context, f runFlags, src string) error {
	code, err := readProgram(src)
	if err != nil {
		return err
	}
	req, err := f.request(code)
	if err != nil {
		return err
	}
	runner, _, err := openRunner(storeDir(f.store), f.image, nil)
	if err != nil {
		return err
	}
	defer runner.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runner.Run(ctx, req)
	if err != nil {
		return fmt.Errorf("running program: %w", err)
	}
	if f.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printResult(res, f.out)
	if res.ExitCode != 0 {
		return exitError{res.ExitCode}
	}
	return nil
}

// printResult writes the program's output as it was, then notes on stderr what the
// output alone does not show.
func printResult(res *sandbox.Result, out string) {
	os.Stdout.WriteString(res.Stdout)
	os.Stderr.WriteString(res.Stderr)
	note := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "codeexec: "+format+"\n", args...) }
	if res.StdoutTruncated {
		note("stdout was truncated")
	}
	if res.StderrTruncated {
		note("stderr was truncated")
	}
	switch res.Status {
	case sandbox.StatusTimeout, sandbox.StatusMemoryLimit, sandbox.StatusOutputLimit, sandbox.StatusKilled:
		note("%s: %s", res.Status, res.Error.Message)
	}
	if out == "" && (len(res.Images) > 0 || len(res.Files) > 0) {
		note("%d figure(s) and %d file(s) produced; use --out DIR to save them", len(res.Images), len(res.Files))
	}
}
