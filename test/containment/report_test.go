package containment_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/session"
)

// forgeCode defines forge(report): it writes report (a Python object, as JSON) to
// every descriptor that could be the report pipe — each write-only pipe other than
// stdout and stderr: fd 3 on the cold path, the pipe the zygote passed on the warm
// path — and exits at once, so that the harness never writes the real report.
const forgeCode = `
import base64, fcntl, json
def forge(report):
    data = json.dumps(report).encode()
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            st, fl = os.fstat(fd), fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            continue
        if fd > 2 and stat.S_ISFIFO(st.st_mode) and fl & os.O_ACCMODE == os.O_WRONLY:
            fds.append(fd)
    print("report pipes", len(fds), flush=True)
    print("report bytes", len(data), flush=True)
    for fd in fds:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    os._exit(0)
# The smallest thing that passes for a PNG: its 8-byte signature.
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
`

// reportAttack is a report the program forges, and whether it keeps within the
// protocol's caps (then it is the program's own data, with server-made names) or
// breaks one (then none of it may reach the Result).
type reportAttack struct {
	name   string
	report string // a Python expression
	valid  bool
}

var reportForgeries = []reportAttack{
	// 185,000 figures named to climb out of --out, as the review found them.
	{"forged_report_185000_figures", `{"ok": True, "result": None, "error": None, "images": [{"name": "../../etc/x%d.png" % i, "mime_type": "image/png", "data": PNG} for i in range(185000)], "images_truncated": False, "exit_code": 0}`, false},
	// The same without names: the count alone must be refused.
	{"forged_report_17_figures", `{"ok": True, "result": None, "error": None, "images": [{"mime_type": "image/png", "data": PNG}] * 17, "images_truncated": False, "exit_code": 0}`, false},
	// Two figures of 5 MiB each: more than the 8 MiB of all figures together.
	{"forged_report_figure_bytes", `{"ok": True, "result": None, "error": None, "images": [{"mime_type": "image/png", "data": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"x" * (5 << 20)).decode()}] * 2, "images_truncated": False, "exit_code": 0}`, false},
	{"forged_report_oversized_result", `{"ok": True, "result": "'" + "x" * (1 << 20) + "'", "result_truncated": False, "error": None, "images": [], "images_truncated": False, "exit_code": 0}`, false},
	{"forged_report_oversized_traceback", `{"ok": False, "result": None, "error": {"name": "ValueError", "message": "m", "traceback": "t" * (1 << 20)}, "images": [], "images_truncated": False, "exit_code": 1}`, false},
	{"forged_report_oversized_message", `{"ok": False, "result": None, "error": {"name": "ValueError", "message": "m" * (1 << 20), "traceback": ""}, "images": [], "images_truncated": False, "exit_code": 1}`, false},
	{"forged_report_oversized_error_name", `{"ok": False, "result": None, "error": {"name": "E" * 100000, "message": "m", "traceback": ""}, "images": [], "images_truncated": False, "exit_code": 1}`, false},
	// Within every cap: it is the program's own data, but the figure is named by
	// the server.
	{"forged_report_within_caps", `{"ok": True, "result": "'forged'", "result_truncated": False, "error": None, "images": [{"name": "../../etc/x.png", "mime_type": "image/png", "data": PNG}], "images_truncated": False, "exit_code": 0}`, true},
}

// reportAttacks forge the harness's report from inside the sandbox. A report that
// breaks a cap of the protocol must not be trusted at all: the run is an error that
// says so, with no result, error or figure of the report's.
func reportAttacks() []attack {
	var list []attack
	for _, f := range reportForgeries {
		a := attack{name: f.name, code: forgeCode + "forge(" + f.report + ")\n"}
		if f.valid {
			a.check = all(okLines("report pipes 1"), func(t *testing.T, res *job.Result) {
				t.Helper()
				if res.Result == nil || *res.Result != "'forged'" {
					t.Errorf("result %v, want the program's own 'forged'", res.Result)
				}
				if len(res.Images) != 1 || res.Images[0].Name != "figure-1.png" {
					t.Errorf("images %v, want one named figure-1.png by the server", imageNames(res))
				}
			})
		} else {
			a.check = all(lines("report pipes 1"), refusedReport)
		}
		list = append(list, a)
	}
	return list
}

