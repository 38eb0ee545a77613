package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/sandbox"
)

// table is a Markdown table built row by row.
type table struct {
	header []string
	rows   [][]string
}

func newTable(header ...string) *table { return &table{header: header} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// write prints t as a GitHub-flavoured Markdown table followed by a blank line.
func (t *table) write(w io.Writer) {
	line := func(cells []string) {
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	line(t.header)
	sep := make([]string, len(t.header))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
	fmt.Fprintln(w)
}

// ms formats d in milliseconds with precision suited to its size.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f < 10:
		return fmt.Sprintf("%.2f ms", f)
	case f < 100:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.0f ms", f)
	}
}

// mib formats a byte count in MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// report is everything one run measured.
type report struct {
	machine  [][2]string
	cfg      config
	peerArgs map[string]string // path name → its command line, for the record
	latency  []latencyRow
	tput     []tputRow
	rss      int64
	mem      sessionMemory
	langs    []langRow
	fork     []forkStats     // 4 KiB pages, then huge pages
	ttfr     []time.Duration // a session's time to first result over HTTP
}

// writeReport prints rep as Markdown.
func writeReport(w io.Writer, rep *report) {
	fmt.Fprintf(w, "# codeexec benchmark\n\n")
	fmt.Fprintf(w, "Produced by `go run ./bench %s`. The machine is shared and noisy: "+
		"treat minimums as the cost and medians as typical.\n\n", strings.Join(rep.cfg.args, " "))
	writeMachine(w, rep)
	if rep.cfg.langsOnly {
		writeLangs(w, rep)
		return
	}
	writePaths(w, rep)
	writeTargets(w, rep)
	writeLatency(w, rep)
	writeLangs(w, rep)
	writeThroughput(w, rep)
	writeMemory(w, rep)
	writeTTFR(w, rep)
}

func writeTTFR(w io.Writer, rep *report) {
	if len(rep.ttfr) == 0 {
		return
	}
	fmt.Fprintf(w, "## Session time to first result\n\n")
	fmt.Fprintf(w, "Over HTTP, one session at a time with the pool refilled to %d before each: `POST /v1/sessions`, then "+
		"`POST /v1/sessions/{id}/execute` with `print(1)`, timed until the answer is read and checked (the `DELETE` after is not timed). "+
		"Hosted sandboxes publish 0.11 s and 0.44 s medians for the same measure (a public leaderboard, April 2026).\n\n", rep.cfg.prefork)
	s := summarize(rep.ttfr)
	t := newTable("sessions", "min", "p50", "p99")
	t.add(fmt.Sprint(s.n), ms(s.min), ms(s.p50), ms(s.p99))
	t.write(w)
}

func writeMachine(w io.Writer, rep *report) {
	fmt.Fprintf(w, "## Machine\n\n")
	t := newTable("", "")
	for _, kv := range rep.machine {
		t.add(kv[0], kv[1])
	}
	t.write(w)
}

