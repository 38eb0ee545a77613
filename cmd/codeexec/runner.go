package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/codeexec/codeexec/internal/api"
	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/imageset"
	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox"
)

func init() { verifyImage = verifyInSandbox }

// openRunner opens a sandbox runner on image ref (a name or an ID; "": the default) in
// store, configured by adjust (nil: the cold path's defaults). The caller must call
// Close.
func openRunner(store, ref string, adjust func(*sandbox.Config)) (*sandbox.Runner, *image.Image, error) {
	if ref == "" {
		ref = image.DefaultName
	}
	img, err := image.Lookup(store, ref)
	if err != nil {
		return nil, nil, err
	}
	r, err := newRunner(store, img.Rootfs, func(cfg *sandbox.Config) {
		cfg.Preload = imageset.Preload(nil, img)
		if adjust != nil {
			adjust(cfg)
		}
	})
	return r, img, err
}

// newRunner opens a runner on rootfs with the store's state dir; every command's
// sandboxes share the "codeexec" cgroup parent and the default host ids.
func newRunner(store, rootfs string, adjust func(*sandbox.Config)) (*sandbox.Runner, error) {
	cfg := sandbox.Config{
		Rootfs:       rootfs,
		StateDir:     filepath.Join(store, "run"),
		CgroupParent: "codeexec",
		HostUID:      sandbox.DefaultHostUID,
	}
	if adjust != nil {
		adjust(&cfg)
	}
	r, err := sandbox.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("opening sandbox: %w", err)
	}
	return r, nil
}

// verifyInSandbox checks a freshly built image by running image.VerifyProgram in it: it
// imports modules and records their versions. The store's run dir beside the image is
// used for the sandbox's state.
func verifyInSandbox(ctx context.Context, rootfs string, modules []string) (map[string]string, error) {
	store := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Clean(rootfs)))) // <store>/images/<id>/rootfs
	r, err := newRunner(store, rootfs, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	l := job.DefaultLimits()
	l.Timeout = 2 * time.Minute // the first imports read the whole stack from disk
	res, err := r.Run(ctx, &job.Request{Code: image.VerifyProgram(modules), Limits: l})
	if err != nil {
		return nil, err
	}
	if res.Status != job.StatusOK {
		return nil, fmt.Errorf("verify program ended with %s: %s", res.Status, strings.TrimSpace(res.Stderr))
	}
	versions := map[string]string{}
	if err := json.Unmarshal([]byte(res.Stdout), &versions); err != nil {
		return nil, fmt.Errorf("verify program output %q: %w", res.Stdout, err)
	}
	return versions, nil
}

// openImages opens the images the server serves, with the runner of the default one:
// its sandboxes share the "codeexec" cgroup parent and the default host ids. The caller
// must call Close.
func openImages(c serveConfig, log *slog.Logger, storage int64) (*imageset.Set, error) {
	return imageset.Open(imageset.Config{
		Store:   c.Store,
		Default: c.Image,
		Names:   c.Images,
		Sandbox: sandbox.Config{
			StateDir:     filepath.Join(c.Store, "run"),
			CgroupParent: "codeexec",
			HostUID:      sandbox.DefaultHostUID,
			Warm:         !c.Cold,
			LightZygote:  !c.Cold,
			Prefork:      c.Prefork,
			NodePool:     c.NodePool,
			Logger:       log,
			Total:        c.totals,
			// Each image's runner books against the same budget size: the budget
			// holds per runner, and a server rarely serves more than a few images.
			MaxTotalStorage: storage,
		},
	})
}

// apiImages is an imageset.Set as the API sees it.
type apiImages struct{ *imageset.Set }

func (a apiImages) Runner(name string) (api.ImageRunner, error) {
	r, err := a.Set.Runner(name)
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return r, nil
}