// refusedReport requires a run whose report was refused: status error, the refusal
// as its error, and nothing of the report.
func refusedReport(t *testing.T, res *job.Result) {
	t.Helper()
	status(job.StatusError)(t, res)
	if res.Error == nil || res.Error.Name != "ReportError" {
		t.Errorf("error %s, want a ReportError", clip(fmt.Sprintf("%+v", res.Error)))
	} else if len(res.Error.Message) > 1000 || res.Error.Traceback != "" {
		t.Errorf("the refusal carries the report's text: %s", clip(fmt.Sprintf("%+v", res.Error)))
	}
	if res.ExitCode == 0 {
		t.Errorf("exit code 0 for a refused report")
	}
	if res.Result != nil || len(res.Images) > 0 {
		t.Errorf("result %s and %d images came from a refused report", clip(fmt.Sprint(res.Result)), len(res.Images))
	}
}

func imageNames(res *job.Result) []string {
	var names []string
	for _, im := range res.Images {
		names = append(names, im.Name)
	}
	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("… (%d)", len(names)))
	}
	return names
}

// TestForgedReport forges the report on the report pipe.
func TestForgedReport(t *testing.T) {
	runAttacks(t, reportAttacks())
}

// deepTreeCode makes 2,000 nested directories of 255-character names and 1,000
// files at the bottom: a second and a megabyte for the sandbox, and once a walk
// quadratic in depth that listed every path (24 s, gigabytes and a 512 MB reply for
// the server).
const deepTreeCode = `
name = "d" * 255
for i in range(2000):
    os.mkdir(name)
    os.chdir(name)
for i in range(1000):
    wr("f%04d" % i)
os.chdir("/work")
wr("top.txt", "top")
print("built")
`

// maxListedPath bounds a listed file's path (PATH_MAX).
const maxListedPath = 4096

// treeCheck requires a bounded, flagged listing of the deep tree.
func treeCheck(t *testing.T, files []job.FileInfo, truncated bool) {
	t.Helper()
	if !truncated {
		t.Errorf("files_truncated not set for a tree beyond the walk's budgets (%d files listed)", len(files))
	}
	if len(files) > 1000 {
		t.Errorf("%d files listed, more than 1000", len(files))
	}
	top := false
	for _, f := range files {
		if len(f.Path) > maxListedPath {
			t.Errorf("listed a path of %d bytes", len(f.Path))
			break
		}
		top = top || f.Path == "top.txt"
	}
	if !top {
		t.Errorf("top.txt, beside the tree, is not listed")
	}
}

func treeAttacks() []attack {
	return []attack{{
		name: "deep_work_tree",
		code: deepTreeCode,
		check: all(okLines("built"), func(t *testing.T, res *job.Result) {
			t.Helper()
			treeCheck(t, res.Files, res.FilesTruncated)
		}),
		serial: true,
	}}
}

// TestDeepWorkTree makes a work tree too deep and too long to list.
func TestDeepWorkTree(t *testing.T) {
	runAttacks(t, treeAttacks())
}

