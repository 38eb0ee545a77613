package sandbox

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
)

// outcome is what the runner and the kernel observed of one execution.
type outcome struct {
	stopped  job.Status // why the runner stopped it, if it did
	signaled bool
	signal   syscall.Signal
	exitCode int
	stats    cgroup.Stats
	statsErr error
	report   []byte
	duration time.Duration
	network  *job.NetworkUsage // with limited network only
	// bare says the program ran without the Python harness (a bash program): it
	// writes no report, and its exit code is all it says of how it went.
	bare bool
	// node says the program ran in Node, whose heap limit (nodeEnv) ends it as the
	// memory limit would.
	node bool
	// frozen says a one-shot run ended on the child's "done" with every process of
	// the execution frozen (interpreter.freeze), not yet killed.
	frozen bool
}

// result builds the Result. Limits come from what the runner and the kernel saw;
// the harness report only describes the program's own output, and only within the
// report's caps: a report that breaks one (harness.Parse) was written by the program,
// so the run is an error and nothing of the report is used.
func (o *outcome) result(l job.Limits, w *watch) *job.Result {
	res := &job.Result{
		Stdout:          w.stdout.String(),
		Stderr:          w.stderr.String(),
		StdoutTruncated: w.stdout.truncated,
		StderrTruncated: w.stderr.truncated,
		DurationMS:      float64(o.duration.Microseconds()) / 1000,
		Images:          []job.Image{},
		Files:           []job.FileInfo{},
	}
	if o.statsErr == nil {
		res.Usage = job.Usage{CPUMS: float64(o.stats.CPUTime.Microseconds()) / 1000, MaxMemoryBytes: o.stats.MaxMemoryBytes}
	}
	res.Usage.Network = o.network
	rep, repErr := harness.Parse(o.report)
	if rep != nil {
		res.Result, res.ResultTruncated = rep.Result, rep.ResultTruncated
		res.ImagesTruncated = rep.ImagesTruncated
		res.OutputsTruncated = rep.OutputsTruncated
		for _, o := range rep.Outputs {
			res.Outputs = append(res.Outputs, job.Output{Data: o.Data, Main: o.Main})
		}
		for i, im := range rep.Images {
			// Named here: the report's names are the program's to choose.
			res.Images = append(res.Images, job.Image{Name: "figure-" + strconv.Itoa(i+1) + ".png", MimeType: im.MimeType, Data: im.Data})
		}
	}
	switch {
	case o.stopped == job.StatusTimeout:
		res.Status, res.ExitCode = job.StatusTimeout, 124
		res.Error = &job.Error{Name: "TimeoutError", Message: fmt.Sprintf("execution exceeded the %v time limit and was stopped", l.Timeout)}
	case o.stopped == job.StatusOutputLimit:
		res.Status, res.ExitCode = job.StatusOutputLimit, 137
		res.Error = &job.Error{Name: "OutputLimitError", Message: fmt.Sprintf("output exceeded the %d-byte limit and the program was stopped", l.OutputBytes)}
	case o.stopped == job.StatusKilled:
		res.Status, res.ExitCode = job.StatusKilled, 137
		res.Error = &job.Error{Name: "Killed", Message: "execution was cancelled"}
	case o.stats.OOMKills > 0 && (o.signaled || rep == nil):
		res.Status, res.ExitCode = job.StatusMemoryLimit, 137
		msg := fmt.Sprintf("execution exceeded the %d MiB memory limit and was killed", l.MemoryBytes>>20)
		if o.stats.MemoryLimitHits == 0 {
			// Killed without reaching its own limit: all sandboxes together reached
			// the server's total (Config.Total).
			msg = fmt.Sprintf("the server's memory for all sandboxes together ran out and this execution was killed to free some (it had used at most %d MiB of its %d MiB limit)", o.stats.MaxMemoryBytes>>20, l.MemoryBytes>>20)
		}
		res.Error = &job.Error{Name: "MemoryError", Message: msg}
	case o.signaled:
		res.Status, res.ExitCode = job.StatusKilled, 128+int(o.signal)
		res.Error = &job.Error{Name: "Killed", Message: "the program was killed by signal " + o.signal.String()}
	case rep != nil:
		res.ExitCode = o.exitCode
		res.Status = job.StatusOK
		if !rep.OK {
			res.Status = job.StatusError
			e := rep.Error // Parse makes sure a failed run has one
			res.Error = &job.Error{Name: e.Name, Message: e.Message, Traceback: e.Traceback, Truncated: e.Truncated}
		}
	case !errors.Is(repErr, harness.ErrEmpty):
		// Only the program can have written this: the harness keeps to the caps.
		res.Status, res.ExitCode = job.StatusError, o.exitCode
		if res.ExitCode == 0 {
			res.ExitCode = 1
		}
		res.Error = &job.Error{Name: ReportErrorName, Message: fmt.Sprintf("the run's report was refused (%v): the program wrote to the harness's report pipe, so its result, error and figures are not trusted", repErr)}
	default:
		res.ExitCode = o.exitCode
		res.Status = job.StatusOK
		if res.ExitCode != 0 {
			res.Status = job.StatusError
			if o.bare {
				// A shell's non-zero status is an answer, as Python's is not: the
				// program said what went wrong on its stderr.
				break
			}
			res.Error = &job.Error{Name: "ProcessExit", Message: fmt.Sprintf("the interpreter exited with status %d before reporting", res.ExitCode)}
		}
	}
	if o.node {
		nodeHeapLimit(o, res, l)
	}
	return res
}

// ReportErrorName is the Error.Name of a run whose report was refused: it broke the
// protocol or one of its caps (harness.Parse), which only the program can have done.
const ReportErrorName = "ReportError"

func waitStatus(err error) *syscall.WaitStatus {
	if err == nil {
		ws := syscall.WaitStatus(0)
		return &ws
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return nil
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok {
		return nil
	}
	return &ws
}
