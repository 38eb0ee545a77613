package soak_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/codeexec/codeexec/internal/job"
)

// seed makes the mix reproducible: step i is drawn from its own generator seeded
// with (seed, i), so it is the same request whichever client sends it and in
// whatever order the steps run.
const seed = 0x50a4

// sessionEvery: one step in this many creates a session, runs several executions in
// it and deletes it. plotEvery: one step in this many draws a matplotlib figure.
const (
	sessionEvery = 200
	plotEvery    = 100
)

// execution is one POST of an execute body and what its Result must be.
type execution struct {
	kind string // e.g. "ok/numpy", "timeout/busy"
	body string
	want job.Status
	// check looks at the rest of a Result whose status is want.
	check func(*job.Result) error
}

// planStep returns the executions of step i outside sessions: ~70% ok (print,
// arithmetic, numpy, pandas, a file in /work, a figure every plotEvery steps), ~15%
// error (raise, syntax error, division by zero), ~10% timeout, ~5% memory_limit.
// Session steps are planned by planSession.
func planStep(i int) execution {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	if i%plotEvery == plotEvery/2 {
		return plotExecution(i)
	}
	switch p := r.IntN(100); {
	case p < 70:
		return okExecution(i, r)
	case p < 85:
		return errorExecution(i, r)
	case p < 95:
		return timeoutExecution(i, r)
	default:
		return memoryExecution(r)
	}
}

// isSessionStep reports whether step i is a session's life rather than one execution.
func isSessionStep(i int) bool { return i%sessionEvery == sessionEvery-1 }

func okExecution(i int, r *rand.Rand) execution {
	n := 1 + r.IntN(1000)
	switch r.IntN(5) {
	case 0:
		return execution{"ok/print", codeBody(fmt.Sprintf("print(%d)", i), ""), job.StatusOK,
			wantStdout(fmt.Sprintf("%d\n", i))}
	case 1:
		a, b := r.IntN(1<<20), r.IntN(1<<20)
		return execution{"ok/arithmetic", codeBody(fmt.Sprintf("%d * %d + %d", a, b, n), ""), job.StatusOK,
			wantResult(strconv.Itoa(a*b + n))}
	case 2:
		code := fmt.Sprintf("import numpy as np\nresult = int(np.arange(%d).sum())", n)
		return execution{"ok/numpy", codeBody(code, ""), job.StatusOK, wantResult(strconv.Itoa(n * (n - 1) / 2))}
	case 3:
		code := fmt.Sprintf("import pandas as pd\ndf = pd.DataFrame({\"x\": range(%d)})\nprint(df[\"x\"].sum())", n)
		return execution{"ok/pandas", codeBody(code, ""), job.StatusOK, wantStdout(fmt.Sprintf("%d\n", n*(n-1)/2))}
	default:
		name := fmt.Sprintf("out-%d.txt", i)
		code := fmt.Sprintf("with open(%q, \"w\") as f:\n    f.write(\"x\" * %d)", name, n)
		return execution{"ok/file", codeBody(code, ""), job.StatusOK, wantFiles(job.FileInfo{Path: name, Size: int64(n)})}
	}
}

func plotExecution(i int) execution {
	code := fmt.Sprintf("import matplotlib.pyplot as plt\nplt.plot([1, %d, 3])\nplt.title(\"step %d\")", i%7, i)
	return execution{"ok/plot", codeBody(code, ""), job.StatusOK, func(res *job.Result) error {
		if len(res.Images) != 1 || res.Images[0].MimeType != "image/png" || !bytes.HasPrefix(res.Images[0].Data, []byte("\x89PNG\r\n\x1a\n")) {
			return fmt.Errorf("want one PNG figure, got %d images", len(res.Images))
		}
		return nil
	}}
}

func errorExecution(i int, r *rand.Rand) execution {
	switch r.IntN(3) {
	case 0:
		return execution{"error/raise", codeBody(fmt.Sprintf("raise ValueError(\"soak %d\")", i), ""), job.StatusError,
			wantError("ValueError", fmt.Sprintf("soak %d", i))}
	case 1:
		return execution{"error/syntax", codeBody("def f(:\n    pass", ""), job.StatusError, wantError("SyntaxError", "")}
	default:
		return execution{"error/zerodivision", codeBody(fmt.Sprintf("%d / 0", i), ""), job.StatusError,
			wantError("ZeroDivisionError", "division by zero")}
	}
}

