package agent

import (
	"fmt"
	"strings"

	"github.com/codeexec/codeexec/internal/job"
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
		fmt.Fprintf(&tail, "error: %s: %s\n", res.Error.Name, firstLine(res.Error.Message, 500))
	}
	if len(res.Images) > 0 {
		names := make([]string, len(res.Images))
		for i, im := range res.Images {
			names[i] = im.Name
		}
		fmt.Fprintf(&tail, "figures (shown to the user): %s\n", strings.Join(names, ", "))
	}
	if res.ImagesTruncated {
		tail.WriteString("[more figures were drawn than are kept]\n")
	}
	if len(res.Files) > 0 {
		files := make([]string, len(res.Files))
		for i, f := range res.Files {
			files[i] = fmt.Sprintf("%s (%d bytes)", f.Path, f.Size)
		}
		fmt.Fprintf(&tail, "files written: %s\n", strings.Join(files, ", "))
	}
	if res.FilesTruncated {
		tail.WriteString("[more files were written than are listed]\n")
	}
	type section struct {
		name, text string
		truncated  bool
	}
	sections := []section{{"stdout", res.Stdout, res.StdoutTruncated}, {"stderr", res.Stderr, res.StderrTruncated}}
	if res.Result != nil {
		sections = append(sections, section{"result", *res.Result, res.ResultTruncated})
	}
	sizes := make([]int, len(sections))
	for i, s := range sections {
		sizes[i] = len(s.text)
	}
	budget := max - head.Len() - tail.Len()
	shares := fairShares(sizes, budget)
	var b strings.Builder
	b.WriteString(head.String())
	for i, s := range sections {
		if s.text == "" {
			continue
		}
		text := s.text
		if shares[i] < len(text) {
			text = cutMiddle(text, shares[i])
		}
		fmt.Fprintf(&b, "%s:\n%s", s.name, text)
		if !strings.HasSuffix(text, "\n") {
			b.WriteString("\n")
		}
		if s.truncated {
			fmt.Fprintf(&b, "[%s was truncated by the output limit]\n", s.name)
		}
	}
	b.WriteString(tail.String())
	return b.String()
}

// fairShares divides budget among parts of the given sizes: a part smaller than an
// equal share keeps all of it, and what it leaves goes to the others.
func fairShares(sizes []int, budget int) []int {
	shares := make([]int, len(sizes))
	left := make([]int, 0, len(sizes))
	for i := range sizes {
		left = append(left, i)
	}
	budget = max(budget, 0)
	for len(left) > 0 {
		share := budget / len(left)
		var next []int
		for _, i := range left {
			if sizes[i] <= share {
				shares[i] = sizes[i]
				budget -= sizes[i]
			} else {
				next = append(next, i)
			}
		}
		if len(next) == len(left) {
			for _, i := range next {
				shares[i] = share
			}
			break
		}
		left = next
	}
	return shares
}

// cutMiddle keeps about n bytes of s, its start and its end, and says how much of
// the middle was cut.
func cutMiddle(s string, n int) string {
	keep := max(n/2, 0)
	return strings.ToValidUTF8(s[:keep], "") + fmt.Sprintf("\n[… %d bytes cut: print less …]\n", len(s)-2*keep) + strings.ToValidUTF8(s[len(s)-keep:], "")
}

// firstLine is the first line of s, at most n bytes of it.
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	return clip(s, n)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
