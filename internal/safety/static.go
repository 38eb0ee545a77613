package safety

import (
	"context"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
)

// analyzerSource is the Python program that parses the code to check; the list of
// what it flags, and why, is data at its top.
//
//go:embed analyzer.py
var analyzerSource string

// codeFile is where the analyzer finds the code to check, in its work dir. Not a
// .py file: the work dir is on sys.path, and a code.py there would shadow the
// standard library's `code` module for anything that imports it.
const codeFile = "code.txt"

// Compiling the analyzer costs the sandbox more CPU than the analysis: measured on
// the warm path, 12.7 ms of CPU per check from source, 3.5 ms from a loaded code
// object, 1.5 ms for an empty program. So a Static has the sandbox's own
// interpreter compile it once (compileProgram, which sees no user input) and then
// passes the marshalled code object as a file that loaderProgram runs. Bytecode
// made by Go at build time was rejected: marshal data is specific to the
// interpreter version in the image.
const (
	// optionsFile tells the analyzer what the program may do: {"network": true}
	// when it runs with network access, whose use is then not a finding.
	optionsFile    = "options.json"
	analyzerFile   = "analyzer.py"
	bytecodeFile   = "analyzer.bin"
	compileProgram = `import marshal, sys
sys.stdout.write(marshal.dumps(compile(open("analyzer.py").read(), "analyzer.py", "exec")).hex())`
	loaderProgram = `import marshal
exec(marshal.loads(open("analyzer.bin", "rb").read()), {"__name__": "__main__"})`
)

// Runner executes one request in a fresh sandbox; *sandbox.Runner is one.
type Runner interface {
	Run(ctx context.Context, req *job.Request) (*job.Result, error)
}

// Finding is one construct the static analyzer flagged, with its line (1-based).
type Finding struct {
	Line int    `json:"line"`
	What string `json:"what"`
}

// Report is the static analyzer's verdict with everything it flagged.
type Report struct {
	Safe     bool      `json:"safe"`
	Reason   string    `json:"reason"`
	Findings []Finding `json:"findings"`
}

// Static is an AST-level judge: it parses the code with Python's ast module inside
// a real sandbox (parsing Python in Go is not an option) and flags process
// spawning, network use, native code, writes and deletes outside the work dir,
// sensitive paths, environment dumps, dynamic code and import tampering. It never
// runs the code. A program that does not parse is safe: the interpreter refuses it
// the same way. The check is best effort; the sandbox is the security boundary.
type Static struct {
	// Runner runs the analyzer; it must not be nil.
	Runner Runner
	// Limits bound one analysis; the zero value means StaticLimits().
	Limits job.Limits

	mu       sync.Mutex
	bytecode []byte // the compiled analyzer; nil until a compile run succeeded
}

// NewStatic returns a static judge that runs its analyzer on r.
func NewStatic(r Runner) *Static { return &Static{Runner: r} }

// StaticLimits are the default limits of one analysis: parsing needs little, and a
// program that takes longer than this to parse is refused rather than waited for.
func StaticLimits() job.Limits {
	l := job.DefaultLimits()
	l.Timeout = 10 * time.Second
	return l
}

// Check implements Judge; an error means the code must not run. With network,
// HTTP(S) clients and URL readers are allowed: the egress proxy, not the judge,
// decides which hosts they reach. Sockets and other protocols are still refused.
func (s *Static) Check(ctx context.Context, code string, network *egress.Policy) (Verdict, error) {
	r, err := s.Analyze(ctx, code, network != nil && len(network.Allow) > 0)
	if err != nil {
		return Verdict{}, err
	}
	return Verdict{Safe: r.Safe, Reason: r.Reason}, nil
}

// Analyze runs the analyzer on code, for a program with network access or not, and
// returns its report.
func (s *Static) Analyze(ctx context.Context, code string, network bool) (*Report, error) {
	res, err := s.Runner.Run(ctx, s.request(code, network, s.compiled(ctx)))
	if err != nil {
		return nil, fmt.Errorf("safety: static check: %w", err)
	}
	r, err := decodeReport(res)
	if err != nil {
		return nil, fmt.Errorf("safety: static check: %w", err)
	}
	return r, nil
}

// request is the run analyzing code: with the compiled analyzer when there is
// bytecode, else with its source.
func (s *Static) request(code string, network bool, bytecode []byte) *job.Request {
	req := &job.Request{
		Code:   analyzerSource,
		Limits: s.limits(),
		Files:  []job.InputFile{{Path: codeFile, Data: []byte(code)}},
	}
	if network {
		req.Files = append(req.Files, job.InputFile{Path: optionsFile, Data: []byte(`{"network": true}`)})
	}
	if bytecode != nil {
		req.Code = loaderProgram
		req.Files = append(req.Files, job.InputFile{Path: bytecodeFile, Data: bytecode})
	}
	return req
}

func (s *Static) limits() job.Limits {
	if s.Limits == (job.Limits{}) {
		return StaticLimits()
	}
	return s.Limits
}

// compiled returns the analyzer's bytecode, compiling it on first use, or nil when
// that fails: the check then runs the source, and the next one tries again.
func (s *Static) compiled(ctx context.Context) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytecode != nil {
		return s.bytecode
	}
	res, err := s.Runner.Run(ctx, &job.Request{
		Code:   compileProgram,
		Limits: s.limits(),
		Files:  []job.InputFile{{Path: analyzerFile, Data: []byte(analyzerSource)}},
	})
	if err != nil || res.Status != job.StatusOK || res.StdoutTruncated {
		return nil
	}
	b, err := hex.DecodeString(res.Stdout)
	if err != nil || len(b) == 0 {
		return nil
	}
	s.bytecode = b
	return b
}

// decodeReport reads the analyzer's one JSON line strictly: a failed run, unknown
// or missing fields, trailing data or a verdict that contradicts its findings is an
// error, never a verdict.
func decodeReport(res *job.Result) (*Report, error) {
	if res.Status != job.StatusOK {
		msg := string(res.Status)
		if res.Error != nil {
			msg += ": " + res.Error.Name + ": " + res.Error.Message
		}
		return nil, fmt.Errorf("analyzer did not finish: %s", msg)
	}
	if res.StdoutTruncated {
		return nil, errors.New("analyzer output was truncated")
	}
	var raw struct {
		Safe     *bool      `json:"safe"`
		Reason   *string    `json:"reason"`
		Findings *[]Finding `json:"findings"`
	}
	dec := json.NewDecoder(strings.NewReader(res.Stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("analyzer output %q: %w", clip(res.Stdout, 200), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("analyzer output %q: data after the verdict", clip(res.Stdout, 200))
	}
	switch {
	case raw.Safe == nil || raw.Reason == nil || raw.Findings == nil:
		return nil, fmt.Errorf("analyzer output %q: safe, reason or findings missing", clip(res.Stdout, 200))
	case *raw.Reason == "":
		return nil, errors.New("analyzer verdict has an empty reason")
	case *raw.Safe != (len(*raw.Findings) == 0):
		return nil, fmt.Errorf("analyzer verdict safe=%v contradicts its %d findings", *raw.Safe, len(*raw.Findings))
	}
	for _, f := range *raw.Findings {
		if f.Line < 0 || f.What == "" {
			return nil, fmt.Errorf("analyzer finding %+v is malformed", f)
		}
	}
	return &Report{Safe: *raw.Safe, Reason: *raw.Reason, Findings: *raw.Findings}, nil
}

// clip returns s cut to at most n bytes, marked with "…" when cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
