package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/image"
	"github.com/spf13/pflag"
)

func TestBuildFlagsRecipe(t *testing.T) {
	dir := t.TempDir()
	wheels := filepath.Join(dir, "wheels")
	if err := os.Mkdir(wheels, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wheels, "a-1.0-py3-none-any.whl"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	const sumA = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
	file := filepath.Join(dir, "tiny.json")
	if err := os.WriteFile(file, []byte(`{"name": "tiny", "version": 1, "suite": "trixie", "packages": ["python3"],
		"wheels": [{"file": "b-1.0-py3-none-any.whl", "sha256": "`+strings.Repeat("b", 64)+`"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	def := image.DefaultRecipe()
	tests := []struct {
		name    string
		flags   buildFlags
		want    func(r *image.Recipe) // applied to a copy of base
		base    image.Recipe
		wantErr string
	}{
		{name: "default", base: def, want: func(r *image.Recipe) {}},
		{name: "bookworm", flags: buildFlags{suite: "bookworm"}, base: def, want: func(r *image.Recipe) { r.Suite = "bookworm" }},
		{name: "custom", flags: buildFlags{name: "ml", packages: []string{"python3-sklearn", " python3-numpy", ""}, preload: []string{"sklearn"}},
			base: def, want: func(r *image.Recipe) {
				r.Name = "ml"
				r.Packages = append(r.Packages, "python3-sklearn") // python3-numpy is there already
				r.Preload = []string{"sklearn"}
			}},
		{name: "wheels", flags: buildFlags{name: "w", wheels: wheels}, base: def, want: func(r *image.Recipe) {
			r.Name = "w"
			r.Wheels = []image.Wheel{{File: "a-1.0-py3-none-any.whl", SHA256: sumA}}
		}},
		{name: "recipe file keeps its wheels", flags: buildFlags{recipeFile: file, wheels: wheels, packages: []string{"python3-six"}},
			base: image.Recipe{Name: "tiny", Version: 1, Suite: "trixie", Mirror: image.DefaultMirror(), Purge: image.DefaultPurge,
				Packages: []string{"python3"}, Wheels: []image.Wheel{{File: "b-1.0-py3-none-any.whl", SHA256: strings.Repeat("b", 64)}}},
			want: func(r *image.Recipe) { r.Packages = append(r.Packages, "python3-six") }},
		{name: "packages need a name", flags: buildFlags{packages: []string{"python3-sklearn"}}, wantErr: "--name"},
		{name: "wheels need a name", flags: buildFlags{wheels: wheels}, wantErr: "--name"},
		{name: "bad name", flags: buildFlags{name: "ML"}, wantErr: "image name"},
		{name: "bad package", flags: buildFlags{name: "ml", packages: []string{"--allow-unauthenticated"}}, wantErr: "not a Debian package"},
		{name: "empty wheel dir", flags: buildFlags{name: "ml", wheels: dir}, wantErr: "no *.whl"},
		{name: "missing recipe file", flags: buildFlags{recipeFile: filepath.Join(dir, "nothing.json")}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.flags.recipe()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("recipe() = %+v, %v, want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("recipe() = %v", err)
			}
			want := tt.base
			want.Packages = append([]string(nil), tt.base.Packages...)
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("recipe() =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestWriteImageList(t *testing.T) {
	mk := func(name, suite, py string, day int) image.Entry {
		r := image.DefaultRecipe()
		r.Name, r.Suite = name, suite
		return image.Entry{ID: r.ID(), Image: &image.Image{Manifest: image.Manifest{Name: name, Suite: suite, Recipe: r,
			SizeBytes: 607 << 20, BuiltAt: time.Date(2026, 11, day, 3, 36, 0, 0, time.UTC), Versions: map[string]string{"python": py}}}}
	}
	entries := []image.Entry{
		mk("ml", "trixie", "3.13.5", 20),
		mk("python", "trixie", "3.13.5", 29),
		mk("python", "bookworm", "3.11.2", 28),
		{ID: "junk-0123456789ab", Err: errors.New("no manifest")},
	}
	var out bytes.Buffer
	if err := writeImageList(&out, entries); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	want := []string{
		"NAME   ID ",
		"ml     ml-",
		"python python-",
		"python python-",
		"-      junk-0123456789ab",
	}
	if len(lines) != len(want) {
		t.Fatalf("writeImageList() =\n%s", out.String())
	}
	for i, l := range lines {
		if f, w := strings.Join(strings.Fields(l), " "), strings.Join(strings.Fields(want[i]), " "); !strings.HasPrefix(f, w) {
			t.Errorf("line %d = %q, want it to start with %q", i, l, want[i])
		}
	}
	for i, w := range map[int]string{1: "607 MiB", 2: "2026-11-29 03:36", 3: "(older build)", 4: "unusable: no manifest"} {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
	if strings.Contains(lines[2], "older") {
		t.Errorf("the newest python is marked older: %q", lines[2])
	}
}

func TestServeImageConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "serve.json")
	if err := os.WriteFile(file, []byte(`{"image": "ml", "images": ["ml", "tools"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := defaultServeConfig()
	if c.Image != image.DefaultName || c.Images != nil {
		t.Errorf("default image %q, images %v, want %q and every image in the store", c.Image, c.Images, image.DefaultName)
	}
	if err := c.load(file, pflag.NewFlagSet("serve", pflag.ContinueOnError)); err != nil {
		t.Fatal(err)
	}
	if c.Image != "ml" || !reflect.DeepEqual(c.Images, []string{"ml", "tools"}) {
		t.Errorf("from the config file: image %q, images %v", c.Image, c.Images)
	}
}
