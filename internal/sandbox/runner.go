// Package sandbox runs untrusted Python in an isolated Linux sandbox: its own
// read-only root file system, user/pid/mount/net/ipc/uts/cgroup namespaces, an
// unprivileged uid with no capabilities, cgroup and rlimit limits, and a wall-clock
// timeout that kills the whole process tree.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/cleanup"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
)

// Config configures a Runner. It is plain data; New validates it.
type Config struct {
	// Rootfs is the image's root file system, mounted read-only as the sandbox's "/".
	Rootfs string
	// StateDir holds per-execution work dirs (e.g. <store>/run). Shared safely by
	// several processes.
	StateDir string
	// CgroupParent names the parent cgroup of every execution's group.
	CgroupParent string
	// HostUID is the first host uid (and gid) sandboxes map to: sandbox root maps to
	// HostUID and the sandbox user to HostUID+1000. No host user should own these ids.
	HostUID int
}

// DefaultHostUID is the default Config.HostUID, far above the ids of real users.
const DefaultHostUID = 1_100_000

// maxReportBytes bounds the harness report: figures (8 MiB of PNG, base64-encoded) plus
// the result repr and error.
const maxReportBytes = 16 << 20

// Runner executes code in fresh sandboxes (the cold path). It is safe for concurrent
// use. The creator must call Close.
type Runner struct {
	cfg Config
	// self is this executable, opened once: the sandbox's init stage runs as an
	// unprivileged uid that may not be able to reach it by path (e.g. under /root).
	self *os.File
	cg   *cgroup.Hierarchy
	inst *instance
	seq  atomic.Uint64
}

// New prepares a Runner: it checks the image, opens the cgroup hierarchy and sweeps
// what dead runners left behind. The caller must call Close.
func New(cfg Config) (*Runner, error) {
	if cfg.HostUID <= 0 {
		return nil, fmt.Errorf("sandbox: host uid %d must be positive", cfg.HostUID)
	}
	if _, err := os.Stat(filepath.Join(cfg.Rootfs, "usr/bin/python3")); err != nil {
		return nil, fmt.Errorf("sandbox: image %q has no python3: %w", cfg.Rootfs, err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("sandbox: must run as root to create sandboxes")
	}
	for _, p := range []string{cfg.Rootfs, filepath.Dir(cfg.StateDir)} {
		if err := checkSearchable(p); err != nil {
			return nil, err
		}
	}
	cg, err := cgroup.Open(cfg.CgroupParent)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := sweepState(cfg.StateDir, cg); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("sandbox: clean up after earlier runs: %w", err)
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("sandbox: open own executable: %w", err)
	}
	inst, err := openInstance(cfg.StateDir)
	if err != nil {
		self.Close()
		return nil, fmt.Errorf("sandbox: state dir: %w", err)
	}
	return &Runner{cfg: cfg, self: self, cg: cg, inst: inst}, nil
}

// checkSearchable makes sure the unprivileged sandbox uid can reach p: every
// directory on the way must be searchable by others.
func checkSearchable(p string) error {
	abs, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil && fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("sandbox: %q is not searchable by the sandbox uid (needed to reach %q): chmod o+x it", d, p)
		}
		if d == "/" {
			return nil
		}
	}
}

// Close releases the runner's state dir. Executions still running are not waited for.
func (r *Runner) Close() error {
	return errors.Join(r.inst.close(), r.self.Close())
}

// CgroupVersion reports the cgroup interface the runner uses.
func (r *Runner) CgroupVersion() cgroup.Version { return r.cg.Version() }

// Run executes req in a fresh sandbox. A non-nil error means the sandbox could not be
// made or observed; whatever the code itself did, including crashing or exceeding a
// limit, is reported in the Result.
func (r *Runner) Run(ctx context.Context, req *Request) (*Result, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	ex := &execution{r: r, req: req, name: r.inst.id + "-" + strconv.FormatUint(r.seq.Add(1), 10)}
	var cu cleanup.Cleanup
	defer cu.Clean()
	if err := ex.prepare(&cu); err != nil {
		return nil, err
	}
	return ex.run(ctx)
}

// execution is the state of one Run; every resource it makes is registered on the
// cleanup in prepare and released when Run returns.
type execution struct {
	r    *Runner
	req  *Request
	name string
	work *workDir
	cg   *cgroup.Group
}

func (ex *execution) prepare(cu *cleanup.Cleanup) error {
	l := ex.req.Limits
	work, err := newWorkDir(filepath.Join(ex.r.inst.dir, ex.name), l.WorkBytes, ex.r.cfg.HostUID+sandboxUID)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	cu.Add(func() { _ = work.remove() })
	ex.work = work
	if err := work.writeInputs(ex.req.Files); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	g, err := ex.r.cg.New(ex.name, cgroup.Limits{MemoryBytes: l.MemoryBytes, Pids: l.Pids, CPUs: l.CPUs})
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	cu.Add(func() { _ = g.Destroy() })
	ex.cg = g
	return nil
}

