// Package sandbox runs untrusted Python in an isolated Linux sandbox: its own
// read-only root file system, user/pid/mount/net/ipc/uts/cgroup namespaces, an
// unprivileged uid with no capabilities, cgroup and rlimit limits, and a wall-clock
// timeout that kills the whole process tree.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/cgroup"
	"github.com/codeexec/codeexec/internal/egress"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
	"github.com/codeexec/codeexec/internal/seccomp"
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
	// Total limits the memory, processes and CPU of all the parent's groups together
	// (cgroup.MachineTotals gives defaults for a server). Zero fields leave the
	// parent's limits as they are: a one-off runner beside a server sharing its
	// parent must not change the server's. An execution may not ask for more memory
	// or processes than the total; a CPU limit above it is lowered to it.
	Total cgroup.Limits
	// HostUID is the first host uid (and gid) sandboxes map to: sandbox root maps to
	// HostUID and the sandbox user to HostUID+1000. No host user should own these ids.
	HostUID int
	// Warm runs executions in children forked from a zygote that has imported the
	// scientific stack (milliseconds instead of a second). When the zygote cannot
	// run, executions fall back to the cold path.
	Warm bool
	// Prefork is how many warm children are kept forked and ready, so that an
	// execution does not wait for a fork and namespace setup. 0 forks on demand.
	Prefork int
	// NodePool is how many sandboxes with a started Node are kept ready for one-shot
	// JavaScript executions with the default limits (nodepool.go); 0 starts Node per
	// execution. Warm only, and only with an image that has Node.
	NodePool int
	// Preload are the Python modules the zygote imports, in order, skipping those the
	// image does not have; nil means DefaultPreload.
	Preload []string
	// LightZygote (with Warm) runs the Python programs that import nothing outside
	// the standard library in children of a second zygote that preloaded nothing: its
	// fork and exit cost a tenth of the full one's. The program's import statements
	// decide (stdlibOnly); one that gets a package another way still works there,
	// only slower. Sessions use the full zygote.
	LightZygote bool
	// Logger receives diagnostics such as zygote restarts; nil discards them.
	Logger *slog.Logger
	// Egress configures the egress proxy of executions with a Network policy; the
	// zero value uses the system resolver and lets only public addresses through.
	Egress egress.Options
	// MaxTotalStorage bounds the sum of the tmpfs sizes (work dir, /tmp, /dev/shm)
	// of all live sandboxes, preforked ones included; a sandbox beyond it is refused
	// with ErrStorageLimit. 0: no bound.
	MaxTotalStorage int64
}

// DefaultHostUID is the default Config.HostUID, far above the ids of real users.
const DefaultHostUID = 1_100_000

// DefaultPreload returns the modules the zygote imports unless Config.Preload says
// otherwise: the default image's stack. An image without some of them skips those.
func DefaultPreload() []string {
	return []string{"numpy", "pandas", "scipy", "sympy", "requests", "matplotlib"}
}

// preloadRE matches a Python module name: the zygote gets them as arguments.
var preloadRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// maxReportBytes bounds the harness report as read from its pipe; harness.Parse
// holds what is read to the report's other caps.
const maxReportBytes = harness.MaxReportBytes