func writePaths(w io.Writer, rep *report) {
	fmt.Fprintf(w, "## Paths\n\n")
	fmt.Fprintf(w, "- `warm`: `Runner.Run` with `Warm: true, Prefork: %d` — a child forked from the zygote, "+
		"full sandbox (namespaces, cgroup limits, unprivileged uid), result captured by the harness.\n", rep.cfg.prefork)
	fmt.Fprintf(w, "- `warm idle`: the same, but before each timed execution the benchmark waits (untimed) until the pool "+
		"holds %d ready children again, so each execution meets an idle server. `warm` runs back to back, in runs of %d executions "+
		"that each start with a full pool (see Latency), and its executions share the CPUs with the refilling of the pool "+
		"and the teardown of the executions before.\n", rep.cfg.prefork, rep.cfg.nWarm/latencySlices)
	if rep.cfg.http {
		writeHTTPPaths(w, rep)
	}
	fmt.Fprintf(w, "- `cold`: `Runner.Run` with `Warm: false` — the same sandbox around a fresh interpreter.\n")
	fmt.Fprintf(w, "- `bwrap`: bubblewrap %s and a fresh `python3 -c CODE` on the same image. "+
		"**No cgroup limits and no result capture.** Run as root, it maps the sandbox's uid 1000 to host root. Command:\n\n"+
		"  `%s`\n", rep.peerArgs["bwrap-version"], rep.peerArgs["bwrap"])
	fmt.Fprintf(w, "- `chroot`: **no sandbox at all**, as root: `%s`\n\n", rep.peerArgs["chroot"])
	fmt.Fprintf(w, "Peers get the sandbox's matplotlib font cache (`MPLCONFIGDIR`; without it matplotlib "+
		"rebuilds the cache at every start) and one BLAS thread (the sandbox's 1-CPU limit). "+
		"The plot workload renders its PNG into memory on the peers, as the harness does "+
		"(`plt.savefig(io.BytesIO(), format='png')`, not `/tmp/p.png`: the chroot path has no tmpfs and would "+
		"write into the image). Every execution is checked (status ok and exit code 0 on the sandbox paths, "+
		"exit 0 on the peers; `print` also checks its output, `plot` that one figure came back); "+
		"a failed one stops the benchmark.\n\n")
	fmt.Fprintf(w, "Workloads:\n\n")
	for _, wl := range workloads {
		fmt.Fprintf(w, "- `%s`: `%s`\n", wl.name, strings.ReplaceAll(wl.code, "\n", "; "))
	}
	fmt.Fprintln(w)
}

// writeHTTPPaths describes the http and http idle paths.
func writeHTTPPaths(w io.Writer, rep *report) {
	fmt.Fprintf(w, "- `%s`: `POST /v1/execute` with `{\"code\": CODE}` to the real API server (`api.New(...).Handler()`, "+
		"`MaxConcurrent: %d, MaxQueued: %d`, no API keys) over the `warm` Runner, served in the benchmark's process "+
		"on a 127.0.0.1 TCP listener; a `net/http` client with keep-alive. Timed from sending the request to having read and "+
		"decoded the whole answer, which must be 200 with status ok (and pass the workload's checks). `print` only, "+
		"back to back in runs of %d requests that each start with a full pool.\n",
		httpPath, apiMaxConcurrent, apiMaxQueued, rep.cfg.httpN/latencySlices)
	fmt.Fprintf(w, "- `%s`: the same, but with the pool refilled to %d before each request, as for `%s`.\n",
		httpIdle, rep.cfg.prefork, warmIdle)
}

// target is one goal from the project issue.
type target struct {
	what, goal string
	measured   string
	known, met bool
	info       bool // a figure asked for, with no goal
}

func targets(rep *report) []target {
	var ts []target
	lat := func(path, wl string) (summary, bool) {
		for _, r := range rep.latency {
			if r.path == path && r.workload == wl {
				return r.wall, true
			}
		}
		return summary{}, false
	}
	for _, p := range []string{"warm", warmIdle} {
		s, ok := lat(p, "print")
		ts = append(ts,
			target{what: "`print(1)` via the Go API (" + p + "), p50", goal: "≤ 3.5 ms", measured: ms(s.p50), known: ok, met: s.p50 <= 3500*time.Microsecond},
			target{what: "`print(1)` via the Go API (" + p + "), p99", goal: "≤ 10 ms", measured: ms(s.p99), known: ok, met: s.p99 <= 10*time.Millisecond})
	}
	for _, p := range []string{"warm", warmIdle} {
		s, ok := lat(p, "plot")
		ts = append(ts, target{what: "matplotlib plot → PNG (" + p + "), p50", goal: "≤ 55 ms", measured: ms(s.p50), known: ok, met: s.p50 <= 55*time.Millisecond})
	}
	t := target{what: "isolated executions/s at concurrency 16 (warm, `print(1)`)", goal: "≥ 500/s"}
	for _, r := range rep.tput {
		if r.path == "warm" && r.concurrency == 16 {
			perSec := rate(r.n, r.elapsed)
			t.measured, t.known, t.met = fmt.Sprintf("%.0f/s", perSec), true, perSec >= 500
		}
	}
	ts = append(ts, t)
	ts = append(ts, httpTargets(rep, lat)...)
	ts = append(ts, throughputTargets(rep, lat)...)
	med, _, _ := median(rep.mem.loaded)
	ts = append(ts, target{what: "memory per idle session child holding a small DataFrame, median (cgroup)", goal: "≤ 6 MiB",
		measured: mib(med), known: len(rep.mem.loaded) > 0, met: med <= 6<<20})
	med, _, _ = median(rep.mem.private)
	ts = append(ts, target{what: "the same, median (private memory by smaps_rollup)", goal: "≤ 6 MiB",
		measured: mib(med), known: len(rep.mem.private) > 0, met: med <= 6<<20})
	return ts
}

