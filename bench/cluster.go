package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codeexec/codeexec/internal/cluster"
	"github.com/codeexec/codeexec/internal/proctree"
	"github.com/codeexec/codeexec/test/testenv"
)

// The -cluster mode: N `codeexec serve` processes on loopback as one deployment
// (test/testenv.StartDeployment, peers from a file), for each N of -cluster, loaded
// by this process through every replica alike, as a Service spreads its
// connections. Two loads: stateless executions (POST /v1/execute, each served where
// it lands) and executions in sessions sent to a random replica (so that (N-1)/N of
// them take a forwarding hop). The CPU time is the replicas' process trees' own,
// sandboxes included, read from /proc: other work on the machine does not count in
// it, but does slow the wall clock.

const clusterKey = "bench-cluster-key"

type clusterRow struct {
	n                    int
	stateless, inSession float64       // executions per second
	forwarded            float64       // share of the session executions that took a hop
	cpuPerExec           time.Duration // stateless
	cpuPerSessionExec    time.Duration
	pssMiB               float64 // the replicas' trees, after the load
}

func runCluster(ctx context.Context, cfg config) error {
	dir, err := os.MkdirTemp("", "codeexec-bench-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	progress("building cmd/codeexec")
	bin, err := testenv.BuildCodeexec(ctx, ".", dir)
	if err != nil {
		return err
	}
	loadStart := loadAvg()
	var rows []clusterRow
	for _, n := range cfg.clusterNs {
		progress("cluster of %d: starting", n)
		row, err := measureCluster(ctx, cfg, bin, filepath.Join(dir, strconv.Itoa(n)), n)
		if err != nil {
			return fmt.Errorf("cluster of %d: %w", n, err)
		}
		rows = append(rows, row)
	}
	var buf bytes.Buffer
	writeClusterReport(&buf, cfg, rows, loadStart, loadAvg())
	os.Stdout.Write(buf.Bytes())
	if cfg.out != "" {
		return os.WriteFile(cfg.out, buf.Bytes(), 0o644)
	}
	return nil
}

func measureCluster(ctx context.Context, cfg config, bin, dir string, n int) (clusterRow, error) {
	row := clusterRow{n: n}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return row, err
	}
	d, err := testenv.StartDeployment(ctx, bin, dir, n, clusterKey, "--prefork", strconv.Itoa(cfg.prefork),
		"--max-concurrent", "16", "--max-queued", "256", "--max-sessions", "64")
	if err != nil {
		return row, err
	}
	defer d.Stop()
	client := apiClient(4 * cfg.clusterConc)
	pick := func(i int) string { return d.Replicas[i%n].API }

	// Stateless: request i goes to replica i mod n, as a Service's connections do.
	warm := func(i int) error {
		return clusterExec(ctx, client, pick(i)+"/v1/execute", `{"code":"print(1)"}`, "1\n")
	}
	if err := clusterLoad(cfg.clusterConc, 4*cfg.clusterConc, warm); err != nil {
		return row, err
	}
	cpu0 := treeCPU(d)
	start := time.Now()
	if err := clusterLoad(cfg.clusterConc, cfg.clusterN, warm); err != nil {
		return row, err
	}
	wall := time.Since(start)
	row.stateless = float64(cfg.clusterN) / wall.Seconds()
	row.cpuPerExec = (treeCPU(d) - cpu0) / time.Duration(cfg.clusterN)

	// In sessions: one per worker, made round-robin; each execution goes to a random
	// replica, its session's owner or not.
	ids := make([]string, cfg.clusterConc)
	for i := range ids {
		if ids[i], err = clusterSession(ctx, client, pick(i)); err != nil {
			return row, err
		}
	}
	var hops atomic.Int64
	var counts = make([]atomic.Int64, len(ids))
	inSession := func(w int) func(int) error {
		rng := rand.New(rand.NewPCG(uint64(w), 1))
		return func(int) error {
			r := d.Replicas[rng.IntN(n)]
			if cluster.Owner(ids[w]) != r.Name {
				hops.Add(1)
			}
			k := counts[w].Add(1)
			return clusterExec(ctx, client, r.API+"/v1/sessions/"+ids[w]+"/execute", `{"code":"k = globals().get('k', 0) + 1\nprint(k)"}`, strconv.FormatInt(k, 10)+"\n")
		}
	}
	cpu0 = treeCPU(d)
	start = time.Now()
	if err := clusterLoadPer(len(ids), cfg.clusterN, inSession); err != nil {
		return row, err
	}
	row.inSession = float64(cfg.clusterN) / time.Since(start).Seconds()
	row.cpuPerSessionExec = (treeCPU(d) - cpu0) / time.Duration(cfg.clusterN)
	row.forwarded = float64(hops.Load()) / float64(cfg.clusterN)
	row.pssMiB = float64(treePSS(d)) / (1 << 20)
	progress("cluster of %d: %.1f stateless exec/s (%v CPU each), %.1f in sessions (%v CPU each)", n, row.stateless, row.cpuPerExec, row.inSession, row.cpuPerSessionExec)
	return row, nil
}

