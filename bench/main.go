// Command bench compares, side by side on one machine, the ways codeexec can run
// Python — the warm path, the cold path — with bubblewrap and a plain chroot on the
// same image, and prints a Markdown report.
//
//	go run ./bench [-out bench/RESULTS.md]
//	go run ./bench -cluster 1,2,3    # N serve processes as one deployment (cluster.go)
//
// It needs root and a built image (`codeexec image build`). It is a benchmark, not a
// test: targets live here, never in timed unit tests.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// config is the benchmark's flags.
type config struct {
	store       string
	image       string // a name or an image ID
	prefork     int
	nWarm       int // latency executions per workload on the warm path
	nCold       int // latency executions per workload on the cold path and the peers
	tputN       int // executions per concurrency level, warm
	tputColdN   int // executions per concurrency level, cold
	concurrency []int
	sessions    int
	forks       int             // children of each kind the zygote model forks
	http        bool            // measure the HTTP API too
	httpN       int             // latency requests over HTTP, per path
	httpTputN   int             // requests per concurrency level over HTTP
	ttfrN       int             // sessions for the time to first result, over HTTP
	only        map[string]bool // workloads to measure; nil: all
	light       bool            // measure the light zygote's throughput too
	out         string
	args        []string // as given, for the report

	nodePool  int  // started Node sandboxes kept ready
	langsOnly bool // measure the languages section only
	// The -cluster mode (cluster.go): the deployment sizes, executions per load and
	// executions at once.
	clusterNs   []int
	clusterN    int
	clusterConc int
}

func parseFlags() (config, error) {
	var c config
	store := os.Getenv("CODEEXEC_STORE")
	if store == "" {
		store = "/var/lib/codeexec"
	}
	conc := "1,4,16,64"
	flag.StringVar(&c.store, "store", store, "store holding the image ($CODEEXEC_STORE)")
	flag.StringVar(&c.image, "image", image.DefaultName, "image to measure: a name (its newest build) or an ID from `codeexec image list`")
	flag.IntVar(&c.prefork, "prefork", 4, "warm children kept forked and ready")
	flag.IntVar(&c.nodePool, "node-pool", 2, "started Node sandboxes kept ready for JavaScript (0: none)")
	flag.BoolVar(&c.langsOnly, "langs-only", false, "measure only the languages section (python, bash, javascript on the warm and cold paths)")
	flag.IntVar(&c.nWarm, "n-warm", 200, "latency executions per workload on the warm path")
	flag.IntVar(&c.nCold, "n-cold", 20, "latency executions per workload on the cold, bwrap and chroot paths")
	flag.IntVar(&c.tputN, "tput-n", 400, "executions per concurrency level for warm throughput")
	flag.IntVar(&c.tputColdN, "tput-cold-n", 20, "executions per concurrency level for cold throughput (levels 1 and 4)")
	flag.StringVar(&conc, "concurrency", conc, "comma-separated concurrency levels for warm throughput")
	flag.IntVar(&c.sessions, "sessions", 50, "idle sessions for the memory figure")
	flag.IntVar(&c.forks, "forks", 50, "children of each kind the zygote model forks")
	flag.BoolVar(&c.http, "http", true, "also measure POST /v1/execute over HTTP, the API server in-process on loopback")
	flag.IntVar(&c.httpN, "http-n", 200, "latency requests of print(1) over HTTP, per path (http, http idle)")
	flag.IntVar(&c.httpTputN, "http-tput-n", 400, "requests per concurrency level for HTTP throughput")
	flag.IntVar(&c.ttfrN, "ttfr-n", 50, "sessions for the time to first result over HTTP")
	flag.BoolVar(&c.light, "light", true, "also measure print(1) throughput on a Runner with the light zygote (stdlib-only programs)")
	var only string
	flag.StringVar(&only, "workloads", "", "comma-separated workloads to measure for latency (default: all)")
	flag.StringVar(&c.out, "out", "", "also write the report to this file")
	clusterNs := ""
	flag.StringVar(&clusterNs, "cluster", "", "instead of the rest, measure deployments of these sizes, e.g. 1,2,3: N `codeexec serve` processes on loopback as one deployment")
	flag.IntVar(&c.clusterN, "cluster-n", 1000, "executions per load in -cluster mode")
	flag.IntVar(&c.clusterConc, "cluster-conc", 8, "executions at once (and sessions) in -cluster mode")
	flag.Parse()
	for _, f := range strings.Split(clusterNs, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return c, fmt.Errorf("-cluster: %q is not a positive number", f)
		}
		c.clusterNs = append(c.clusterNs, n)
	}
	if only != "" {
		c.only = map[string]bool{}
		for _, f := range strings.Split(only, ",") {
			f = strings.TrimSpace(f)
			if !slices.ContainsFunc(workloads, func(w workload) bool { return w.name == f }) {
				return c, fmt.Errorf("-workloads: no workload %q", f)
			}
			c.only[f] = true
		}
	}
	c.args = os.Args[1:]
	for _, f := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return c, fmt.Errorf("-concurrency: %q is not a positive number", f)
		}
		c.concurrency = append(c.concurrency, n)
	}
	for name, v := range map[string]int{"-n-warm": c.nWarm, "-n-cold": c.nCold, "-tput-n": c.tputN, "-tput-cold-n": c.tputColdN, "-sessions": c.sessions, "-forks": c.forks,
		"-http-n": c.httpN, "-http-tput-n": c.httpTputN, "-cluster-n": c.clusterN, "-cluster-conc": c.clusterConc, "-ttfr-n": c.ttfrN} {
		if v < 1 {
			return c, fmt.Errorf("%s %d must be at least 1", name, v)
		}
	}
	if c.prefork < 0 || c.nodePool < 0 {
		return c, fmt.Errorf("-prefork %d and -node-pool %d must not be negative", c.prefork, c.nodePool)
	}
	return c, nil
}

