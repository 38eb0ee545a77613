// Package agenttest has a fake of agent.Sandbox, for tests about the agent loop and
// its faces rather than about the code: it needs no root.
package agenttest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// Sandbox is an agent.Sandbox whose runs answer with scripted results, in order.
// A run marked in Stops ends its interpreter, as a limit does; the next use starts
// another, with the next id. Set T; the other fields are optional.
type Sandbox struct {
	T testing.TB
	// Forbidden makes any use of the sandbox fail the test: the request should have
	// been refused, or should not run code.
	Forbidden bool
	// Running is whether an interpreter is running: true at the start for a
	// sandbox resumed from an earlier request.
	Running bool
	// Results answer the runs, in order; Errs, where not nil, fail them instead
	// (sandbox.ErrSessionEnded, …).
	Results []*job.Result
	Errs    []error
	// Stops marks the runs that end the interpreter.
	Stops []bool

	mu     sync.Mutex
	starts int
	ran    []string
	files  map[string]string
}

func (s *Sandbox) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start()
	return nil
}

func (s *Sandbox) start() {
	if s.Forbidden {
		s.T.Errorf("the sandbox was used; the request should not have reached it")
	}
	if !s.Running {
		s.Running = true
		s.starts++
	}
}

func (s *Sandbox) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Running
}

// ID is "sess_fake_N" for the N-th interpreter started; "" before the first.
func (s *Sandbox) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.starts == 0 {
		return ""
	}
	return fmt.Sprintf("sess_fake_%d", s.starts)
}

func (s *Sandbox) Run(ctx context.Context, code string) (*job.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start()
	i := len(s.ran)
	s.ran = append(s.ran, code)
	if i < len(s.Errs) && s.Errs[i] != nil {
		if errors.Is(s.Errs[i], sandbox.ErrSessionEnded) {
			s.Running = false
		}
		return nil, s.Errs[i]
	}
	if i >= len(s.Results) {
		return nil, errors.New("agenttest: no result scripted for this run")
	}
	if i < len(s.Stops) && s.Stops[i] {
		s.Running = false
	}
	return s.Results[i], nil
}

func (s *Sandbox) WriteFile(path string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start()
	if s.files == nil {
		s.files = map[string]string{}
	}
	s.files[path] = string(data)
	return nil
}

// Starts is how many interpreters were started.
func (s *Sandbox) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// Ran is the code of every run asked for, in order.
func (s *Sandbox) Ran() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ran...)
}

// Files are the files written since the start or ForgetFiles, by path.
func (s *Sandbox) Files() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.files)
}

// ForgetFiles forgets the files written so far, for Files to show the next ones.
func (s *Sandbox) ForgetFiles() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files = nil
}

// OK is the result of a run that printed stdout.
func OK(stdout string) *job.Result {
	return &job.Result{Status: job.StatusOK, Stdout: stdout}
}
