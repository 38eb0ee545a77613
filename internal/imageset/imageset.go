// Package imageset runs code in several images of a store: one sandbox.Runner, with its
// own warm zygote, per image, opened on first use.
package imageset

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/codeexec/codeexec/internal/sandbox"
)

// Config configures a Set. It is plain data; Open checks it.
type Config struct {
	// Store holds the images.
	Store string
	// Default is the image (a name or an image ID) of requests that name none. Its
	// runner is opened by Open.
	Default string
	// Names are the images (names or IDs) requests may name besides Default; nil means
	// every name with a valid image in the store when Open runs.
	Names []string
	// Sandbox configures every image's runner; Open sets Rootfs per image, and Preload
	// to Sandbox.Preload (nil: sandbox.DefaultPreload) followed by the recipe's preload.
	Sandbox sandbox.Config
}

// Set is the images a server runs code in. Each name is resolved to an image once, by
// Open: a build under the same name afterwards is not used until the next Open. It is
// safe for concurrent use. The caller must call Close.
type Set struct {
	def    string
	names  []string                // sorted, Default included
	images map[string]*image.Image // name → the image it was resolved to
	base   sandbox.Config

	mu      sync.Mutex
	runners map[string]*sandbox.Runner
	closed  bool
}

// Open resolves every image of cfg in the store (image.Lookup) and opens the default
// image's runner. An image named in cfg that the store lacks is an error. The caller
// must call Close.
func Open(cfg Config) (*Set, error) {
	if cfg.Default == "" {
		return nil, errors.New("imageset: no default image")
	}
	refs := cfg.Names
	if refs == nil {
		entries, err := image.List(cfg.Store)
		if err != nil {
			return nil, fmt.Errorf("listing images of store %q: %w", cfg.Store, err)
		}
		for _, e := range entries {
			if e.Image != nil && !slices.Contains(refs, e.Image.Manifest.Name) {
				refs = append(refs, e.Image.Manifest.Name)
			}
		}
	}
	if !slices.Contains(refs, cfg.Default) {
		refs = append(slices.Clone(refs), cfg.Default)
	}
	s := &Set{def: cfg.Default, images: map[string]*image.Image{}, base: cfg.Sandbox, runners: map[string]*sandbox.Runner{}}
	for _, ref := range refs {
		if _, dup := s.images[ref]; dup {
			continue
		}
		img, err := image.Lookup(cfg.Store, ref)
		if err != nil {
			return nil, err
		}
		s.images[ref] = img
		s.names = append(s.names, ref)
	}
	sort.Strings(s.names)
	if _, err := s.Runner(s.def); err != nil {
		return nil, err
	}
	return s, nil
}

// Default is the name of the image of requests that name none.
func (s *Set) Default() string { return s.def }

// Names returns the names of the images of the set, sorted.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Image returns the image name was resolved to, and whether the set has it.
func (s *Set) Image(name string) (*image.Image, bool) {
	img, ok := s.images[name]
	return img, ok
}

// Preload returns the modules the zygote of img imports: base (nil:
// sandbox.DefaultPreload), then the recipe's preload modules not already in it.
func Preload(base []string, img *image.Image) []string {
	if base == nil {
		base = sandbox.DefaultPreload()
	}
	mods := slices.Clone(base)
	for _, m := range img.Manifest.Recipe.Preload {
		if !slices.Contains(mods, m) {
			mods = append(mods, m)
		}
	}
	return mods
}

// Runner returns the runner of image name, opening it on first use (a warm runner
// then starts its zygote). The Set owns it: Close closes it. A name the set does not
// have is an error.
func (s *Set) Runner(name string) (*sandbox.Runner, error) {
	img, ok := s.images[name]
	if !ok {
		return nil, fmt.Errorf("imageset: no image %q in the set (%v)", name, s.names)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("imageset: closed")
	}
	if r := s.runners[name]; r != nil {
		return r, nil
	}
	cfg := s.base
	cfg.Rootfs = img.Rootfs
	cfg.Preload = Preload(s.base.Preload, img)
	r, err := sandbox.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("opening image %q (%s): %w", name, img.ID(), err)
	}
	s.runners[name] = r
	return r, nil
}

// Close closes every runner the set opened.
func (s *Set) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for name, r := range s.runners {
		if err := r.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing image %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
