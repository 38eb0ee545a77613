// Package image builds, finds and describes the sandbox's root filesystem image.
package image

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// RecipeVersion is the version of the build steps that live in code rather than in
// [Recipe]: the bootstrap flags and every customisation step (customize.go). Bump it
// whenever one of them changes what ends up in the image, so that Recipe.Hash changes and
// existing stores build a new image instead of reusing one made by the old steps.
const RecipeVersion = 1

// FallbackMirror is used when the host's apt sources name no Debian archive.
const FallbackMirror = "http://deb.debian.org/debian"

// Recipe is plain data describing an image. Together with RecipeVersion it determines the
// image's contents; see Hash.
type Recipe struct {
	// Name is the image's name, the first half of its directory name: "python".
	Name string `json:"name"`
	// Version must equal RecipeVersion: a recipe written for other build steps cannot be
	// built faithfully by this code.
	Version int `json:"version"`
	// Suite is the Debian release to bootstrap: "trixie".
	Suite string `json:"suite"`
	// Mirror is the Debian archive to download from. It is not part of Hash: the same
	// suite gives the same packages from any mirror.
	Mirror string `json:"mirror"`
	// Packages are installed on top of Debian's minbase variant.
	Packages []string `json:"packages"`
	// Purge matches (Go regexp syntax) the installed packages removed after bootstrap
	// with dpkg --purge --force-depends: the compiler chain that a package drags in
	// (see DefaultPurge) and nothing needs at run time. Empty removes nothing.
	Purge string `json:"purge"`
	// Modules are the Python modules a verification imports; their versions go into the
	// manifest.
	Modules []string `json:"modules"`
	// Preload are modules the warm zygote imports besides the sandbox's default list
	// (sandbox.DefaultPreload), in this order; the build verifies that they import.
	Preload []string `json:"preload,omitempty"`
	// Wheels are Python wheels installed with pip, without an index, after the Debian
	// packages. The files come from the directory given to the build
	// (BuildOptions.WheelDir) and must have these hashes.
	Wheels []Wheel `json:"wheels,omitempty"`
}

// Wheel is one wheel file of a recipe.
type Wheel struct {
	// File is the wheel's file name: "tabulate-0.9.0-py3-none-any.whl".
	File string `json:"file"`
	// SHA256 is the hex SHA-256 of the file's contents.
	SHA256 string `json:"sha256"`
}

// DefaultRecipe returns the recipe of the default Python image, Debian 13 (trixie), with
// the mirror taken from the host's apt sources (see DefaultMirror). The same recipe with
// Suite "bookworm" builds the previous release's stack.
func DefaultRecipe() Recipe {
	return Recipe{
		Name:    DefaultName,
		Version: RecipeVersion,
		Suite:   DefaultSuite,
		Mirror:  DefaultMirror(),
		Packages: []string{
			"python3",
			"python3-numpy",
			"python3-pandas",
			"python3-matplotlib",
			"python3-scipy",
			"python3-sympy",
			"python3-requests",
			// numpy and scipy need a libblas.so.3 and apt's first choice is the reference
			// BLAS. On bookworm OpenBLAS came in through pythran's dependencies; trixie's
			// scipy no longer pulls those, so it is named.
			"libopenblas0-pthread",
			// language "javascript": Node 20 on trixie, with the acorn parser Debian
			// ships it with, which the JavaScript harness uses for top-level await.
			"nodejs",
		},
		Purge:   DefaultPurge,
		Modules: []string{"numpy", "pandas", "matplotlib", "scipy", "sympy", "requests"},
	}
}

