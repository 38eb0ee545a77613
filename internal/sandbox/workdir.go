package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// maxListedFiles bounds how many produced files a Result lists.
const maxListedFiles = 1000

// workDir is an execution's writable directory: a size-capped tmpfs mounted on the
// host, bind-mounted into the sandbox as /work. Living on the host lets the runner
// place input files before and read produced files after the sandbox.
type workDir struct {
	dir string // host path of the tmpfs mount
	// root, when set, is the work dir held open: a warm child's /work lives in its
	// mount namespace, and an open directory keeps it readable after the child (and
	// with it the namespace) is gone, so that a run killed by a limit keeps its files.
	root   *os.Root
	uid    int // host uid that owns the files (the sandbox user)
	inputs map[string]fileStamp
}

// open returns the work dir and a function that releases it.
func (w *workDir) open() (*os.Root, func(), error) {
	if w.root != nil {
		return w.root, func() {}, nil
	}
	r, err := os.OpenRoot(w.dir)
	if err != nil {
		return nil, nil, err
	}
	return r, func() { r.Close() }, nil
}

// close releases a held work dir.
func (w *workDir) close() {
	if w.root != nil {
		w.root.Close()
	}
}

type fileStamp struct {
	size  int64
	mtime time.Time
}

// newWorkDir mounts a tmpfs of size bytes at dir, owned by host uid/gid. The caller
// must call remove.
func newWorkDir(dir string, size int64, uid int) (*workDir, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	opts := fmt.Sprintf("size=%d,mode=0700,uid=%d,gid=%d", size, uid, uid)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("mount work tmpfs on %q: %w", dir, err)
	}
	return &workDir{dir: dir, uid: uid, inputs: map[string]fileStamp{}}, nil
}

// remove unmounts and deletes the work dir and everything in it.
func (w *workDir) remove() error {
	if err := unix.Unmount(w.dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount work dir %q: %w", w.dir, err)
	}
	return os.Remove(w.dir)
}

// writeInputs places files in the work dir, all or none, with their pages charged to
// the sandbox (see inputWriter), and remembers them so that only files the program
// creates or changes are reported. Files that do not fit are an ErrStorageLimit.
func (w *workDir) writeInputs(files []InputFile, iw *inputWriter) error {
	if len(files) == 0 {
		return nil
	}
	root, release, err := w.open()
	if err != nil {
		return fmt.Errorf("sandbox: open /work: %w", hostFree(err))
	}
	defer release()
	return iw.place(root, files, w.inputs)
}

// asFSUser runs f with the file system uid and gid set to uid, so that what f
// creates belongs to that user and f has no more file access than the user has.
// A warm sandbox's tmpfs even requires it: its user namespace cannot represent files
// owned by host root. fsuid is per thread, so f runs on a thread locked to it, whose
// ids are restored before it is unlocked.
//
// The thread must not simply be left to exit instead: sandboxes get a parent-death
// signal, which the kernel sends when the *thread* that forked them exits (Go issue
// 27505), so an exiting thread could kill a zygote or a running sandbox.
func asFSUser(uid int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		unix.Setfsgid(uid)
		unix.Setfsuid(uid)
		var err error
		if got, _ := unix.SetfsuidRetUid(-1); got != uid {
			err = fmt.Errorf("setfsuid(%d) did not take effect", uid)
		} else {
			err = f()
		}
		unix.Setfsuid(0)
		unix.Setfsgid(0)
		backUID, _ := unix.SetfsuidRetUid(-1)
		backGID, _ := unix.SetfsgidRetGid(-1)
		if backUID == 0 && backGID == 0 {
			runtime.UnlockOSThread()
		} // else the thread keeps its lock and exits with the goroutine: better than reuse
		errc <- err
	}()
	return <-errc
}

// produced lists the regular files the program created or changed since the inputs
// were written or produced was last called, and copies them to outDir when it is
// set. Symlinks and other special files are never followed. Call it only when no
// sandbox process can change the work dir under it, or accept a racy listing (a
// session's background processes).
func (w *workDir) produced(outDir string) (files []FileInfo, truncated bool, err error) {
	root, release, err := w.open()
	if err != nil {
		return nil, false, err
	}
	defer release()
	files = []FileInfo{}
	seen := map[string]fileStamp{}
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		stamp := fileStamp{fi.Size(), fi.ModTime()}
		seen[p] = stamp
		if w.inputs[p] == stamp {
			return nil
		}
		if len(files) == maxListedFiles {
			truncated = true
			return nil
		}
		files = append(files, FileInfo{Path: p, Size: fi.Size()})
		if outDir != "" {
			if err := copyOut(root, p, outDir); err != nil {
				return err
			}
		}
		return nil
	})
	w.inputs = seen
	return files, truncated, err
}

func copyOut(root *os.Root, p, outDir string) error {
	src, err := root.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	dst := filepath.Join(outDir, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return fmt.Errorf("copy %q to %q: %w", p, dst, err)
	}
	return out.Close()
}

// saveImages writes figures to outDir.
func saveImages(images []Image, outDir string) error {
	if outDir == "" || len(images) == 0 {
		return nil
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for i, im := range images {
		name := filepath.Base(im.Name)
		if name == "." || name == "/" {
			name = "figure-" + strconv.Itoa(i+1) + ".png"
		}
		if err := os.WriteFile(filepath.Join(outDir, name), im.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