// httpTargets are the figures over HTTP: the pool issue's p50 goal, and the
// execution-API issue's requests/s, which has no goal of its own (the ≥ 500/s goal
// is for isolated executions through the Go API, above).
func httpTargets(rep *report, lat func(path, wl string) (summary, bool)) []target {
	s, ok := lat(httpIdle, "print")
	ts := []target{{what: "`print(1)` over HTTP (" + httpIdle + "), p50", goal: "≤ 4 ms", measured: ms(s.p50), known: ok,
		met: s.p50 <= 4*time.Millisecond}}
	t := target{what: "requests/s over HTTP at concurrency 16 (`print(1)`)", goal: "none (the ≥ 500/s goal above is the Go API's)", info: true}
	for _, r := range rep.tput {
		if r.path == httpPath && r.concurrency == 16 {
			t.measured, t.known = fmt.Sprintf("%.0f/s", rate(r.n, r.elapsed)), true
		}
	}
	return append(ts, t)
}

// throughputTargets are issue 17's: executions per second at concurrency 16 with the
// full stack preloaded and with the light zygote, back-to-back latency over HTTP
// against the fork floor (the zygote model's empty child on the heap the zygote
// has), the idle pool, and a session's time to first result.
func throughputTargets(rep *report, lat func(path, wl string) (summary, bool)) []target {
	rateAt := func(path string, goal float64) target {
		t := target{what: "isolated `print(1)` executions/s at concurrency 16 (" + path + ")", goal: fmt.Sprintf("≥ %.0f/s", goal)}
		for _, r := range rep.tput {
			if r.path == path && r.concurrency == 16 {
				perSec := rate(r.n, r.elapsed)
				per := r.cpu / time.Duration(r.n)
				t.measured = fmt.Sprintf("%.0f/s (CPU %s per execution: %.0f/s on 2 cores)", perSec, ms(per), 2/per.Seconds())
				t.known, t.met = true, perSec >= goal
			}
		}
		return t
	}
	ts := []target{rateAt("warm", 300), rateAt(lightPath, 600)}
	var floor time.Duration
	for _, f := range rep.fork {
		if f.thp && len(f.emptyUS) > 0 {
			floor = summarize(f.emptyUS).p50
		}
	}
	s, ok := lat(httpPath, "print")
	ts = append(ts,
		target{what: "`print(1)` over HTTP back to back, p50, against the fork floor (" + ms(floor) + ")", goal: "≤ 1.5×",
			measured: fmt.Sprintf("%s (%.1f×)", ms(s.p50), float64(s.p50)/float64(max(floor, 1))), known: ok && floor > 0,
			met: float64(s.p50) <= 1.5*float64(floor)},
		target{what: "`print(1)` over HTTP back to back, p99", goal: "≤ 10 ms", measured: ms(s.p99), known: ok, met: s.p99 <= 10*time.Millisecond})
	s, ok = lat(httpIdle, "print")
	ts = append(ts, target{what: "`print(1)` over HTTP, idle pool, p50", goal: "≤ 3 ms", measured: ms(s.p50), known: ok, met: s.p50 <= 3*time.Millisecond})
	tt := summarize(rep.ttfr)
	ts = append(ts, target{what: "a session's time to first result over HTTP, p50", goal: "≤ 10 ms", measured: ms(tt.p50),
		known: len(rep.ttfr) > 0, met: tt.p50 <= 10*time.Millisecond})
	return ts
}

