package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/codeexec/codeexec/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// Store layout, under a store directory such as /var/lib/codeexec:
//
//	images/<name>-<hash>/rootfs/          the root filesystem
//	images/<name>-<hash>/manifest.json    its Manifest
//	images/.build-<name>-<hash>-<random>/ a build in progress (renamed into place on success)
//	images/build.log                      the output of the last build's commands
//	images/.lock                          held (flock) while a build runs
const (
	imagesDir    = "images"
	buildPrefix  = ".build-"
	manifestFile = "manifest.json"
	rootfsDir    = "rootfs"
	buildLogFile = "build.log"
	lockFile     = ".lock"
	manifestPerm = 0o644
	storeDirPerm = 0o755
)

// ErrNotBuilt is returned (wrapped) by Find when the store holds no valid image for the
// recipe.
var ErrNotBuilt = errors.New("image not built")

// Image is a built image in a store.
type Image struct {
	// Dir is images/<name>-<hash> in the store.
	Dir string
	// Rootfs is Dir/rootfs, the directory to mount read-only as the sandbox's root.
	Rootfs string
	// Manifest describes how the image was built and what it holds.
	Manifest Manifest
}

// Manifest is the JSON file written next to an image's rootfs.
type Manifest struct {
	Name         string            `json:"name"`
	RecipeHash   string            `json:"recipe_hash"`
	Recipe       Recipe            `json:"recipe"`
	Suite        string            `json:"suite"`
	Mirror       string            `json:"mirror"`
	Bootstrapper string            `json:"bootstrapper"` // "mmdebstrap" or "debootstrap"
	BuiltAt      time.Time         `json:"built_at"`     // RFC 3339, UTC, whole seconds
	BuildSeconds float64           `json:"build_seconds"`
	SizeBytes    int64             `json:"size_bytes"` // sum of the sizes of the rootfs's regular files
	Versions     map[string]string `json:"versions"`   // module (and "python") → version
}

// Validate checks that m describes an image of r.
func (m *Manifest) Validate(r Recipe) error {
	switch {
	case m.Name != r.Name:
		return fmt.Errorf("manifest names image %q, want %q", m.Name, r.Name)
	case m.RecipeHash != r.Hash():
		return fmt.Errorf("manifest has recipe hash %q, want %q", m.RecipeHash, r.Hash())
	case m.Recipe.Hash() != m.RecipeHash:
		return fmt.Errorf("manifest's recipe hashes to %q, not to its recipe_hash %q", m.Recipe.Hash(), m.RecipeHash)
	case m.Bootstrapper != "mmdebstrap" && m.Bootstrapper != "debootstrap":
		return fmt.Errorf("manifest has unknown bootstrapper %q", m.Bootstrapper)
	case m.BuiltAt.IsZero():
		return errors.New("manifest has no built_at")
	case len(m.Versions) == 0:
		return errors.New("manifest has no versions: the image was never verified")
	}
	return nil
}

// ParseManifest decodes a manifest strictly: unknown fields and trailing data are errors.
func ParseManifest(b []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the manifest object")
	}
	return &m, nil
}

// Marshal returns the manifest as indented JSON with a final newline.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func readManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", path, err)
	}
	return m, nil
}

// writeManifest writes m to path through a temporary file and a rename, so a reader never
// sees half a manifest.
func writeManifest(path string, m *Manifest) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, manifestPerm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Find returns the image of r in store. If there is none, or it is incomplete, the error
// wraps ErrNotBuilt and says how to build it.
func Find(store string, r Recipe) (*Image, error) {
	dir := filepath.Join(store, imagesDir, r.ID())
	img, err := open(dir, r)
	if err != nil {
		return nil, fmt.Errorf("%w: %q in store %q (%v): run `codeexec image build`", ErrNotBuilt, r.ID(), store, err)
	}
	return img, nil
}

