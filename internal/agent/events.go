package agent

// Events receives what happens during a completion, as it happens, from the
// goroutine that called Complete; a face streams it, codeexec chat prints it. With
// Request.Stream the model's text and calls come in pieces as it writes them;
// without, each turn's come whole when the turn is complete.
//
// For one code call the order is: CodeDelta pieces, ExecutionStarted,
// ExecutionFinished. index numbers the completion's executions from 0, in the order
// they run (the order of Result.Output).
type Events interface {
	// Text is a piece of the model's text.
	Text(delta string)
	// CodeDelta is a piece of the code of the code call id as the model writes it.
	// The pieces joined are the code of a call whose arguments are valid; the
	// executions carry the code as it runs.
	CodeDelta(index int, id, delta string)
	// ExecutionStarted is called when the code is about to run (before the judge,
	// if any): e has its ID, Code and ContainerID, and no Result.
	ExecutionStarted(index int, e *Execution)
	// ExecutionFinished is called with the outcome of that run, or why it did not
	// run: e as in Result.Output.
	ExecutionFinished(index int, e *Execution)
	// ToolCallDelta is a piece of the arguments of the client tool call id, named
	// name, as the model writes it; the first piece of a call may be "". index
	// numbers the client calls of the completion from 0, in the order of
	// Result.Output.
	ToolCallDelta(index int, id, name, delta string)
}

// NopEvents ignores every event; embed it to implement only some.
type NopEvents struct{}

func (NopEvents) Text(string)                               {}
func (NopEvents) CodeDelta(int, string, string)             {}
func (NopEvents) ExecutionStarted(int, *Execution)          {}
func (NopEvents) ExecutionFinished(int, *Execution)         {}
func (NopEvents) ToolCallDelta(int, string, string, string) {}
