package sandbox

import (
	"bytes"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
)

func TestLibraries(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		tests := []struct {
			name, code, want string
		}{
			{"numpy linear solve", "import numpy as np\nnp.linalg.solve([[3, 1], [1, 2]], [9, 8]).tolist()", "[2.0, 3.0]"},
			{"pandas groupby", "import pandas as pd\ndf = pd.DataFrame({'k': list('abab'), 'v': [1, 2, 3, 4]})\ndf.groupby('k')['v'].sum().to_dict()", "{'a': 4, 'b': 6}"},
			{"scipy optimize", "from scipy import optimize\nround(float(optimize.minimize_scalar(lambda x: (x - 3) ** 2).x), 4)", "3.0"},
			{"sympy integral", "import sympy as sp\nx = sp.Symbol('x')\nsp.integrate(x**2, (x, 0, 3))", "9"},
			{"requests importable", "import requests\nrequests.__name__", "'requests'"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := run(t, r, tt.code, nil)
				if res.Status != job.StatusOK || res.Result == nil || *res.Result != tt.want {
					t.Fatalf("got status %s result %v stderr %q, want ok %q", res.Status, deref(res.Result), res.Stderr, tt.want)
				}
			})
		}
	})
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestMatplotlibFigure(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')\nplt.show()\nprint('shown')", nil)
		if res.Status != job.StatusOK || res.Stdout != "shown\n" {
			t.Fatalf("status %s stdout %q stderr %q", res.Status, res.Stdout, res.Stderr)
		}
		if len(res.Images) != 1 {
			t.Fatalf("got %d images, want 1", len(res.Images))
		}
		im := res.Images[0]
		cfg, err := png.DecodeConfig(bytes.NewReader(im.Data))
		if err != nil {
			t.Fatalf("figure is not a valid PNG: %v", err)
		}
		if im.Name != "figure-1.png" || im.MimeType != "image/png" || cfg.Width < 100 || cfg.Height < 100 {
			t.Fatalf("got %s %s %dx%d", im.Name, im.MimeType, cfg.Width, cfg.Height)
		}
		if res.Stderr != "" {
			t.Errorf("plt.show() wrote to stderr: %q", res.Stderr)
		}
	})
}

func TestResultCapture(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		tests := []struct {
			name, code string
			want       *string
		}{
			{"variable", "result = 6 * 7", ptr("42")},
			{"last expression", "x = 2\nx + 3", ptr("5")},
			{"variable wins over expression", "result = 'a'\n1 + 1", ptr("'a'")},
			{"nothing", "x = 1", nil},
			{"None expression", "None", nil},
			{"print is not a result", "print('hi')", nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := run(t, r, tt.code, nil)
				if res.Status != job.StatusOK {
					t.Fatalf("status %s stderr %q", res.Status, res.Stderr)
				}
				if deref(res.Result) != deref(tt.want) {
					t.Fatalf("result %s, want %s", deref(res.Result), deref(tt.want))
				}
			})
		}
	})
}

func ptr(s string) *string { return &s }

func TestErrors(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		tests := []struct {
			name, code, errName, inTraceback string
			exit                             int
		}{
			{"syntax error", "x = 1\ndef f(:\n  pass", "SyntaxError", "line 2", 1},
			{"runtime error", "a = 1\nb = a / 0", "ZeroDivisionError", `File "<code>", line 2`, 1},
			{"error in function", "def f():\n    raise ValueError('bad value')\nf()", "ValueError", "in f", 1},
			{"sys.exit(3)", "import sys\nsys.exit(3)", "SystemExit", "", 3},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := run(t, r, tt.code, nil)
				if res.Status != job.StatusError || res.Error == nil || res.Error.Name != tt.errName || res.ExitCode != tt.exit {
					t.Fatalf("got %s %+v exit %d, want error %s exit %d", res.Status, res.Error, res.ExitCode, tt.errName, tt.exit)
				}
				if !strings.Contains(res.Error.Traceback, tt.inTraceback) {
					t.Errorf("traceback %q lacks %q", res.Error.Traceback, tt.inTraceback)
				}
				// Only the user's frames: nothing of the harness.
				for _, leak := range []string{"harness", "_run(", "exec(compile"} {
					if strings.Contains(res.Error.Traceback, leak) {
						t.Errorf("traceback shows harness internals (%q): %s", leak, res.Error.Traceback)
					}
				}
			})
		}
		res := run(t, r, "import sys\nsys.exit(0)", nil)
		if res.Status != job.StatusOK || res.ExitCode != 0 {
			t.Errorf("sys.exit(0): got %s exit %d, want ok 0", res.Status, res.ExitCode)
		}
	})
}

func TestStdinIsEmpty(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, "import sys\nsys.stdin.read()", nil)
		if deref(res.Result) != "''" {
			t.Fatalf("stdin read %s, want ''", deref(res.Result))
		}
	})
}

