package harness_test

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/codeexec/codeexec/internal/sandbox/harness"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
)

// The JavaScript harness on its own: Node of the image (chroot, no sandbox: these
// are tests of harness.js's protocol and semantics, not of containment), one-shot
// as the cold path runs it and serving runs as a session's context does.

// nodeCmd is the image's Node running the harness with argv, in the harness's
// environment plus env.
func nodeCmd(t *testing.T, env []string, argv ...string) *exec.Cmd {
	t.Helper()
	rootfs := sandboxtest.Rootfs(t)
	cmd := exec.Command("/usr/sbin/chroot", append([]string{rootfs, "/usr/bin/node", "-e", harness.NodeSource, "--"}, argv...)...)
	cmd.Env = append(append([]string{"PATH=/usr/bin:/bin", "HOME=/tmp"}, harness.Env()...), env...)
	cmd.Dir = "/"
	return cmd
}

// oneShot runs code as the cold path does and returns its report, stdout and
// stderr, and exit code.
func oneShot(t *testing.T, code string) (*harness.Report, string, string, int) {
	t.Helper()
	cmd := nodeCmd(t, nil, "prog.js", "a")
	repR, repW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer repR.Close()
	codeF, err := os.CreateTemp(t.TempDir(), "code")
	if err != nil {
		t.Fatal(err)
	}
	defer codeF.Close()
	if _, err := codeF.WriteString(code); err != nil {
		t.Fatal(err)
	}
	if _, err := codeF.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.ExtraFiles = []*os.File{repW, codeF} // fds 3 and 4
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	repW.Close()
	data, _ := io.ReadAll(repR)
	exit := 0
	if err := cmd.Wait(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		exit = ee.ExitCode()
	}
	rep, err := harness.Parse(data)
	if err != nil {
		t.Fatalf("%q: report %q: %v (stderr %q)", code, data, err, stderr.String())
	}
	return rep, stdout.String(), stderr.String(), exit
}

func resultOf(rep *harness.Report) string {
	if rep.Result == nil {
		return "<none>"
	}
	return *rep.Result
}

