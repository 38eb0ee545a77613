package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
	"golang.org/x/sys/unix"
)

// interpreter is a warm Python process that runs programs sent on its channel: a
// one-shot sandbox's child (which exits after its one run) or a session's context.
type interpreter struct {
	ch *net.UnixConn
	// netns is a pidfd of a process in the sandbox, whose network namespace the egress
	// proxy of a run with limited network listens in.
	netns int
	// last is set for a one-shot child: its run is the sandbox's only one, and pidfd
	// (the child's own) says when it has exited.
	last  bool
	pidfd int
	// freeze, for a one-shot child, stops every process of the execution (its
	// cgroup's freezer) and returns nil once all are stopped.
	freeze func() error
	// kill stops what a limit or a cancellation must stop.
	kill func()
	// watching, when set, is given the run's watch before the program is sent, and
	// nil once the run is over.
	watching func(*watch)
	// drain makes a session's JavaScript run end as a one-shot run (ctlMsg.Drain).
	drain bool
}

// runOn runs req on the interpreter p. It returns when the program has finished —
// done: the interpreter said so and, unless last, waits for the next program — or
// when the interpreter has died or been stopped (done is false: its wait status says
// how). The output readers may still run; call w.waitOutput.
func (r *Runner) runOn(ctx context.Context, p interpreter, req *job.Request) (o outcome, w *watch, done bool, err error) {
	l := req.Limits
	code, err := memfdWith("code", req.Code)
	if err != nil {
		return o, nil, false, err
	}
	defer code.Close()
	run := ctlMsg{Op: "run", Last: p.last, Lang: runLang(req.Language), Drain: p.drain,
		Argv: append([]string{req.Name}, req.Args...)}
	if p.last {
		run.Rlimits = sandboxRlimits(l.FileBytes, l.OpenFiles) // the child seals itself with this run
	}
	if req.Network != nil {
		// The proxy serves this run only; its connections end with it.
		link, err := r.openEgress(p.netns, req.Network)
		if err != nil {
			return o, nil, false, err
		}
		defer func() { o.network = link.close() }()
		run.Env = proxyEnv(link.addr)
	}
	if req.Kernel != nil {
		kv, err := kernelEnv(req.Kernel)
		if err != nil {
			return o, nil, false, err
		}
		run.Env = append(run.Env, kv)
	}
	// For every run: the zygote's environment has the default limits' heap, and a
	// Python or bash program may start Node too.
	run.Env = append(run.Env, nodeEnv(l)...)
	var ends []*os.File
	defer func() {
		for _, f := range ends {
			f.Close()
		}
	}()
	pipe := func() (*os.File, *os.File) {
		r, w, e := os.Pipe()
		if e != nil {
			err = e
			return nil, nil
		}
		ends = append(ends, w)
		return r, w
	}
	outR, outW := pipe()
	errR, errW := pipe()
	repR, repW := pipe()
	if err != nil {
		for _, f := range []*os.File{outR, errR, repR} {
			if f != nil {
				f.Close()
			}
		}
		return o, nil, false, fmt.Errorf("make the program's pipes: %w", err)
	}
	stdin, err := newStdinFeed(req.Stdin)
	if err != nil {
		for _, f := range []*os.File{outR, errR, repR} {
			f.Close()
		}
		return o, nil, false, fmt.Errorf("sandbox: stdin: %w", err)
	}
	defer stdin.close()
	fds := []int{int(code.Fd()), int(outW.Fd()), int(errW.Fd()), int(repW.Fd())}
	if stdin != nil {
		run.Stdin = true
		fds = append(fds, int(stdin.file().Fd()))
	}
	w = newWatch(l)
	w.readOutput(outR, errR, repR, kernelOutputs(req))
	if p.watching != nil {
		p.watching(w)
		defer p.watching(nil)
	}
	start := time.Now()
	data, _ := json.Marshal(run)
	if _, _, err := p.ch.WriteMsgUnix(data, unix.UnixRights(fds...), nil); err != nil {
		p.kill()
		w.disarm()
		return o, w, false, fmt.Errorf("sandbox: send program: %w", err)
	}
	for _, f := range ends {
		f.Close()
	}
	ends = nil
	stdin.start()
	w.tee = newTee(w, req.Stdout, req.Stderr) // from the first byte kept, whenever it came
	w.start(ctx, p.kill)
	m, rerr := readCtl(p.ch)
	o.duration = time.Since(start)
	// A bash run's child has killed what was left of the run and closed its pipes
	// before it says so, and no program can write on its channel (bash_alone): the
	// child's exit, which takes milliseconds, need not be waited for.
	empty := rerr == nil && m.Op == "done" && m.Empty && req.Language == job.LangBash
	switch {
	case !p.last || empty:
	case rerr == nil && m.Op == "done" && p.freeze != nil && p.freeze() == nil:
		// A Python child waits to be killed after "done" (child_main), which the
		// program, running in it, could forge to carry on. Frozen, nothing of the
		// execution runs or is inside a system call any more (a task freezes only
		// at a system call's end or in a sleep it wakes from for its SIGKILL): the
		// caller lists the files and kills it all before the reply, and the exit,
		// which takes milliseconds, happens after.
		o.frozen = true
	default:
		// No "done" (the child exits on its own), or no freeze: the run is over
		// once the child has exited; until then the watch still enforces every limit.
		if rerr == nil && m.Op == "done" {
			p.kill() // it waits to be killed
		}
		waitExit(p.pidfd)
	}
	w.disarm()
	o.stopped = w.reason()
	if rerr == nil && m.Op == "done" && o.stopped == "" {
		o.exitCode = m.ExitCode
		return o, w, true, nil
	}
	return o, w, false, nil
}

// kernelEnv is the variable that makes the harness run a program as a kernel run.
func kernelEnv(k *job.Kernel) (string, error) {
	b, err := json.Marshal(harness.KernelOptions{Env: k.Env, BaseEnv: k.BaseEnv, Stream: k.OnOutput != nil})
	if err != nil {
		return "", fmt.Errorf("sandbox: kernel options: %w", err)
	}
	return harness.KernelVar + "=" + string(b), nil
}

// runLang is a run message's lang: "bash" or "javascript", or "" for Python.
func runLang(lang string) string {
	if lang == job.LangBash || lang == job.LangJavaScript {
		return lang
	}
	return ""
}

// memfdWith returns an anonymous file holding s, positioned at its start.
func memfdWith(name, s string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, &os.SyscallError{Syscall: "memfd_create", Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return nil, fmt.Errorf("write the code memfd: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek the code memfd: %w", err)
	}
	return f, nil
}
