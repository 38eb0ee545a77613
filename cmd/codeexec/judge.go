package main

import (
	"fmt"

	"github.com/codeexec/codeexec/internal/agent"
	"github.com/codeexec/codeexec/internal/llm"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// newJudge makes the safety judge for mode (off, static or llm).
func newJudge(mode string, r *sandbox.Runner, c *llm.Client, model string) (agent.Judge, error) {
	if mode == "off" {
		return nil, nil
	}
	return nil, fmt.Errorf("--safety %q: not wired yet", mode)
}
