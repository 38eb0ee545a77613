package safety

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
	"github.com/codeexec/codeexec/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	sandboxtest.Close()
	os.Exit(code)
}

// testRunner returns a real warm sandbox runner, skipping (or failing under
// CODEEXEC_REQUIRE_INTEGRATION=1) when this host cannot make sandboxes.
func testRunner(t *testing.T) *sandbox.Runner { return sandboxtest.Shared(t) }

// staticCases are programs and what the static check must say of them. want is a
// substring of the reason: the finding's name for unsafe code.
var staticCases = []struct {
	name string
	code string
	safe bool
	want string
}{
	// Safe: what an assistant writes to answer questions.
	{"numpy", "import numpy as np\nprint(np.linalg.inv(np.eye(3) * 2).sum())", true, "no findings"},
	{"pandas groupby", "import pandas as pd\ndf = pd.DataFrame({'k': [1, 1, 2], 'v': [1, 2, 3]})\nprint(df.groupby('k').v.sum())", true, "no findings"},
	{"matplotlib", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.title('/home prices')\nplt.savefig('plot.png')", true, "no findings"},
	{"write ./out.csv", "import pandas as pd\npd.DataFrame({'a': [1]}).to_csv('./out.csv')\nwith open('notes.txt', 'w') as f:\n    f.write('x')", true, "no findings"},
	{"read uploaded data.csv", "import pandas as pd\ndf = pd.read_csv('data.csv')\nprint(df.describe())", true, "no findings"},
	{"syntax error", "def f(:\n    pass", true, "syntax error; left to the interpreter"},
	// Listing the work dir is the sandbox's own directory, not the host's: allowed
	// here; whether the user may ask for it is the LLM judge's policy.
	{"list work dir", "import os\nprint(os.listdir('.'))", true, "no findings"},
	{"single env var", "import os\nprint(os.environ.get('HOME'), 'PATH' in os.environ)", true, "no findings"},
	{"literal eval", "print(eval('1 + 2'))", true, "no findings"},
	{"tmp write and delete", "import os\nopen('/tmp/x', 'w').write('1')\nos.remove('/tmp/x')", true, "no findings"},

	// Unsafe.
	{"os.system", "import os\nos.system('ls -la ~')", false, "process spawning: os.system (line 2)"},
	{"subprocess.run", "import subprocess\nsubprocess.run(['ls'])", false, "process spawning: import subprocess"},
	{"socket.connect", "import socket\ns = socket.socket()\ns.connect(('example.com', 80))", false, "network access"},
	{"requests.get", "import requests\nprint(requests.get('https://example.com').text)", false, "network access: import requests"},
	{"pandas url", "import pandas as pd\ndf = pd.read_csv('https://example.com/x.csv')", false, "network access: pd.read_csv"},
	{"read /etc/shadow", "print(open('/etc/shadow').read())", false, "sensitive path: '/etc/shadow'"},
	{"read via pathlib", "from pathlib import Path\nprint((Path('/') / 'etc' / 'shadow').read_text())", false, "sensitive path"},
	{"ssh key", "import os\nprint(open(os.path.expanduser('~/.ssh/id_rsa')).read())", false, "sensitive path"},
	{"write /home/x", "open('/home/x', 'w').write('hi')", false, "file write outside the work dir: open('/home/x', 'w')"},
	{"rmtree /", "import shutil\nshutil.rmtree('/')", false, "file deletion outside the work dir: shutil.rmtree('/')"},
	{"eval of input", "expr = input('> ')\nprint(eval(expr))", false, "dynamic code: eval of a non-literal string"},
	{"__import__ os.system", "__import__('os').system('id')", false, "process spawning: os.system"},
	{"exec literal", "exec(\"import subprocess\\nsubprocess.call('id')\")", false, "process spawning"},
	{"getattr dynamic", "import os\ngetattr(os, 'sys' + 'tem')('id')", false, "dynamic code: getattr on os"},
	{"ctypes", "import ctypes\nlibc = ctypes.CDLL('libc.so.6')", false, "native code: import ctypes"},
	{"fork bomb", "import os\nwhile True:\n    os.fork()", false, "fork bomb: os.fork inside a loop"},
	{"list root", "import os\nprint(os.listdir('/'))", false, "directory listing outside the work dir: os.listdir('/')"},
	{"environ dump", "import os\nprint(dict(os.environ))", false, "environment dump: os.environ"},
	{"sys.modules", "import sys\nsys.modules['json'] = None", false, "import system tampering: sys.modules"},
	{"star import", "from os import *\nsystem('id')", false, "process spawning: os.system"},
	{"dynamic import", "import importlib\nm = importlib.import_module(input())", false, "dynamic import"},
}

// TestStaticSandbox runs the table on both ways of running the analyzer: compiled
// once (the usual one) and from source (when compiling failed).
func TestStaticSandbox(t *testing.T) {
	s := NewStatic(testRunner(t))
	ctx := context.Background()
	if s.compiled(ctx) == nil {
		t.Fatal("the sandbox could not compile the analyzer")
	}
	paths := []struct {
		name     string
		bytecode []byte
	}{{"compiled", s.bytecode}, {"source", nil}}
	for _, tc := range staticCases {
		for _, p := range paths {
			t.Run(tc.name+"/"+p.name, func(t *testing.T) {
				res, err := s.Runner.Run(ctx, s.request(tc.code, false, p.bytecode))
				if err != nil {
					t.Fatal(err)
				}
				r, err := decodeReport(res)
				if err != nil {
					t.Fatalf("analyzing %q: %v (stderr %q)", tc.code, err, res.Stderr)
				}
				if r.Safe != tc.safe || !strings.Contains(r.Reason, tc.want) {
					t.Errorf("analyzing %q\n got safe=%v reason %q findings %+v\nwant safe=%v reason containing %q",
						tc.code, r.Safe, r.Reason, r.Findings, tc.safe, tc.want)
				}
			})
		}
	}
	// Check gives the same verdicts.
	for _, tc := range staticCases[:3] {
		v, err := s.Check(ctx, tc.code, nil)
		if err != nil || v.Safe != tc.safe || !strings.Contains(v.Reason, tc.want) {
			t.Errorf("Check(%q) = %+v, %v; want safe=%v reason containing %q", tc.code, v, err, tc.safe, tc.want)
		}
	}
}

// networkCases are what the static check says of programs that run with limited
// network: HTTP(S) clients and URLs are allowed (the egress proxy decides the
// hosts), every other finding stays.
var networkCases = []struct {
	name string
	code string
	safe bool
	want string
}{
	{"requests.get", "import requests\nprint(requests.get('https://example.com').text)", true, "no findings"},
	{"urllib", "from urllib.request import urlopen\nprint(urlopen('https://example.com').read())", true, "no findings"},
	{"pandas url", "import pandas as pd\ndf = pd.read_csv('https://example.com/x.csv')", true, "no findings"},
	{"httpx", "import httpx\nhttpx.get('https://example.com')", true, "no findings"},
	{"socket", "import socket\ns = socket.socket()\ns.connect(('example.com', 80))", false, "network access: import socket"},
	{"ftp url", "import pandas as pd\ndf = pd.read_csv('ftp://example.com/x.csv')", false, "network access: pd.read_csv"},
	{"smtplib", "import smtplib\nsmtplib.SMTP('mail.example.com')", false, "network access: import smtplib"},
	{"os.system", "import requests, os\nos.system('curl example.com')", false, "process spawning: os.system"},
}

// TestStaticNetwork runs networkCases through Check with a network policy, and
// checks that the same HTTP programs are refused without one.
func TestStaticNetwork(t *testing.T) {
	s := NewStatic(testRunner(t))
	ctx := context.Background()
	policy := &egress.Policy{Allow: []string{"example.com"}}
	for _, tc := range networkCases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := s.Check(ctx, tc.code, policy)
			if err != nil || v.Safe != tc.safe || !strings.Contains(v.Reason, tc.want) {
				t.Errorf("Check(%q, network) = %+v, %v; want safe=%v reason containing %q", tc.code, v, err, tc.safe, tc.want)
			}
			if !tc.safe {
				return
			}
			if v, err := s.Check(ctx, tc.code, nil); err != nil || v.Safe {
				t.Errorf("Check(%q, no network) = %+v, %v; want unsafe", tc.code, v, err)
			}
		})
	}
}