func writeTargets(w io.Writer, rep *report) {
	fmt.Fprintf(w, "## Targets\n\n")
	t := newTable("target", "goal", "measured", "")
	for _, tg := range targets(rep) {
		verdict := "not measured"
		switch {
		case tg.known && tg.info:
			verdict = "informational"
		case tg.known && tg.met:
			verdict = "met"
		case tg.known:
			verdict = "**not met**"
		}
		if !tg.known {
			tg.measured = "—"
		}
		t.add(tg.what, tg.goal, tg.measured, verdict)
	}
	t.write(w)
}

func writeLatency(w io.Writer, rep *report) {
	fmt.Fprintf(w, "## Latency\n\n")
	fmt.Fprintf(w, "Wall time around one `Run` call (sandbox paths), one HTTP request (http paths) or `exec.Cmd.Run` (peers), one execution at a time, "+
		"after one untimed warm-up execution per cell. The paths take turns in %d slices of each workload's executions, "+
		"so that changes in the machine's other load hit them alike. p99 is nearest-rank: with fewer than 100 executions it is the maximum. "+
		"\"in sandbox p50\" is the Result's `duration_ms` (program sent → program done); "+
		"the rest of the wall time is making the sandbox, collecting the result and tearing down, and on the http paths the HTTP round trip and JSON. "+
		"\"× chroot\" is p50 over the chroot path's p50 for the same workload.\n\n", latencySlices)
	chroot := map[string]time.Duration{}
	for _, r := range rep.latency {
		if r.path == "chroot" {
			chroot[r.workload] = r.wall.p50
		}
	}
	t := newTable("workload", "path", "n", "min", "p50", "p99", "in sandbox p50", "× chroot")
	for _, r := range rep.latency {
		inside, ratio := "—", "—"
		if r.inside.p50 > 0 {
			inside = ms(r.inside.p50)
		}
		if c := chroot[r.workload]; c > 0 {
			ratio = fmt.Sprintf("%.2f", float64(r.wall.p50)/float64(c))
		}
		t.add(r.workload, r.path, fmt.Sprint(r.wall.n), ms(r.wall.min), ms(r.wall.p50), ms(r.wall.p99), inside, ratio)
	}
	t.write(w)
}

func writeThroughput(w io.Writer, rep *report) {
	fmt.Fprintf(w, "## Throughput\n\n")
	fmt.Fprintf(w, "`print(1)` executions through one Runner, with that many goroutines calling `Run` "+
		"(`%s`: that many goroutines each posting to `/v1/execute` over keep-alive connections, served over the warm Runner); "+
		"the warm pool is refilled to %d before each warm and %s level.\n\n", httpPath, rep.cfg.prefork, httpPath)
	fmt.Fprintf(w, "\"CPU per execution\" is the CPU time of the runners' cgroups (sandboxes, zygote) and of the benchmark's "+
		"process (server side) over the level, the pool's refill after it included, divided by its executions; "+
		"\"per core\" is its inverse, the executions one core would sustain (the kernel's own threads are not counted). "+
		"On a shared machine it is steadier than the rate, which other load cuts.\n\n")
	t := newTable("path", "concurrency", "executions", "wall", "executions/s", "CPU per execution", "per core")
	for _, r := range rep.tput {
		per := r.cpu / time.Duration(r.n)
		t.add(r.path, fmt.Sprint(r.concurrency), fmt.Sprint(r.n), ms(r.elapsed), fmt.Sprintf("%.1f", rate(r.n, r.elapsed)),
			ms(per), fmt.Sprintf("%.0f/s", 1/per.Seconds()))
	}
	t.write(w)
}