// timeoutExecution mostly sleeps: a busy loop burns its whole timeout of CPU, and
// 1,000 of those would be most of the run on two cores.
func timeoutExecution(i int, r *rand.Rand) execution {
	if r.IntN(4) == 0 {
		return execution{"timeout/busy", codeBody("while True:\n    pass", `"timeout_ms": 150`), job.StatusTimeout, nil}
	}
	line := fmt.Sprintf("before %d\n", i)
	code := fmt.Sprintf("print(%q, end=\"\")\nimport time\ntime.sleep(30)", line)
	return execution{"timeout/sleep", codeBody(code, `"timeout_ms": 300`), job.StatusTimeout, func(res *job.Result) error {
		// On a loaded machine the limit can pass before the print: only this
		// execution's own output may be there, and all of it or nothing.
		if res.Stdout != "" && res.Stdout != line {
			return fmt.Errorf("stdout %q, want %q or nothing", res.Stdout, line)
		}
		return nil
	}}
}

func memoryExecution(r *rand.Rand) execution {
	size := 96 + r.IntN(160)
	code := fmt.Sprintf("x = b\"x\" * (%d << 20)", size)
	return execution{"memory_limit", codeBody(code, `"memory_mb": 64`), job.StatusMemoryLimit, nil}
}

// sessionCall is one request of a session's life.
type sessionCall struct {
	what   string
	method string
	path   string // after /v1/sessions/{id}
	body   string
	status int // HTTP status
	// exec, when set, makes the reply a Result to check like an execution's.
	exec *execution
	// check looks at a reply that is not a Result.
	check func(body []byte) error
}

// planSession returns the calls of the session of step i: variables, imports and
// files persist between its executions, an error does not end it, and after DELETE
// it is gone.
func planSession(i int) []sessionCall {
	x := i * 3
	in := fmt.Sprintf("input %d", i)
	ex := func(kind, code string, want job.Status, check func(*job.Result) error) *execution {
		return &execution{kind, codeBody(code, ""), want, check}
	}
	return []sessionCall{
		{what: "execute", method: "POST", path: "/execute", status: 200,
			exec: ex("session/set", fmt.Sprintf("x = %d\nimport numpy as np", x), job.StatusOK, nil)},
		{what: "execute", method: "POST", path: "/execute", status: 200,
			exec: ex("session/use", "int(np.int64(x) * 2)", job.StatusOK, wantResult(strconv.Itoa(2*x)))},
		{what: "execute", method: "POST", path: "/execute", status: 200,
			exec: ex("session/raise", "raise KeyError(x)", job.StatusError, wantError("KeyError", strconv.Itoa(x)))},
		{what: "upload", method: "PUT", path: "/files/in.txt", body: in, status: 200},
		{what: "execute", method: "POST", path: "/execute", status: 200,
			exec: ex("session/files", "open(\"s.txt\", \"w\").write(open(\"in.txt\").read())\nx + 1", job.StatusOK,
				func(res *job.Result) error {
					if err := wantResult(strconv.Itoa(x + 1))(res); err != nil {
						return err
					}
					return wantFiles(job.FileInfo{Path: "s.txt", Size: int64(len(in))})(res)
				})},
		{what: "download", method: "GET", path: "/files/s.txt", status: 200, check: func(b []byte) error {
			if string(b) != in {
				return fmt.Errorf("want %q", in)
			}
			return nil
		}},
		{what: "info", method: "GET", path: "", status: 200, check: func(b []byte) error {
			var info struct {
				Executions int  `json:"executions"`
				Alive      bool `json:"alive"`
			}
			if err := json.Unmarshal(b, &info); err != nil || info.Executions != 4 || !info.Alive {
				return fmt.Errorf("want an alive session with 4 executions (%v)", err)
			}
			return nil
		}},
		{what: "delete", method: "DELETE", path: "", status: 200},
		{what: "execute after delete", method: "POST", path: "/execute", body: codeBody("x", ""), status: 404,
			check: func(b []byte) error {
				var e struct {
					Error struct{ Code, Type, Message string } `json:"error"`
				}
				if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != "session_not_found" || e.Error.Type != "not_found_error" {
					return fmt.Errorf("want a session_not_found error (%v)", err)
				}
				return nil
			}},
	}
}