func TestNodeHarnessOneShot(t *testing.T) {
	for _, tc := range []struct {
		name, code     string
		result         string // "<none>" for no result
		errName        string
		errMessage     string
		exit           int
		stdout, stderr string
	}{
		{name: "last expression", code: "1 + 1", result: "2"},
		{name: "object", code: "({a: [1, 'x']})", result: "{ a: [ 1, 'x' ] }"},
		{name: "undefined is no result", code: "undefined", result: "<none>"},
		{name: "null is a result", code: "null", result: "null"},
		{name: "a declaration last is no result", code: "2 + 2\nconst c = 1", result: "<none>"},
		{name: "a statement last is no result", code: "let n = 0\nfor (let i = 0; i < 3; i++) n += i", result: "<none>"},
		{name: "console", code: "console.log('out'); console.error('err'); process.stdout.write('raw')", stdout: "out\nraw", stderr: "err\n", result: "true"},
		{name: "argv", code: "process.argv.slice(1).join(' ')", result: "'prog.js a'"},
		{name: "top-level await", code: "const {a, b: [c]} = await Promise.resolve({a: 1, b: [2]})\nclass K {}\nfunction f() { return a + c }\nf() + (typeof K)", result: "'3function'"},
		{name: "dynamic import", code: "(await import('node:path')).basename('/a/b')", result: "'b'", stderr: "-"},
		{name: "for await", code: "let s = 0\nfor await (const v of [Promise.resolve(1), 2]) s += v\ns", result: "3"},
		{name: "error", code: "function g() { throw new RangeError('far') }\ng()", errName: "RangeError", errMessage: "far", exit: 1, stderr: "RangeError: far\n    at g (<code>:1:22)\n    at <code>:2:1\n"},
		{name: "thrown value", code: "throw {code: 42}", errName: "Uncaught", errMessage: "{ code: 42 }", exit: 1},
		{name: "rejection after await", code: "await null\nthrow new TypeError('later')", errName: "TypeError", errMessage: "later", exit: 1},
		{name: "callback error", code: "setTimeout(() => { throw new Error('cb') }, 1); 5", errName: "Error", errMessage: "cb", exit: 1},
		{name: "syntax error", code: "let = ;", errName: "SyntaxError", exit: 1},
		{name: "exit", code: "process.exit(3)", errName: "Exit", errMessage: "process.exit(3)", exit: 3},
		{name: "exitCode", code: "process.exitCode = 4; 'set'", errName: "Exit", exit: 4},
		{name: "timers before the end", code: "void setTimeout(() => console.log('later'), 5)", stdout: "later\n", result: "<none>"},
		{name: "long result cut", code: "'x'.repeat(200000)", result: "cut"},
		{name: "import default", code: "import fs from 'fs'\ntypeof fs.readFileSync", result: "'function'", stderr: "-"},
		{name: "import named as", code: "import { readFileSync as r, existsSync } from 'node:fs'\ntypeof r + typeof existsSync", result: "'functionfunction'"},
		{name: "import string name", code: "import { 'basename' as b } from 'path'\nb('/x/y')", result: "'y'"},
		{name: "import namespace", code: "import * as path from 'path'\npath.basename('/a/b')", result: "'b'"},
		{name: "import default and named", code: "import p, { join } from 'path'\np.join === join", result: "true"},
		{name: "import default and namespace", code: "import p, * as ns from 'path'\np === ns.default", result: "true"},
		{name: "import for its effects", code: "import 'node:fs'\n1", result: "1"},
		{name: "import after code", code: "const n = 2\nimport { join } from 'path'\njoin('a', String(n))", result: "'a/2'"},
		{name: "import with require", code: "import path from 'path'\nconst fs = require('fs')\ntypeof fs.readFileSync + path.sep", result: "'function/'"},
		{name: "import of an unknown module", code: "import x from 'no-such-module'\nx", errName: "Error", errMessage: "Cannot find package 'no-such-module'", exit: 1},
		{name: "import keeps the lines", code: "import {\n  basename,\n} from 'path'\nfunction g() { throw new RangeError(basename('/a/far')) }\ng()\n'unreached'", errName: "RangeError", errMessage: "far", exit: 1, stderr: "RangeError: far\n    at g (<code>:4:22)\n    at <code>:5:1\n"},
		{name: "import in a block", code: "{\n  import fs from 'fs'\n}", errName: "SyntaxError", errMessage: "import declarations may only appear at the top level of a program (line 2)", exit: 1},
		{name: "export", code: "const a = 1\nexport { a }", errName: "SyntaxError", errMessage: "export is not supported in a program (line 2)", exit: 1},
		{name: "export default", code: "console.log('ran')\nexport default 1", errName: "SyntaxError", errMessage: "export is not supported in a program (line 2)", exit: 1, stdout: "-"},
		{name: "harness unseen", code: "typeof harness + ' ' + typeof oneShot + ' ' + ('CODEEXEC_MAX_RESULT' in process.env)", result: "'undefined undefined false'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, stdout, stderr, exit := oneShot(t, tc.code)
			if exit != tc.exit || rep.ExitCode != tc.exit {
				t.Errorf("exit %d, report's %d, want %d (stderr %q)", exit, rep.ExitCode, tc.exit, stderr)
			}
			if tc.errName != "" {
				if rep.OK || rep.Error == nil || rep.Error.Name != tc.errName || !strings.Contains(rep.Error.Message, tc.errMessage) {
					t.Fatalf("report %+v error %+v, want %s %q", rep, rep.Error, tc.errName, tc.errMessage)
				}
				if strings.Contains(rep.Error.Traceback, "node:") || strings.Contains(rep.Error.Traceback, "[eval]") {
					t.Errorf("traceback shows the harness's or Node's frames: %q", rep.Error.Traceback)
				}
			} else if !rep.OK || rep.Error != nil {
				t.Fatalf("report %+v error %+v, want ok", rep, rep.Error)
			}
			switch got := resultOf(rep); {
			case tc.result == "cut":
				if !rep.ResultTruncated || len(got) > harness.MaxResultBytes || !strings.HasPrefix(got, "'xxx") {
					t.Errorf("result of %d bytes, truncated %v; want cut to %d", len(got), rep.ResultTruncated, harness.MaxResultBytes)
				}
			case tc.errName == "" && got != tc.result:
				t.Errorf("result %q, want %q", got, tc.result)
			}
			if tc.stdout == "-" && stdout != "" {
				t.Errorf("stdout %q, want none", stdout)
			}
			if tc.stdout != "" && tc.stdout != "-" && stdout != tc.stdout {
				t.Errorf("stdout %q, want %q", stdout, tc.stdout)
			}
			if tc.stderr == "-" && stderr != "" {
				t.Errorf("stderr %q, want none", stderr)
			}
			if tc.stderr != "" && tc.stderr != "-" && stderr != tc.stderr {
				t.Errorf("stderr %q, want %q", stderr, tc.stderr)
			}
		})
	}
}