func writeMemory(w io.Writer, rep *report) {
	fmt.Fprintf(w, "## Memory\n\n")
	fmt.Fprintf(w, "Idle session children (warm path), all %d alive at once. \"fresh\" is right after `NewSession`; "+
		"\"with a DataFrame\" after running `%s` in each. \"cgroup\" is `Session.MemoryBytes`, the session's cgroup; "+
		"\"private\" is Private_Clean + Private_Dirty of each session child's `/proc/PID/smaps_rollup`, "+
		"read at the same moment (pages shared with the zygote are in neither).\n\n",
		len(rep.mem.loaded), strings.ReplaceAll(sessionCode, "\n", "; "))
	t := newTable("session state", "measured by", "sessions", "median", "min", "max")
	for _, row := range []struct {
		name, by string
		xs       []int64
	}{{"fresh", "cgroup", rep.mem.fresh}, {"with a DataFrame", "cgroup", rep.mem.loaded}, {"with a DataFrame", "private", rep.mem.private}} {
		med, lo, hi := median(row.xs)
		t.add(row.name, row.by, fmt.Sprint(len(row.xs)), mib(med), mib(lo), mib(hi))
	}
	t.write(w)
	fmt.Fprintf(w, "server RSS (the process hosting the runner and, with `-http`, the API server), after the warm latency and throughput runs: %s.\n\n",
		mib(rep.rss))
	med, lo, hi := median(rep.mem.minflt)
	fmt.Fprintf(w, "Minor page faults of the same session children since their fork (`/proc/PID/stat`), read with the memory above "+
		"(mostly the copy-on-write of the zygote's pages): median %d, min %d, max %d.\n\n", med, lo, hi)
	writeFork(w, rep)
}

func writeFork(w io.Writer, rep *report) {
	if len(rep.fork) == 0 {
		return
	}
	fmt.Fprintf(w, "## Zygote fork\n\n")
	fmt.Fprintf(w, "A model of the zygote in a cold sandbox: a fresh interpreter imports the stack and freezes the GC as the zygote does, "+
		"and forks %d children one at a time of each kind: \"empty\" reports its minor faults and exits, "+
		"\"dataframe\" first runs the session code above. \"fork to reaped\" is the parent's wall time from `os.fork()` to `waitpid` "+
		"(fork, the child's run, its exit and the reap): the fork floor of a warm execution. \"minor faults\" are the child's own (`getrusage`). "+
		"\"huge pages\" runs the same model with the zygote's malloc settings (`%s`) and its heap collapsed (`MADV_COLLAPSE`) after the freeze, "+
		"as the zygote does. The warm path's forks "+
		"are not timed directly: its pool forks ahead of demand and tears children down in the background.\n\n",
		len(rep.fork[0].emptyUS), strings.Join(sandbox.ZygoteMallocEnv(), " "))
	t := newTable("heap", "RSS", "on huge pages: before → after the forks", "child", "fork to reaped, p50", "min", "max", "minor faults, median", "min", "max")
	for _, f := range rep.fork {
		heap := "4 KiB pages"
		if f.thp {
			heap = "huge pages"
		}
		for _, row := range []struct {
			name string
			us   []time.Duration
			flt  []int64
		}{{"empty", f.emptyUS, f.emptyFlt}, {"dataframe", f.dataframeUS, f.dataframeFlt}} {
			s := summarize(row.us)
			med, lo, hi := median(row.flt)
			t.add(heap, mib(f.rssKB<<10), mib(f.thpKB<<10)+" → "+mib(f.thpAfterKB<<10), row.name, ms(s.p50), ms(s.min), ms(slices.Max(row.us)),
				fmt.Sprint(med), fmt.Sprint(lo), fmt.Sprint(hi))
		}
	}
	t.write(w)
}