func main() {
	// The runner re-executes this binary as the sandbox's init stage.
	sandbox.MaybeInit()
	cfg, err := parseFlags()
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		if len(cfg.clusterNs) > 0 {
			err = runCluster(ctx, cfg)
		} else {
			err = run(ctx, cfg)
		}
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run measures everything and writes the report. Runners are closed on every path
// (Close removes their state dirs and cgroups).
func run(ctx context.Context, cfg config) error {
	img, err := image.Lookup(cfg.store, cfg.image)
	if err != nil {
		return err
	}
	warm, err := newRunner(cfg, img.Rootfs, true)
	if err != nil {
		return fmt.Errorf("warm runner: %w", err)
	}
	defer warm.Close()
	if err := warm.Warm(); err != nil {
		return fmt.Errorf("starting the zygote: %w", err)
	}
	cold, err := newRunner(cfg, img.Rootfs, false)
	if err != nil {
		return fmt.Errorf("cold runner: %w", err)
	}
	defer cold.Close()
	if cfg.langsOnly {
		rep := &report{cfg: cfg, machine: machineInfo(img, warm)}
		if rep.langs, err = measureLangs(ctx, cfg, warm, cold); err != nil {
			return err
		}
		return output(cfg, rep)
	}
	viaHTTP, ttfr, closeHTTP, err := startHTTP(cfg, warm)
	if err != nil {
		return err
	}
	defer closeHTTP()
	paths, rep, err := makePaths(cfg, img.Rootfs, warm, cold, viaHTTP)
	if err != nil {
		return err
	}
	rep.machine = machineInfo(img, warm)
	loadStart := loadAvg()

	if rep.latency, err = latencyAll(ctx, cfg, paths, warm); err != nil {
		return err
	}
	if rep.langs, err = measureLangs(ctx, cfg, warm, cold); err != nil {
		return err
	}
	light, err := newLightRunner(cfg, img.Rootfs)
	if err != nil {
		return fmt.Errorf("light runner: %w", err)
	}
	if light != nil {
		defer light.Close()
		if err := light.Warm(); err != nil {
			return fmt.Errorf("starting the light zygote: %w", err)
		}
	}
	if rep.tput, err = throughputAll(ctx, cfg, warm, light, cold, viaHTTP); err != nil {
		return err
	}
	if ttfr != nil {
		if rep.ttfr, err = ttfr(ctx, cfg.ttfrN, func(ctx context.Context) error { return waitPool(ctx, warm, cfg.prefork) }); err != nil {
			return err
		}
	}
	if rep.rss, err = selfRSS(); err != nil {
		return err
	}
	if rep.mem, err = measureSessions(ctx, warm, cfg.sessions); err != nil {
		return err
	}
	if rep.fork, err = measureForks(ctx, cold, cfg.forks); err != nil {
		return err
	}
	rep.machine = append(rep.machine, [2]string{"load average (1, 5, 15 min): start → end", loadStart + " → " + loadAvg()})
	return output(cfg, rep)
}

// cgroupParent holds the benchmark runners' cgroups (and nothing else's).
const cgroupParent = "codeexec-bench"

// newRunner makes the Runner for the warm or the cold path. The caller must Close it.
func newRunner(cfg config, rootfs string, warm bool) (*sandbox.Runner, error) {
	return sandbox.New(sandbox.Config{
		Rootfs:       rootfs,
		StateDir:     filepath.Join(cfg.store, "run"),
		CgroupParent: cgroupParent,
		HostUID:      sandbox.DefaultHostUID,
		Warm:         warm,
		Prefork:      cfg.prefork,
		NodePool:     cfg.nodePool,
	})
}

// makePaths returns the paths in report order and a report that records the
// peers' command lines. viaHTTP, when not nil, adds the HTTP paths (print only).
func makePaths(cfg config, rootfs string, warm, cold *sandbox.Runner, viaHTTP runFunc) ([]path, *report, error) {
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		return nil, nil, fmt.Errorf("bubblewrap: %w (apt-get install bubblewrap)", err)
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		return nil, nil, err
	}
	bwrapFn, err := bwrapRun(bwrap, rootfs)
	if err != nil {
		return nil, nil, err
	}
	version, err := exec.Command(bwrap, "--version").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("bwrap --version: %w", err)
	}
	caches, err := fontCaches(rootfs)
	if err != nil {
		return nil, nil, err
	}
	rep := &report{cfg: cfg, peerArgs: map[string]string{
		"bwrap":         "bwrap " + strings.Join(bwrapArgs("ROOTFS", relTo(rootfs, caches), "CODE"), " "),
		"bwrap-version": strings.TrimPrefix(strings.TrimSpace(string(version)), "bubblewrap "),
		"chroot":        "env -i " + strings.Join(chrootEnv(), " ") + " " + chroot + " ROOTFS /usr/bin/python3 -c CODE",
	}}
	refill := func(ctx context.Context) error { return waitPool(ctx, warm, cfg.prefork) }
	paths := []path{
		{name: "warm", run: sandboxRun(warm), n: cfg.nWarm, warmPool: true},
		{name: warmIdle, run: sandboxRun(warm), pace: refill, n: cfg.nWarm, warmPool: true},
	}
	if viaHTTP != nil {
		paths = append(paths,
			path{name: httpPath, run: viaHTTP, n: cfg.httpN, warmPool: true, only: "print"},
			path{name: httpIdle, run: viaHTTP, pace: refill, n: cfg.httpN, warmPool: true, only: "print"})
	}
	return append(paths,
		path{name: "cold", run: sandboxRun(cold), n: cfg.nCold},
		path{name: "bwrap", run: bwrapFn, n: cfg.nCold},
		path{name: "chroot", run: chrootRun(chroot, rootfs), n: cfg.nCold},
	), rep, nil
}