// TestStaticTooDeep: code the analyzer cannot parse for lack of stack is an error
// (not a verdict), so the caller refuses it.
func TestStaticTooDeep(t *testing.T) {
	s := NewStatic(testRunner(t))
	code := "x = 1" + strings.Repeat(" + 1", 200000)
	if v, err := s.Check(context.Background(), code, nil); err == nil {
		t.Errorf("Check(1 + 1 + … 200000 times) = %+v, nil; want an error", v)
	}
}

// fakeRunner answers runs with its results in order, then with err, and records
// the requests.
type fakeRunner struct {
	results []*job.Result
	err     error
	got     []*job.Request
}

func (f *fakeRunner) Run(ctx context.Context, req *job.Request) (*job.Result, error) {
	f.got = append(f.got, req)
	if len(f.got) > len(f.results) {
		return nil, f.err
	}
	return f.results[len(f.got)-1], nil
}

func okResult(stdout string) *job.Result {
	return &job.Result{Status: job.StatusOK, Stdout: stdout}
}

const safeReport = `{"safe": true, "reason": "no findings", "findings": []}` + "\n"

func TestStaticRequests(t *testing.T) {
	f := &fakeRunner{results: []*job.Result{okResult("e3ff00"), okResult(safeReport), okResult(safeReport)}}
	s := NewStatic(f)
	for _, code := range []string{"print(1)", "print(2)"} {
		if _, err := s.Check(context.Background(), code, nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.got) != 3 {
		t.Fatalf("%d runs for two checks, want 3: compile once, then one per check", len(f.got))
	}
	c := f.got[0]
	if c.Code != compileProgram || len(c.Files) != 1 || c.Files[0].Path != analyzerFile || string(c.Files[0].Data) != analyzerSource {
		t.Errorf("first run %q with files %v, want compileProgram with %s", c.Code, c.Files, analyzerFile)
	}
	for i, code := range []string{"print(1)", "print(2)"} {
		r := f.got[i+1]
		want := []job.InputFile{{Path: codeFile, Data: []byte(code)}, {Path: bytecodeFile, Data: []byte{0xe3, 0xff, 0}}}
		if r.Code != loaderProgram || !reflect.DeepEqual(r.Files, want) {
			t.Errorf("check of %q ran %q with files %v, want loaderProgram with %v", code, r.Code, r.Files, want)
		}
		if r.Limits != StaticLimits() {
			t.Errorf("check limits %+v, want StaticLimits() %+v", r.Limits, StaticLimits())
		}
	}
}

// TestStaticCompileFails: without bytecode the analyzer runs from source, and the
// next check tries to compile again.
func TestStaticCompileFails(t *testing.T) {
	for _, compile := range []*job.Result{
		{Status: job.StatusError, Error: &job.Error{Name: "SyntaxError"}},
		okResult("not hex"),
		okResult(""),
	} {
		f := &fakeRunner{results: []*job.Result{compile, okResult(safeReport), compile, okResult(safeReport)}}
		s := NewStatic(f)
		for range 2 {
			if v, err := s.Check(context.Background(), "print(1)", nil); err != nil || !v.Safe {
				t.Fatalf("compile result %+v: Check = %+v, %v; want safe", compile, v, err)
			}
		}
		if len(f.got) != 4 || f.got[1].Code != analyzerSource || f.got[2].Code != compileProgram || len(f.got[1].Files) != 1 {
			t.Errorf("compile result %+v: runs %d, want compile, source, compile, source", compile, len(f.got))
		}
	}
}

func TestStaticDecodeStrict(t *testing.T) {
	ok := job.StatusOK
	cases := []struct {
		name   string
		res    job.Result
		wantOK bool
	}{
		{"safe", job.Result{Status: ok, Stdout: `{"safe": true, "reason": "no findings", "findings": []}` + "\n"}, true},
		{"unsafe", job.Result{Status: ok, Stdout: `{"safe": false, "reason": "x (line 1)", "findings": [{"line": 1, "what": "x"}]}`}, true},
		{"run failed", job.Result{Status: job.StatusError, Error: &job.Error{Name: "RecursionError", Message: "too deep"}}, false},
		{"timeout", job.Result{Status: job.StatusTimeout}, false},
		{"truncated", job.Result{Status: ok, StdoutTruncated: true, Stdout: `{"safe": true, "reason": "no findings", "findings": []}`}, false},
		{"empty", job.Result{Status: ok}, false},
		{"not json", job.Result{Status: ok, Stdout: "safe\n"}, false},
		{"unknown field", job.Result{Status: ok, Stdout: `{"safe": true, "reason": "r", "findings": [], "extra": 1}`}, false},
		{"unknown finding field", job.Result{Status: ok, Stdout: `{"safe": false, "reason": "r", "findings": [{"line": 1, "what": "x", "y": 2}]}`}, false},
		{"trailing data", job.Result{Status: ok, Stdout: `{"safe": true, "reason": "r", "findings": []} {"safe": false}`}, false},
		{"missing safe", job.Result{Status: ok, Stdout: `{"reason": "r", "findings": []}`}, false},
		{"missing findings", job.Result{Status: ok, Stdout: `{"safe": true, "reason": "r"}`}, false},
		{"safe as string", job.Result{Status: ok, Stdout: `{"safe": "true", "reason": "r", "findings": []}`}, false},
		{"empty reason", job.Result{Status: ok, Stdout: `{"safe": true, "reason": "", "findings": []}`}, false},
		{"unsafe without findings", job.Result{Status: ok, Stdout: `{"safe": false, "reason": "r", "findings": []}`}, false},
		{"safe with findings", job.Result{Status: ok, Stdout: `{"safe": true, "reason": "r", "findings": [{"line": 1, "what": "x"}]}`}, false},
		{"finding without what", job.Result{Status: ok, Stdout: `{"safe": false, "reason": "r", "findings": [{"line": 1, "what": ""}]}`}, false},
	}
	for _, tc := range cases {
		r, err := decodeReport(&tc.res)
		if (err == nil) != tc.wantOK {
			t.Errorf("%s: decodeReport(%+v) = %+v, %v; want ok=%v", tc.name, tc.res, r, err, tc.wantOK)
		}
	}
}

func TestStaticRunnerError(t *testing.T) {
	f := &fakeRunner{err: errors.New("no sandbox")}
	v, err := NewStatic(f).Check(context.Background(), "print(1)", nil)
	if err == nil || !strings.Contains(err.Error(), "no sandbox") {
		t.Errorf("Check with a failing runner = %+v, %v; want the runner's error", v, err)
	}
}