// open loads and checks the image in dir.
func open(dir string, r Recipe) (*Image, error) {
	m, err := readManifest(filepath.Join(dir, manifestFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("no manifest")
		}
		return nil, err
	}
	if err := m.Validate(r); err != nil {
		return nil, err
	}
	rootfs := filepath.Join(dir, rootfsDir)
	// Lstat: Debian's python3 is a symlink, which Stat would resolve against the host.
	if fi, err := os.Lstat(filepath.Join(rootfs, "usr", "bin", "python3")); err != nil || !(fi.Mode().IsRegular() || fi.Mode()&fs.ModeSymlink != 0) {
		return nil, fmt.Errorf("%q has no usr/bin/python3", rootfs)
	}
	return &Image{Dir: dir, Rootfs: rootfs, Manifest: *m}, nil
}

// lockStore takes an exclusive flock on images/.lock, waiting while another build holds
// it. The caller must close the returned file to release the lock.
func lockStore(images string, wait func()) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(images, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return f, nil
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, &os.SyscallError{Syscall: "flock", Err: err}
	}
	wait()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, &os.SyscallError{Syscall: "flock", Err: err}
	}
	return f, nil
}

// removeStaleBuilds removes every images/.build-* directory: builds that failed or were
// interrupted, and old images replaced by a forced build. The caller must hold the store
// lock, so none of them belongs to a build still running.
func removeStaleBuilds(images string) error {
	entries, err := os.ReadDir(images)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), buildPrefix) {
			if err := removeTree(filepath.Join(images, e.Name())); err != nil {
				return fmt.Errorf("removing stale build: %w", err)
			}
		}
	}
	return nil
}

// removeTree removes dir and everything in it, like os.RemoveAll, but first detaches any
// mount left under it (an interrupted bootstrapper leaves proc, sysfs, devpts or bind
// mounts of host device nodes in its chroot) and refuses to descend into a directory on
// another filesystem. os.RemoveAll alone would walk into such a mount and could delete
// host files through it.
func removeTree(dir string) error {
	if err := mountinfo.UnmountUnder(dir); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if !fi.IsDir() {
		return os.Remove(dir)
	}
	return removeSameDevice(dir, fi.Sys().(*syscall.Stat_t).Dev)
}

func removeSameDevice(dir string, dev uint64) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() { // DirEntry.IsDir never follows symlinks
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			if d := fi.Sys().(*syscall.Stat_t).Dev; d != dev {
				return fmt.Errorf("refusing to remove %q: it is on another filesystem (a mount that could not be detached?)", p)
			}
			if err := removeSameDevice(p, dev); err != nil {
				return err
			}
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return os.Remove(dir)
}

// treeSize sums the sizes of the regular files under root, never following symlinks.
func treeSize(root string) (int64, error) {
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		total += fi.Size()
		return nil
	})
	return total, err
}

// ID is the image's directory name in its store: "<name>-<hash>".
func (img *Image) ID() string { return filepath.Base(img.Dir) }

// Entry is one directory of a store's images: a valid image, or why it is not one.
type Entry struct {
	ID    string
	Image *Image // nil when Err is set
	Err   error
}