// codeBody is an execute body with code and the extra JSON fields extra.
func codeBody(code, extra string) string {
	q, _ := json.Marshal(code)
	if extra != "" {
		return fmt.Sprintf(`{"code": %s, %s}`, q, extra)
	}
	return fmt.Sprintf(`{"code": %s}`, q)
}

func wantStdout(s string) func(*job.Result) error {
	return func(res *job.Result) error {
		if res.Stdout != s {
			return fmt.Errorf("stdout %q, want %q", res.Stdout, s)
		}
		return nil
	}
}

func wantResult(s string) func(*job.Result) error {
	return func(res *job.Result) error {
		if res.Result == nil || *res.Result != s {
			return fmt.Errorf("result %s, want %q", quoteOrNull(res.Result), s)
		}
		return nil
	}
}

// wantError checks the error's name, and its message unless message is "".
func wantError(name, message string) func(*job.Result) error {
	return func(res *job.Result) error {
		if res.Error.Name != name || (message != "" && res.Error.Message != message) {
			return fmt.Errorf("error %s: %q, want %s: %q", res.Error.Name, res.Error.Message, name, message)
		}
		return nil
	}
}

func wantFiles(files ...job.FileInfo) func(*job.Result) error {
	return func(res *job.Result) error {
		if !slices.Equal(res.Files, files) {
			return fmt.Errorf("files %v, want %v", res.Files, files)
		}
		return nil
	}
}

func quoteOrNull(s *string) string {
	if s == nil {
		return "null"
	}
	return strconv.Quote(*s)
}

// knownStatuses are the statuses API.md defines.
var knownStatuses = []job.Status{job.StatusOK, job.StatusError, job.StatusTimeout,
	job.StatusMemoryLimit, job.StatusOutputLimit, job.StatusKilled, job.StatusRejected}

// decodeResult decodes a Result strictly and checks that it is well-formed whatever
// its status: a known status, an error exactly when the code failed, sane numbers,
// images that are base64 PNG. A session's execute adds what became of the session.
func decodeResult(data []byte) (*job.Result, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var reply struct {
		job.Result
		Session *struct {
			ID     string `json:"id"`
			Ended  bool   `json:"ended"`
			Reason string `json:"reason"`
		} `json:"session"`
	}
	if err := dec.Decode(&reply); err != nil {
		return nil, fmt.Errorf("not a Result: %v", err)
	}
	res := reply.Result
	if dec.More() {
		return nil, fmt.Errorf("data after the Result")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	for _, k := range []string{"status", "stdout", "stderr", "result", "error", "images", "files", "exit_code", "duration_ms", "usage"} {
		if _, ok := raw[k]; !ok {
			return nil, fmt.Errorf("no %q field", k)
		}
	}
	for _, k := range []string{"images", "files"} {
		if string(raw[k]) == "null" {
			return nil, fmt.Errorf("%q is null, want a list", k)
		}
	}
	switch {
	case !slices.Contains(knownStatuses, res.Status):
		return nil, fmt.Errorf("unknown status %q", res.Status)
	case (res.Status == job.StatusOK) != (res.Error == nil):
		return nil, fmt.Errorf("status %q with error %+v", res.Status, res.Error)
	case res.Error != nil && res.Error.Name == "":
		return nil, fmt.Errorf("error without a name")
	case res.Status == job.StatusOK && res.ExitCode != 0,
		res.Status == job.StatusTimeout && res.ExitCode != 124,
		res.Status == job.StatusMemoryLimit && res.ExitCode != 137:
		return nil, fmt.Errorf("status %s with exit code %d", res.Status, res.ExitCode)
	case res.DurationMS < 0 || res.Usage.CPUMS < 0 || res.Usage.MaxMemoryBytes < 0:
		return nil, fmt.Errorf("negative duration or usage: %v ms, %+v", res.DurationMS, res.Usage)
	}
	for _, f := range res.Files {
		if f.Path == "" || strings.HasPrefix(f.Path, "/") || f.Size < 0 {
			return nil, fmt.Errorf("bad file entry %+v", f)
		}
	}
	for _, img := range res.Images {
		if img.Name == "" || img.MimeType == "" || len(img.Data) == 0 {
			return nil, fmt.Errorf("bad image %q (%s, %d bytes)", img.Name, img.MimeType, len(img.Data))
		}
	}
	return &res, nil
}

// abbrev shortens a body for a failure message.
func abbrev(b []byte) string {
	const n = 300
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