const (
	// DefaultName is the name of the default image, and of the image a server uses when
	// none is configured.
	DefaultName = "python"
	// DefaultSuite is the Debian release of the default image.
	DefaultSuite = "trixie"
	// DefaultPurge matches the compiler chain that a package may pull in and nothing
	// needs at run time: on bookworm python3-scipy depends on pythran, which brings gcc,
	// g++, binutils and the boost headers (550 MiB); trixie's scipy does not, but other
	// packages a custom image names may. It names no compiler version, so that it fits
	// every suite. Kept on purpose (the expression does not match them): gcc-N-base,
	// libgcc-s1, libgomp1, libquadmath0, libgfortran5, libstdc++6 and libatomic1, which
	// numpy and scipy link against.
	DefaultPurge = `-dev$|^gcc(-[0-9]+)?(-[a-z0-9_-]+-linux-gnu)?$|^g\+\+|^cpp|^binutils|^libbinutils|` +
		`^libctf|^libgprofng|^libsframe|^libasan|^libtsan|^liblsan|^libubsan|^libhwasan|^libitm|^libcc1|` +
		`^libisl|^libmpc|^libjansson|pythran|^python3-beniget|^python3-gast|^libboost`
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// idSuffixRE matches the "-<hash>" an image ID adds to a name. A name that ends like
// that would be mistaken for an ID.
var idSuffixRE = regexp.MustCompile(`-[0-9a-f]{12}$`)

// Validate reports the first problem that would make the recipe unbuildable.
func (r Recipe) Validate() error {
	if err := ValidateName(r.Name); err != nil {
		return err
	}
	if r.Version != RecipeVersion {
		return fmt.Errorf("recipe %q has version %d, but this codeexec builds version %d", r.Name, r.Version, RecipeVersion)
	}
	if !nameRE.MatchString(r.Suite) {
		return fmt.Errorf("recipe %q: suite %q is not a Debian suite name", r.Name, r.Suite)
	}
	u, err := url.Parse(r.Mirror)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") || (u.Scheme != "file" && u.Host == "") {
		return fmt.Errorf("recipe %q: mirror %q is not an http, https or file URL", r.Name, r.Mirror)
	}
	if len(r.Packages) == 0 {
		return fmt.Errorf("recipe %q has no packages", r.Name)
	}
	for _, p := range r.Packages {
		if !debPackageRE.MatchString(p) {
			return fmt.Errorf("recipe %q: %q is not a Debian package name", r.Name, p)
		}
	}
	if _, err := regexp.Compile(r.Purge); err != nil {
		return fmt.Errorf("recipe %q: purge expression %q: %w", r.Name, r.Purge, err)
	}
	for _, m := range append(slices.Clone(r.Modules), r.Preload...) {
		if !moduleRE.MatchString(m) {
			return fmt.Errorf("recipe %q: %q is not a Python module name", r.Name, m)
		}
	}
	seen := map[string]bool{}
	for _, w := range r.Wheels {
		if !wheelFileRE.MatchString(w.File) {
			return fmt.Errorf("recipe %q: wheel %q is not a wheel file name (name-version-python-abi-platform.whl)", r.Name, w.File)
		}
		if !sha256RE.MatchString(w.SHA256) {
			return fmt.Errorf("recipe %q: wheel %q: sha256 %q is not 64 lowercase hex digits", r.Name, w.File, w.SHA256)
		}
		if seen[w.File] {
			return fmt.Errorf("recipe %q names wheel %q twice", r.Name, w.File)
		}
		seen[w.File] = true
	}
	return nil
}

// ValidateName checks an image name: it names a directory of the store.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("image name %q: want 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	if idSuffixRE.MatchString(name) {
		return fmt.Errorf("image name %q ends like an image ID (-<12 hex digits>)", name)
	}
	return nil
}

