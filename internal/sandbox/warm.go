package sandbox

import (
	"context"
	"fmt"
	"time"
)

// runWarm runs req in a child forked from the zygote: the same namespaces, limits and
// unprivileged uid as the cold path, without paying for the interpreter's start and
// imports.
func (r *Runner) runWarm(ctx context.Context, req *Request, z *zygote) (*Result, error) {
	l := req.Limits
	c, err := z.spawn(l)
	if err != nil {
		return nil, err
	}
	defer c.close()
	g, err := r.cg.New(r.nextName(), cgroupLimits(l))
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer g.Destroy()
	if err := g.Add(c.pid); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	work := c.workDir()
	if err := work.writeInputs(req.Files); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	o, w, alive, err := c.exec(ctx, req, g)
	if err != nil {
		return nil, err
	}
	var files []FileInfo
	var filesTruncated bool
	var filesErr error
	if alive {
		// The work dir lives in the child's mount namespace: read it before the kill.
		files, filesTruncated, filesErr = work.produced(req.OutputDir)
	}
	c.kill()
	o.report = w.waitOutput(5 * time.Second)
	o.stats, o.statsErr = g.Stats()
	res := o.result(l, w)
	if filesErr != nil {
		return nil, fmt.Errorf("sandbox: collect files: %w", filesErr)
	}
	if files != nil {
		res.Files, res.FilesTruncated = files, filesTruncated
	}
	if err := saveImages(res.Images, req.OutputDir); err != nil {
		return nil, fmt.Errorf("sandbox: save figures: %w", err)
	}
	return res, nil
}
