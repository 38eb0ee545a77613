// Package safety decides, before code runs, whether it may: a static AST check run
// inside the sandbox, an LLM judge, and both combined. Every judge is fail-closed:
// an error means "not safe". The sandbox, not the judge, is the security boundary.
package safety

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/llm"
)

// Verdict is a judge's decision on a piece of code.
type Verdict struct {
	Safe   bool   `json:"safe"`
	Reason string `json:"reason"`
}

// Judge decides whether code may run; an error means "do not run" (fail-closed).
// Its users declare the same interface (Judge): this one is what Combined
// and New are made of.
type Judge interface {
	// Check judges code that may reach what network allows (nil: no network): a
	// program that uses that access is not unsafe for it.
	Check(ctx context.Context, code string, network *egress.Policy) (Verdict, error)
}

// Modes are the values of `codeexec serve --safety`, as New takes them.
var Modes = []string{"off", "static", "llm"}

// Combined is Static then LLM: code the static check refuses is refused without
// asking the model (no tokens, no latency); other code is judged by the model.
type Combined struct {
	// Static runs first; its error or unsafe verdict is final.
	Static Judge
	// LLM judges what Static passes.
	LLM Judge
}

// Check implements Judge; an error means the code must not run.
func (c *Combined) Check(ctx context.Context, code string, network *egress.Policy) (Verdict, error) {
	v, err := c.Static.Check(ctx, code, network)
	if err != nil || !v.Safe {
		return v, err
	}
	return c.LLM.Check(ctx, code, network)
}

// New returns the judge of a --safety mode. "off" is no judge (nil, nil). "static"
// is the static check run on r. "llm" is the static check and then the model on
// upstream: the static check is fast and free and catches the obvious, so it
// always runs before the LLM judge rather than being a separate mode.
func New(mode string, r Runner, upstream *llm.Client, model string) (Judge, error) {
	switch mode {
	case "off":
		return nil, nil
	case "static", "llm":
		if r == nil {
			return nil, fmt.Errorf("safety: mode %q needs a sandbox runner for the static check", mode)
		}
	default:
		return nil, fmt.Errorf("safety: mode %q is not one of %s", mode, strings.Join(Modes, ", "))
	}
	static := NewStatic(r)
	if mode == "static" {
		return static, nil
	}
	if upstream == nil {
		return nil, errors.New(`safety: mode "llm" needs an upstream for the judge model`)
	}
	if model == "" {
		return nil, errors.New(`safety: mode "llm" needs a judge model name`)
	}
	return &Combined{Static: static, LLM: NewLLM(upstream, model)}, nil
}
