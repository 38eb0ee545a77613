package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What the sandbox can rely on in every image. Changing any of them, or any step below,
// requires bumping RecipeVersion.
const (
	// WorkDir is the sandbox's working directory: an empty mount point in the image.
	WorkDir = "/work"
	// SandboxUser, SandboxUID and SandboxGID name the unprivileged account that user code
	// runs as inside the sandbox (its home is WorkDir, its shell nologin).
	SandboxUser = "sandbox"
	SandboxUID  = 1000
	SandboxGID  = 1000
	// Hostname is the sandbox's host name, in /etc/hostname and /etc/hosts.
	Hostname = "sandbox"
	// MPLConfigDir holds matplotlib's prebuilt font cache. Run Python with
	// MPLCONFIGDIR set to it: on the read-only root matplotlib otherwise rebuilds the
	// cache at every start (+70 ms).
	MPLConfigDir = "/usr/share/codeexec/mplconfig"
)

// chrootEnv is the whole environment of commands run inside the image while building
// (as `env -i` would): nothing of the host's environment leaks in.
var chrootEnv = []string{
	"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LC_ALL=C.UTF-8",
	"DEBIAN_FRONTEND=noninteractive",
}

// purgeCompilers removes the installed packages whose names match expr with
// dpkg --purge --force-depends, and returns their names. On bookworm python3-scipy
// depends on python3-pythran, which pulls in gcc, g++ and the boost headers; scipy never
// needs them at run time, so their dependency is broken on purpose (−550 MiB). An empty
// expr removes nothing (as a regexp it would match every package).
func purgeCompilers(ctx context.Context, run *runner, root, expr string) ([]string, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("purge expression %q: %w", expr, err)
	}
	out, err := run.chrootOutput(ctx, root, nil, "dpkg-query", "-W", "-f=${Package}\n")
	if err != nil {
		return nil, fmt.Errorf("listing installed packages: %w", err)
	}
	var purge []string
	for _, p := range strings.Fields(string(out)) {
		if re.MatchString(p) {
			purge = append(purge, p)
		}
	}
	if len(purge) == 0 {
		return nil, nil
	}
	args := append([]string{"dpkg", "--purge", "--force-depends"}, purge...)
	if err := run.chroot(ctx, root, nil, args...); err != nil {
		return nil, fmt.Errorf("purging %d packages: %w", len(purge), err)
	}
	return purge, nil
}