// TestOutputDirForgedNames runs, with an output dir (run --out), a program that writes
// its own figure-1.png, draws a figure, and then forges a report whose figure is
// named to climb out of the dir: nothing may land outside the dir, and nothing may
// replace another file in it.
func TestOutputDirForgedNames(t *testing.T) {
	code := prelude + forgeCode + `
import matplotlib.pyplot as plt
wr("/work/figure-1.png", "the program's own")
plt.plot([1, 2])
forge({"ok": True, "result": None, "error": None, "images": [{"name": "../../x.png", "mime_type": "image/png", "data": PNG}, {"name": "/etc/figure-1.png", "mime_type": "image/png", "data": PNG}], "images_truncated": False, "exit_code": 0})
`
	countAttacks(t.Name(), []attack{{name: "output_dir_forged_names"}})
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			attackCount.Add(1)
			parent := t.TempDir()
			out := filepath.Join(parent, "a", "out")
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			res, err := runnerFor(t, p).Run(t.Context(), &job.Request{Code: code, Limits: limits(), OutputDir: out})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			okLines("report pipes 1")(t, res)
			got := map[string]string{}
			err = filepath.WalkDir(parent, func(path string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				data, err := os.ReadFile(path)
				rel, _ := filepath.Rel(parent, path)
				got[rel] = string(data)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if got["a/out/figure-1.png"] != "the program's own" {
				t.Errorf("the program's figure-1.png holds %q", got["a/out/figure-1.png"])
			}
			figures := 0
			for rel, data := range got {
				switch {
				case !strings.HasPrefix(rel, "a/out/"):
					t.Errorf("%s was written outside the output dir", rel)
				case rel != "a/out/figure-1.png" && strings.HasPrefix(data, "\x89PNG"):
					figures++
				case rel != "a/out/figure-1.png":
					t.Errorf("the output dir holds %s (%q)", rel, clip(data))
				}
			}
			if figures != 2 {
				t.Errorf("%d figures saved, want 2 (files %v)", figures, keys(got))
			}
			for _, im := range res.Images {
				if !strings.HasPrefix(im.SavedAs, out+string(filepath.Separator)) || im.SaveError != "" {
					t.Errorf("figure %s saved as %q (%s)", im.Name, im.SavedAs, im.SaveError)
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

// TestSessionFilesDeepTree lists, through the HTTP API, the files of a session that
// made a work tree too deep and too long to list.
func TestSessionFilesDeepTree(t *testing.T) {
	countAttacks(t.Name(), []attack{{name: "session_deep_work_tree"}})
	attackCount.Add(1)
	url := testServer(t, "warm")
	var created api.CreateSessionReply
	callJSON(t, "POST", url+"/v1/sessions", `{}`, &created)
	t.Cleanup(func() { callJSON(t, "DELETE", url+"/v1/sessions/"+created.ID, "", nil) })
	code := prelude + deepTreeCode
	body, _ := json.Marshal(api.ExecuteRequest{Code: &code})
	var res job.Result
	callJSON(t, "POST", url+"/v1/sessions/"+created.ID+"/execute", string(body), &res)
	okLines("built")(t, &res)
	treeCheck(t, res.Files, res.FilesTruncated)
	var list struct {
		Files     []job.FileInfo `json:"files"`
		Truncated bool           `json:"truncated"`
	}
	callJSON(t, "GET", url+"/v1/sessions/"+created.ID+"/files", "", &list)
	treeCheck(t, list.Files, list.Truncated)
	// The session is still usable.
	one := "print(1)"
	body, _ = json.Marshal(api.ExecuteRequest{Code: &one})
	res = job.Result{}
	callJSON(t, "POST", url+"/v1/sessions/"+created.ID+"/execute", string(body), &res)
	if res.Status != job.StatusOK || res.Stdout != "1\n" {
		t.Errorf("print(1) after the tree: %s %q", res.Status, res.Stdout)
	}
}

// testServer serves the API of the runner for path on loopback for the test.
func testServer(t *testing.T, path string) string {
	t.Helper()
	r := runnerFor(t, path)
	sessions := session.NewManager(session.Config{Max: 4, IdleTTL: time.Minute, MaxIdleTTL: time.Minute, MaxLifetime: time.Hour}, r)
	t.Cleanup(sessions.Close)
	hs := httptest.NewServer(api.New(api.DefaultConfig(), r, sessions, func() error { return nil }, nil).Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// callJSON makes an API request and decodes a 2xx reply into reply (when not nil).
func callJSON(t *testing.T, method, url, body string, reply any) {
	t.Helper()
	r := send(t, method, url, []byte(body))
	if r.status/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, url, r.status, clip(string(r.body)))
	}
	t.Logf("%s %s: %d bytes", method, url, len(r.body))
	if reply != nil {
		if err := json.Unmarshal(r.body, reply); err != nil {
			t.Fatalf("decoding the reply of %s %s: %v", method, url, err)
		}
	}
}
