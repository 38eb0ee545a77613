package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

func TestNumbered(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a.csv", "a (2).csv"},
		{"d/a.tar.gz", "d/a (2).tar.gz"},
		{".profile", ".profile (2)"},
		{"noext", "noext (2)"},
		{"x/.a.b", "x/.a (2).b"},
	} {
		if got := numbered(tc.in, 2); got != tc.want {
			t.Errorf("numbered(%q, 2) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// saveOutputs never replaces a file in the output dir, never leaves it, and skips
// and reports a file it cannot copy while copying the others.
func TestSaveOutputs(t *testing.T) {
	long := strings.Repeat("n", 255)
	png := "\x89PNG\r\n\x1a\nfigure"
	tests := []struct {
		name     string
		work     []string          // files the program wrote (content: their path)
		gone     []string          // listed, then removed before the copy
		existing map[string]string // files in the output dir before the run
		images   int               // figures named figure-1.png, … by the server
		// want maps each listed file, then "figure-N.png", to where it must be saved
		// (relative to the output dir) or, prefixed with "!", a word of its error.
		want map[string]string
		// after is the output dir's content after the save.
		after map[string]string
	}{
		{
			name: "plain", work: []string{"out.csv", "sub/note.txt"}, images: 1,
			want:  map[string]string{"out.csv": "out.csv", "sub/note.txt": "sub/note.txt", "figure-1.png": "figure-1.png"},
			after: map[string]string{"out.csv": "out.csv", "sub/note.txt": "sub/note.txt", "figure-1.png": png},
		},
		{
			// Issue: a program's own figure-1.png was replaced by the figure.
			name: "the program's figure-1.png", work: []string{"figure-1.png"}, images: 2,
			want:  map[string]string{"figure-1.png": "figure-1.png", "figure-1.png#fig": "figure-1 (2).png", "figure-2.png": "figure-2.png"},
			after: map[string]string{"figure-1.png": "figure-1.png", "figure-1 (2).png": png, "figure-2.png": png},
		},
		{
			name: "files of an earlier run", work: []string{"a.csv", "figure-1.png"}, images: 1,
			existing: map[string]string{"a.csv": "old", "a (2).csv": "older", "figure-1.png": "old figure"},
			want:     map[string]string{"a.csv": "a (3).csv", "figure-1.png": "figure-1 (2).png", "figure-1.png#fig": "figure-1 (3).png"},
			after: map[string]string{"a.csv": "old", "a (2).csv": "older", "a (3).csv": "a.csv", "figure-1.png": "old figure",
				"figure-1 (2).png": "figure-1.png", "figure-1 (3).png": png},
		},
		{
			name: "a file where a directory is needed", work: []string{"sub/x", "y"},
			existing: map[string]string{"sub": "a file"},
			want:     map[string]string{"sub/x": "!directory", "y": "y"},
			after:    map[string]string{"sub": "a file", "y": "y"},
		},
		{
			name: "no free name that fits", work: []string{long, "z"},
			existing: map[string]string{long: "old"},
			want:     map[string]string{long: "!too long", "z": "z"},
			after:    map[string]string{long: "old", "z": "z"},
		},
		{
			name: "a file gone before its copy", work: []string{"gone.txt", "kept.txt"}, gone: []string{"gone.txt"},
			want:  map[string]string{"gone.txt": "!no such file", "kept.txt": "kept.txt"},
			after: map[string]string{"kept.txt": "kept.txt"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := mkTree(t, tt.work...)
			out := t.TempDir()
			for name, data := range tt.existing {
				if err := os.WriteFile(filepath.Join(out, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			res := &job.Result{}
			for _, p := range tt.work {
				res.Files = append(res.Files, job.FileInfo{Path: p})
			}
			for _, p := range tt.gone {
				os.Remove(filepath.Join(work, p))
			}
			for i := range tt.images {
				res.Images = append(res.Images, job.Image{Name: "figure-" + string(rune('1'+i)) + ".png", Data: []byte(png)})
			}
			saveOutputs(&workDir{dir: work, inputs: newStamps()}, res, out)

			check := func(key string, s job.Saved) {
				t.Helper()
				want := tt.want[key]
				if word, isErr := strings.CutPrefix(want, "!"); isErr {
					if s.SavedAs != "" || !strings.Contains(s.SaveError, word) {
						t.Errorf("%s: saved as %q, error %q; want an error about %q", key, s.SavedAs, s.SaveError, word)
					}
					return
				}
				if s.SaveError != "" || s.SavedAs != filepath.Join(out, want) {
					t.Errorf("%s: saved as %q, error %q; want %q", key, s.SavedAs, s.SaveError, want)
				}
			}
			for _, f := range res.Files {
				check(f.Path, f.Saved)
			}
			for _, im := range res.Images {
				key := im.Name
				if _, clash := tt.want[key+"#fig"]; clash {
					key += "#fig"
				}
				check(key, im.Saved)
			}
			got := map[string]string{}
			filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					data, _ := os.ReadFile(p)
					rel, _ := filepath.Rel(out, p)
					got[rel] = string(data)
				}
				return err
			})
			if len(got) != len(tt.after) {
				t.Errorf("output dir holds %d files, want %d: %q", len(got), len(tt.after), got)
			}
			for name, data := range tt.after {
				if got[name] != data {
					t.Errorf("output dir: %s holds %q, want %q", name, got[name], data)
				}
			}
		})
	}
}

// A symlink in the output dir to a directory elsewhere is not followed out of it.
func TestSaveOutputsStaysInDir(t *testing.T) {
	work := mkTree(t, "link/x")
	out, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(out, "link")); err != nil {
		t.Fatal(err)
	}
	res := &job.Result{Files: []job.FileInfo{{Path: "link/x"}}}
	saveOutputs(&workDir{dir: work, inputs: newStamps()}, res, out)
	if res.Files[0].SaveError == "" {
		t.Errorf("link/x saved as %q through a symlink out of the output dir", res.Files[0].SavedAs)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) > 0 {
		t.Errorf("a file was written outside the output dir: %v", entries)
	}
}
