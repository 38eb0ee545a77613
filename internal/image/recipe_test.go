package image

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
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
		{"suite", func(r *Recipe) { r.Suite = "bookworm" }, true},
		{"purge", func(r *Recipe) { r.Purge += "|^libfoo" }, true},
		{"version", func(r *Recipe) { r.Version++ }, true},
		{"name", func(r *Recipe) { r.Name = "python2" }, true},
		{"modules", func(r *Recipe) { r.Modules = append(r.Modules, "yaml") }, true},
		{"modules reordered", func(r *Recipe) { slices.Reverse(r.Modules) }, false},
		{"preload", func(r *Recipe) { r.Preload = []string{"yaml"} }, true},
		{"preload reordered", func(r *Recipe) { r.Preload = []string{"sklearn", "yaml"} }, true},
		{"wheel added", func(r *Recipe) { r.Wheels = []Wheel{{"a-1-py3-none-any.whl", strings.Repeat("a", 64)}} }, true},
		{"wheels reordered", func(r *Recipe) {
			r.Wheels = []Wheel{{"b-1-py3-none-any.whl", strings.Repeat("b", 64)}, {"a-1-py3-none-any.whl", strings.Repeat("a", 64)}}
		}, true},
		{"empty preload and wheels", func(r *Recipe) { r.Preload, r.Wheels = []string{}, []Wheel{} }, false},
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
			switch v.Type().Elem() {
			case reflect.TypeOf(""):
				v.Set(reflect.Append(v, reflect.ValueOf("x")))
			case reflect.TypeOf(Wheel{}):
				v.Set(reflect.Append(v, reflect.ValueOf(Wheel{File: "x-1-py3-none-any.whl", SHA256: strings.Repeat("0", 64)})))
			default:
				t.Fatalf("Recipe.%s is a slice of %s: teach this test (and check Hash) about it", f.Name, v.Type().Elem())
			}
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
		{"name with slash", func(r *Recipe) { r.Name = "../x" }, "image name"},
		{"old version", func(r *Recipe) { r.Version = RecipeVersion - 1 }, "version"},
		{"bad suite", func(r *Recipe) { r.Suite = "book worm" }, "suite"},
		{"bad mirror", func(r *Recipe) { r.Mirror = "ftp//nowhere" }, "mirror"},
		{"no packages", func(r *Recipe) { r.Packages = nil }, "no packages"},
		{"option as package", func(r *Recipe) { r.Packages = []string{"--foo"} }, "not a Debian package"},
		{"bad regexp", func(r *Recipe) { r.Purge = "(" }, "purge expression"},
		{"bad module", func(r *Recipe) { r.Modules = []string{"import os"} }, "not a Python module"},
		{"bad preload", func(r *Recipe) { r.Preload = []string{"-c"} }, "not a Python module"},
		{"name like an ID", func(r *Recipe) { r.Name = "python-8f857625f643" }, "ends like an image ID"},
		{"long name", func(r *Recipe) { r.Name = strings.Repeat("a", 65) }, "1 to 64"},
		{"upper-case name", func(r *Recipe) { r.Name = "Python" }, "image name"},
		{"wheel with a path", func(r *Recipe) { r.Wheels = []Wheel{{"../a-1-py3-none-any.whl", strings.Repeat("a", 64)}} }, "not a wheel file name"},
		{"not a wheel", func(r *Recipe) { r.Wheels = []Wheel{{"a-1.tar.gz", strings.Repeat("a", 64)}} }, "not a wheel file name"},
		{"wheel hash upper-case", func(r *Recipe) { r.Wheels = []Wheel{{"a-1-py3-none-any.whl", strings.Repeat("A", 64)}} }, "sha256"},
		{"wheel hash short", func(r *Recipe) { r.Wheels = []Wheel{{"a-1-py3-none-any.whl", "abc"}} }, "sha256"},
		{"wheel twice", func(r *Recipe) {
			w := Wheel{"a-1-py3-none-any.whl", strings.Repeat("a", 64)}
			r.Wheels = []Wheel{w, w}
		}, "twice"},
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
	// Runtime libraries of bookworm and trixie (t64 names), and the stack itself.
	for _, p := range []string{"gcc-12-base", "gcc-14-base", "libgcc-s1", "libgomp1", "libquadmath0", "libatomic1",
		"libgfortran5", "python3", "python3-numpy", "python3-scipy", "libpython3.11-stdlib", "libpython3.13-stdlib",
		"libstdc++6", "libopenblas0-pthread", "libblas3", "liblapack3", "gcc", "cpp"} {
		if p == "gcc" || p == "cpp" {
			continue // listed below: they go
		}
		if re.MatchString(p) {
			t.Errorf("purge expression matches %q, which must stay", p)
		}
	}
	// bookworm's compiler chain (through pythran) and trixie's, should a package pull it.
	for _, p := range []string{"gcc-12", "gcc", "g++-12", "cpp-12", "binutils-x86-64-linux-gnu",
		"libpython3.11-dev", "python3-pythran", "libboost1.74-dev", "libisl23", "libasan8",
		"gcc-14", "gcc-14-x86-64-linux-gnu", "g++-14-x86-64-linux-gnu", "cpp-14-x86-64-linux-gnu",
		"gcc-x86-64-linux-gnu", "libgcc-14-dev", "libsframe1", "python3-numpy-dev", "libctf-nobfd0"} {
		if !re.MatchString(p) {
			t.Errorf("purge expression does not match %q", p)
		}
	}
}

