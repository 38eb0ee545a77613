package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// BuildOptions controls Build. The zero value is valid.
type BuildOptions struct {
	// Force rebuilds the image even if a valid one exists. The old image is swapped out
	// atomically and then deleted, so sandboxes still running from it should be stopped
	// first.
	Force bool
	// Bootstrapper is "mmdebstrap" or "debootstrap"; empty picks mmdebstrap if it is
	// installed (faster: it never unpacks docs), else debootstrap.
	Bootstrapper string
	// Progress receives the numbered stages and periodic elapsed-time lines (a spinner
	// if it is a terminal). Nil means silent.
	Progress io.Writer
	// Verify checks the freshly built root file system before it is installed, typically
	// by running a program in the real sandbox that imports every module of the recipe.
	// It must return the version of "python" and of each of Recipe.Modules; they go into
	// the manifest. An error fails the build. Nil means a weaker check in a chroot as the
	// sandbox user.
	Verify func(ctx context.Context, rootfs string, modules []string) (map[string]string, error)
	// WheelDir holds the recipe's wheels (Recipe.Wheels); unused without wheels.
	WheelDir string
}

// stageCount is the number of stages of a build of r, as printed: "[n/total] …".
func stageCount(r Recipe) int {
	if len(r.Wheels) > 0 {
		return 6
	}
	return 5
}

// logTailLines is how much of the build log a failed command's error quotes.
const logTailLines = 20

// Build builds the image of r in store and returns it. It is idempotent: if a valid
// image with r's hash exists it is returned at once, unless opts.Force.
//
// The image is built in images/.build-<id>-<random> and renamed into place only once
// verified, so a failed or interrupted build never leaves a half image under the final
// name; what it leaves is removed here, or at the next build. Cancelling ctx stops the
// bootstrapper's whole process tree. Builds of one store are serialised by a lock file.
// Building needs root and mmdebstrap (or debootstrap) on PATH.
func Build(ctx context.Context, store string, r Recipe, opts BuildOptions) (*Image, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	images := filepath.Join(store, imagesDir)
	final := filepath.Join(images, r.ID())
	prog := newProgress(opts.Progress, stageCount(r), func() string { return "" })
	if !opts.Force {
		if img, err := open(final, r); err == nil {
			prog.printf("image %s is already built: %s (use --force to rebuild)\n", r.ID(), img.Dir)
			return img, nil
		}
	}
	if err := checkWheels(opts.WheelDir, r.Wheels); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("building an image needs root (the bootstrapper installs packages as root and runs chroot): run it as root, e.g. `sudo codeexec image build`")
	}
	search := os.Getenv("PATH") + string(filepath.ListSeparator) + sbinDirs
	boot, bootPath, err := findBootstrapper(search, opts.Bootstrapper)
	if err != nil {
		return nil, err
	}
	chroot, ok := lookTool("chroot", search)
	if !ok {
		return nil, errors.New("chroot is not installed (it comes with coreutils)")
	}

	if err := makeStore(images); err != nil {
		return nil, fmt.Errorf("creating store %q: %w", store, err)
	}
	lock, err := lockStore(images, func() {
		prog.printf("waiting for another build in %q to finish…\n", store)
	})
	if err != nil {
		return nil, fmt.Errorf("locking store %q: %w", store, err)
	}
	defer lock.Close()
	// Another build may have finished this image while we waited for the lock.
	if !opts.Force {
		if img, err := open(final, r); err == nil {
			prog.printf("image %s is already built: %s\n", r.ID(), img.Dir)
			return img, nil
		}
	}
	if err := removeStaleBuilds(images); err != nil {
		return nil, err
	}

	log, err := createBuildLog(filepath.Join(images, buildLogFile))
	if err != nil {
		return nil, fmt.Errorf("creating build log: %w", err)
	}
	defer log.Close()
	log.notef("building %s (recipe %s) with %s from %s at %s\n", r.ID(), r.Hash(), boot, r.Mirror, time.Now().UTC().Format(time.RFC3339))

	dir, err := os.MkdirTemp(images, buildPrefix+r.ID()+"-")
	if err != nil {
		return nil, fmt.Errorf("creating build dir: %w", err)
	}
	// After a successful build dir holds nothing (renamed into place) or the old image
	// (swapped out by a forced build); after a failure, the half-built image.
	defer func() {
		if err := removeTree(dir); err != nil {
			prog.printf("warning: removing %q: %v (the next build retries)\n", dir, err)
		}
	}()
	if err := os.Chmod(dir, storeDirPerm); err != nil { // MkdirTemp makes it 0700
		return nil, err
	}

	b := &builder{
		recipe:   r,
		rootfs:   filepath.Join(dir, rootfsDir),
		boot:     boot,
		bootPath: bootPath,
		run:      &runner{log: log, chrootPath: chroot},
		prog:     newProgress(opts.Progress, stageCount(r), log.lastLine),
		verify:   opts.Verify,
		wheelDir: opts.WheelDir,
	}
	start := time.Now()
	m, err := b.build(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: interrupted: %w", r.ID(), ctx.Err())
		}
		if isCommandError(err) {
			return nil, fmt.Errorf("%s: %w\nfull log: %s\nlast lines:\n%s", r.ID(), err, log.path, log.tail(logTailLines))
		}
		return nil, fmt.Errorf("%s: %w (log: %s)", r.ID(), err, log.path)
	}
	m.BuiltAt = start.UTC().Truncate(time.Second)
	m.BuildSeconds = time.Since(start).Round(100 * time.Millisecond).Seconds()
	if err := writeManifest(filepath.Join(dir, manifestFile), m); err != nil {
		return nil, fmt.Errorf("writing manifest: %w", err)
	}
	if err := install(dir, final); err != nil {
		return nil, fmt.Errorf("%s: installing: %w", r.ID(), err)
	}
	img, err := open(final, r)
	if err != nil {
		return nil, fmt.Errorf("opening the image just built: %w", err)
	}
	b.prog.printf("[%d/%d] done: %s in %s\n", stageCount(r), stageCount(r), formatSize(m.SizeBytes), formatDuration(time.Since(start)))
	return img, nil
}