func (ex *execution) spec() *initSpec {
	l := ex.req.Limits
	return &initSpec{
		Rootfs:    ex.r.cfg.Rootfs,
		WorkDir:   ex.work.dir,
		TmpBytes:  l.TmpBytes,
		FileBytes: l.FileBytes,
		OpenFiles: l.OpenFiles,
		Env:       sandboxEnv(l),
		Args:      []string{"/usr/bin/python3", "-B", "-s", "-c", harness.Source},
		Code:      ex.req.Code,
	}
}

// sandboxEnv is the sandbox's whole environment: built from nothing, so no server
// variable (an API key, say) can leak in.
func sandboxEnv(l Limits) []string {
	threads := strconv.Itoa(max(1, int(l.CPUs+0.999)))
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + sandboxWorkDir,
		"USER=sandbox",
		"LANG=C.UTF-8",
		"PYTHONUNBUFFERED=1", // output printed before a timeout or crash is not lost
		"PYTHONIOENCODING=utf-8",
		"MPLBACKEND=Agg",
		"MPLCONFIGDIR=" + mplConfigDir,
		"OPENBLAS_NUM_THREADS=" + threads,
		"OMP_NUM_THREADS=" + threads,
		"CODEEXEC_MAX_RESULT=65536",
	}
	// Some CPUs need these for Debian's OpenBLAS to compute correctly.
	for _, k := range []string{"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// pipes of one execution; the parent's ends are closed by run, the child's ends right
// after start.
type pipes struct {
	specR, specW     *os.File
	reportR, reportW *os.File
	errR, errW       *os.File
}

func newPipes() (*pipes, error) {
	var p pipes
	var err error
	if p.specR, p.specW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.reportR, p.reportW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	if p.errR, p.errW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	return &p, nil
}

func (p *pipes) closeChildEnds() {
	for _, f := range []*os.File{p.specR, p.reportW, p.errW} {
		if f != nil {
			f.Close()
		}
	}
}

func (p *pipes) close() {
	p.closeChildEnds()
	for _, f := range []*os.File{p.specW, p.reportR, p.errR} {
		if f != nil {
			f.Close()
		}
	}
}

func (ex *execution) command(p *pipes, stdout, stderr io.Writer) *exec.Cmd {
	host := ex.r.cfg.HostUID
	cmd := &exec.Cmd{
		Path:   "/proc/self/fd/" + strconv.Itoa(initExeFD),
		Args:   []string{initArg0},
		Env:    []string{},
		Stdout: stdout,
		Stderr: stderr,
		// ExtraFiles start at fd 3: initSpecFD, initReportFD, initErrFD, initExeFD.
		ExtraFiles: []*os.File{p.specR, p.reportW, p.errW, ex.r.self},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
				syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
			UidMappings: []syscall.SysProcIDMap{
				{ContainerID: 0, HostID: host, Size: 1},
				{ContainerID: sandboxUID, HostID: host + sandboxUID, Size: 1},
			},
			GidMappings: []syscall.SysProcIDMap{
				{ContainerID: 0, HostID: host, Size: 1},
				{ContainerID: sandboxGID, HostID: host + sandboxGID, Size: 1},
			},
			GidMappingsEnableSetgroups: true,
			Credential:                 &syscall.Credential{Uid: 0, Gid: 0},
			Setsid:                     true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	}
	return cmd
}

// why records the first reason the runner stopped the sandbox.
type why struct {
	mu     sync.Mutex
	reason Status
}

func (w *why) set(s Status) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reason != "" {
		return false
	}
	w.reason = s
	return true
}

func (w *why) get() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reason
}

func (ex *execution) run(ctx context.Context) (*Result, error) {
	l := ex.req.Limits
	p, err := newPipes()
	if err != nil {
		return nil, fmt.Errorf("sandbox: pipes: %w", err)
	}
	defer p.close()

	var stopped why
	var cmd *exec.Cmd
	kill := func(s Status) {
		if stopped.set(s) {
			// pid 1 of the sandbox's pid namespace: its death kills every process in it.
			_ = cmd.Process.Kill()
			_ = ex.cg.Kill()
		}
	}
	stdout := &capWriter{limit: l.OutputBytes, onLimit: func() { kill(StatusOutputLimit) }}
	stderr := &capWriter{limit: l.OutputBytes, onLimit: func() { kill(StatusOutputLimit) }}
	cmd = ex.command(p, stdout, stderr)

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sandbox: start: %w", err)
	}
	p.closeChildEnds()
	// The process waits for its spec before doing anything, so it is in the cgroup
	// before it can allocate memory or fork.
	if err := ex.cg.Add(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	timer := time.AfterFunc(l.Timeout, func() { kill(StatusTimeout) })
	defer timer.Stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			kill(StatusKilled)
		case <-done:
		}
	}()

	specErr := json.NewEncoder(p.specW).Encode(ex.spec())
	p.specW.Close()
	setupErr, _ := io.ReadAll(io.LimitReader(p.errR, 64<<10))
	reportCh := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(io.LimitReader(p.reportR, maxReportBytes+1))
		_, _ = io.Copy(io.Discard, p.reportR) // never block the writer
		reportCh <- data
	}()
	waitErr := cmd.Wait()
	duration := time.Since(start)
	report := <-reportCh

	if len(setupErr) > 0 || (specErr != nil && stopped.get() == "") {
		return nil, fmt.Errorf("sandbox: setup: %s", strings.TrimSpace(string(setupErr)+" "+errString(specErr)))
	}
	stats, statsErr := ex.cg.Stats()
	if err := ex.cg.Destroy(); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	res := &Result{
		Stdout:          stdout.String(),
		Stderr:          stderr.String(),
		StdoutTruncated: stdout.truncated,
		StderrTruncated: stderr.truncated,
		DurationMS:      float64(duration.Microseconds()) / 1000,
		Images:          []Image{},
		Files:           []FileInfo{},
	}
	if statsErr == nil {
		res.Usage = Usage{CPUMS: float64(stats.CPUTime.Microseconds()) / 1000, MaxMemoryBytes: stats.MaxMemoryBytes}
	}
	ex.classify(res, stopped.get(), waitErr, stats, report)
	if res.Files, res.FilesTruncated, err = ex.work.produced(ex.req.OutputDir); err != nil {
		return nil, fmt.Errorf("sandbox: collect files: %w", err)
	}
	if err := saveImages(res.Images, ex.req.OutputDir); err != nil {
		return nil, fmt.Errorf("sandbox: save figures: %w", err)
	}
	return res, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// classify sets the status, exit code, error and program outputs. Limits come from
