package sandbox

import (
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/codeexec/codeexec/internal/job"
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
	root *os.Root
	uid  int // host uid that owns the files (the sandbox user)
	// inputs are the stamps of the files that are not the program's doing: those the
	// server wrote, and in a session those seen after the previous run.
	inputs stamps
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
	size    int64
	mtimeNs int64
}

func stampOf(st *unix.Stat_t) fileStamp {
	return fileStamp{st.Size, st.Mtim.Nano()}
}

// stamps remembers files' stamps by a keyed hash of their path: an entry has a fixed
// size however long the path, and the program, which names the files, cannot predict
// the key to make two paths collide. There are at most walkMaxEntries of them.
type stamps struct {
	seed maphash.Seed
	m    map[uint64]fileStamp
}

func newStamps() stamps { return stamps{seed: maphash.MakeSeed(), m: map[uint64]fileStamp{}} }

func (s stamps) key(p string) uint64 { return maphash.String(s.seed, p) }

// add remembers p's stamp unless the budget is spent: a file the server wrote and
// forgot is then reported as produced — listed once too often, never hidden.
func (s stamps) add(p string, st fileStamp) {
	if len(s.m) < walkMaxEntries {
		s.m[s.key(p)] = st
	}
}

// fresh returns an empty set with the same key, to replace s.
// remove forgets p's stamp.
func (s stamps) remove(p string) { delete(s.m, s.key(p)) }

func (s stamps) fresh() stamps { return stamps{seed: s.seed, m: map[uint64]fileStamp{}} }

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
	return &workDir{dir: dir, uid: uid, inputs: newStamps()}, nil
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
func (w *workDir) writeInputs(files []job.InputFile, iw *inputWriter) error {
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
// were written or produced was last called (at most maxListedFiles, within the walk
// budgets; truncated says when some were left out). Symlinks and other special files
// are never followed. Call it only when no sandbox process can change the work dir
// under it, or accept a racy listing (a session's background processes).
func (w *workDir) produced() (files []job.FileInfo, truncated bool, err error) {
	files, seen, truncated, err := w.list(w.inputs)
	if err == nil {
		w.inputs = seen
	}
	return files, truncated, err
}

// list lists the regular files of the work dir whose stamp is not in skip, at most
// maxListedFiles of them, and returns the stamps of every file it saw.
func (w *workDir) list(skip stamps) (files []job.FileInfo, seen stamps, truncated bool, err error) {
	root, release, err := w.open()
	if err != nil {
		return nil, skip, false, err
	}
	defer release()
	dir, err := root.Open(".")
	if err != nil {
		return nil, skip, false, err
	}
	defer dir.Close()
	files, seen = []job.FileInfo{}, skip.fresh()
	cut, err := walkFiles(dir, func(rel string, st *unix.Stat_t) {
		stamp := stampOf(st)
		seen.add(rel, stamp)
		if old, ok := skip.m[skip.key(rel)]; ok && old == stamp {
			return
		}
		if len(files) == maxListedFiles {
			truncated = true
			return
		}
		files = append(files, job.FileInfo{Path: rel, Size: st.Size})
	})
	if err != nil {
		return nil, skip, false, fmt.Errorf("list the work dir: %w", err)
	}
	// In the order of their paths, not the directories' (a tmpfs lists newest
	// first): a listing reads the same from one call to the next.
	slices.SortFunc(files, func(a, b job.FileInfo) int { return strings.Compare(a.Path, b.Path) })
	return files, seen, truncated || cut, nil
}