// makeStore creates the images directory and any missing parent (the store itself, …)
// with mode 0755 whatever the umask: the sandbox runs as an unprivileged uid that must be
// able to reach the rootfs by path. Existing directories keep the mode their owner chose.
func makeStore(images string) error {
	var missing []string
	for d := filepath.Clean(images); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], storeDirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Chmod(missing[i], storeDirPerm); err != nil {
			return err
		}
	}
	return nil
}

// sbinDirs are searched for tools after PATH: a root shell reached through su or sudo
// may have a PATH without them, and chroot and debootstrap live there.
const sbinDirs = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookTool returns the absolute path of the executable name in the directories of path.
func lookTool(name, path string) (string, bool) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// findBootstrapper returns the name and path of the bootstrapper to use: want if it is
// not empty, else mmdebstrap if it is in the directories of path, else debootstrap.
func findBootstrapper(path, want string) (name, file string, err error) {
	names := []string{"mmdebstrap", "debootstrap"}
	if want != "" {
		if !slices.Contains(names, want) {
			return "", "", fmt.Errorf("unknown bootstrapper %q: want mmdebstrap or debootstrap", want)
		}
		names = []string{want}
	}
	for _, name := range names {
		if file, ok := lookTool(name, path); ok {
			return name, file, nil
		}
	}
	if want != "" {
		return "", "", fmt.Errorf("%s is not installed: `apt-get install %s`", want, want)
	}
	return "", "", errors.New("neither mmdebstrap nor debootstrap is installed: install one, e.g. `apt-get install mmdebstrap`")
}

// install moves the finished build dir to final. If final exists (a forced rebuild, or an
// invalid image) the two are exchanged atomically, so final is never missing, and dir
// then holds the old image for the caller to remove.
func install(dir, final string) error {
	err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT):
		return os.Rename(dir, final)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		// The file system cannot exchange: move the old image aside first.
		if err := os.Rename(final, dir+".old"); err != nil {
			return err
		}
		if err := os.Rename(dir, final); err != nil {
			return err
		}
		return os.Rename(dir+".old", dir)
	default:
		return &os.SyscallError{Syscall: "renameat2", Err: err}
	}
}

// builder holds the state of one build while its stages run.
type builder struct {
	recipe   Recipe
	rootfs   string
	boot     string // "mmdebstrap" or "debootstrap"
	bootPath string // its absolute path
	run      *runner
	prog     *progress
	verify   func(ctx context.Context, rootfs string, modules []string) (map[string]string, error)
	wheelDir string
}