// TestNodeHarnessServe: in serve mode the runs of a session share the process's
// globals — declared with let, const, class, function or import, and with top-level await —
// may declare them again as in a REPL, and outlive an error and process.exit.
func TestNodeHarnessServe(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	cmd := nodeCmd(t, []string{"CODEEXEC_JS_SERVE=1"})
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	defer func() {
		mine.Close() // Node exits at the socket's end
		cmd.Wait()
	}()
	in := bufio.NewReader(mine)
	steps := []struct {
		code, result, errName string
		exit                  int
	}{
		{code: "let x = 1; const y = 2; function f() { return x + y }; class K { v() { return 'k' } }", result: "<none>"},
		{code: "f() + new K().v()", result: "'3k'"},
		{code: "let x = 10; const y = 20", result: "<none>"}, // declared again
		{code: "f()", result: "30"},
		{code: "const z = await Promise.resolve(x + 1); async function g() { return z }", result: "<none>"},
		{code: "await g()", result: "11"},
		{code: "class K { v() { return 'k2' } }; new K().v()", result: "'k2'"},
		{code: "undefinedName", errName: "ReferenceError", exit: 1},
		{code: "process.exit(5)", errName: "Exit", exit: 5},
		{code: "process.argv.slice(1)", result: "[ 'n' ]"},
		{code: "x + z", result: "21"},
		{code: "import { basename as bn } from 'node:path'\nimport * as os from 'os'", result: "<none>"},
		{code: "bn('/q/r') + typeof os.cpus", result: "'rfunction'"},
		{code: "import { dirname as bn } from 'path'", result: "<none>"}, // imported again
		{code: "bn('/q/r')", result: "'/q'"},
		{code: "export const e = 1", errName: "SyntaxError", exit: 1},
		{code: "typeof e", result: "'undefined'"},
	}
	for i, st := range steps {
		msg, _ := json.Marshal(map[string]any{"code": st.code, "argv": []string{"n"}})
		if _, err := mine.Write(append(msg, '\n')); err != nil {
			t.Fatal(err)
		}
		line, err := in.ReadBytes('\n')
		if err != nil {
			t.Fatalf("step %d %q: no report (%v); stderr %q", i, st.code, err, stderr.String())
		}
		rep, err := harness.Parse(line[:len(line)-1])
		if err != nil {
			t.Fatalf("step %d %q: report %q: %v", i, st.code, line, err)
		}
		if rep.ExitCode != st.exit || (st.errName == "") != (rep.Error == nil) || (rep.Error != nil && rep.Error.Name != st.errName) {
			t.Fatalf("step %d %q: exit %d error %+v, want %d %q", i, st.code, rep.ExitCode, rep.Error, st.exit, st.errName)
		}
		if st.errName == "" && resultOf(rep) != st.result {
			t.Fatalf("step %d %q: result %q, want %q", i, st.code, resultOf(rep), st.result)
		}
	}
}
