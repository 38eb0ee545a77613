// Package repl is the terminal conversation of `codeexec chat`: a question-answering
// software engineer that runs code to answer, shown as "(User): " and
// "(Assistant): " turns with each execution's code and output as it runs.
package repl

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/codeexec/codeexec/internal/llm"
)

// SystemPrompt makes the model the seed recipe's software engineer.
const SystemPrompt = `You are an expert software engineer who answers questions. When a question needs a calculation, data, or checking how code behaves, write Python and run it with the code_execution tool, read its output (fix the code if it fails), then answer concisely with the real results.`

// Turn answers the conversation so far. It reports the answer's text and each
// execution through out as they happen, and returns the assistant message to keep
// in the history. It must return soon after ctx is cancelled.
type Turn func(ctx context.Context, history []llm.Message, out *Printer) (llm.Message, error)

// Chat is one terminal conversation: set its fields, then call Run.
type Chat struct {
	// In holds the user's questions, one a line; its end, or "exit", ends the chat.
	In io.Reader
	// Console is the terminal the chat writes to (see NewConsole).
	Console *Console
	// Turn answers each question.
	Turn Turn
	// Figures saves the figures of the code; nil: figures are only named.
	Figures *Figures
	// Interrupts delivers Ctrl-C (SIGINT). During a turn it stops the turn — the
	// running code and the model's answer — and the chat goes on; at the prompt it
	// says how to leave. nil: none arrive.
	Interrupts <-chan os.Signal
}

// Run reads questions until the input ends or "exit", and answers each with
// Turn. A failed or interrupted turn is reported, and the conversation goes on
// without it. Run returns ctx's error once ctx is cancelled.
func (c *Chat) Run(ctx context.Context) error {
	history := []llm.Message{{Role: "system", Content: llm.TextContent(SystemPrompt)}}
	lines, readErr := c.readLines(ctx)
	for {
		c.Console.Prompt("(User): ")
		var q string
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Interrupts:
			c.Console.Write([]byte("\n(to leave, type \"exit\" or press Ctrl-D)\n"))
			continue
		case line, ok := <-lines:
			if !ok {
				c.Console.Write([]byte("\n"))
				return readErr()
			}
			q = strings.TrimSpace(line)
		}
		if q == "" {
			continue
		}
		if q == "exit" || q == "quit" {
			return nil
		}
		asked := append(history, llm.Message{Role: "user", Content: llm.TextContent(q)})
		p := &Printer{con: c.Console, figures: c.Figures}
		reply, interrupted, err := c.answer(ctx, asked, p)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case interrupted:
			p.newLine()
			c.Console.Write([]byte("[interrupted: the question is left out of the conversation]\n"))
		case err != nil:
			p.end()
			fmt.Fprintf(c.Console, "error: %v\n", err)
		default:
			p.end()
			history = append(asked, reply)
		}
	}
}

// answer runs one turn, which an interrupt cancels.
func (c *Chat) answer(ctx context.Context, history []llm.Message, p *Printer) (llm.Message, bool, error) {
	turnCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	interrupted := make(chan bool, 1)
	go func() {
		select {
		case <-c.Interrupts:
			cancel()
			interrupted <- true
		case <-done:
			interrupted <- false
		}
	}()
	reply, err := c.Turn(turnCtx, history, p)
	close(done)
	if <-interrupted {
		return llm.Message{}, true, err
	}
	return reply, false, err
}

// readLines reads In in the background, so that an interrupt is seen while the
// chat waits for a question. The reader stops at the input's end or when ctx ends;
// readErr reports why the input ended, once lines is closed.
func (c *Chat) readLines(ctx context.Context) (lines <-chan string, readErr func() error) {
	ch := make(chan string)
	var err error
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(c.In)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case ch <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		err = sc.Err()
	}()
	return ch, func() error { return err }
}

// Printer writes one turn's events to the console; it is the turn's agent.Events.
type Printer struct {
	con     *Console
	figures *Figures
	inText  bool // the last thing written was answer text
	started bool // "(Assistant): " was written
}

// NewPrinter writes to con and saves figures with figures (nil: only names them).
func NewPrinter(con *Console, figures *Figures) *Printer { return &Printer{con: con, figures: figures} }

func (p *Printer) header() {
	if !p.started {
		p.con.Write([]byte("(Assistant): "))
		p.started = true
	}
}

// Content prints a piece of the answer.
func (p *Printer) Content(delta string) {
	p.header()
	p.con.Write([]byte(delta))
	p.inText = true
}

func (p *Printer) newLine() {
	if p.inText {
		p.con.Write([]byte("\n"))
	}
	p.inText = false
}

// CodeStarted shows the code about to run.
func (p *Printer) CodeStarted(index int, id string, exec *llm.CodeExecution) {
	p.newLine()
	fmt.Fprintf(p.con, "[running code]\n%s\n", indent(exec.Code))
}

// CodeFinished shows what the code printed, or why it did not run, and saves its
// figures.
func (p *Printer) CodeFinished(index int, id string, exec *llm.CodeExecution) {
	p.newLine()
	out := strings.TrimRight(exec.Output, "\n")
	if out == "" {
		out = "(no output)"
	}
	status := ""
	if exec.Status != "" && exec.Status != "ok" {
		status = " (" + exec.Status + ")"
	}
	fmt.Fprintf(p.con, "[output%s]\n%s\n", status, indent(out))
	for _, im := range exec.Images {
		if p.figures == nil {
			fmt.Fprintf(p.con, "[figure %s, %d bytes]\n", im.Name, len(im.Data))
			continue
		}
		path, err := p.figures.Save(im)
		if err != nil {
			fmt.Fprintf(p.con, "[figure %s not saved: %v]\n", im.Name, err)
			continue
		}
		fmt.Fprintf(p.con, "[figure saved to %s]\n", path)
	}
	for _, f := range exec.Files {
		where := ""
		if f.URL != "" {
			where = ": " + f.URL
		}
		fmt.Fprintf(p.con, "[file %s, %d bytes%s]\n", f.Path, f.Size, where)
	}
}

// Notice shows a remark of codeexec's (not the model's) on a line of its own.
func (p *Printer) Notice(text string) {
	p.newLine()
	fmt.Fprintf(p.con, "[%s]\n", text)
}

func (p *Printer) end() {
	if !p.started {
		p.header()
	}
	p.con.Write([]byte("\n"))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