// Runner executes code in fresh sandboxes (the cold path). It is safe for concurrent
// use. The creator must call Close.
type Runner struct {
	cfg Config
	// self is this executable, opened once: the sandbox's init stage runs as an
	// unprivileged uid that may not be able to reach it by path (e.g. under /root).
	self *os.File
	// filter is the seccomp program every sandbox process runs under (seccomp.Encode).
	filter []byte
	// landlock is the Landlock ruleset every sandbox process runs under; nil when
	// the kernel has none.
	landlock *landlockPlan
	cg       *cgroup.Hierarchy
	held     *cgroup.Group // kept frozen: see cgroup.HoldFreezer; nil on v2
	inst     *instance
	storage  *storageBudget // shared with light
	seq      atomic.Uint64
	log      *slog.Logger

	// groups keeps the warm children's emptied cgroups for the next ones; close
	// removes them.
	groups *cgroup.Pool
	// light runs the stdlib-only programs (Config.LightZygote); nil without. Close
	// closes it.
	light *Runner

	live     liveSet        // sessions and one-shot executions not yet torn down, for Close
	slots    chan *slot     // preforked children
	nodes    chan *Session  // started Node sandboxes (nodepool.go); nil without a pool
	bg       sync.WaitGroup // the prefork loops and a zygote start in progress
	cleanups sync.WaitGroup // teardowns of finished executions
	bgCtx    context.Context
	stopBg   context.CancelFunc

	closeOnce sync.Once
	closeErr  error

	// zmu guards the zygote's state; it is never held while a zygote starts.
	zmu       sync.Mutex
	zyg       *zygote
	zygErr    error
	zygFailed time.Time
	// zStarting is closed when the start in progress ends; nil when none is.
	zStarting chan struct{}
	// zStarted is set once a zygote has run: a start after it is a restart, which
	// executions do not wait for.
	zStarted bool
	zClosed  bool
}

// zygoteRetry is how long the runner waits before starting a zygote again after a
// start failed, running cold meanwhile.
const zygoteRetry = 10 * time.Second

// New prepares a Runner: it checks the image, opens the cgroup hierarchy and sweeps
// what dead runners left behind. The caller must call Close.
func New(cfg Config) (*Runner, error) {
	return newRunner(cfg, &storageBudget{max: cfg.MaxTotalStorage})
}

