package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// pipWheelPackage is the Debian package whose pip wheel installs a recipe's wheels. It is
// the wheel that venv uses, a 2 MiB package depending only on ca-certificates, and
// python3 runs pip straight from it; python3-pip would bring setuptools and wheel too.
// A build adds it when the recipe has wheels and purges it afterwards, unless the recipe
// names it or an installed package depends on it.
const pipWheelPackage = "python3-pip-whl"

// WheelsIn returns the wheels (*.whl) in dir with their hashes, sorted by file name: the
// Wheels of a recipe that installs everything in dir. It is an error if there are none.
func WheelsIn(dir string) ([]Wheel, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading wheel dir: %w", err)
	}
	var ws []Wheel
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".whl") {
			continue
		}
		sum, err := hashFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ws = append(ws, Wheel{File: e.Name(), SHA256: sum})
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("wheel dir %q holds no *.whl file", dir)
	}
	return ws, nil // ReadDir sorts by name
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %q: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkWheels makes sure dir holds every wheel of ws with its hash, so that a missing or
// changed wheel fails the build before the bootstrap rather than after it.
func checkWheels(dir string, ws []Wheel) error {
	if len(ws) == 0 {
		return nil
	}
	if dir == "" {
		return fmt.Errorf("the recipe installs %d wheels but no wheel dir was given (--wheels DIR)", len(ws))
	}
	for _, w := range ws {
		sum, err := hashFile(filepath.Join(dir, w.File))
		if err != nil {
			return fmt.Errorf("wheel %q: %w", w.File, err)
		}
		if sum != w.SHA256 {
			return fmt.Errorf("wheel %q in %q has sha256 %s, the recipe wants %s", w.File, dir, sum, w.SHA256)
		}
	}
	return nil
}

// copyWheel copies src to dst (which must not exist), hashing what it copies: the
// check holds for the bytes installed, whatever happened to src since checkWheels.
func copyWheel(src, dst, want string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying %q: %w", src, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("wheel %q changed during the build: sha256 %s, the recipe wants %s", src, got, want)
	}
	return nil
}

// bootstrapPackages are the packages the bootstrapper installs: the recipe's, plus
// pip's wheel when there are wheels to install.
func bootstrapPackages(r Recipe) []string {
	pkgs := slices.Clone(r.Packages)
	if len(r.Wheels) > 0 && !slices.Contains(pkgs, pipWheelPackage) {
		pkgs = append(pkgs, pipWheelPackage)
	}
	return pkgs
}

// installWheels installs the recipe's wheels from wheelDir into root with pip, run from
// Debian's pip wheel: no index (--no-index), dependencies only from the recipe's wheels
// and what the Debian packages installed. pip installs into /usr/local, which Debian's
// Python searches before its own dist-packages, and byte-compiles what it installs.
func installWheels(ctx context.Context, run *runner, root, wheelDir string, r Recipe) error {
	pips, _ := filepath.Glob(filepath.Join(root, "usr/share/python-wheels/pip-*.whl"))
	if len(pips) == 0 {
		return fmt.Errorf("no pip wheel in the image (/usr/share/python-wheels/pip-*.whl from %s)", pipWheelPackage)
	}
	slices.Sort(pips)
	pip := "/" + strings.TrimPrefix(pips[len(pips)-1], root+"/")
	tmp, err := os.MkdirTemp(filepath.Join(root, "tmp"), "codeexec-wheels-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	inside := "/tmp/" + filepath.Base(tmp)
	args := []string{"python3", "-m", "pip", "install", "--no-index", "--find-links", inside,
		"--no-cache-dir", "--disable-pip-version-check", "--no-warn-script-location",
		// The image is ours to change: Debian's EXTERNALLY-MANAGED marker guards a
		// system's own Python against pip, and pip's root warning an interactive user.
		"--break-system-packages", "--root-user-action=ignore"}
	for _, w := range r.Wheels {
		if err := copyWheel(filepath.Join(wheelDir, w.File), filepath.Join(tmp, w.File), w.SHA256); err != nil {
			return err
		}
		args = append(args, inside+"/"+w.File)
	}
	env := append(slices.Clone(chrootEnv), "PYTHONPATH="+pip)
	if err := run.chroot(ctx, root, env, args...); err != nil {
		return fmt.Errorf("installing %d wheels: %w", len(r.Wheels), err)
	}
	if slices.Contains(r.Packages, pipWheelPackage) {
		return nil
	}
	deps, err := dependents(ctx, run, root, pipWheelPackage)
	if err != nil {
		return err
	}
	if len(deps) > 0 {
		run.log.notef("keeping %s: %s depend on it\n", pipWheelPackage, strings.Join(deps, " "))
		return nil
	}
	return run.chroot(ctx, root, nil, "dpkg", "--purge", pipWheelPackage)
}

// dependents returns the installed packages that depend (or pre-depend) on pkg.
func dependents(ctx context.Context, run *runner, root, pkg string) ([]string, error) {
	out, err := run.chrootOutput(ctx, root, nil, "dpkg-query", "-W", "-f=${Package}\t${Depends}, ${Pre-Depends}\n")
	if err != nil {
		return nil, fmt.Errorf("listing dependencies: %w", err)
	}
	return parseDependents(string(out), pkg), nil
}

// parseDependents reads dpkg-query's "Package<TAB>Depends, Pre-Depends" lines and returns
// the packages that name pkg in either, as the only choice or an alternative.
func parseDependents(out, pkg string) []string {
	var deps []string
	for _, line := range strings.Split(out, "\n") {
		name, rel, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		for _, alt := range strings.FieldsFunc(rel, func(r rune) bool { return r == ',' || r == '|' }) {
			// "python3-pip-whl (= 23.0.1+dfsg-1)" or "python3-pip-whl:any"
			dep, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
			dep, _, _ = strings.Cut(dep, ":")
			if dep == pkg {
				deps = append(deps, name)
				break
			}
		}
	}
	return deps
}