// what the runner and the kernel saw; the harness report only describes the program.
func (ex *execution) classify(res *Result, stopped Status, waitErr error, stats cgroup.Stats, report []byte) {
	l := ex.req.Limits
	var ws syscall.WaitStatus
	if ps := waitStatus(waitErr); ps != nil {
		ws = *ps
	}
	signaled := ws.Signaled()
	rep, repErr := harness.Parse(report)
	if len(report) > maxReportBytes {
		rep, repErr = nil, fmt.Errorf("report exceeds %d bytes", maxReportBytes)
	}
	if rep != nil {
		res.Result, res.ResultTruncated = rep.Result, rep.ResultTruncated
		res.ImagesTruncated = rep.ImagesTruncated
		for _, im := range rep.Images {
			res.Images = append(res.Images, Image{Name: im.Name, MimeType: im.MimeType, Data: im.Data})
		}
	}
	switch {
	case stopped == StatusTimeout:
		res.Status, res.ExitCode = StatusTimeout, 124
		res.Error = &Error{Name: "TimeoutError", Message: fmt.Sprintf("execution exceeded the %v time limit and was stopped", l.Timeout)}
	case stopped == StatusOutputLimit:
		res.Status, res.ExitCode = StatusOutputLimit, 137
		res.Error = &Error{Name: "OutputLimitError", Message: fmt.Sprintf("output exceeded the %d-byte limit and the program was stopped", l.OutputBytes)}
	case stopped == StatusKilled:
		res.Status, res.ExitCode = StatusKilled, 137
		res.Error = &Error{Name: "Killed", Message: "execution was cancelled"}
	case stats.OOMKills > 0 && (signaled || rep == nil):
		res.Status, res.ExitCode = StatusMemoryLimit, 137
		res.Error = &Error{Name: "MemoryError", Message: fmt.Sprintf("execution exceeded the %d MiB memory limit and was killed", l.MemoryBytes>>20)}
	case signaled:
		res.Status, res.ExitCode = StatusKilled, 128+int(ws.Signal())
		res.Error = &Error{Name: "Killed", Message: "the program was killed by signal " + ws.Signal().String()}
	case rep != nil:
		res.ExitCode = ws.ExitStatus()
		res.Status = StatusOK
		if !rep.OK {
			res.Status = StatusError
			if rep.Error != nil {
				res.Error = &Error{Name: rep.Error.Name, Message: rep.Error.Message, Traceback: rep.Error.Traceback}
			}
		}
	default:
		res.ExitCode = ws.ExitStatus()
		res.Status = StatusOK
		if res.ExitCode != 0 {
			res.Status = StatusError
			msg := fmt.Sprintf("the interpreter exited with status %d before reporting", res.ExitCode)
			if repErr != nil && !errors.Is(repErr, harness.ErrEmpty) {
				msg += " (" + repErr.Error() + ")"
			}
			res.Error = &Error{Name: "ProcessExit", Message: msg}
		}
	}
}

func waitStatus(err error) *syscall.WaitStatus {
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) {
		return nil
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok {
		return nil
	}
	return &ws
}

// capWriter keeps the first limit bytes written to it and reports when more arrive.
// It never fails a write, so the copy from the pipe drains until the process is gone.
type capWriter struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	limit     int64
	n         int64
	truncated bool
	onLimit   func()
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	room := w.limit - int64(w.buf.Len())
	if room > 0 {
		w.buf.Write(p[:min(int64(len(p)), room)])
	}
	w.n += int64(len(p))
	over := w.n > w.limit && !w.truncated
	if over {
		w.truncated = true
	}
	w.mu.Unlock()
	if over {
		w.onLimit()
	}
	return len(p), nil
}

// String returns the kept output as valid UTF-8.
func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.ToValidUTF8(w.buf.String(), "\uFFFD")
}
