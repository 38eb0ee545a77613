package sandbox

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
)

// nodePath is Node in the image (Debian's nodejs).
const nodePath = "/usr/bin/node"

// nodeArgs is the argv that runs a JavaScript program with the Node harness on the
// cold path; zygote's node.py spawns the same on the warm path.
func nodeArgs(req *job.Request) []string {
	return append([]string{nodePath, "-e", harness.NodeSource, "--", req.Name}, req.Args...)
}

// nodeEnv gives every Node of a sandbox with limits l a V8 heap limit below the
// sandbox's memory limit. V8 picks its default from the host's memory: above the
// cgroup's limit, V8 would collect garbage too late and a program whose live data is
// small would be OOM-killed for its garbage. At three quarters of the limit V8
// collects in time, and a program whose live data does reach it ends with V8's own
// abort, which nodeHeapLimit reports as the memory limit. (Rejected: RLIMIT_AS,
// which V8's large virtual reservations for its heap cages break long before the
// memory is used.)
func nodeEnv(l job.Limits) []string {
	return []string{"NODE_OPTIONS=--max-old-space-size=" + strconv.FormatInt(nodeHeapMiB(l), 10)}
}

// nodeHeapMiB is the V8 heap limit of a sandbox with limits l.
func nodeHeapMiB(l job.Limits) int64 {
	return max(l.MemoryBytes>>20*3/4, 16)
}

// nodeHeapOOM is what V8 prints before it aborts at its heap limit.
const nodeHeapOOM = "JavaScript heap out of memory"

// nodeHeapLimit makes a run that V8 aborted at its heap limit a memory_limit, as the
// cgroup's kill at the memory limit is: the program, not the sandbox, failed. Only
// the abort's status together with V8's message count; a program that prints the
// message and dies of a signal only gets itself called out of memory.
func nodeHeapLimit(o *outcome, res *job.Result, l job.Limits) {
	// V8 ends with SIGABRT or, with a hard abort, a deliberate crash (SIGSEGV, SIGILL
	// or SIGTRAP); a warm one-shot's status says the signal as a shell does.
	aborted := o.signaled || o.exitCode > 128
	if !aborted || (res.Status != job.StatusError && res.Status != job.StatusKilled) || !strings.Contains(res.Stderr, nodeHeapOOM) {
		return
	}
	res.Status, res.ExitCode = job.StatusMemoryLimit, 137
	res.Error = &job.Error{Name: "MemoryError", Message: fmt.Sprintf("the JavaScript heap reached its limit of %d MiB (three quarters of the %d MiB memory limit) and Node stopped", nodeHeapMiB(l), l.MemoryBytes>>20)}
}

// bashArgMax is the largest bash program passed as bash's -c argument; a larger one
// is sourced from the code's file descriptor instead: the kernel refuses a single
// argument over MAX_ARG_STRLEN (128 KiB) with E2BIG.
const bashArgMax = 64 << 10

// bashArgs is the argv that runs a bash program on the cold path, whose code is at
// harness.CodeFD.
func bashArgs(req *job.Request) []string {
	script := req.Code
	if len(script) > bashArgMax {
		script = ". /proc/self/fd/" + strconv.Itoa(harness.CodeFD)
	}
	return append([]string{"/bin/bash", "-c", script, bashName(req.Name)}, req.Args...)
}