// clusterLoad runs total calls of do with conc at once; the first error stops it.
func clusterLoad(conc, total int, do func(int) error) error {
	return clusterLoadPer(conc, total, func(int) func(int) error { return do })
}

// clusterLoadPer is clusterLoad with each worker's own function.
func clusterLoadPer(conc, total int, worker func(w int) func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := range conc {
		do := worker(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				if err := do(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(total))
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// clusterExec posts body to url and checks that the execution printed want.
func clusterExec(ctx context.Context, client *http.Client, url, body, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+clusterKey)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	var res struct {
		Status string `json:"status"`
		Stdout string `json:"stdout"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &res) != nil || res.Status != "ok" || res.Stdout != want {
		return fmt.Errorf("POST %s: %s %s, want stdout %q", url, resp.Status, bytes.TrimSpace(data), want)
	}
	return nil
}

func clusterSession(ctx context.Context, client *http.Client, api string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/v1/sessions", strings.NewReader(`{}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+clusterKey)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var s struct {
		ID string `json:"id"`
	}
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 || json.Unmarshal(data, &s) != nil || s.ID == "" {
		return "", fmt.Errorf("POST /v1/sessions: %s %s", resp.Status, data)
	}
	return s.ID, nil
}

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// treeCPU is the CPU time of the replicas' process trees: each living process's own
// and that of the children it reaped (cutime, cstime), which covers every
// execution's process once it has ended.
func treeCPU(d *testenv.Deployment) time.Duration {
	var total time.Duration
	for _, r := range d.Replicas {
		pids := []int{r.Pid()}
		for _, p := range proctree.Descendants(r.Pid()) {
			pids = append(pids, p.Pid)
		}
		for _, pid := range pids {
			total += procTimes(pid)
		}
	}
	return total
}

// procTimes is utime+stime+cutime+cstime of pid.
func procTimes(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command, which may hold spaces, in parentheses.
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} { // fields 14..17 of stat(5), counted from state (3)
		v, _ := strconv.ParseInt(f[k], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * clockTick
}

// treePSS is the proportional set size of the replicas' process trees: a page
// shared by k processes counts 1/k in each, as the zygote's children share its
// imports.
func treePSS(d *testenv.Deployment) int64 {
	var total int64
	for _, r := range d.Replicas {
		pids := []int{r.Pid()}
		for _, p := range proctree.Descendants(r.Pid()) {
			pids = append(pids, p.Pid)
		}
		for _, pid := range pids {
			kb, err := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss")
			if err == nil {
				total += kb << 10
			}
		}
	}
	return total
}

func writeClusterReport(w io.Writer, cfg config, rows []clusterRow, loadStart, loadEnd string) {
	cores := runtime.NumCPU()
	fmt.Fprintf(w, "## A deployment of N replicas on one machine (`go run ./bench %s`)\n\n", strings.Join(cfg.args, " "))
	fmt.Fprintf(w, "%d cores (%s); N `codeexec serve` processes on loopback, peers from a file; %d executions of `print(1)` per load, %d at once, spread over the replicas. Load average %s → %s.\n\n",
		cores, cpuModel(), cfg.clusterN, cfg.clusterConc, loadStart, loadEnd)
	t := newTable("N", "stateless exec/s", "per core", "vs N=1", "CPU per exec", "per CPU-second", "in sessions exec/s (hops)", "per core", "vs N=1", "CPU per exec", "per CPU-second", "PSS of the replicas")
	var base, baseSession float64
	for _, r := range rows {
		if base == 0 {
			base, baseSession = r.stateless, r.inSession
		}
		t.add(strconv.Itoa(r.n), fmt.Sprintf("%.1f", r.stateless), fmt.Sprintf("%.1f", r.stateless/float64(cores)),
			fmt.Sprintf("%.2f", r.stateless/base), ms(r.cpuPerExec), perCPUSecond(r.cpuPerExec), fmt.Sprintf("%.1f (%.0f%%)", r.inSession, 100*r.forwarded),
			fmt.Sprintf("%.1f", r.inSession/float64(cores)), fmt.Sprintf("%.2f", r.inSession/baseSession), ms(r.cpuPerSessionExec), perCPUSecond(r.cpuPerSessionExec),
			fmt.Sprintf("%.0f MiB", r.pssMiB))
	}
	t.write(w)
	fmt.Fprintf(w, "\n\"vs N=1\" is the scaling efficiency on the same %d cores: 1.00 means N processes do as much as one; with the cores fixed, a rate that holds per core is what scales with the cores a cluster adds. \"hops\" is the share of session executions sent to a replica that does not own the session and forwarded. CPU per exec is the replicas' own (server, zygote, sandboxes), from /proc, and \"per CPU-second\" its inverse: the per-core rate of a machine that runs nothing else, which the wall-clock rates of this shared machine are not.\n", cores)
}

// perCPUSecond is how many executions of cpu each one CPU-second runs.
func perCPUSecond(cpu time.Duration) string {
	if cpu <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f", float64(time.Second)/float64(cpu))
}