// relTo rewrites paths under rootfs to start with "ROOTFS", for the report.
func relTo(rootfs string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = "ROOTFS" + strings.TrimPrefix(p, rootfs)
	}
	return out
}

// warmIdle is the warm path measured one execution at a time on an idle server: the
// pool is refilled before each execution.
const warmIdle = "warm idle"

// latencyRow is the latency of one workload on one path.
type latencyRow struct {
	path, workload string
	wall           summary
	inside         summary // from the Result; zero for peers
}

// latencySlices is how many slices each path's executions of a workload are cut
// into. The paths take turns slice by slice, so that a change in the machine's other
// load while a workload is measured hits every path alike.
const latencySlices = 5

// latencyAll measures every workload on every path that runs it.
func latencyAll(ctx context.Context, cfg config, paths []path, warm *sandbox.Runner) ([]latencyRow, error) {
	var rows []latencyRow
	for _, w := range workloads {
		if cfg.only != nil && !cfg.only[w.name] {
			continue
		}
		var cells []latencyCell
		for _, p := range paths {
			if p.only != "" && p.only != w.name {
				continue
			}
			cells = append(cells, latencyCell{p: p, w: w, n: p.n})
			progress("latency %s/%s: %d executions", w.name, p.name, p.n)
		}
		for s := range latencySlices {
			for i := range cells {
				c := &cells[i]
				if c.p.warmPool {
					if err := waitPool(ctx, warm, cfg.prefork); err != nil {
						return nil, err
					}
				}
				if s == 0 {
					if _, err := c.p.run(ctx, w); err != nil {
						return nil, fmt.Errorf("%s on %s (warm-up execution): %w", w.name, c.p.name, err)
					}
				}
				if err := c.measure(ctx, c.n*(s+1)/latencySlices-c.n*s/latencySlices); err != nil {
					return nil, err
				}
			}
		}
		for _, c := range cells {
			rows = append(rows, latencyRow{path: c.p.name, workload: w.name, wall: summarize(c.wall), inside: summarize(c.inside)})
		}
	}
	return rows, nil
}