// TestOldRecipeHashes guards the hashes of images already built: a field added to
// Recipe must not change the hash of a recipe that does not use it, or every store
// would have to rebuild.
func TestOldRecipeHashes(t *testing.T) {
	bookworm := Recipe{
		Name: "python", Version: 1, Suite: "bookworm", Mirror: "http://deb.debian.org/debian",
		Packages: []string{"python3", "python3-numpy", "python3-pandas", "python3-matplotlib", "python3-scipy", "python3-sympy", "python3-requests"},
		Purge: `-dev$|^gcc-12$|^gcc$|^g\+\+|^cpp|^binutils|^libbinutils|^libctf|^libgprofng|` +
			`^libasan|^libtsan|^liblsan|^libubsan|^libhwasan|^libitm|^libcc1|^libisl|^libmpc|` +
			`^libjansson|pythran|^python3-beniget|^python3-gast|^libboost`,
		Modules: []string{"numpy", "pandas", "matplotlib", "scipy", "sympy", "requests"},
	}
	trixie := DefaultRecipe()
	trixie.Packages = slices.DeleteFunc(slices.Clone(trixie.Packages), func(p string) bool { return p == "nodejs" })
	for _, tt := range []struct {
		name string
		r    Recipe
		want string
	}{
		{"bookworm default of recipe version 1", bookworm, "47097fa68257"},
		{"trixie default of recipe version 1, before nodejs", trixie, "8f857625f643"},
		{"trixie default with nodejs", DefaultRecipe(), "92cd2222a8d6"},
	} {
		if got := tt.r.Hash(); got != tt.want {
			t.Errorf("%s: Hash() = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestParseRecipe(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		json    string
		want    func(r *Recipe) // applied to wantBase
		wantErr string
	}{
		{name: "minimal", json: `{"name": "tiny", "version": 1, "suite": "trixie", "packages": ["python3"]}`,
			want: func(r *Recipe) {}},
		{name: "everything", json: `{"name": "ml", "version": 1, "suite": "bookworm", "mirror": "http://ftp.de.debian.org/debian",
			"packages": ["python3", "python3-sklearn"], "purge": "^gcc$", "modules": ["sklearn"], "preload": ["sklearn"],
			"wheels": [{"file": "tabulate-0.9.0-py3-none-any.whl", "sha256": "` + sum + `"}]}`,
			want: func(r *Recipe) {
				r.Name, r.Suite, r.Mirror, r.Purge = "ml", "bookworm", "http://ftp.de.debian.org/debian", "^gcc$"
				r.Packages = []string{"python3", "python3-sklearn"}
				r.Modules, r.Preload = []string{"sklearn"}, []string{"sklearn"}
				r.Wheels = []Wheel{{"tabulate-0.9.0-py3-none-any.whl", sum}}
			}},
		{name: "empty purge purges nothing", json: `{"name": "tiny", "version": 1, "suite": "trixie", "packages": ["python3"], "purge": ""}`,
			want: func(r *Recipe) { r.Purge = "" }},
		{name: "unknown field", json: `{"name": "tiny", "version": 1, "suite": "trixie", "packages": ["python3"], "pip": ["x"]}`,
			wantErr: `unknown field "pip"`},
		{name: "unknown wheel field", json: `{"name": "t", "version": 1, "suite": "trixie", "packages": ["python3"], "wheels": [{"file": "a-1-py3-none-any.whl", "sha256": "` + sum + `", "url": "x"}]}`,
			wantErr: `unknown field "url"`},
		{name: "trailing data", json: `{"name": "tiny", "version": 1, "suite": "trixie", "packages": ["python3"]} {}`,
			wantErr: "data after"},
		{name: "no version", json: `{"name": "tiny", "suite": "trixie", "packages": ["python3"]}`,
			wantErr: "version 0"},
		{name: "no packages", json: `{"name": "tiny", "version": 1, "suite": "trixie"}`,
			wantErr: "no packages"},
		{name: "yaml", json: "name: tiny\nversion: 1\n", wantErr: "decoding recipe"},
		{name: "bad type", json: `{"name": "tiny", "version": "1", "suite": "trixie", "packages": ["python3"]}`,
			wantErr: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRecipe([]byte(tt.json))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRecipe(%s) = %+v, %v, want an error containing %q", tt.json, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRecipe(%s) = %v", tt.json, err)
			}
			want := Recipe{Name: "tiny", Version: 1, Suite: "trixie", Mirror: DefaultMirror(), Packages: []string{"python3"}, Purge: DefaultPurge}
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ParseRecipe(%s) =\n%+v\nwant\n%+v", tt.json, got, want)
			}
		})
	}
}

// TestManifestRecipeIsARecipeFile checks what the README promises: the "recipe" of a
// built image's manifest rebuilds that image.
func TestManifestRecipeIsARecipeFile(t *testing.T) {
	r := DefaultRecipe()
	r.Name, r.Preload = "ml", []string{"sklearn"}
	r.Wheels = []Wheel{{"a-1-py3-none-any.whl", strings.Repeat("c", 64)}}
	m := testManifest()
	m.Recipe = r
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var raw struct{ Recipe json.RawMessage }
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	got, err := ParseRecipe(raw.Recipe)
	if err != nil {
		t.Fatalf("ParseRecipe(manifest's recipe) = %v", err)
	}
	if got.ID() != r.ID() {
		t.Errorf("the manifest's recipe names %q, want %q", got.ID(), r.ID())
	}
}

func TestVerifyModules(t *testing.T) {
	r := Recipe{Modules: []string{"numpy", "pandas"}, Preload: []string{"sklearn", "numpy", "yaml"}}
	if got, want := r.VerifyModules(), []string{"numpy", "pandas", "sklearn", "yaml"}; !reflect.DeepEqual(got, want) {
		t.Errorf("VerifyModules() = %v, want %v", got, want)
	}
	if len(r.Modules) != 2 {
		t.Errorf("VerifyModules() changed Modules: %v", r.Modules)
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