var (
	debPackageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	moduleRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
	// A wheel file name has five or six dash-separated fields (PEP 427); no path.
	wheelFileRE = regexp.MustCompile(`^[A-Za-z0-9_.]+-[A-Za-z0-9_.!+]+(-[0-9][A-Za-z0-9_.]*)?-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl$`)
	sha256RE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Hash returns a short hex hash of everything that determines the image's contents: the
// recipe without its mirror, and RecipeVersion (through the Version field, which Validate
// ties to it). It is stable across runs and platforms.
func (r Recipe) Hash() string {
	r.Mirror = ""
	// Installation order does not change the result; sort copies so that it does not
	// change the hash either.
	r.Packages = sortedCopy(r.Packages)
	r.Modules = sortedCopy(r.Modules)
	r.Wheels = slices.Clone(r.Wheels)
	slices.SortFunc(r.Wheels, func(a, b Wheel) int { return strings.Compare(a.File, b.File) })
	// Preload keeps its order: the zygote imports in it.
	b, err := json.Marshal(r)
	if err != nil {
		panic("image: marshalling a recipe: " + err.Error()) // plain strings and ints never fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// ID is the image's directory name in a store: "<name>-<hash>".
func (r Recipe) ID() string { return r.Name + "-" + r.Hash() }

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

// DefaultMirror returns the first Debian archive named in the host's apt sources
// (/etc/apt/sources.list, then /etc/apt/sources.list.d/*.list and *.sources in the order
// apt reads them), or FallbackMirror.
func DefaultMirror() string {
	paths := []string{"/etc/apt/sources.list"}
	var d []string
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		d = append(d, m...)
	}
	sort.Strings(d)
	if m := mirrorFromSources(append(paths, d...)); m != "" {
		return m
	}
	return FallbackMirror
}

// mirrorFromSources returns the first Debian archive URI of binary ("deb") sources in the
// given files, which are in one-line format unless their name ends in ".sources" (deb822).
// Missing or unreadable files are skipped. It returns "" if there is none.
func mirrorFromSources(paths []string) string {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		var uris []string
		if strings.HasSuffix(p, ".sources") {
			uris = deb822URIs(f)
		} else {
			uris = oneLineURIs(f)
		}
		f.Close()
		for _, u := range uris {
			if isDebianArchive(u) {
				return strings.TrimSuffix(u, "/")
			}
		}
	}
	return ""
}

// oneLineURIs returns the URIs of "deb" lines: `deb [opt=val …] URI suite components…`.
func oneLineURIs(f *os.File) []string {
	var uris []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		rest := fields[1:]
		if strings.HasPrefix(rest[0], "[") {
			// Options may contain spaces: skip to the field that closes the bracket.
			i := slices.IndexFunc(rest, func(s string) bool { return strings.HasSuffix(s, "]") })
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		if len(rest) >= 2 {
			uris = append(uris, rest[0])
		}
	}
	return uris
}

// deb822URIs returns the URIs of enabled stanzas whose Types include "deb".
func deb822URIs(f *os.File) []string {
	var uris []string
	fields := map[string]string{}
	last := ""
	flush := func() {
		types := strings.Fields(fields["types"])
		enabled := strings.ToLower(strings.TrimSpace(fields["enabled"]))
		if slices.Contains(types, "deb") && enabled != "no" && enabled != "false" {
			uris = append(uris, strings.Fields(fields["uris"])...)
		}
		clear(fields)
		last = ""
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" { // continuation of a multi-line field
				fields[last] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	flush()
	return uris
}

// isDebianArchive reports whether uri looks like a mirror of the main Debian archive:
// an http(s) URL whose path ends in "/debian". That skips debian-security,
// debian-backports-only hosts and third-party repositories (nodesource, Google, …).
func isDebianArchive(uri string) bool {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	return strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/debian")
}

// ParseRecipe decodes a recipe file: a JSON object with the fields of Recipe, strictly
// (unknown fields and trailing data are errors). The file may leave out "mirror" (the
// host's: DefaultMirror) and "purge" (DefaultPurge; "" purges nothing); every other
// field it leaves out is empty. The manifest's "recipe" of a built image is such a file.
// The recipe is validated.
func ParseRecipe(data []byte) (Recipe, error) {
	var f struct {
		Recipe
		// Shadow Recipe's fields of the same JSON names, to tell absent from empty.
		Mirror *string `json:"mirror"`
		Purge  *string `json:"purge"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Recipe{}, fmt.Errorf("decoding recipe: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Recipe{}, errors.New("decoding recipe: data after the recipe object")
	}
	r := f.Recipe
	r.Mirror, r.Purge = DefaultMirror(), DefaultPurge
	if f.Mirror != nil {
		r.Mirror = *f.Mirror
	}
	if f.Purge != nil {
		r.Purge = *f.Purge
	}
	if err := r.Validate(); err != nil {
		return Recipe{}, err
	}
	return r, nil
}

// LoadRecipe reads and parses the recipe file at path.
func LoadRecipe(path string) (Recipe, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Recipe{}, err
	}
	r, err := ParseRecipe(data)
	if err != nil {
		return Recipe{}, fmt.Errorf("recipe %q: %w", path, err)
	}
	return r, nil
}

// VerifyModules are the modules a build's verification imports: Modules, then the
// Preload modules not among them.
func (r Recipe) VerifyModules() []string {
	mods := slices.Clone(r.Modules)
	for _, m := range r.Preload {
		if !slices.Contains(mods, m) {
			mods = append(mods, m)
		}
	}
	return mods
}