// latencyCell collects the latencies of one workload on one path.
type latencyCell struct {
	p            path
	w            workload
	n            int // executions in all
	wall, inside []time.Duration
}

// measure runs the cell's workload k more times, one after another.
func (c *latencyCell) measure(ctx context.Context, k int) error {
	for range k {
		if c.p.pace != nil {
			if err := c.p.pace(ctx); err != nil {
				return err
			}
		}
		start := time.Now()
		in, err := c.p.run(ctx, c.w)
		d := time.Since(start)
		if err != nil {
			return fmt.Errorf("%s on %s (execution %d of %d): %w", c.w.name, c.p.name, len(c.wall)+1, c.n, err)
		}
		c.wall = append(c.wall, d)
		if in > 0 {
			c.inside = append(c.inside, in)
		}
	}
	return nil
}

// waitPool waits until r has n preforked children ready, so that every measurement
// starts from the same state.
func waitPool(ctx context.Context, r *sandbox.Runner, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for r.PoolSize() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("the warm pool holds %d children after 30s, want %d", r.PoolSize(), n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// tputRow is one throughput level.
type tputRow struct {
	path        string
	concurrency int
	n           int
	elapsed     time.Duration
	cpu         time.Duration // cpuUsed over the level, its teardown included
}

// throughputAll measures print(1) throughput on the warm path at every configured
// level, over HTTP (when viaHTTP is not nil) at the same levels, and on the cold
// path at 1 and 4 for comparison.
func throughputAll(ctx context.Context, cfg config, warm, light, cold *sandbox.Runner, viaHTTP runFunc) ([]tputRow, error) {
	type level struct {
		path string
		run  runFunc
		pool *sandbox.Runner // refill its warm pool before the level; nil for cold
		conc int
		n    int
	}
	var levels []level
	for _, c := range cfg.concurrency {
		levels = append(levels, level{"warm", sandboxRun(warm), warm, c, cfg.tputN})
	}
	if light != nil {
		for _, c := range cfg.concurrency {
			levels = append(levels, level{lightPath, sandboxRun(light), light, c, cfg.tputN})
		}
	}
	if viaHTTP != nil {
		for _, c := range cfg.concurrency {
			levels = append(levels, level{httpPath, viaHTTP, warm, c, cfg.httpTputN})
		}
	}
	levels = append(levels, level{"cold", sandboxRun(cold), nil, 1, cfg.tputColdN}, level{"cold", sandboxRun(cold), nil, 4, cfg.tputColdN})
	var rows []tputRow
	for _, l := range levels {
		if l.pool != nil {
			if err := waitPool(ctx, l.pool, cfg.prefork); err != nil {
				return nil, err
			}
		}
		progress("throughput %s: %d executions at concurrency %d", l.path, l.n, l.conc)
		cpu0 := cpuUsed()
		d, err := throughput(ctx, l.run, workloads[0], l.conc, l.n)
		if err != nil {
			return nil, fmt.Errorf("throughput %s at concurrency %d: %w", l.path, l.conc, err)
		}
		if l.pool != nil {
			// The teardown of the level's last executions and the refill of the pool
			// are the level's CPU too.
			if err := waitPool(ctx, l.pool, cfg.prefork); err != nil {
				return nil, err
			}
			time.Sleep(200 * time.Millisecond)
		}
		rows = append(rows, tputRow{path: l.path, concurrency: l.conc, n: l.n, elapsed: d, cpu: cpuUsed() - cpu0})
	}
	return rows, nil
}

// throughput runs w total times from conc goroutines and returns the wall time. The
// first failure stops the others and is returned.
func throughput(ctx context.Context, run runFunc, w workload, conc, total int) (time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for next.Add(1) <= int64(total) && ctx.Err() == nil {
				if _, err := run(ctx, w); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	return elapsed, nil
}

// sessionCode is what each idle session holds.
const sessionCode = "import pandas as pd\ndf = pd.DataFrame({'a': range(100), 'b': [x * 0.5 for x in range(100)]})"

// sessionMemory is the memory of idle session children.
type sessionMemory struct {
	fresh  []int64 // cgroup-measured, right after NewSession
	loaded []int64 // cgroup-measured, after sessionCode, read once all sessions exist
	// private is each session child's own memory by /proc/PID/smaps_rollup
	// (Private_Clean + Private_Dirty), read at the same time as loaded.
	private []int64
	// minflt is each session child's minor page faults since its fork (/proc/PID/stat),
	// read at the same time: mostly the copy-on-write of the zygote's pages it wrote.
	minflt []int64
}

// measureSessions opens k sessions, runs sessionCode in each and reads every one's
// memory while all are alive and idle. It closes them before returning.
func measureSessions(ctx context.Context, r *sandbox.Runner, k int) (sessionMemory, error) {
	progress("memory: %d idle sessions", k)
	var m sessionMemory
	sessions := make([]*sandbox.Session, 0, k)
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	w := workload{name: "session", code: sessionCode}
	for i := range k {
		s, err := r.NewSession(ctx, job.DefaultLimits())
		if err != nil {
			return m, fmt.Errorf("session %d of %d: %w", i+1, k, err)
		}
		sessions = append(sessions, s)
		b, err := s.MemoryBytes()
		if err != nil {
			return m, fmt.Errorf("session %d memory: %w", i+1, err)
		}
		m.fresh = append(m.fresh, b)
		res, err := s.Run(ctx, &job.Request{Code: sessionCode, Limits: job.DefaultLimits()})
		if err == nil {
			err = checkResult(res, w)
		}
		if err != nil {
			return m, fmt.Errorf("session %d of %d: %w", i+1, k, err)
		}
	}
	for i, s := range sessions {
		b, err := s.MemoryBytes()
		if err != nil {
			return m, fmt.Errorf("session %d memory: %w", i+1, err)
		}
		m.loaded = append(m.loaded, b)
	}
	var err error
	if m.private, m.minflt, err = childStats(cgroupParent, sandbox.DefaultHostUID+image.SandboxUID); err != nil {
		return m, fmt.Errorf("reading the session children's smaps: %w", err)
	}
	return m, nil
}

// forkProbe is a model of the zygote, run in a cold sandbox: it imports the stack and
// freezes the GC as zygote.py does, then forks children one at a time. An "empty" child
// only reports its minor faults and exits; a "dataframe" child first runs sessionCode.
// It prints the parent's RSS and, per child, the wall time from fork to reaped exit and
// the child's minor faults (getrusage), as JSON. The warm path's own forks cannot be
// timed from outside: the pool forks ahead of demand and tears down in the background.
const forkProbe = `
import gc, io, json, os, resource, time
import numpy, pandas, scipy, scipy.optimize, scipy.stats, scipy.linalg, scipy.integrate, sympy, requests
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.plot([1, 2, 3]); plt.savefig(io.BytesIO(), format="png"); plt.close("all")
gc.collect(); gc.freeze()
if THP:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for line in open("/proc/self/maps"):
        f = line.split()
        if f[1] == "rw-p" and (len(f) == 5 or f[5] == "[heap]"):
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            lo, hi = (lo + (2 << 20) - 1) & ~((2 << 20) - 1), hi & ~((2 << 20) - 1)
            if hi > lo:
                libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 25)  # MADV_COLLAPSE
def mem_kb(field):
    return int([l for l in open("/proc/self/smaps_rollup") if l.startswith(field + ":")][0].split()[1])
def dataframe():
    exec(compile(SESSION_CODE, "<code>", "exec"), {})
def child(work):
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        if work:
            work()
        os.write(w, b"%d" % resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
        os._exit(0)
    os.close(w)
    faults = int(os.read(r, 64))
    os.close(r)
    os.waitpid(pid, 0)
    return (time.perf_counter() - t0) * 1e6, faults
out = {"rss_kb": mem_kb("Rss"), "thp_kb": mem_kb("AnonHugePages")}
for name, work in (("empty", None), ("dataframe", dataframe)):
    out[name] = [child(work) for _ in range(N)]
out["thp_after_kb"] = mem_kb("AnonHugePages")
print(json.dumps(out))
`

// forkProbeTHP runs forkProbe (PROBE) in a fresh interpreter with the zygote's
// malloc settings (sandbox.ZygoteMallocEnv), which must be in place at its start.
const forkProbeTHP = `
import os, subprocess, sys
env = dict(os.environ)
env.update(kv.split("=", 1) for kv in MALLOC_ENV)
r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
sys.stdout.write(r.stdout)
sys.stderr.write(r.stderr)
sys.exit(r.returncode)
`

// forkStats is what forkProbe measured.
type forkStats struct {
	thp                    bool // the heap on huge pages, as the zygote's
	rssKB                  int64
	thpKB, thpAfterKB      int64 // AnonHugePages before the forks and after
	emptyUS, dataframeUS   []time.Duration
	emptyFlt, dataframeFlt []int64
}

// measureForks runs forkProbe with the heap on 4 KiB pages and on huge pages.
func measureForks(ctx context.Context, r *sandbox.Runner, n int) ([]forkStats, error) {
	var out []forkStats
	for _, thp := range []bool{false, true} {
		fs, err := measureFork(ctx, r, n, thp)
		if err != nil {
			return nil, err
		}
		out = append(out, fs)
	}
	return out, nil
}

// measureFork runs forkProbe with n children of each kind in a cold sandbox of r.
func measureFork(ctx context.Context, r *sandbox.Runner, n int, thp bool) (forkStats, error) {
	progress("zygote model: %d forks of each kind (huge pages: %v)", n, thp)
	fs := forkStats{thp: thp}
	l := job.DefaultLimits()
	l.Timeout = 2 * time.Minute
	code := fmt.Sprintf("SESSION_CODE = %q\nN = %d\nTHP = %s\n", sessionCode, n, map[bool]string{false: "False", true: "True"}[thp]) + forkProbe
	if thp {
		env, err := json.Marshal(sandbox.ZygoteMallocEnv())
		if err != nil {
			return fs, err
		}
		code = fmt.Sprintf("PROBE = %q\nMALLOC_ENV = %s\n", code, env) + forkProbeTHP
	}
	res, err := r.Run(ctx, &job.Request{Code: code, Limits: l})
	if err != nil {
		return fs, err
	}
	if res.Status != job.StatusOK {
		return fs, fmt.Errorf("fork probe: %s: %s", res.Status, res.Stderr)
	}
	var out struct {
		RSSKB      int64        `json:"rss_kb"`
		THPKB      int64        `json:"thp_kb"`
		THPAfterKB int64        `json:"thp_after_kb"`
		Empty      [][2]float64 `json:"empty"`
		Dataframe  [][2]float64 `json:"dataframe"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil {
		return fs, fmt.Errorf("fork probe output %q: %w", res.Stdout, err)
	}
	fs.rssKB, fs.thpKB, fs.thpAfterKB = out.RSSKB, out.THPKB, out.THPAfterKB
	for _, c := range out.Empty {
		fs.emptyUS = append(fs.emptyUS, time.Duration(c[0]*float64(time.Microsecond)))
		fs.emptyFlt = append(fs.emptyFlt, int64(c[1]))
	}
	for _, c := range out.Dataframe {
		fs.dataframeUS = append(fs.dataframeUS, time.Duration(c[0]*float64(time.Microsecond)))
		fs.dataframeFlt = append(fs.dataframeFlt, int64(c[1]))
	}
	return fs, nil
}

// childStats returns the private memory (Private_Clean + Private_Dirty in
// smaps_rollup: what killing it would free) and the minor page faults of every process
// that runs as host uid uid in a cgroup under parent. With the warm pool's children
// still privileged (uid HostUID) and the zygote too, that is the children that have
// run code.
func childStats(parent string, uid int) (private, minflt []int64, err error) {
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, nil, err
	}
	for _, dir := range procs {
		cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
		if err != nil || !strings.Contains(string(cg), ":/"+parent+"/") {
			continue // gone, or not ours
		}
		if u, err := procUID(dir); err != nil || u != uid {
			continue
		}
		clean, err1 := procKB(filepath.Join(dir, "smaps_rollup"), "Private_Clean")
		dirty, err2 := procKB(filepath.Join(dir, "smaps_rollup"), "Private_Dirty")
		faults, err3 := procMinflt(dir)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, nil, err
		}
		private = append(private, (clean+dirty)<<10)
		minflt = append(minflt, faults)
	}
	return private, minflt, nil
}

// procMinflt returns the minor faults (the 10th field of /proc/PID/stat) of the
// process whose /proc directory is dir.
func procMinflt(dir string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 8 {
		return 0, fmt.Errorf("%s/stat: unexpected format %q", dir, b)
	}
	return strconv.ParseInt(f[7], 10, 64)
}

// procUID returns the real uid of the process whose /proc directory is dir.
func procUID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("%s/status has no Uid", dir)
}

// selfRSS is this process's resident set size (VmRSS) in bytes.
func selfRSS() (int64, error) {
	kb, err := procKB("/proc/self/status", "VmRSS")
	return kb << 10, err
}

// output prints the report and, with -out, writes it to a file.
func output(cfg config, rep *report) error {
	var buf bytes.Buffer
	writeReport(&buf, rep)
	if _, err := io.Copy(os.Stdout, bytes.NewReader(buf.Bytes())); err != nil {
		return err
	}
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
	}
	return nil
}

// progress tells the operator what is running; the report goes to stdout.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
