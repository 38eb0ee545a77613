// Package repl is the terminal conversation of `codeexec chat`: a question-answering
// software engineer that runs code to answer, shown as "(User): " and
// "(Assistant): " turns with each execution's code and output as it runs.
package repl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/codeexec/codeexec/internal/llm"
)

// SystemPrompt makes the model the seed recipe's software engineer.
const SystemPrompt = `You are an expert software engineer who answers questions. When a question needs a calculation, data, or checking how code behaves, write Python and run it with the code_execution tool, read its output (fix the code if it fails), then answer concisely with the real results.`

// Turn answers the conversation so far. It reports the answer's text and each
// execution through out as they happen, and returns the assistant message to keep
// in the history.
type Turn func(ctx context.Context, history []llm.Message, out *Printer) (llm.Message, error)

// Printer writes one turn's events to the terminal.
type Printer struct {
	w       io.Writer
	inText  bool // the last thing written was answer text
	started bool // "(Assistant): " was written
}

// NewPrinter writes to w.
func NewPrinter(w io.Writer) *Printer { return &Printer{w: w} }

func (p *Printer) header() {
	if !p.started {
		fmt.Fprint(p.w, "(Assistant): ")
		p.started = true
	}
}

// Content prints a piece of the answer.
func (p *Printer) Content(delta string) {
	p.header()
	fmt.Fprint(p.w, delta)
	p.inText = true
}

// CodeStarted shows the code about to run.
func (p *Printer) CodeStarted(index int, id, code string) {
	if p.inText {
		fmt.Fprintln(p.w)
	}
	p.inText = false
	fmt.Fprintf(p.w, "[running code]\n%s\n", indent(code))
}

// CodeFinished shows what the code printed, or why it did not run.
func (p *Printer) CodeFinished(index int, id string, exec *llm.CodeExecution) {
	out := strings.TrimRight(exec.Output, "\n")
	if out == "" {
		out = "(no output)"
	}
	status := ""
	if exec.Status != "" && exec.Status != "ok" {
		status = " (" + exec.Status + ")"
	}
	fmt.Fprintf(p.w, "[output%s]\n%s\n", status, indent(out))
	for _, im := range exec.Images {
		fmt.Fprintf(p.w, "[figure %s, %d bytes]\n", im.Name, len(im.Data))
	}
}

func (p *Printer) end() {
	if !p.started {
		p.header()
	}
	fmt.Fprintln(p.w)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// Run reads questions from in until EOF or "exit", and answers each with turn. A
// failed turn is reported and the conversation goes on without it.
func Run(ctx context.Context, in io.Reader, out io.Writer, turn Turn) error {
	history := []llm.Message{{Role: "system", Content: llm.TextContent(SystemPrompt)}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for {
		fmt.Fprint(out, "(User): ")
		if !sc.Scan() {
			fmt.Fprintln(out)
			return sc.Err()
		}
		q := strings.TrimSpace(sc.Text())
		if q == "" {
			continue
		}
		if q == "exit" || q == "quit" {
			return nil
		}
		asked := append(history, llm.Message{Role: "user", Content: llm.TextContent(q)})
		p := NewPrinter(out)
		reply, err := turn(ctx, asked, p)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			p.end()
			fmt.Fprintf(out, "error: %v\n", err)
			continue
		}
		p.end()
		history = append(asked, reply)
	}
}
