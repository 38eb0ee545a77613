package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestRunNetFlag(t *testing.T) {
	for _, tc := range []struct {
		net     string
		want    []string // nil: no network
		wantErr bool
	}{
		{net: "none"},
		{net: "allow=example.com,*.pypi.org", want: []string{"example.com", "*.pypi.org"}},
		{net: "allow=", wantErr: true},
		{net: "all", wantErr: true},
	} {
		f := runFlags{lang: "python", net: tc.net, memory: "64MiB", timeout: 1e9}
		req, err := f.request("print(1)")
		if tc.wantErr {
			var usage usageError
			if !errors.As(err, &usage) {
				t.Errorf("--net %s: %v, want a usage error", tc.net, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("--net %s: %v", tc.net, err)
		}
		switch {
		case tc.want == nil && req.Network != nil:
			t.Errorf("--net %s: network %+v, want none", tc.net, req.Network)
		case tc.want != nil && (req.Network == nil || !slices.Equal(req.Network.Allow, tc.want)):
			t.Errorf("--net %s: network %+v, want %q", tc.net, req.Network, tc.want)
		}
	}
}

func TestServeNetAllow(t *testing.T) {
	t.Setenv("CODEEXEC_NET_ALLOW", "a.example.com, *.b.example.com")
	c := defaultServeConfig()
	if err := c.load("", pflag.NewFlagSet("serve", pflag.ContinueOnError)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.example.com", "*.b.example.com"}; !slices.Equal(c.NetAllow, want) {
		t.Errorf("net allow %q, want %q", c.NetAllow, want)
	}
	t.Setenv("CODEEXEC_NET_ALLOW", "a b")
	c = defaultServeConfig()
	if err := c.load("", pflag.NewFlagSet("serve", pflag.ContinueOnError)); err == nil {
		t.Error("a malformed host was accepted")
	}
}

// run --out refuses, before the program runs, a directory it could not save into.
func TestCheckOutDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		out  string
		want string // a word of the error; "" for none
	}{
		{filepath.Join(dir, "new", "sub"), ""},
		{dir, ""},
		{file, "not a directory"},
		{filepath.Join(file, "sub"), "not a directory"},
		{"/proc/self", "not writable"},
		{"/proc/self/new", "cannot create"},
	} {
		err := checkOutDir(tc.out)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("checkOutDir(%q) = %v, want nil", tc.out, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("checkOutDir(%q) = %v, want an error about %q", tc.out, err, tc.want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "new", "sub")); err != nil || !fi.IsDir() {
		t.Errorf("checkOutDir did not create the missing directory: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("checkOutDir left files behind: %v", entries)
	}
}

func TestRunPrintsValueArgsAndStdin(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	tests := []struct {
		name     string
		program  string // from a file; "" reads stdin as the program
		args     []string
		stdin    string
		wantOut  string
		wantErr  string // in stderr
		wantCode int
	}{
		{name: "value after the output", program: "print('hi')\nx = 6 * 7\nx", wantOut: "hi\n42\n"},
		{name: "variable result", program: "result = {'a': 1}", wantOut: "{'a': 1}\n"},
		{name: "no value", program: "print('hi')", wantOut: "hi\n"},
		{name: "value on a line of its own", program: "print('no newline', end='')\n'v'", wantOut: "no newline\n'v'\n"},
		{name: "arguments", program: "import sys\nsys.argv[1:]", args: []string{"a", "b c", "--x"}, wantOut: "['a', 'b c', '--x']\n"},
		{name: "stdin", program: "import sys\nline = sys.stdin.readline()\nprint(line.upper(), end='')\nsys.stdin.read()", stdin: "hello\nrest\n", wantOut: "HELLO\n'rest\\n'\n"},
		{name: "program from stdin", stdin: "import sys\nsys.argv", args: []string{"a"}, wantOut: "['-', 'a']\n"},
		{name: "error", program: "print('before')\nraise ValueError('bad')", wantOut: "before\n", wantErr: "ValueError: bad", wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "-"
			if tt.program != "" {
				src = filepath.Join(dir, "prog.py")
				if err := os.WriteFile(src, []byte(tt.program), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out, errOut syncBuffer
			f := runFlags{lang: "python", net: "none", memory: "256MiB", timeout: 30 * time.Second}
			err := runOnce(context.Background(), f, src, tt.args, stdio{in: strings.NewReader(tt.stdin), out: &out, err: &errOut})
			code := 0
			if err != nil {
				code = exitCode(err)
			}
			if code != tt.wantCode {
				t.Fatalf("runOnce: %v (exit code %d), want %d; stderr %q", err, code, tt.wantCode, errOut.String())
			}
			if out.String() != tt.wantOut || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("stdout %q stderr %q, want %q and %q in stderr", out.String(), errOut.String(), tt.wantOut, tt.wantErr)
			}
			if src != "-" && strings.Contains(errOut.String(), "terminal") {
				t.Errorf("a note about a terminal without one: %q", errOut.String())
			}
		})
	}
}

// TestRunNotesTerminalStdin checks that a silent program reading a terminal gets a
// note: the program waits for input that the test types only once the note is there.
func TestRunNotesTerminalStdin(t *testing.T) {
	requireSandbox(t)
	src := filepath.Join(t.TempDir(), "read.py")
	if err := os.WriteFile(src, []byte("import sys\nlen(sys.stdin.read())"), 0o644); err != nil {
		t.Fatal(err)
	}
	in, typed := io.Pipe()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		f := runFlags{lang: "python", net: "none", memory: "256MiB", timeout: 60 * time.Second}
		done <- runOnce(context.Background(), f, src, nil, stdio{in: in, out: &out, err: &errOut, inTerminal: true})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(errOut.String(), "its standard input is this terminal") {
		if time.Now().After(deadline) {
			t.Fatalf("no note about the terminal; stderr %q", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	io.WriteString(typed, "abc")
	typed.Close()
	if err := <-done; err != nil || out.String() != "3\n" {
		t.Fatalf("runOnce: %v, stdout %q", err, out.String())
	}
}

func TestRunArgsNeedDash(t *testing.T) {
	cmd := newRunCmd()
	cmd.SetArgs([]string{"prog.py", "a"})
	cmd.SetOut(io.Discard)
	var usage usageError
	if err := cmd.Execute(); !errors.As(err, &usage) || !strings.Contains(err.Error(), "prog.py -- a") {
		t.Errorf("run prog.py a: %v, want a usage error that shows --", err)
	}
}

func TestRunLang(t *testing.T) {
	for _, tc := range []struct {
		lang string
		ok   bool
	}{{"python", true}, {"bash", true}, {"cobol", false}, {"", false}} {
		f := runFlags{lang: tc.lang, net: "none", memory: "64MiB", timeout: 1e9}
		req, err := f.request("echo 1")
		if (err == nil) != tc.ok || (tc.ok && req.Language != tc.lang) {
			t.Errorf("request with --lang %q: %v, %v; want ok %v", tc.lang, req, err, tc.ok)
		}
	}
}
