package sandbox

import (
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Budgets of a walk of a work dir (a run's produced files, a session's listing). The
// walk runs on the server, after the program's own limits stopped counting, and the
// program shaped the tree: 2,000 nested directories of 255-character names once cost
// the server 24 s and gigabytes. A budget that stops the walk or skips part of the
// tree sets files_truncated.
const (
	// walkMaxEntries bounds the directory entries read. An unpacked data set of tens
	// of thousands of files is still listed; a million empty files (inodes are cheap
	// in a tmpfs) is not. Each entry costs a getdents share and an fstatat, about a
	// microsecond: the budget is some 50 ms of the server's time.
	walkMaxEntries = 50_000
	// walkMaxDepth bounds how many directories deep below /work the walk goes.
	// Deeper than real projects nest (node_modules reaches about 20), and the walk
	// holds a descriptor per level.
	walkMaxDepth = 64
	// walkMaxPath bounds a listed path, in bytes: PATH_MAX, the longest path a
	// client can name in one system call, which makes 1,000 listed files at most
	// 4 MB of a reply.
	walkMaxPath = 4096
	// walkMaxTime bounds the walk's wall time on a machine so loaded that the entry
	// budget alone would take long; it is far above what the budgets above cost.
	walkMaxTime = 2 * time.Second
)

// walker visits the regular files of a tree by directory descriptors: each
// directory is opened relative to its parent (openat, fstatat, never following a
// link), so the cost is linear in the entries, whatever the depth or the length of
// the paths. A path-based walk resolves every component of every path again, which
// is quadratic in depth.
type walker struct {
	file     func(rel string, st *unix.Stat_t) // called for each regular file
	deadline time.Time
	entries  int
	cut      bool // a budget stopped the walk or skipped part of the tree
}

// walkFiles calls file for each regular file below the open directory dir, with its
// slash-separated path relative to dir, within the walk budgets. It reports whether
// a budget left files out. Entries that vanish or change type while it walks (a
// session's background processes) are skipped.
func walkFiles(dir *os.File, file func(rel string, st *unix.Stat_t)) (cut bool, err error) {
	w := &walker{file: file, deadline: time.Now().Add(walkMaxTime)}
	err = w.dir(dir, "", 0)
	return w.cut, err
}

// stopped reports whether the entry or time budget is spent.
func (w *walker) stopped() bool {
	if w.entries >= walkMaxEntries || time.Now().After(w.deadline) {
		w.cut = true
		return true
	}
	return false
}

// dir walks the directory d, whose path is prefix, depth levels below the top.
func (w *walker) dir(d *os.File, prefix string, depth int) error {
	fd := int(d.Fd())
	for !w.stopped() {
		// Names only: os.File.ReadDir would lstat entries of unknown type by a path
		// built from the file's name, which here is not a path at all.
		names, err := d.Readdirnames(min(256, walkMaxEntries-w.entries))
		for _, name := range names {
			if w.stopped() {
				return nil
			}
			w.entries++
			rel := name
			if prefix != "" {
				rel = prefix + "/" + name
			}
			if len(rel) > walkMaxPath {
				w.cut = true
				continue
			}
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				continue // gone since it was listed
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				w.file(rel, &st)
			case unix.S_IFDIR:
				if depth+1 > walkMaxDepth {
					w.cut = true
					continue
				}
				if err := w.sub(fd, name, rel, depth+1); err != nil {
					return err
				}
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(names) == 0) {
			return nil
		}
		if err != nil && depth == 0 {
			return &os.PathError{Op: "readdir", Path: ".", Err: err}
		}
		if err != nil {
			w.cut = true // what it holds is not listed, the rest is
			return nil
		}
	}
	return nil
}

// sub walks the directory name of the directory parent.
func (w *walker) sub(parent int, name, rel string, depth int) error {
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
		return nil // gone, or no longer a directory
	case err != nil:
		w.cut = true
		return nil
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	return w.dir(d, rel, depth)
}
