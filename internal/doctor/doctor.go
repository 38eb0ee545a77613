// Package doctor checks whether a host has what codeexec sandboxes need, and says how to fix what it lacks.
package doctor

import (
	"context"
	"os"

	"github.com/codeexec/codeexec/internal/container"
)

// Status is the outcome of one check.
type Status string

// Statuses of a check. A warn means sandboxes run but something is weaker or missing
// that only some uses need; a fail means sandboxes cannot run as designed.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is the result of one check of the host.
type Check struct {
	// Name says what was checked: "namespaces", "cgroups", …
	Name string `json:"name"`
	// Status is ok, warn or fail.
	Status Status `json:"status"`
	// Detail is one line saying what was found.
	Detail string `json:"detail"`
	// Fix says what to do about a warn or fail; empty when Status is ok.
	Fix string `json:"fix,omitempty"`
}

// Options say where doctor looks. The zero value, apart from Store, checks this host.
type Options struct {
	// Store is the store directory holding the sandbox image.
	Store string
	// ProcDir is where proc(5) is mounted; tests point it at fixture files. Default "/proc".
	// Checks that make syscalls (namespaces, cgroups, seccomp, Landlock) ignore it.
	ProcDir string
	// TrueBinary is the program started in fresh namespaces to see whether they can be
	// created. Default "/bin/true".
	TrueBinary string
}

func (o Options) withDefaults() Options {
	if o.ProcDir == "" {
		o.ProcDir = "/proc"
	}
	if o.TrueBinary == "" {
		o.TrueBinary = "/bin/true"
	}
	return o
}

// Run checks the host and returns one Check per thing checked, in a fixed order.
func Run(ctx context.Context, opts Options) []Check {
	opts = opts.withDefaults()
	euid := os.Geteuid()
	rt := container.Detect("/", os.Getenv)
	probe := probeCgroups(cgroupParent, euid)
	return []Check{
		checkRoot(euid),
		checkKernel(),
		checkContainer(opts.ProcDir),
		checkNamespaces(ctx, opts.TrueBinary, euid, rt),
		checkUserNSSysctls(opts.ProcDir),
		checkCgroups(probe, rt),
		checkSwap(probe, opts.ProcDir),
		checkSeccomp(opts.ProcDir),
		checkLandlock(),
		checkNoNewPrivs(opts.ProcDir),
		checkFilesystems(opts.ProcDir),
		checkImage(opts.Store),
		checkImageBuilder(rt),
	}
}

// Count returns how many checks have status s.
func Count(checks []Check, s Status) int {
	n := 0
	for _, c := range checks {
		if c.Status == s {
			n++
		}
	}
	return n
}
