package sandbox

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"golang.org/x/sys/unix"
)

// mkTree makes the files (slash paths; a trailing slash makes a directory) in a new
// temporary directory and returns it. Paths may be longer than PATH_MAX.
func mkTree(t *testing.T, paths ...string) string {
	t.Helper()
	top := t.TempDir()
	root, err := os.OpenRoot(top)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, p := range paths {
		dir, isDir := strings.CutSuffix(p, "/")
		if !isDir {
			dir = path.Dir(p)
		}
		if err := root.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if isDir {
			continue
		}
		if err := root.WriteFile(p, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return top
}

// nested is a path of n directories named name, then file.
func nested(n int, name, file string) string {
	return strings.Repeat(name+"/", n) + file
}

// walkList walks top and returns the files it listed, sorted, and whether it was cut.
func walkList(t *testing.T, top string) ([]string, bool) {
	t.Helper()
	d, err := os.Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var got []string
	cut, err := walkFiles(d, func(rel string, st *unix.Stat_t) {
		got = append(got, rel)
	})
	if err != nil {
		t.Fatalf("walkFiles: %v", err)
	}
	slices.Sort(got)
	return got, cut
}

func TestWalkBudgets(t *testing.T) {
	long := strings.Repeat("n", 200)
	tests := []struct {
		name    string
		tree    []string
		want    []string // listed, sorted
		wantCut bool
	}{
		{"flat and nested", []string{"a", "b/c", "b/d/e", "empty/"}, []string{"a", "b/c", "b/d/e"}, false},
		{"at the depth budget", []string{nested(walkMaxDepth, "d", "f"), "top"}, []string{nested(walkMaxDepth, "d", "f"), "top"}, false},
		{"beyond the depth budget", []string{nested(walkMaxDepth+1, "d", "f"), nested(walkMaxDepth, "d", "g"), "top"}, []string{nested(walkMaxDepth, "d", "g"), "top"}, true},
		{"beyond the path budget", []string{nested(walkMaxPath/201, long, "f"), nested(walkMaxPath/201+1, long, "g"), "top"},
			[]string{nested(walkMaxPath/201, long, "f"), "top"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := walkList(t, mkTree(t, tt.tree...))
			if !slices.Equal(got, tt.want) || cut != tt.wantCut {
				t.Errorf("walk listed %d files %.300q cut %v, want %.300q cut %v", len(got), got, cut, tt.want, tt.wantCut)
			}
		})
	}
}

// The walk never follows a symlink, to a file or to a directory, and lists only
// regular files.
func TestWalkSpecialFiles(t *testing.T) {
	outside := mkTree(t, "secret", "dir/secret")
	top := mkTree(t, "real", "sub/")
	for _, l := range [][2]string{{filepath.Join(outside, "secret"), "link"}, {filepath.Join(outside, "dir"), "sub/dirlink"}} {
		if err := os.Symlink(l[0], filepath.Join(top, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(top, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, cut := walkList(t, top)
	if !slices.Equal(got, []string{"real"}) || cut {
		t.Errorf("walk listed %q cut %v, want only real", got, cut)
	}
}

// The entry budget stops the walk, and the time budget does too.
func TestWalkStops(t *testing.T) {
	top := t.TempDir()
	for i := range walkMaxEntries + 10 {
		fd, err := unix.Open(filepath.Join(top, "f"+strconv.Itoa(i)), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
	}
	got, cut := walkList(t, top)
	if len(got) != walkMaxEntries || !cut {
		t.Errorf("walk of %d files listed %d, cut %v; want %d, cut", walkMaxEntries+10, len(got), cut, walkMaxEntries)
	}

	d, err := os.Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	w := &walker{file: func(string, *unix.Stat_t) { t.Error("a walk past its deadline listed a file") }, deadline: time.Now().Add(-time.Second)}
	if err := w.dir(d, "", 0); err != nil || !w.cut {
		t.Errorf("a walk past its deadline: err %v cut %v, want cut", err, w.cut)
	}
}

// produced lists what changed since the inputs were written, then since the last
// call; its memory of what it saw is bounded.
func TestProducedStamps(t *testing.T) {
	top := t.TempDir()
	w := &workDir{dir: top, uid: os.Getuid(), inputs: newStamps()}
	// The inputs as the writer leaves them: in place, their stamps remembered.
	for _, in := range []job.InputFile{{Path: "in/data.csv", Data: []byte("a,b\n")}, {Path: "keep.txt", Data: []byte("k")}} {
		p := filepath.Join(top, in.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, in.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		w.inputs.add(in.Path, fileStamp{fi.Size(), fi.ModTime().UnixNano()})
	}
	list := func() []string {
		t.Helper()
		files, truncated, err := w.produced()
		if err != nil || truncated {
			t.Fatalf("produced: %v (truncated %v)", err, truncated)
		}
		var got []string
		for _, f := range files {
			got = append(got, f.Path)
		}
		slices.Sort(got)
		return got
	}
	if got := list(); len(got) != 0 {
		t.Errorf("produced after writing inputs = %q, want none", got)
	}
	os.WriteFile(filepath.Join(top, "in/data.csv"), []byte("a,b\n1,2\n"), 0o644)
	os.WriteFile(filepath.Join(top, "out.txt"), []byte("o"), 0o644)
	if got := list(); !slices.Equal(got, []string{"in/data.csv", "out.txt"}) {
		t.Errorf("produced after a run = %q, want the changed input and the new file", got)
	}
	if got := list(); len(got) != 0 {
		t.Errorf("produced again = %q, want none: nothing changed since", got)
	}

	s := newStamps()
	for i := range walkMaxEntries + 5 {
		s.add(strconv.Itoa(i), fileStamp{size: int64(i)})
	}
	if len(s.m) != walkMaxEntries {
		t.Errorf("stamps hold %d entries, want the budget of %d", len(s.m), walkMaxEntries)
	}
}
