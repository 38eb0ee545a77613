package image

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestRecipeHashStable(t *testing.T) {
	r := DefaultRecipe()
	h := r.Hash()
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(h) {
		t.Fatalf("Hash() = %q, want 12 hex digits", h)
	}
	if h2 := DefaultRecipe().Hash(); h2 != h {
		t.Errorf("Hash() of two default recipes: %q then %q", h, h2)
	}
	// Package order does not change the image.
	rev := DefaultRecipe()
	for i, j := 0, len(rev.Packages)-1; i < j; i, j = i+1, j-1 {
		rev.Packages[i], rev.Packages[j] = rev.Packages[j], rev.Packages[i]
	}
	if got := rev.Hash(); got != h {
		t.Errorf("Hash() with packages reversed = %q, want %q", got, h)
	}
	if r.ID() != "python-"+h {
		t.Errorf("ID() = %q, want %q", r.ID(), "python-"+h)
	}
	// Hash must not modify its receiver's slices.
	if r.Packages[0] != "python3" {
		t.Errorf("Hash() reordered the recipe's packages: %v", r.Packages)
	}
}

func TestRecipeHashSensitivity(t *testing.T) {
	base := DefaultRecipe()
	tests := []struct {
		name       string
		change     func(r *Recipe)
		wantChange bool
	}{
		{"mirror", func(r *Recipe) { r.Mirror = "http://ftp.de.debian.org/debian" }, false},
		{"package added", func(r *Recipe) { r.Packages = append(r.Packages, "python3-yaml") }, true},
		{"package replaced", func(r *Recipe) { r.Packages[1] = "python3-numpy-dbg" }, true},
		{"suite", func(r *Recipe) { r.Suite = "trixie" }, true},
		{"purge", func(r *Recipe) { r.Purge += "|^libfoo" }, true},
		{"version", func(r *Recipe) { r.Version++ }, true},
		{"name", func(r *Recipe) { r.Name = "python2" }, true},
		{"modules", func(r *Recipe) { r.Modules = append(r.Modules, "yaml") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := DefaultRecipe()
			tt.change(&r)
			changed := r.Hash() != base.Hash()
			if changed != tt.wantChange {
				t.Errorf("after changing %s: Hash() changed = %v, want %v", tt.name, changed, tt.wantChange)
			}
		})
	}
}

// TestRecipeHashCoversEveryField fails when Recipe gains a field that Hash ignores: every
// field but Mirror must change the hash.
func TestRecipeHashCoversEveryField(t *testing.T) {
	base := DefaultRecipe()
	rt := reflect.TypeOf(base)
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		r := DefaultRecipe()
		v := reflect.ValueOf(&r).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Int:
			v.SetInt(v.Int() + 1)
		case reflect.Slice:
			v.Set(reflect.Append(v, reflect.ValueOf("x")))
		default:
			t.Fatalf("Recipe.%s has kind %s: teach this test (and check Hash) about it", f.Name, v.Kind())
		}
		changed := r.Hash() != base.Hash()
		if want := f.Name != "Mirror"; changed != want {
			t.Errorf("changing Recipe.%s: Hash() changed = %v, want %v", f.Name, changed, want)
		}
	}
}

func TestRecipeValidate(t *testing.T) {
	if err := DefaultRecipe().Validate(); err != nil {
		t.Fatalf("DefaultRecipe().Validate() = %v", err)
	}
	tests := []struct {
		name   string
		change func(r *Recipe)
		want   string
	}{
		{"name with slash", func(r *Recipe) { r.Name = "../x" }, "recipe name"},
		{"old version", func(r *Recipe) { r.Version = RecipeVersion - 1 }, "version"},
		{"bad suite", func(r *Recipe) { r.Suite = "book worm" }, "suite"},
		{"bad mirror", func(r *Recipe) { r.Mirror = "ftp//nowhere" }, "mirror"},
		{"no packages", func(r *Recipe) { r.Packages = nil }, "no packages"},
		{"option as package", func(r *Recipe) { r.Packages = []string{"--foo"} }, "not a Debian package"},
		{"bad regexp", func(r *Recipe) { r.Purge = "(" }, "purge expression"},
		{"bad module", func(r *Recipe) { r.Modules = []string{"import os"} }, "not a Python module"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := DefaultRecipe()
			tt.change(&r)
			err := r.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestDefaultPurgeKeepsRuntimeLibraries(t *testing.T) {
	re := regexp.MustCompile(DefaultRecipe().Purge)
	for _, p := range []string{"gcc-12-base", "libgcc-s1", "libgomp1", "libquadmath0", "libatomic1",
		"libgfortran5", "python3", "python3-numpy", "python3-scipy", "libpython3.11-stdlib", "libstdc++6"} {
		if re.MatchString(p) {
			t.Errorf("purge expression matches %q, which must stay", p)
		}
	}
	for _, p := range []string{"gcc-12", "gcc", "g++-12", "cpp-12", "binutils-x86-64-linux-gnu",
		"libpython3.11-dev", "python3-pythran", "libboost1.74-dev", "libisl23", "libasan8"} {
		if !re.MatchString(p) {
			t.Errorf("purge expression does not match %q", p)
		}
	}
}

func TestMirrorFromSources(t *testing.T) {
	const deb822Main = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`
	tests := []struct {
		name  string
		files map[string]string // name → content; names sorted give the order
		want  string
	}{
		{"deb822 of this machine", map[string]string{"debian.sources": deb822Main}, "http://deb.debian.org/debian"},
		{"security first", map[string]string{"a.sources": `Types: deb
URIs: http://security.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://mirror.example.org/debian/
Suites: bookworm
Components: main
`}, "https://mirror.example.org/debian"},
		{"third-party repos skipped", map[string]string{
			"a.list":    "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n",
			"b.sources": "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n",
			"c.list":    "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://ftp.de.debian.org/debian bookworm main\n",
		}, "http://ftp.de.debian.org/debian"},
		{"disabled and source-only stanzas skipped", map[string]string{"a.sources": `Types: deb
URIs: http://one.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://two.example/debian
Suites: bookworm
Components: main

Types: deb-src deb
URIs:
 http://three.example/debian
Suites: bookworm
Components: main
`}, "http://three.example/debian"},
		{"one-line with comments and deb-src", map[string]string{"sources.list": `# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb http://ftp.us.debian.org/debian/ bookworm main contrib # trailing comment
`}, "http://ftp.us.debian.org/debian"},
		{"nothing usable", map[string]string{"a.list": "deb https://packages.cloud.google.com/apt cloud-sdk main\n"}, ""},
		{"empty", map[string]string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			paths := []string{filepath.Join(dir, "missing.list")} // missing files are skipped
			for _, name := range sortedKeys(tt.files) {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(tt.files[name]), 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			if got := mirrorFromSources(paths); got != tt.want {
				t.Errorf("mirrorFromSources(%v) = %q, want %q", tt.files, got, tt.want)
			}
		})
	}
}

func sortedKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return sortedCopy(keys)
}

func TestDefaultMirrorIsUsable(t *testing.T) {
	m := DefaultMirror()
	if !isDebianArchive(m) {
		t.Errorf("DefaultMirror() = %q, not a Debian archive URL", m)
	}
}
