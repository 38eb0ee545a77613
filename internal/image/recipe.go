// Package image builds, finds and describes the sandbox's root filesystem image.
package image

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	// Suite is the Debian release to bootstrap: "bookworm".
	Suite string `json:"suite"`
	// Mirror is the Debian archive to download from. It is not part of Hash: the same
	// suite gives the same packages from any mirror.
	Mirror string `json:"mirror"`
	// Packages are installed on top of Debian's minbase variant.
	Packages []string `json:"packages"`
	// Purge matches (Go regexp syntax) the installed packages removed after bootstrap
	// with dpkg --purge --force-depends: the compiler chain that python3-scipy drags in
	// through pythran, which nothing needs at run time.
	Purge string `json:"purge"`
	// Modules are the Python modules a verification imports; their versions go into the
	// manifest.
	Modules []string `json:"modules"`
}

// DefaultRecipe returns the recipe of the default Python image, with the mirror taken
// from the host's apt sources (see DefaultMirror).
func DefaultRecipe() Recipe {
	return Recipe{
		Name:    "python",
		Version: RecipeVersion,
		Suite:   "bookworm",
		Mirror:  DefaultMirror(),
		Packages: []string{
			"python3",
			"python3-numpy",
			"python3-pandas",
			"python3-matplotlib",
			"python3-scipy",
			"python3-sympy",
			"python3-requests",
		},
		// Kept on purpose (the expression does not match them): gcc-12-base, libgcc-s1,
		// libgomp1, libquadmath0 and libatomic1, which numpy and scipy link against.
		Purge: `-dev$|^gcc-12$|^gcc$|^g\+\+|^cpp|^binutils|^libbinutils|^libctf|^libgprofng|` +
			`^libasan|^libtsan|^liblsan|^libubsan|^libhwasan|^libitm|^libcc1|^libisl|^libmpc|` +
			`^libjansson|pythran|^python3-beniget|^python3-gast|^libboost`,
		Modules: []string{"numpy", "pandas", "matplotlib", "scipy", "sympy", "requests"},
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Validate reports the first problem that would make the recipe unbuildable.
func (r Recipe) Validate() error {
	if !nameRE.MatchString(r.Name) {
		return fmt.Errorf("recipe name %q: want lowercase letters, digits, '.', '_' or '-'", r.Name)
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
	for _, m := range r.Modules {
		if !moduleRE.MatchString(m) {
			return fmt.Errorf("recipe %q: %q is not a Python module name", r.Name, m)
		}
	}
	return nil
}

var (
	debPackageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	moduleRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
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
