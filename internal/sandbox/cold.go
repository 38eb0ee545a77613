package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/cleanup"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
	"golang.org/x/sys/unix"
)

// runCold runs req in a sandbox of its own with a fresh interpreter: the slow path,
// used when no zygote is available and as the reference the warm path is held to.
func (r *Runner) runCold(ctx context.Context, req *job.Request) (*job.Result, error) {
	l := req.Limits
	name := r.nextName()
	// Out of the live set last, once its work dir and cgroup are gone.
	live := &liveRun{}
	defer r.live.add(live.stop)()
	var cu cleanup.Cleanup
	defer cu.Clean()

	var kernel string
	if req.Kernel != nil {
		k, err := kernelEnv(req.Kernel)
		if err != nil {
			return nil, err
		}
		kernel = k
	}
	unreserve, err := r.storage.reserve(l)
	if err != nil {
		return nil, err
	}
	cu.Add(unreserve)
	work, err := newWorkDir(filepath.Join(r.inst.dir, name), l.WorkBytes, r.cfg.HostUID+sandboxUID)
	if err != nil {
		return nil, fmt.Errorf("sandbox: make the work dir: %w", err)
	}
	cu.Add(func() { _ = work.remove() })
	// The group comes before the input files: their pages are charged to it.
	g, err := r.cg.New(name, cgroupLimits(l))
	if err != nil {
		return nil, fmt.Errorf("sandbox: make the cgroup: %w", err)
	}
	cu.Add(func() { _ = g.Destroy() })
	if err := work.writeInputs(req.Files, r.inputWriter(g, l)); err != nil {
		return nil, err
	}

	reportR, reportW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer reportR.Close()
	stdin, err := newStdinFeed(req.Stdin)
	if err != nil {
		reportW.Close()
		return nil, fmt.Errorf("sandbox: stdin: %w", err)
	}
	defer stdin.close()
	w := newWatch(l)
	spec := &initSpec{
		Rootfs:    r.cfg.Rootfs,
		WorkDir:   work.dir,
		TmpBytes:  l.TmpBytes,
		FileBytes: l.FileBytes,
		OpenFiles: l.OpenFiles,
		Env:       sandboxEnv(l),
		Args:      coldArgs(req),
		Code:      req.Code,
		Seccomp:   r.filter,
		Landlock:  r.landlock,
	}
	if req.Kernel != nil {
		spec.Env = append(spec.Env, kernel)
	}
	var link *egressLink
	defer func() { link.close() }() // on the error paths; closing twice is harmless
	var prepare func(int) error
	if req.Network != nil {
		prepare = func(pid int) error {
			ns, err := pidNetns(pid)
			if err != nil {
				return err
			}
			defer unix.Close(ns)
			if link, err = r.openEgress(ns, req.Network); err != nil {
				return err
			}
			spec.Env = append(spec.Env, proxyEnv(link.addr)...)
			return nil
		}
	}
	start := time.Now()
	cmd, err := r.startInit(spec, reportW, stdin.file(), w.stdout, w.stderr, g, prepare)
	reportW.Close()
	if err != nil {
		return nil, fmt.Errorf("sandbox: start the sandbox's init: %w", err)
	}
	stdin.start()
	w.tee = newTee(w, req.Stdout, req.Stderr) // from the first byte kept, whenever it came
	// pid 1 of the sandbox's pid namespace: its death kills every process in it.
	kill := func() { _ = cmd.Process.Kill(); _ = g.Kill() }
	live.started(kill)
	w.start(ctx, kill)
	reportCh := make(chan []byte, 1)
	var delivered chan struct{}
	if onOutput := kernelOutputs(req); onOutput != nil {
		var outs chan<- job.Output
		outs, delivered = deliverOutputs(onOutput)
		go func() {
			defer close(outs)
			reportCh <- readStreamedReport(reportR, outs)
		}()
	} else {
		go func() { reportCh <- readReport(reportR) }()
	}
	waitErr := cmd.Wait() // after the copies of stdout and stderr are complete
	w.disarm()
	stdin.close()
	report := <-reportCh
	waitDelivered(delivered)
	w.tee.finish()
	o := outcome{stopped: w.reason(), report: report, duration: time.Since(start), network: link.close(),
		bare: req.Language == job.LangBash, node: req.Language == job.LangJavaScript}
	if ws := waitStatus(waitErr); ws != nil {
		o.signaled, o.signal, o.exitCode = ws.Signaled(), ws.Signal(), ws.ExitStatus()
	}
	o.stats, o.statsErr = g.Stats()
	if err := g.Destroy(); err != nil {
		return nil, fmt.Errorf("sandbox: remove the cgroup: %w", err)
	}
	res := o.result(l, w)
	if res.Files, res.FilesTruncated, err = work.produced(); err != nil {
		return nil, fmt.Errorf("sandbox: collect files: %w", err)
	}
	saveOutputs(work, res, req.OutputDir)
	return res, nil
}

// coldArgs is the argv the cold init execs: the Python harness, bash itself, or the
// Node harness.
func coldArgs(req *job.Request) []string {
	switch req.Language {
	case job.LangBash:
		return bashArgs(req)
	case job.LangJavaScript:
		return nodeArgs(req)
	}
	return append([]string{"/usr/bin/python3", "-B", "-s", "-c", harness.Source, req.Name}, req.Args...)
}

// bashName is a bash program's $0: the name it came from, or "bash".
func bashName(name string) string {
	if name == "" {
		return "bash"
	}
	return name
}

func cgroupLimits(l job.Limits) cgroup.Limits {
	return cgroup.Limits{MemoryBytes: l.MemoryBytes, Pids: l.Pids, CPUs: l.CPUs}
}

// readReport reads the harness report, keeping at most one byte over the limit so
// an oversized report is recognised, and drains the rest so the writer never blocks.
func readReport(r io.Reader) []byte {
	data, _ := io.ReadAll(io.LimitReader(r, maxReportBytes+1))
	_, _ = io.Copy(io.Discard, r)
	return data
}