// build runs the stages in order and returns the manifest, without BuiltAt and
// BuildSeconds.
func (b *builder) build(ctx context.Context) (*Manifest, error) {
	r := b.recipe
	n := 1
	if err := b.stage(n, fmt.Sprintf("bootstrapping Debian %s with %s", r.Suite, b.boot), func() error {
		return b.bootstrap(ctx)
	}); err != nil {
		return nil, err
	}
	// Before the slimming and configuration, so that they cover what pip installs.
	if len(r.Wheels) > 0 {
		n++
		if err := b.stage(n, fmt.Sprintf("installing %d wheels", len(r.Wheels)), func() error {
			return installWheels(ctx, b.run, b.rootfs, b.wheelDir, r)
		}); err != nil {
			return nil, err
		}
	}
	n++
	if err := b.stage(n, "removing compilers and docs", func() error {
		return b.slim(ctx)
	}); err != nil {
		return nil, err
	}
	n++
	if err := b.stage(n, "configuring", func() error {
		return b.configure(ctx)
	}); err != nil {
		return nil, err
	}
	n++
	var versions map[string]string
	if err := b.stage(n, "verifying", func() error {
		var err error
		versions, err = b.verifyImage(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	size, err := treeSize(b.rootfs)
	if err != nil {
		return nil, fmt.Errorf("measuring %q: %w", b.rootfs, err)
	}
	return &Manifest{
		Name:         r.Name,
		RecipeHash:   r.Hash(),
		Recipe:       r,
		Suite:        r.Suite,
		Mirror:       r.Mirror,
		Bootstrapper: b.boot,
		SizeBytes:    size,
		Versions:     versions,
	}, nil
}

// stage runs fn as stage n, shown as msg, and records its duration in the build log.
func (b *builder) stage(n int, msg string, fn func() error) error {
	start := time.Now()
	b.run.log.resetLast()
	err := b.prog.stage(n, msg, fn)
	b.run.log.notef("== stage %d (%s) took %s\n", n, msg, time.Since(start).Round(100*time.Millisecond))
	return err
}

// bootstrap installs Debian's minbase variant plus the recipe's packages into rootfs.
func (b *builder) bootstrap(ctx context.Context) error {
	r := b.recipe
	include := "--include=" + strings.Join(bootstrapPackages(r), ",")
	var args []string
	switch b.boot {
	case "mmdebstrap":
		args = []string{"--mode=root", "--variant=minbase", include,
			// Never unpacked, rather than deleted afterwards: faster and smaller.
			"--dpkgopt=path-exclude=/usr/share/doc/*",
			"--dpkgopt=path-exclude=/usr/share/man/*",
			"--dpkgopt=path-exclude=/usr/share/info/*",
			"--dpkgopt=path-exclude=/usr/share/locale/*",
			"--dpkgopt=path-include=/usr/share/locale/locale.alias",
			r.Suite, b.rootfs, r.Mirror}
	case "debootstrap":
		// debootstrap has no dpkg options: slim removes the docs afterwards.
		args = []string{"--variant=minbase", include, r.Suite, b.rootfs, r.Mirror}
	default:
		return fmt.Errorf("unknown bootstrapper %q", b.boot)
	}
	return b.run.run(ctx, b.run.command(ctx, bootstrapEnv(), b.bootPath, args...))
}

// slim removes what the sandbox never needs: the compiler chain, package caches and
// lists, documentation and translations.
func (b *builder) slim(ctx context.Context) error {
	purged, err := purgeCompilers(ctx, b.run, b.rootfs, b.recipe.Purge)
	if err != nil {
		return err
	}
	b.run.log.notef("purged %d packages: %s\n", len(purged), strings.Join(purged, " "))
	return removeDocs(b.rootfs)
}

// configure prepares the tree for the sandbox. Each step takes the root path, so it can
// be tested on a small fake tree.
func (b *builder) configure(ctx context.Context) error {
	root := b.rootfs
	// Whatever the umask was when the bootstrapper created it.
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	if err := makeDirs(root); err != nil {
		return fmt.Errorf("creating mount points: %w", err)
	}
	if err := addSandboxUser(root); err != nil {
		return fmt.Errorf("adding user %q: %w", SandboxUser, err)
	}
	if err := writeNetworkFiles(root); err != nil {
		return fmt.Errorf("writing /etc/hostname, hosts and resolv.conf: %w", err)
	}
	// An image without matplotlib needs no font cache; the sandbox copes without one.
	if hasPythonPackage(root, "matplotlib") {
		if err := buildFontCache(ctx, b.run, root); err != nil {
			return err
		}
	}
	missing, err := ensureBytecode(ctx, b.run, root)
	if err != nil {
		return fmt.Errorf("checking bytecode: %w", err)
	}
	b.run.log.notef("%d Python modules had no bytecode\n", missing)
	// Last, so that nothing installed or written above escapes it.
	stripped, err := stripPrivileges(root)
	if err != nil {
		return fmt.Errorf("stripping setuid bits: %w", err)
	}
	b.run.log.notef("stripped setuid/setgid bits and capabilities from %d files: %s\n", len(stripped), strings.Join(stripped, " "))
	return nil
}

// verifyImage runs the caller's verification, or chrootVerify, and checks its report.
func (b *builder) verifyImage(ctx context.Context) (map[string]string, error) {
	var versions map[string]string
	var err error
	mods := b.recipe.VerifyModules()
	if b.verify != nil {
		versions, err = b.verify(ctx, b.rootfs, mods)
	} else {
		versions, err = chrootVerify(ctx, b.run, b.rootfs, mods)
	}
	if err != nil {
		return nil, fmt.Errorf("verifying: %w", err)
	}
	if err := checkVersions(versions, mods); err != nil {
		return nil, err
	}
	b.run.log.notef("versions: %v\n", versions)
	return versions, nil
}

// bootstrapEnv is the bootstrapper's environment: a fixed PATH and locale, plus the host's
// proxy settings and TMPDIR. Nothing else of the host's environment reaches the
// maintainer scripts that run in the chroot.
func bootstrapEnv() []string {
	env := []string{"PATH=" + sbinDirs, "HOME=/root", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	for _, k := range []string{"TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
