package agent

import (
	"fmt"
	"strings"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/textfit"
)

// This file says what the model (and the client) is told of a run.

// ran is the execution of code that ran, with its outcome.
func ran(id, code, container string, res *job.Result) *Execution {
	return &Execution{ID: id, Code: code, ContainerID: container, Result: res, Output: terminalOutput(res)}
}

// notRun is the execution of code that did not run, and why: name is one of the
// Error* constants.
func notRun(id, code, container string, status job.Status, name, message string) *Execution {
	out := message
	if status == job.StatusRejected {
		out = "Rejected: " + message
	}
	return &Execution{ID: id, Code: code, ContainerID: container, Output: out,
		Result: &job.Result{Status: status, Error: &job.Error{Name: name, Message: message}}}
}

func rejectedMessage(reason string) string {
	return "The code was NOT run: the safety policy refused it. Reason: " + reason +
		"\nDo not try to get around this. Answer the user without running it (you may show the code for them to run themselves)."
}

// terminalOutput is a run as a terminal shows it: stdout and stderr, the value of
// the last expression, and the error's message when no traceback in stderr says it.
func terminalOutput(res *job.Result) string {
	out := res.Stdout + res.Stderr
	line := func(s string) {
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += s
	}
	if res.Result != nil {
		line(*res.Result)
	}
	if res.Error != nil && res.Status != job.StatusError {
		line(res.Error.Message + "\n")
	}
	return out
}

// defaultMaxToolOutput bounds what the model is shown of one run unless the Agent
// says otherwise.
const defaultMaxToolOutput = 20000

// toolMessage is what the model is told of a run, at most max bytes of it (about:
// the notes on cuts are added). Every part is shown: when stdout, stderr and the
// result do not fit together, each is cut to a fair share (keeping its start and
// end), so that a long stdout never hides the traceback or the result.
func toolMessage(res *job.Result, max int) string {
	var head, tail strings.Builder
	fmt.Fprintf(&head, "status: %s\n", res.Status)
	if res.Error != nil {
		fmt.Fprintf(&tail, "error: %s: %s\n", res.Error.Name, textfit.FirstLine(res.Error.Message, 500))
	}
	if len(res.Images) > 0 {
		fmt.Fprintf(&tail, "figures (shown to the user): %s\n", strings.Join(res.FigureNames(), ", "))
	}
	if res.ImagesTruncated {
		tail.WriteString("[more figures were drawn than are kept]\n")
	}
	if len(res.Files) > 0 {
		fmt.Fprintf(&tail, "files written: %s\n", strings.Join(res.FileSummaries(), ", "))
	}
	if res.FilesTruncated {
		tail.WriteString("[more files were written than are listed]\n")
	}
	sections := []textfit.Section{{Name: "stdout", Text: res.Stdout, Truncated: res.StdoutTruncated}, {Name: "stderr", Text: res.Stderr, Truncated: res.StderrTruncated}}
	if res.Result != nil {
		sections = append(sections, textfit.Section{Name: "result", Text: *res.Result, Truncated: res.ResultTruncated})
	}
	return textfit.Layout(head.String(), sections, tail.String(), max, textfit.Notes{
		Cut:       "[… %d bytes cut: print less …]",
		Truncated: "[%s was truncated by the output limit]",
	})
}