func TestFiles(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		out := t.TempDir()
		res := run(t, r, `
import pandas as pd
df = pd.read_csv("data/in.csv")
df["double"] = df["v"] * 2
df.to_csv("out.csv", index=False)
import os
os.makedirs("sub", exist_ok=True)
open("sub/note.txt", "w").write("hello")
os.symlink("/etc/passwd", "link")
int(df["double"].sum())`, func(r *job.Request) {
			r.Files = []job.InputFile{{Path: "data/in.csv", Data: []byte("v\n1\n2\n")}}
			r.OutputDir = out
		})
		if res.Status != job.StatusOK || deref(res.Result) != "6" {
			t.Fatalf("status %s result %s stderr %q", res.Status, deref(res.Result), res.Stderr)
		}
		got := map[string]int64{}
		for _, f := range res.Files {
			got[f.Path] = f.Size
		}
		want := map[string]int64{"out.csv": int64(len("v,double\n1,2\n2,4\n")), "sub/note.txt": 5}
		if len(got) != len(want) || got["out.csv"] != want["out.csv"] || got["sub/note.txt"] != want["sub/note.txt"] {
			t.Fatalf("files %v, want %v (inputs and symlinks are not produced files)", got, want)
		}
		data, err := os.ReadFile(filepath.Join(out, "out.csv"))
		if err != nil || string(data) != "v,double\n1,2\n2,4\n" {
			t.Fatalf("saved out.csv = %q, %v", data, err)
		}
		if _, err := os.Lstat(filepath.Join(out, "link")); err == nil {
			t.Fatal("a symlink was copied out of the sandbox")
		}
	})
}

// A program stopped by a limit still returns the files it wrote before: the warm
// path holds its child's work dir open past the child's end, like the cold path's
// host tmpfs.
func TestFilesKeptWhenLimitHit(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		res := run(t, r, "open('partial.csv', 'w').write('a,b\\n1,2\\n')\nwhile True:\n    pass", func(r *job.Request) {
			r.Limits.Timeout = time.Second
		})
		if res.Status != job.StatusTimeout {
			t.Fatalf("status %s, want timeout", res.Status)
		}
		if len(res.Files) != 1 || res.Files[0].Path != "partial.csv" || res.Files[0].Size != 8 {
			t.Errorf("files %+v, want partial.csv of 8 bytes", res.Files)
		}
	})
}

// TestReportCaps runs programs whose genuine output reaches every cap of the report:
// the harness cuts and flags it, and the server takes the report (a report beyond a
// cap would be refused as the program's forgery).
func TestReportCaps(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		tests := []struct {
			name, code string
			check      func(res *job.Result) bool
		}{
			{"long result", "'é' * 100000", func(res *job.Result) bool {
				return res.Status == job.StatusOK && res.ResultTruncated && len(*res.Result) <= harness.MaxResultBytes && len(*res.Result) > harness.MaxResultBytes-4
			}},
			{"long message", "raise ValueError('m' * 1000000)", func(res *job.Result) bool {
				return res.Error.Name == "ValueError" && res.Error.Truncated && len(res.Error.Message) == harness.MaxErrorMessageBytes &&
					strings.HasSuffix(res.Error.Traceback, "mmm\n") && len(res.Error.Traceback) <= harness.MaxTracebackBytes
			}},
			{"long name", "E = type('E' * 100000, (Exception,), {})\nraise E('m')", func(res *job.Result) bool {
				return res.Error.Truncated && res.Error.Name == strings.Repeat("E", harness.MaxErrorNameBytes) && res.Error.Message == "m"
			}},
			// Alternating frames: Python folds only repeats of one line.
			{"deep traceback", "import sys\nsys.setrecursionlimit(100000)\ndef f(n):\n    return g(n + 1) if n < 5000 else 1 / 0\ndef g(n):\n    return f(n + 1)\nf(0)", func(res *job.Result) bool {
				return res.Error.Name == "ZeroDivisionError" && res.Error.Truncated && len(res.Error.Traceback) <= harness.MaxTracebackBytes &&
					strings.HasSuffix(res.Error.Traceback, "ZeroDivisionError: division by zero\n")
			}},
			{"long exit message", "import sys\nsys.exit('bye' * 100000)", func(res *job.Result) bool {
				return res.Error.Name == "SystemExit" && res.Error.Truncated && len(res.Error.Message) <= harness.MaxErrorMessageBytes && res.ExitCode == 1
			}},
			{"broken __str__", "class E(Exception):\n    def __str__(self):\n        raise RuntimeError\nraise E()", func(res *job.Result) bool {
				return res.Error.Name == "E" && !res.Error.Truncated
			}},
			{"too many figures", "import matplotlib.pyplot as plt\nfor i in range(20):\n    plt.figure(i * 1000000)", func(res *job.Result) bool {
				return res.Status == job.StatusOK && res.ImagesTruncated && len(res.Images) == harness.MaxImages &&
					res.Images[harness.MaxImages-1].Name == "figure-16.png"
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := run(t, r, tt.code, nil)
				if res.Error != nil && res.Error.Name == ReportErrorName {
					t.Fatalf("the harness's own report was refused: %s", res.Error.Message)
				}
				if (res.Status == job.StatusError) == (res.Error == nil) || !tt.check(res) {
					e := fmt.Sprintf("%+v", res.Error)
					t.Fatalf("status %s result %.100s (truncated %v), %d images (truncated %v), error %.300s", res.Status, deref(res.Result), res.ResultTruncated, len(res.Images), res.ImagesTruncated, e)
				}
			})
		}
	})
}