// newRunner is New with the storage budget to draw from, which a light runner
// shares with its parent.
func newRunner(cfg Config, storage *storageBudget) (*Runner, error) {
	if cfg.HostUID <= 0 {
		return nil, fmt.Errorf("sandbox: host uid %d must be positive", cfg.HostUID)
	}
	if cfg.NodePool < 0 {
		return nil, fmt.Errorf("sandbox: node pool %d must not be negative", cfg.NodePool)
	}
	if cfg.MaxTotalStorage < 0 {
		return nil, fmt.Errorf("sandbox: storage budget %d bytes must not be negative", cfg.MaxTotalStorage)
	}
	for _, m := range cfg.Preload {
		if !preloadRE.MatchString(m) {
			return nil, fmt.Errorf("sandbox: preload %q is not a Python module name", m)
		}
	}
	if cfg.Preload == nil {
		cfg.Preload = DefaultPreload()
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
		return nil, fmt.Errorf("sandbox: open the cgroup hierarchy: %w", err)
	}
	if err := sweepState(cfg.StateDir, cg); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("sandbox: clean up after earlier runs: %w", err)
	}
	// Before the zygote and the first group: v1 refuses a parent CPU quota below a
	// child's.
	if cfg.Total != (cgroup.Limits{}) {
		if err := cg.SetLimits(cfg.Total); err != nil {
			return nil, fmt.Errorf("sandbox: set the limits of all sandboxes: %w", err)
		}
	}
	prog, err := seccomp.Program()
	if err != nil {
		return nil, err
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
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, self: self, filter: seccomp.Encode(prog), landlock: newLandlockPlan(landlockABI()), cg: cg, inst: inst, log: log, slots: make(chan *slot, max(cfg.Prefork, 0))}
	r.storage = storage
	r.groups = cg.NewPool(r.nextName, pooledGroups)
	if r.landlock == nil {
		log.Warn("the kernel has no Landlock; sandboxes are confined by namespaces, mounts and seccomp only")
	}
	if cfg.Warm {
		// Only a cost: sessions are frozen between runs either way.
		if r.held, err = cg.HoldFreezer(inst.id + "-freeze"); err != nil {
			log.Warn("could not hold a group frozen; freezing sessions costs more", "err", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.bgCtx, r.stopBg = ctx, cancel
	// Two refill loops: a child's setup runs while the zygote forks the next.
	for i := 0; cfg.Warm && i < min(cfg.Prefork, 2); i++ {
		r.bg.Add(1)
		go r.prefork(ctx)
	}
	if _, err := os.Stat(filepath.Join(cfg.Rootfs, nodePath)); err == nil && cfg.Warm && cfg.NodePool > 0 {
		r.nodes = make(chan *Session, cfg.NodePool)
		r.bg.Add(1)
		go r.fillNodePool(ctx)
	}
	if cfg.Warm && cfg.LightZygote {
		lcfg := cfg
		lcfg.Preload, lcfg.LightZygote, lcfg.NodePool, lcfg.Logger = []string{}, false, 0, log.With("zygote", "light")
		if r.light, err = newRunner(lcfg, storage); err != nil {
			r.Close()
			return nil, fmt.Errorf("sandbox: the light zygote's runner: %w", err)
		}
	}
	return r, nil
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

// Close ends every session and kills every execution still running (its Run
// returns StatusKilled), waits for them to be torn down, then stops the warm
// children and releases the runner's state.
func (r *Runner) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

func (r *Runner) close() error {
	var lightErr error
	if r.light != nil {
		lightErr = r.light.Close()
	}
	r.zmu.Lock()
	r.zClosed = true
	r.zmu.Unlock()
	r.stopBg()
	r.bg.Wait() // the prefork loops and a zygote start have returned: nothing sends on slots any more
	for len(r.slots) > 0 {
		(<-r.slots).release()
	}
	// Kill first, then wait: every session ends and every execution still running is
	// killed (its Run returns StatusKilled), and their owners tear them down. The
	// zygote, pid 1 of its namespace, exits only once every process in it has, and a
	// frozen session's processes die only when their group kills and thaws them.
	r.live.stopAll()
	r.cleanups.Wait()
	r.zmu.Lock()
	if r.zyg != nil {
		r.zyg.close()
		r.zyg = nil
	}
	r.zmu.Unlock()
	// Every group is back: the slots are released and every teardown has run.
	poolErr := r.groups.Close()
	var heldErr error
	if r.held != nil {
		heldErr = r.held.Destroy()
	}
	return errors.Join(lightErr, poolErr, heldErr, r.inst.close(), r.self.Close())
}

// errZygoteStarting is zygote's answer to a caller that does not wait for a restart.
var errZygoteStarting = errors.New("sandbox: the zygote is restarting")

// zygote returns a running zygote, starting one if none runs. The start is made once
// however many callers ask (single-flight) and no lock is held while it runs: a
// caller with wait waits for it, as long as ctx allows; one without wait (an
// execution, which can run cold) waits only for the first start of the runner, not
// for a restart after the zygote died, and gets errZygoteStarting meanwhile. After a
// failed start, none is tried again before zygoteRetry.
func (r *Runner) zygote(ctx context.Context, wait bool) (*zygote, error) {
	for {
		r.zmu.Lock()
		if r.zClosed {
			r.zmu.Unlock()
			return nil, errRunnerClosed
		}
		if r.zyg != nil && r.zyg.alive() {
			z := r.zyg
			r.zmu.Unlock()
			return z, nil
		}
		if r.zyg != nil {
			r.log.Warn("zygote exited; restarting it", "stderr", r.zyg.log.String())
			r.cleanupLater(r.zyg.close)
			r.zyg = nil
		}
		if r.zStarting == nil {
			if r.zygErr != nil && time.Since(r.zygFailed) < zygoteRetry {
				err := r.zygErr
				r.zmu.Unlock()
				return nil, err
			}
			r.zStarting = make(chan struct{})
			r.bg.Add(1)
			go r.startZygoteBg(r.zStarting)
		}
		starting, restart := r.zStarting, r.zStarted
		r.zmu.Unlock()
		if !wait && restart {
			return nil, errZygoteStarting
		}
		select {
		case <-starting:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the zygote: %w", ctx.Err())
		}
	}
}

// startZygoteBg starts a zygote for zygote's callers and closes done when it is
// running or has failed. Close cancels it.
func (r *Runner) startZygoteBg(done chan struct{}) {
	defer r.bg.Done()
	defer close(done)
	z, err := r.startZygote(r.bgCtx)
	r.zmu.Lock()
	defer r.zmu.Unlock()
	r.zStarting = nil
	switch {
	case err != nil:
		r.zygErr, r.zygFailed = err, time.Now()
		var zse *ZygoteStartError
		stderr := ""
		if errors.As(err, &zse) {
			stderr = zse.Stderr
		}
		r.log.Error("zygote failed to start; running cold", "err", err, "stderr", stderr)
	case r.zClosed:
		r.cleanupLater(z.close)
	default:
		r.zyg, r.zygErr, r.zStarted = z, nil, true
	}
}

// errRunnerClosed is returned for a zygote asked of a closed runner.
var errRunnerClosed = errors.New("sandbox: the runner is closed")

// Warm starts the zygote now rather than at the first execution, and reports
// whether warm executions are available.
func (r *Runner) Warm() error {
	if !r.cfg.Warm {
		return errors.New("sandbox: the warm path is disabled")
	}
	_, err := r.zygote(context.Background(), true)
	if err == nil && r.light != nil {
		err = r.light.Warm()
	}
	return err
}

// CgroupVersion reports the cgroup interface the runner uses.
func (r *Runner) CgroupVersion() cgroup.Version { return r.cg.Version() }

// ErrAboveTotal is returned for an execution or session that asks for more memory or
// processes than all sandboxes together may use (Config.Total).
var ErrAboveTotal = errors.New("sandbox: limit above the total of all sandboxes")

// checkTotal refuses limits l that the parent group could never give.
func (r *Runner) checkTotal(l job.Limits) error {
	t := r.cfg.Total
	switch {
	case t.MemoryBytes > 0 && l.MemoryBytes > t.MemoryBytes:
		return fmt.Errorf("%w: memory %d MiB is more than the %d MiB all sandboxes together may use", ErrAboveTotal, l.MemoryBytes>>20, t.MemoryBytes>>20)
	case t.Pids > 0 && l.Pids > t.Pids:
		return fmt.Errorf("%w: pids %d is more than the %d all sandboxes together may have", ErrAboveTotal, l.Pids, t.Pids)
	}
	return nil
}

// Run executes req in a fresh sandbox. A non-nil error means the sandbox could not be
// made or observed; whatever the code itself did, including crashing or exceeding a
// limit, is reported in the Result.
func (r *Runner) Run(ctx context.Context, req *job.Request) (*job.Result, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if err := r.checkTotal(req.Limits); err != nil {
		return nil, err
	}
	if res, ok, err := r.runPooledNode(ctx, req); ok {
		return res, err
	}
	if r.light != nil && (req.Language == "" || req.Language == job.LangPython) && stdlibOnly(req.Code) {
		return r.light.Run(ctx, req)
	}
	if r.cfg.Warm {
		if z, err := r.zygote(ctx, false); err == nil {
			res, err := r.runWarm(ctx, req, z)
			if !errors.Is(err, ErrZygoteGone) {
				return res, err
			}
			r.log.Warn("zygote gone during an execution; running it cold")
		}
	}
	return r.runCold(ctx, req)
}

// nextName returns a new name for an execution's cgroup and state; it starts with the
// instance id so that a sweep can tell whose it is.
func (r *Runner) nextName() string {
	return r.inst.id + "-" + strconv.FormatUint(r.seq.Add(1), 10)
}

// sandboxEnv is the sandbox's whole environment: built from nothing, so no server
// variable (an API key, say) can leak in.
func sandboxEnv(l job.Limits) []string {
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
	}
	// The report's caps, which the harness keeps to and reads from here.
	env = append(env, harness.Env()...)
	env = append(env, nodeEnv(l)...)
	// Some CPUs need these for Debian's OpenBLAS to compute correctly.
	for _, k := range []string{"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// startInit starts the sandbox init stage with spec, places it in group g before it
// does anything, and returns once it has exec'd the program. fd3 becomes the
// program's fd 3 (the report pipe or the zygote's control socket); stdin its fd 0
// (nil: /dev/null). On error nothing is left running. prepare, when set, runs once
// the process exists but before it starts its setup.
func (r *Runner) startInit(spec *initSpec, fd3, stdin *os.File, stdout, stderr io.Writer, g *cgroup.Group, prepare func(pid int) error) (*exec.Cmd, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("make the spec pipe: %w", err)
	}
	defer specW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return nil, fmt.Errorf("make the setup error pipe: %w", err)
	}
	defer errR.Close()
	host := r.cfg.HostUID
	cmd := &exec.Cmd{
		Path:   "/proc/self/fd/" + strconv.Itoa(initExeFD),
		Args:   []string{initArg0},
		Env:    []string{},
		Stdout: stdout,
		Stderr: stderr,
		// ExtraFiles start at fd 3: initSpecFD, initReportFD, initErrFD, initExeFD.
		ExtraFiles: []*os.File{specR, fd3, errW, r.self},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: sandboxCloneFlags,
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
	if stdin != nil {
		cmd.Stdin = stdin
	}
	err = cmd.Start()
	specR.Close()
	errW.Close()
	if err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	fail := func(err error) (*exec.Cmd, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	// The process waits for its spec before doing anything, so it is in the cgroup
	// before it can allocate memory or fork.
	if err := g.Add(cmd.Process.Pid); err != nil {
		return fail(err)
	}
	// The zygote keeps the server's score: it is the one process whose death would
	// end every session.
	if !spec.Zygote {
		if err := setOOMScoreAdj(cmd.Process.Pid); err != nil {
			return fail(err)
		}
	}
	if prepare != nil {
		if err := prepare(cmd.Process.Pid); err != nil {
			return fail(err)
		}
	}
	if err := json.NewEncoder(specW).Encode(spec); err != nil {
		return fail(fmt.Errorf("send spec: %w", err))
	}
	specW.Close()
	// EOF without a word means the exec succeeded (the pipe is close-on-exec).
	msg, _ := io.ReadAll(io.LimitReader(errR, 64<<10))
	if len(msg) > 0 {
		return fail(fmt.Errorf("sandbox setup: %s", msg))
	}
	return cmd, nil
}

// sandboxOOMScoreAdj makes sandbox processes the OOM killer's first choice: when all
// sandboxes together reach Config.Total, or the host runs out, a sandbox dies rather
// than the zygote (whose death would end every session) or the server. Written by
// the host's root, the value also becomes the process's floor (oom_score_adj_min),
// which the sandbox, without CAP_SYS_RESOURCE on the host, cannot go below.
const sandboxOOMScoreAdj = 500

// setOOMScoreAdj gives process pid, and so everything it will start, the sandbox OOM
// score.
func setOOMScoreAdj(pid int) error {
	p := "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	if err := os.WriteFile(p, []byte(strconv.Itoa(sandboxOOMScoreAdj)), 0); err != nil {
		return fmt.Errorf("sandbox: set the OOM score: %w", err)
	}
	return nil
}

// KeptCgroups is the number of emptied cgroups the runner keeps for its next
// warm children (with a light zygote, its too).
func (r *Runner) KeptCgroups() int {
	n := 0
	if r.groups != nil {
		n = r.groups.Kept()
	}
	if r.light != nil {
		n += r.light.KeptCgroups()
	}
	return n
}

// PoolSize is the number of warm children ready for an execution (with a light
// zygote, of the pool that has fewer).
func (r *Runner) PoolSize() int {
	if r.light != nil {
		return min(len(r.slots), r.light.PoolSize())
	}
	return len(r.slots)
}