// removeDocs empties the package caches and lists, documentation, manual pages, info
// pages and translations (keeping /usr/share/locale/locale.alias). mmdebstrap's
// path-exclude options already kept most of these out; debootstrap has no such option.
func removeDocs(root string) error {
	for _, d := range []struct {
		dir  string
		keep []string
	}{
		{"var/cache/apt/archives", []string{"partial", "lock"}},
		{"var/lib/apt/lists", []string{"partial", "lock"}},
		{"usr/share/doc", nil},
		{"usr/share/man", nil},
		{"usr/share/info", nil},
		{"usr/share/locale", []string{"locale.alias"}},
	} {
		if err := removeContents(filepath.Join(root, d.dir), d.keep...); err != nil {
			return err
		}
	}
	// Directories apt expects; harmless if they already exist.
	for _, d := range []string{"var/cache/apt/archives/partial", "var/lib/apt/lists/partial"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// removeContents removes everything in dir except top-level entries named in keep.
// A missing dir is not an error.
func removeContents(dir string, keep ...string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		if slices.Contains(keep, e.Name()) {
			continue
		}
		if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// makeDirs creates the mount points the sandbox needs: WorkDir and /tmp (tmpfs), /proc,
// /dev and /sys.
func makeDirs(root string) error {
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		{WorkDir, 0o755},
		{"/tmp", os.ModeSticky | 0o777},
		{"/proc", 0o555},
		{"/dev", 0o755},
		{"/sys", 0o555},
	} {
		p := filepath.Join(root, d.path)
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(p, d.mode.Perm()); err != nil {
				return err
			}
			// Mkdir is subject to the umask and ignores the sticky bit.
			if err := os.Chmod(p, d.mode); err != nil {
				return err
			}
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("%q exists and is not a directory", p)
		}
	}
	return nil
}

// addSandboxUser appends the sandbox user and group to /etc/passwd and /etc/group. It
// fails if another account already has the name or the id, and does nothing if the exact
// entry is already there.
func addSandboxUser(root string) error {
	if err := appendAccount(filepath.Join(root, "etc/passwd"),
		fmt.Sprintf("%s:x:%d:%d:codeexec sandbox:%s:/usr/sbin/nologin", SandboxUser, SandboxUID, SandboxGID, WorkDir)); err != nil {
		return err
	}
	return appendAccount(filepath.Join(root, "etc/group"), fmt.Sprintf("%s:x:%d:", SandboxUser, SandboxGID))
}

// appendAccount appends line (name:x:id:…) to an /etc/passwd-style file unless the same
// entry exists; another entry with the same name or id is an error.
func appendAccount(path, line string) error {
	name, id := accountKey(line)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		l := sc.Text()
		n, i := accountKey(l)
		if l == line {
			return nil
		}
		if n == name || (i == id && i != "") {
			return fmt.Errorf("%q already has an entry %q that conflicts with %q", path, l, line)
		}
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		line = "\n" + line
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// accountKey returns the name and numeric id (third field) of a passwd or group line.
func accountKey(line string) (name, id string) {
	f := strings.Split(line, ":")
	if len(f) < 3 {
		return f[0], ""
	}
	return f[0], f[2]
}

// writeNetworkFiles writes /etc/hostname and /etc/hosts for Hostname, and replaces
// /etc/resolv.conf with an empty file: the bootstrapper copies the host's, which must not
// leak into the sandbox. resolv.conf may be a symlink (systemd-resolved); it is removed,
// never followed.
func writeNetworkFiles(root string) error {
	etc := filepath.Join(root, "etc")
	files := []struct{ name, data string }{
		{"hostname", Hostname + "\n"},
		{"hosts", "127.0.0.1\tlocalhost\n127.0.1.1\t" + Hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
		{"resolv.conf", ""},
	}
	for _, f := range files {
		p := filepath.Join(etc, f.name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// O_EXCL: the name was just removed; never write through whatever reappeared.
		fd, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, err = fd.WriteString(f.data)
		if err == nil {
			err = fd.Chmod(0o644) // the sandbox user reads them, whatever the umask
		}
		if err != nil {
			fd.Close()
			return err
		}
		if err := fd.Close(); err != nil {
			return err
		}
	}
	return nil
}

// stripPrivileges clears the setuid and setgid bits of every regular file under root, and
// removes file capabilities (security.capability), returning the paths it changed,
// relative to root. Debian's minbase has setuid su, mount, passwd, …; the sandbox also
// mounts nosuid and sets no_new_privs, but an image without them does not depend on that.
// Symlinks are never followed: every entry is checked with Lstat and only regular files
// are changed.
func stripPrivileges(root string) ([]string, error) {
	var changed []string
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
		if !fi.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		touched := false
		if m := fi.Mode(); m&(os.ModeSetuid|os.ModeSetgid) != 0 {
			if err := os.Chmod(p, m&^(os.ModeSetuid|os.ModeSetgid)); err != nil {
				return err
			}
			touched = true
		}
		switch err := unix.Lremovexattr(p, "security.capability"); {
		case err == nil:
			touched = true
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
		default:
			return &os.SyscallError{Syscall: "lremovexattr " + strconv.Quote(p), Err: err}
		}
		if touched {
			changed = append(changed, "/"+rel)
		}
		return nil
	})
	return changed, err
}

// buildFontCache runs matplotlib once inside the image so that MPLConfigDir holds its
// font list (fontlist-*.json), and makes the directory world-readable for the sandbox
// user.
func buildFontCache(ctx context.Context, run *runner, root string) error {
	dir := filepath.Join(root, MPLConfigDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=/tmp", "MPLCONFIGDIR=" + MPLConfigDir, "MPLBACKEND=Agg"}
	if err := run.chroot(ctx, root, env, "python3", "-c", "import matplotlib.pyplot"); err != nil {
		return fmt.Errorf("building matplotlib's font cache: %w", err)
	}
	found, _ := filepath.Glob(filepath.Join(dir, "fontlist-*.json"))
	if len(found) == 0 {
		return fmt.Errorf("building matplotlib's font cache: no fontlist-*.json in %q", MPLConfigDir)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Chmod(p, 0o755)
		case d.Type().IsRegular():
			return os.Chmod(p, 0o644)
		}
		return nil
	})
}

// pythonDirs returns the directories of root that hold Python modules, as paths inside
// root, and the bytecode tag of each ("cpython-313"): the standard library, Debian's
// dist-packages and pip's /usr/local dist-packages. Missing directories are left out.
func pythonDirs(root string) (dirs, tags []string) {
	libs, _ := filepath.Glob(filepath.Join(root, "usr/lib/python3.[0-9]*"))
	for _, lib := range libs {
		fi, err := os.Lstat(lib)
		if err != nil || !fi.IsDir() {
			continue
		}
		ver := strings.TrimPrefix(filepath.Base(lib), "python")
		tag := "cpython-" + strings.ReplaceAll(ver, ".", "")
		for _, d := range []string{lib, filepath.Join(root, "usr/lib/python3/dist-packages"),
			filepath.Join(root, "usr/local/lib", filepath.Base(lib), "dist-packages")} {
			if fi, err := os.Lstat(d); err != nil || !fi.IsDir() {
				continue
			}
			rel, _ := filepath.Rel(root, d)
			dirs, tags = append(dirs, "/"+rel), append(tags, tag)
		}
	}
	return dirs, tags
}

// hasPythonPackage reports whether one of the image's Python directories holds the
// top-level package or module name.
func hasPythonPackage(root, name string) bool {
	dirs, _ := pythonDirs(root)
	for _, d := range dirs {
		for _, p := range []string{name, name + ".py"} {
			if _, err := os.Lstat(filepath.Join(root, d, p)); err == nil {
				return true
			}
		}
	}
	return false
}

// missingBytecode counts the .py files under the image's Python directories (see
// pythonDirs) that have no __pycache__/<name>.cpython-3X.pyc next to them.
//
// Measured on bookworm and trixie: Debian's py3compile already byte-compiles every
// installed module at install time (bookworm: 5905 .py, 5905 .pyc, and compileall writes
// nothing), and so does pip for wheels, so the count is 0 and compileall is skipped. The
// check stays because the rootfs is mounted read-only and a module without bytecode
// would be recompiled at every import.
func missingBytecode(root string) (int, []string, error) {
	dirs, tags := pythonDirs(root)
	missing := 0
	for i, d := range dirs {
		n, err := countMissingPyc(filepath.Join(root, d), tags[i])
		if err != nil {
			return 0, nil, err
		}
		missing += n
	}
	return missing, dirs, nil
}

func countMissingPyc(dir, tag string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return fs.SkipDir
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(p, ".py") {
			return nil
		}
		stem := strings.TrimSuffix(filepath.Base(p), ".py")
		pyc := filepath.Join(filepath.Dir(p), "__pycache__", stem+"."+tag+".pyc")
		if _, err := os.Lstat(pyc); err != nil {
			n++
		}
		return nil
	})
	return n, err
}

// ensureBytecode runs compileall inside the image if some module has no bytecode (see
// missingBytecode), and returns how many were missing. compileall's failures (Python 2
// syntax in some test file) are logged, not fatal: bytecode only saves time.
func ensureBytecode(ctx context.Context, run *runner, root string) (int, error) {
	n, dirs, err := missingBytecode(root)
	if err != nil || n == 0 {
		return n, err
	}
	args := append([]string{"python3", "-m", "compileall", "-q"}, dirs...)
	if err := run.chroot(ctx, root, nil, args...); err != nil {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		run.log.notef("compileall: %v (ignored)\n", err)
	}
	return n, nil
}