// A program's own figure-1.png and a file of an earlier run in the output dir are
// kept: the figure and the new file take free names (issue: run --out replaced them).
func TestOutputDirNeverReplaces(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		out := t.TempDir()
		if err := os.WriteFile(filepath.Join(out, "data.csv"), []byte("earlier run"), 0o644); err != nil {
			t.Fatal(err)
		}
		res := run(t, r, "import matplotlib.pyplot as plt\nopen('figure-1.png', 'w').write('mine')\nopen('data.csv', 'w').write('new')\nplt.plot([1, 2])", func(r *job.Request) {
			r.OutputDir = out
		})
		if res.Status != job.StatusOK || len(res.Images) != 1 || len(res.Files) != 2 {
			t.Fatalf("status %s, %d figures, files %+v", res.Status, len(res.Images), res.Files)
		}
		want := map[string]string{"figure-1.png": "mine", "data.csv": "earlier run", "data (2).csv": "new"}
		for name, data := range want {
			if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(got) != data {
				t.Errorf("%s holds %q (%v), want %q", name, got, err, data)
			}
		}
		fig := filepath.Join(out, "figure-1 (2).png")
		if got, err := os.ReadFile(fig); err != nil || !bytes.HasPrefix(got, []byte("\x89PNG")) || res.Images[0].SavedAs != fig {
			t.Errorf("the figure was saved as %q, want %q holding a PNG (%v)", res.Images[0].SavedAs, fig, err)
		}
	})
}

// TestKernelRun: a run with Request.Kernel runs as a notebook cell on both paths
// (IPython's syntax, display data in Outputs, the run's environment); the same
// code without it is plain Python, where `!` is a syntax error.
func TestKernelRun(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		code := "import os\n!echo shell $HOME_VAR\ndisplay({'a': 1})\nos.environ['RUN_VAR']"
		res := run(t, r, code, func(req *job.Request) {
			req.Kernel = &job.Kernel{Env: map[string]string{"RUN_VAR": "set"}, BaseEnv: map[string]string{"HOME_VAR": "base"}}
		})
		if res.Status != job.StatusOK || res.Stdout != "shell base\n" {
			t.Fatalf("status %s stdout %q stderr %q", res.Status, res.Stdout, res.Stderr)
		}
		if len(res.Outputs) != 2 || string(res.Outputs[0].Data["application/json"]) != `{"a": 1}` ||
			!res.Outputs[1].Main || string(res.Outputs[1].Data["text/plain"]) != `"'set'"` {
			t.Fatalf("outputs %+v", res.Outputs)
		}
		if res := run(t, r, code, nil); res.Error == nil || res.Error.Name != "SyntaxError" || len(res.Outputs) != 0 {
			t.Fatalf("without Kernel: %+v", res)
		}
	})
}

// TestKernelStreamsOutputs: with Kernel.OnOutput a kernel run's display data reaches
// the caller as the program shows it, on both paths. The program waits, after its
// first display(), for a line on stdin that only the callback sends: without
// streaming it would wait until its timeout. The Result still holds every bundle.
func TestKernelStreamsOutputs(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *Runner) {
		inR, inW := io.Pipe()
		defer inW.Close()
		var mu sync.Mutex
		var got []string
		res := run(t, r, "display('first')\nline = input()\ndisplay('second ' + line)\n7", func(req *job.Request) {
			req.Stdin = inR
			req.Kernel = &job.Kernel{OnOutput: func(o job.Output) {
				mu.Lock()
				got = append(got, string(o.Data["text/plain"]))
				mu.Unlock()
				if string(o.Data["text/plain"]) == `"'first'"` {
					go inW.Write([]byte("go\n"))
				}
			}}
		})
		if res.Status != job.StatusOK {
			t.Fatalf("status %s stderr %q: the first display did not reach the callback mid-run", res.Status, res.Stderr)
		}
		want := []string{`"'first'"`, `"'second go'"`, `"7"`}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(got, want) {
			t.Errorf("streamed %q, want %q", got, want)
		}
		if len(res.Outputs) != 3 || !res.Outputs[2].Main {
			t.Errorf("the Result's outputs %+v, want all three", res.Outputs)
		}
	})
}