// List returns the images of store, valid or not, sorted by name and, within a name,
// newest first. Builds in progress and the store's own files are not listed. A store
// without an images directory has no images.
func List(store string) ([]Entry, error) {
	images := filepath.Join(store, imagesDir)
	des, err := os.ReadDir(images)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var entries []Entry
	for _, de := range des {
		if !de.IsDir() || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		img, err := openListed(filepath.Join(images, de.Name()))
		entries = append(entries, Entry{ID: de.Name(), Image: img, Err: err})
	}
	slices.SortStableFunc(entries, func(a, b Entry) int {
		an, bn := entryName(a), entryName(b)
		if c := strings.Compare(an, bn); c != 0 {
			return c
		}
		if a.Image != nil && b.Image != nil {
			if c := b.Image.Manifest.BuiltAt.Compare(a.Image.Manifest.BuiltAt); c != 0 {
				return c
			}
		} else if a.Image != nil || b.Image != nil { // valid images before broken ones
			return boolCompare(b.Image != nil, a.Image != nil)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return entries, nil
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// entryName is the image name of an entry: its manifest's, or for a broken one what
// its directory name says.
func entryName(e Entry) string {
	if e.Image != nil {
		return e.Image.Manifest.Name
	}
	if loc := idSuffixRE.FindStringIndex(e.ID); loc != nil {
		return e.ID[:loc[0]]
	}
	return e.ID
}

// openListed opens the image in dir with the recipe its own manifest records, and checks
// that this codeexec's build steps made it.
func openListed(dir string) (*Image, error) {
	m, err := readManifest(filepath.Join(dir, manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("no manifest")
	} else if err != nil {
		return nil, err
	}
	if id := m.Recipe.ID(); filepath.Base(dir) != id {
		return nil, fmt.Errorf("the manifest's recipe is that of %q", id)
	}
	if m.Recipe.Version != RecipeVersion {
		return nil, fmt.Errorf("built by other build steps (recipe version %d; this codeexec builds %d): rebuild it", m.Recipe.Version, RecipeVersion)
	}
	return open(dir, m.Recipe)
}

// ErrNoImage is returned (wrapped) by Lookup and Remove when the store has no valid
// image of the name or ID asked for.
var ErrNoImage = errors.New("no such image")

// Lookup returns the image ref names in store. ref is an image ID ("python-8f857625f643")
// or a name, which means the name's newest valid image (by BuiltAt): the last one built.
func Lookup(store, ref string) (*Image, error) {
	entries, err := List(store)
	if err != nil {
		return nil, fmt.Errorf("listing images of store %q: %w", store, err)
	}
	var broken []string
	for _, e := range entries {
		if e.ID == ref {
			if e.Err != nil {
				return nil, fmt.Errorf("image %q in store %q: %w", ref, store, e.Err)
			}
			return e.Image, nil
		}
	}
	for _, e := range entries { // sorted newest first within a name
		if entryName(e) != ref {
			continue
		}
		if e.Image != nil {
			return e.Image, nil
		}
		broken = append(broken, fmt.Sprintf("%s: %v", e.ID, e.Err))
	}
	if len(broken) > 0 {
		return nil, fmt.Errorf("%w: %q in store %q has only unusable builds (%s)", ErrNoImage, ref, store, strings.Join(broken, "; "))
	}
	hint := "build it with `codeexec image build`"
	if ref != DefaultName {
		hint = "build it with `codeexec image build --name " + ref + " …`, or see `codeexec image list`"
	}
	return nil, fmt.Errorf("%w: no image %q in store %q: %s", ErrNoImage, ref, store, hint)
}

// Remove removes from store the image ref names: an ID removes that image, a name every
// image of that name, valid or not. It returns the IDs removed. It waits for a build in
// progress (wait is called first), and each image is renamed out of the way before its
// files go, so that no one finds half an image. Sandboxes still running from a removed
// image lose their files: stop the servers that use it first.
func Remove(store, ref string, wait func()) ([]string, error) {
	images := filepath.Join(store, imagesDir)
	if _, err := os.Stat(images); err != nil {
		return nil, fmt.Errorf("%w: no image %q in store %q (%v)", ErrNoImage, ref, store, err)
	}
	lock, err := lockStore(images, wait)
	if err != nil {
		return nil, fmt.Errorf("locking store %q: %w", store, err)
	}
	defer lock.Close()
	entries, err := List(store)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.ID == ref || entryName(e) == ref {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no image %q in store %q", ErrNoImage, ref, store)
	}
	for i, id := range ids {
		// A .build- name: the next build sweeps what a failed removal leaves.
		doomed, err := os.MkdirTemp(images, buildPrefix+"removed-")
		if err == nil {
			err = os.Rename(filepath.Join(images, id), filepath.Join(doomed, id))
		}
		if err == nil {
			err = removeTree(doomed)
		}
		if err != nil {
			return ids[:i], fmt.Errorf("removing %q: %w", id, err)
		}
	}
	return ids, nil
}
