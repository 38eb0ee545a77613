package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// langWorkload is the smallest program of each language: what a one-shot costs
// beyond the program.
type langWorkload struct {
	lang, code, stdout string
	// target is the p50 goal on the warm path; 0 for none.
	target time.Duration
}

var langWorkloads = []langWorkload{
	{lang: job.LangPython, code: "print(1)", stdout: "1\n"},
	{lang: job.LangBash, code: "echo 1", stdout: "1\n", target: 10 * time.Millisecond},
	{lang: job.LangJavaScript, code: "console.log(1)", stdout: "1\n", target: 15 * time.Millisecond},
}

// langRow is one language on one path.
type langRow struct {
	w            langWorkload
	path         string
	wall, inside summary
}

// measureLangs measures each language's smallest program on the warm and the cold
// path, one execution at a time, the warm path waiting for its pools to be full
// before each (as the latency section does).
func measureLangs(ctx context.Context, cfg config, warm, cold *sandbox.Runner) ([]langRow, error) {
	var rows []langRow
	for _, w := range langWorkloads {
		for _, p := range []struct {
			name string
			r    *sandbox.Runner
			n    int
		}{{"warm", warm, cfg.nWarm}, {"cold", cold, cfg.nCold}} {
			progress("languages %s/%s: %d executions", w.lang, p.name, p.n)
			var wall, inside []time.Duration
			for i := -1; i < p.n; i++ { // one untimed warm-up
				if p.r == warm {
					if err := waitPool(ctx, warm, cfg.prefork); err != nil {
						return nil, err
					}
					if err := waitNodePool(ctx, warm, cfg.nodePool); err != nil {
						return nil, err
					}
				}
				start := time.Now()
				res, err := p.r.Run(ctx, &job.Request{Code: w.code, Language: w.lang, Limits: job.DefaultLimits()})
				d := time.Since(start)
				if err != nil {
					return nil, fmt.Errorf("%s on %s: %w", w.lang, p.name, err)
				}
				if res.Status != job.StatusOK || res.Stdout != w.stdout {
					return nil, fmt.Errorf("%s on %s: status %s, stdout %q, stderr %q", w.lang, p.name, res.Status, res.Stdout, res.Stderr)
				}
				if i >= 0 {
					wall = append(wall, d)
					inside = append(inside, time.Duration(res.DurationMS*float64(time.Millisecond)))
				}
			}
			rows = append(rows, langRow{w: w, path: p.name, wall: summarize(wall), inside: summarize(inside)})
		}
	}
	return rows, nil
}

// waitNodePool waits until r has n started Node sandboxes ready.
func waitNodePool(ctx context.Context, r *sandbox.Runner, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for r.NodePoolSize() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("the Node pool holds %d sandboxes after 60s, want %d", r.NodePoolSize(), n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func writeLangs(w io.Writer, rep *report) {
	if len(rep.langs) == 0 {
		return
	}
	fmt.Fprintf(w, "## Languages\n\n")
	fmt.Fprintf(w, "The smallest program of each language (`print(1)`, `echo 1`, `console.log(1)`), one execution at a time through `Run` with the default limits; "+
		"the warm path waits before each execution until its pools are full again (%d preforked children, %d started Node sandboxes). "+
		"\"in sandbox\" is the Result's `duration_ms`.\n\n", rep.cfg.prefork, rep.cfg.nodePool)
	t := newTable("language", "program", "path", "n", "min", "p50", "p99", "in sandbox p50", "target (warm p50)")
	for _, r := range rep.langs {
		target := "—"
		if r.w.target > 0 && r.path == "warm" {
			verdict := "met"
			if r.wall.p50 > r.w.target {
				verdict = "**not met**"
			}
			target = fmt.Sprintf("≤ %s: %s", ms(r.w.target), verdict)
		}
		t.add(r.w.lang, "`"+r.w.code+"`", r.path, fmt.Sprint(r.wall.n), ms(r.wall.min), ms(r.wall.p50), ms(r.wall.p99), ms(r.inside.p50), target)
	}
	t.write(w)
}
