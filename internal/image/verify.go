package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// VerifyProgram returns a Python program that imports modules, exercises the ones it
// knows a little (so that a library whose shared objects were purged fails here, not in
// a user's code), and prints a JSON map of module → __version__ plus "python". It also
// checks that matplotlib found the prebuilt font cache instead of rebuilding it. The
// program runs alike in a chroot and in the sandbox; modules must be valid module names
// (Recipe.Validate).
func VerifyProgram(modules []string) string {
	list, err := json.Marshal(modules) // a JSON list of strings is a Python list literal
	if err != nil {
		panic("image: marshalling module names: " + err.Error()) // strings never fail
	}
	return "mods = " + string(list) + "\n" + verifyScript
}

const verifyScript = `
import glob, importlib, io, json, os, sys
v = {"python": "%d.%d.%d" % sys.version_info[:3]}
cached = [os.path.basename(p) for p in glob.glob(os.path.join(os.environ.get("MPLCONFIGDIR", "/nonexistent"), "fontlist-*.json"))]
for m in mods:
    v[m] = str(getattr(importlib.import_module(m), "__version__", "unknown"))
if "numpy" in mods:
    import numpy as np
    assert abs(np.linalg.det(np.array([[2.0, 0], [0, 3.0]])) - 6) < 1e-9
if "scipy" in mods:
    import scipy.linalg, scipy.optimize, scipy.special, scipy.stats, scipy.integrate, scipy.sparse.linalg
    assert abs(scipy.optimize.brentq(lambda x: x * x - 2, 0, 2) - 2 ** 0.5) < 1e-9
    assert abs(scipy.integrate.quad(lambda x: x, 0, 1)[0] - 0.5) < 1e-9
if "pandas" in mods:
    import pandas as pd
    assert pd.DataFrame({"a": [1, 1, 2], "b": [1, 2, 3]}).groupby("a").b.sum().tolist() == [3, 3]
if "sympy" in mods:
    import sympy
    x = sympy.Symbol("x")
    assert sympy.integrate(2 * x, x) == x ** 2
if "matplotlib" in mods:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager
    want = "fontlist-v%s.json" % font_manager.FontManager.__version__
    assert want in cached, "matplotlib wants %s, the image has %s" % (want, cached)
    plt.plot([1, 2, 3], [1, 4, 9])
    buf = io.BytesIO()
    plt.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
print(json.dumps(v))
`

// chrootVerify is the verification used when BuildOptions.Verify is nil: it runs
// verifyScript in a chroot of rootfs as the sandbox user, so that files the sandbox user
// cannot read fail the build. It is weaker than a run in the real sandbox (no
// namespaces, seccomp or read-only mount), which is why callers that have a sandbox
// should pass their own Verify.
func chrootVerify(ctx context.Context, run *runner, rootfs string, modules []string) (map[string]string, error) {
	// matplotlib ignores a config dir it cannot write and rebuilds its font cache in a
	// temporary one, so give it a writable copy of the prebuilt cache, as the sandbox
	// does. It lives in the image's /tmp and is removed afterwards.
	tmp, err := os.MkdirTemp(filepath.Join(rootfs, "tmp"), "codeexec-verify-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := seedFontCache(filepath.Join(rootfs, MPLConfigDir), tmp); err != nil {
		return nil, err
	}
	inside := "/tmp/" + filepath.Base(tmp)
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + inside, "MPLCONFIGDIR=" + inside, "MPLBACKEND=Agg", "LC_ALL=C.UTF-8"}
	user := strconv.Itoa(SandboxUID) + ":" + strconv.Itoa(SandboxGID)
	args := []string{"--userspec=" + user, rootfs, "python3", "-c", VerifyProgram(modules)}
	cmd := run.command(ctx, env, run.chrootPath, args...)
	var out jsonBuffer
	cmd.Stdout = &out
	if err := run.run(ctx, cmd); err != nil {
		return nil, err
	}
	var versions map[string]string
	if err := json.Unmarshal(out.b, &versions); err != nil {
		return nil, fmt.Errorf("parsing the verification's output %q: %w", shorten(string(out.b), 200), err)
	}
	return versions, nil
}

// seedFontCache copies the files of src into dst and gives dst to the sandbox user. An
// image without matplotlib has no src: dst stays empty.
func seedFontCache(src, dst string) error {
	entries, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return os.Lchown(dst, SandboxUID, SandboxGID)
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		p := filepath.Join(dst, e.Name())
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		if err := os.Lchown(p, SandboxUID, SandboxGID); err != nil {
			return err
		}
	}
	return os.Lchown(dst, SandboxUID, SandboxGID)
}

// jsonBuffer collects a command's standard output, bounded: the script prints one short
// line.
type jsonBuffer struct{ b []byte }

func (j *jsonBuffer) Write(p []byte) (int, error) {
	if len(j.b) < 1<<20 {
		j.b = append(j.b, p...)
	}
	return len(p), nil
}

// checkVersions makes sure a verification reported a version for Python and every module.
func checkVersions(versions map[string]string, modules []string) error {
	for _, m := range append([]string{"python"}, modules...) {
		if versions[m] == "" {
			return fmt.Errorf("verification reported no version for %q", m)
		}
	}
	return nil
}
