package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/codeexec/codeexec/internal/job"
	"golang.org/x/sys/unix"
)

// maxFreeNameTries bounds the names tried for a file whose name is taken in the
// output dir: "a.csv", "a (2).csv", … "a (100).csv".
const maxFreeNameTries = 100

// saveOutputs copies the produced files and the figures of res into outDir (run
// --out), and records in each where it went or why it could not (Saved). A file that
// cannot be copied is skipped; the others are copied all the same. Nothing in outDir
// is ever replaced: a name that is taken, by a file of an earlier run or one of
// this run, gets the next free one ("a (2).csv"). The program's files are saved
// before the figures, so a program's own figure-1.png keeps its name and the
// server's figure-1.png takes the free one.
//
// Both ends are opened as roots: nothing the program named (a file "../x" cannot
// exist, but a name reaching a symlink in outDir can) leaves outDir, and nothing is
// read out of the work dir but the regular file listed, never through a symlink.
func saveOutputs(w *workDir, res *job.Result, outDir string) {
	if outDir == "" {
		return
	}
	fail := func(err error) {
		for i := range res.Files {
			res.Files[i].SaveError = err.Error()
		}
		for i := range res.Images {
			res.Images[i].SaveError = err.Error()
		}
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		fail(fmt.Errorf("output dir: %w", err))
		return
	}
	dst, err := os.OpenRoot(outDir)
	if err != nil {
		fail(fmt.Errorf("output dir: %w", err))
		return
	}
	defer dst.Close()
	if len(res.Files) > 0 {
		src, release, err := w.open()
		if err != nil {
			fail(fmt.Errorf("open the work dir: %w", err))
			return
		}
		defer release()
		for i := range res.Files {
			f := &res.Files[i]
			f.Saved = saveCopy(dst, outDir, f.Path, func() (io.ReadCloser, error) { return openProduced(src, f.Path) })
		}
	}
	for i := range res.Images {
		im := &res.Images[i]
		im.Saved = saveCopy(dst, outDir, im.Name, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(im.Data)), nil })
	}
}

// openProduced opens the regular file rel of the work dir for reading, never through
// a symlink: the program may have swapped it since it was listed.
func openProduced(src *os.Root, rel string) (io.ReadCloser, error) {
	f, err := src.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is no longer a regular file", rel)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// saveCopy writes what open returns to rel in dst (the root of outDir), or to the
// first free name beside it, and says where it went or why it did not.
func saveCopy(dst *os.Root, outDir, rel string, open func() (io.ReadCloser, error)) job.Saved {
	src, err := open()
	if err != nil {
		return job.Saved{SaveError: err.Error()}
	}
	defer src.Close()
	if dir := path.Dir(rel); dir != "." {
		if err := dst.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTDIR) {
				return job.Saved{SaveError: fmt.Sprintf("the output dir has a file where %s needs the directory %s", rel, dir)}
			}
			return job.Saved{SaveError: err.Error()}
		}
	}
	name, out, err := createFree(dst, rel)
	if err != nil {
		return job.Saved{SaveError: err.Error()}
	}
	_, err = io.Copy(out, src)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = dst.Remove(name) // no partial file is left as if it were whole
		return job.Saved{SaveError: fmt.Sprintf("copy to %s: %v", name, err)}
	}
	return job.Saved{SavedAs: filepath.Join(outDir, filepath.FromSlash(name))}
}

// createFree creates rel in dst, or "stem (N).ext" beside it when rel is taken; it
// never opens an existing file. The caller must close the file.
func createFree(dst *os.Root, rel string) (string, *os.File, error) {
	name := rel
	for n := 2; ; n++ {
		f, err := dst.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
		if err == nil {
			return name, f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", nil, err
		}
		if n > maxFreeNameTries {
			return "", nil, fmt.Errorf("%s and the names beside it up to %q are taken", rel, numbered(rel, maxFreeNameTries))
		}
		name = numbered(rel, n)
	}
}

// numbered returns rel with " (n)" before the extension of its base name:
// "d/a.tar.gz" → "d/a (2).tar.gz", ".profile" → ".profile (2)".
func numbered(rel string, n int) string {
	dir, base := path.Split(rel)
	stem, ext := base, ""
	if i := strings.IndexByte(base[1:], '.'); i >= 0 {
		stem, ext = base[:i+1], base[i+1:]
	}
	return dir + stem + " (" + strconv.Itoa(n) + ")" + ext
}
